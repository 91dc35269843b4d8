//! QUANTIZE / DEQUANTIZE / requantize, and the symmetric and asymmetric row quantization of
//! hybrid kernels (vectorized where the ISA allows, equal to the scalar rounding).

use super::*;

/// Per-element (scale, zero point) lookup for per-tensor or per-axis parameters.
fn channel_of<'a>(q: &'a QuantParams, shape: &[usize]) -> impl Fn(usize) -> (f32, i64) + 'a {
    let axis = q.axis();
    let st = strides(shape);
    let per_channel = q.scales().len() > 1;
    let (stride, dim) = match axis {
        Some(a) if per_channel => (st.get(a).copied().unwrap_or(1), shape.get(a).copied().unwrap_or(1)),
        _ => (1, 1),
    };
    move |i| if per_channel { q.channel((i / stride) % dim) } else { (q.scale(), q.zero_point()) }
}

/// `DEQUANTIZE`: `f32(double(s) · (q − z))`; f16/bf16 widen exactly.
pub fn dequantize(x: &Array, q: Option<&QuantParams>) -> Result<Vec<f32>, String> {
    match (x.data(), q) {
        (Data::F16(v), _) => Ok(v.iter().map(|h| h.to_f32()).collect()),
        (Data::BF16(v), _) => Ok(v.iter().map(|h| h.to_f32()).collect()),
        (Data::F32(v), None) => Ok(v.clone()),
        (data, Some(q)) => {
            let ch = channel_of(q, x.shape());
            let vals: Vec<i64> = match data {
                Data::I8(v) => v.iter().map(|&e| e as i64).collect(),
                Data::U8(v) => v.iter().map(|&e| e as i64).collect(),
                Data::I16(v) => v.iter().map(|&e| e as i64).collect(),
                Data::I32(v) => v.iter().map(|&e| e as i64).collect(),
                _ => return Err(format!("cannot dequantize {}", x.dtype())),
            };
            Ok(vals
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let (s, z) = ch(i);
                    (s as f64 * (v - z) as f64) as f32
                })
                .collect())
        }
        (_, None) => Err(format!("cannot dequantize {} without quantization parameters", x.dtype())),
    }
}

fn store_int(dtype: DType, vals: Vec<i64>) -> Result<Data, String> {
    Ok(match dtype {
        DType::I8 => Data::I8(vals.into_iter().map(|v| v as i8).collect()),
        DType::U8 => Data::U8(vals.into_iter().map(|v| v as u8).collect()),
        DType::I16 => Data::I16(vals.into_iter().map(|v| v as i16).collect()),
        DType::I32 => Data::I32(vals.into_iter().map(|v| v as i32).collect()),
        d => return Err(format!("cannot quantize to {d}")),
    })
}

/// `QUANTIZE`: float → int with `q = clamp(round(x / s) + z)` (float division, C rounding), or
/// int → int requantize with `MultiplyByQuantizedMultiplier(q − z_in, s_in/s_out) + z_out`.
/// float → int8 QUANTIZE: `clamp(round(x / s) + z)`, `round` half away from zero (exactly
/// `f32::round`, written with `trunc` so it vectorizes).
pub(crate) fn quantize_f32_i8(v: &[f32], s: f32, z: i32, out: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::current().has_avx512() {
        // SAFETY: the CPU supports AVX-512 F/BW/VL, the requirements of `quantize_f32_i8_avx512`.
        #[allow(unsafe_code)]
        unsafe {
            quantize_f32_i8_avx512(v, s, z, out)
        };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::isa::current().has_avx2() {
        // SAFETY: the CPU supports AVX2, the only requirement of `quantize_f32_i8_avx2`.
        #[allow(unsafe_code)]
        unsafe {
            quantize_f32_i8_avx2(v, s, z, out)
        };
        return;
    }
    quantize_f32_i8_portable(v, s, z, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn quantize_f32_i8_avx2(v: &[f32], s: f32, z: i32, out: &mut [i8]) {
    quantize_f32_i8_portable(v, s, z, out);
}

/// 16 floats at a time: the same division, then round half away from zero as
/// `sign(q)·floor(|q| + ½)` for |q| >= ½ (the floor is exact: where the sum rounds, it stays
/// between the same integers; beyond 2^23 every float is an integer the clamp saturates) and 0
/// below, the zero point and clamp in float (exact: the rounded value
/// is an integer, and beyond ±2^24 the clamp decides either way); NaN lanes become `0 + z` as
/// `as i32` makes them.
///
/// The division (the slowest vector instruction there is) is replaced by a multiplication
/// with the reciprocal where that provably gives the same integer: `x · fl(1/s)` is within
/// `3·2^-24·|q|` of the reference's correctly rounded `fl(x/s)`, so for |q| <= 512 when it lies
/// farther than 2^-12 from every half-integer both round to the same integer (and beyond 511
/// both saturate, whatever the zero point). A vector with a lane that close is divided.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[allow(unsafe_code)]
fn quantize_f32_i8_avx512(v: &[f32], s: f32, z: i32, out: &mut [i8]) {
    use std::arch::x86_64::*;
    let n = v.len().min(out.len());
    let recip = 1.0 / s;
    // Only when the reciprocal carries s's full precision (no overflow, no subnormals).
    let by_recip = s.is_normal() && recip.is_normal();
    let (vs, vr, vz) = (_mm512_set1_ps(s), _mm512_set1_ps(recip), _mm512_set1_ps(z as f32));
    let (lo, hi) = (_mm512_set1_ps(-128.0), _mm512_set1_ps(127.0));
    let half = _mm512_set1_ps(0.5);
    let far = _mm512_set1_ps(0.5 - 1.0 / 4096.0);
    let sign = _mm512_set1_epi32(i32::MIN);
    const FLOOR: i32 = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
    // 16 lanes (those `mask` selects from `v[i..]`) → 16 clamped i32.
    let lanes = |i: usize, mask: u16| {
        // SAFETY: (in the loops below) the mask selects lanes inside `v`.
        unsafe {
            let x = _mm512_maskz_loadu_ps(mask, v.as_ptr().add(i));
            let mut q = if by_recip { _mm512_mul_ps(x, vr) } else { _mm512_div_ps(x, vs) };
            let mut a = _mm512_abs_ps(q);
            let mut up = _mm512_add_ps(a, half);
            let mut fl = _mm512_roundscale_ps::<FLOOR>(up);
            if by_recip {
                // |q| + ½ within 2^-12 of an integer: |q| that close to a half-integer.
                let d = _mm512_abs_ps(_mm512_sub_ps(_mm512_sub_ps(up, fl), half));
                if _mm512_cmp_ps_mask::<_CMP_GE_OQ>(d, far) != 0 {
                    q = _mm512_div_ps(x, vs);
                    a = _mm512_abs_ps(q);
                    up = _mm512_add_ps(a, half);
                    fl = _mm512_roundscale_ps::<FLOOR>(up);
                }
            }
            // sign(q)·floor(|q| + ½): the sign bit of q over the (non-negative) floor.
            let r = _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<0xF8>(
                _mm512_castps_si512(fl),
                _mm512_castps_si512(q),
                sign,
            ));
            // |q| < ½ (where |q| + ½ may round up to 1) and NaN lanes: 0 + z.
            let c = _mm512_mask_add_ps(vz, _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, half), r, vz);
            _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(c, lo), hi))
        }
    };
    let mut i = 0;
    // 64 at a time: packed (the values are in range already) and stored whole — a masked
    // narrowing store per 16 cost more than the arithmetic.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    while i + 64 <= n {
        let (a, b) = (lanes(i, u16::MAX), lanes(i + 16, u16::MAX));
        let (c, d) = (lanes(i + 32, u16::MAX), lanes(i + 48, u16::MAX));
        let p = _mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d));
        // SAFETY: i + 64 <= n <= out.len().
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(i) as *mut _, _mm512_permutexvar_epi32(order, p)) };
        i += 64;
    }
    while i < n {
        let mask: u16 = if n - i >= 16 { u16::MAX } else { ((1u32 << (n - i)) - 1) as u16 };
        // SAFETY: the mask selects lanes i..min(i + 16, n), inside `out`.
        unsafe { _mm_mask_storeu_epi8(out.as_mut_ptr().add(i) as *mut _, mask, _mm512_cvtepi32_epi8(lanes(i, mask))) };
        i += 16;
    }
}

#[inline(always)]
fn quantize_f32_i8_portable(v: &[f32], s: f32, z: i32, out: &mut [i8]) {
    for (o, &f) in out.iter_mut().zip(v) {
        let q = f / s;
        let t = q.trunc();
        let r = if (q - t).abs() >= 0.5 { t + 1f32.copysign(q) } else { t };
        // `as i32` saturates (NaN → 0) as the i64 path does within the int8 range.
        *o = (r as i32).saturating_add(z).clamp(-128, 127) as i8;
    }
}

pub fn quantize(x: &Array, in_q: Option<&QuantParams>, out_dtype: DType, out_q: &QuantParams) -> Result<Data, String> {
    let (lo, hi) = out_dtype.int_range().ok_or_else(|| format!("cannot quantize to {out_dtype}"))?;
    if out_q.scales().len() > 1 {
        return Err("per-channel QUANTIZE is not supported".to_string());
    }
    let (s_out, z_out) = (out_q.scale(), out_q.zero_point());
    if let (Data::F32(v), DType::I8) = (x.data(), out_dtype) {
        // The common model input: straight to int8, one vectorizable pass.
        let mut out = vec![0i8; v.len()];
        quantize_f32_i8(v, s_out, z_out as i32, &mut out);
        return Ok(Data::I8(out));
    }
    let vals: Vec<i64> = match x.data() {
        Data::F32(v) => {
            v.iter().map(|&f| ((round_half_away(f / s_out) as i64).saturating_add(z_out)).clamp(lo, hi)).collect()
        }
        data => {
            let in_q = in_q.ok_or("requantize input has no quantization parameters")?;
            let (s_in, z_in) = (in_q.scale(), in_q.zero_point());
            let (m, sh) = quantize_multiplier(s_in as f64 / s_out as f64);
            let ints: Vec<i64> = match data {
                Data::I8(v) => v.iter().map(|&e| e as i64).collect(),
                Data::U8(v) => v.iter().map(|&e| e as i64).collect(),
                Data::I16(v) => v.iter().map(|&e| e as i64).collect(),
                _ => return Err(format!("cannot quantize from {}", x.dtype())),
            };
            ints.into_iter().map(|q| (mbqm((q - z_in) as i32, m, sh) as i64 + z_out).clamp(lo, hi)).collect()
        }
    };
    store_int(out_dtype, vals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorized_float_to_int8_quantize_matches_round() {
        crate::isa::for_each_tier(|_| {
            let mut v =
                vec![0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997, 1e30, -1e30, f32::NAN, 126.5, -128.5];
            let mut state = 12345u32;
            for _ in 0..100000 {
                state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                v.push(f32::from_bits(state) % 300.0);
            }
            v.retain(|f| !f.is_infinite());
            for (s, z) in [(1.0f32, 0i32), (0.5, -3), (0.1, 100), (1.0 / 255.0, -128)] {
                // The best vector path of this machine, and the portable loop.
                let mut got = vec![0i8; v.len()];
                let mut portable = vec![0i8; v.len()];
                quantize_f32_i8(&v, s, z, &mut got);
                quantize_f32_i8_portable(&v, s, z, &mut portable);
                for (i, &f) in v.iter().enumerate() {
                    let want = ((round_half_away(f / s) as i64).saturating_add(z as i64)).clamp(-128, 127) as i8;
                    assert_eq!(got[i], want, "{f} / {s} + {z}");
                    assert_eq!(portable[i], want, "portable: {f} / {s} + {z}");
                }
            }
        });
    }

    /// The reciprocal form of the vector path where it is most fragile: inputs at and around
    /// (k + ½)·s, where `x · (1/s)` and `x / s` can round to different sides of the half, for
    /// scales whose reciprocals are inexact, tiny and huge scales, and scales too small for a
    /// normal reciprocal (divided).
    #[test]
    fn vectorized_quantize_matches_division_at_halves() {
        crate::isa::for_each_tier(|_| {
            let scales = [0.3f32, 2.0 / 255.0, 3.7e-3, 0.1, 1.0 / 3.0, 7.0, 1e30, 1e-30, 1e-38, 5e-39, 3e38];
            for s in scales {
                let mut v = Vec::new();
                for k in -300..300 {
                    let x0 = (k as f32 + 0.5) * s;
                    let mut up = x0;
                    let mut down = x0;
                    v.push(x0);
                    for _ in 0..6 {
                        up = f32::from_bits(if up >= 0.0 { up.to_bits() + 1 } else { up.to_bits() - 1 });
                        down = f32::from_bits(if down > 0.0 { down.to_bits() - 1 } else { down.to_bits() + 1 });
                        v.extend([up, down]);
                    }
                }
                v.retain(|f| f.is_finite());
                for z in [0, -128, 77] {
                    let mut got = vec![0i8; v.len()];
                    quantize_f32_i8(&v, s, z, &mut got);
                    for (i, &f) in v.iter().enumerate() {
                        let want = ((round_half_away(f / s) as i64).saturating_add(z as i64)).clamp(-128, 127) as i8;
                        assert_eq!(got[i], want, "{f:e} / {s:e} + {z}");
                    }
                }
            }
        });
    }

    #[test]
    fn broadcast_index_map() {
        assert_eq!(broadcast_indices(&[2, 3], &[3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_indices(&[2, 3], &[2, 1]), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(broadcast_indices(&[2, 2], &[2, 2]), vec![0, 1, 2, 3]);
    }

    #[test]
    fn quantize_rounds_half_away_and_saturates() {
        let x = Array::f32(vec![5], vec![0.25, -0.25, 100.0, -100.0, 0.0]).unwrap();
        let q = QuantParams::per_tensor(0.5, -1);
        assert_eq!(quantize(&x, None, DType::I8, &q).unwrap(), Data::I8(vec![0, -2, 127, -128, -1]));
    }
}

/// `SymmetricQuantizeFloats`: returns (values, scaling factor).
pub fn symmetric_quantize(v: &[f32]) -> (Vec<i32>, f32) {
    let mut q = Vec::new();
    let sf = symmetric_quantize_into(v, &mut q);
    (q.into_iter().map(i32::from).collect(), sf)
}

/// [`symmetric_quantize`] into `q` (resized to `v.len()`); returns the scaling factor.
pub fn symmetric_quantize_into(v: &[f32], q: &mut Vec<i8>) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::current().has_avx2() {
        // SAFETY: the CPU supports AVX2, the only requirement.
        #[allow(unsafe_code)]
        return unsafe { symmetric_quantize_avx2(v, q) };
    }
    symmetric_quantize_body(v, q)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn symmetric_quantize_avx2(v: &[f32], q: &mut Vec<i8>) -> f32 {
    symmetric_quantize_body(v, q)
}

#[inline(always)]
fn symmetric_quantize_body(v: &[f32], q: &mut Vec<i8>) -> f32 {
    let (mn, mx) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let range = mn.abs().max(mx.abs());
    q.clear();
    if v.is_empty() || range == 0.0 {
        q.resize(v.len(), 0);
        return 1.0;
    }
    let inv = 127.0 / range;
    let head = lanes_of_eight(v.len());
    q.extend(v[..head].iter().map(|&x| (round_by_half_trunc(x * inv)).clamp(-127, 127) as i8));
    q.extend(v[head..].iter().map(|&x| (round_half_away(x * inv) as i32).clamp(-127, 127) as i8));
    range / 127.0
}

/// The elements LiteRT quantizes eight at a time: its x86 build runs the NEON tensor utils
/// (`NeonSymmetricQuantizeFloats`, `NeonAsymmetricQuantizeFloats`) through NEON_2_SSE, whose
/// vector loop rounds differently from the scalar tail.
fn lanes_of_eight(n: usize) -> usize {
    n / 8 * 8
}

/// NEON's `RoundToNearest` without ARMv8's `vcvtaq`: `trunc(x ± 0.5)` with the addition
/// rounded in f32 (so 0.49999997 rounds to 1, unlike round-half-away).
fn round_by_half_trunc(x: f32) -> i32 {
    let half = if x < 0.0 { -0.5f32 } else { 0.5f32 };
    (x + half).trunc() as i32
}

/// `AsymmetricQuantizeFloats`: returns (values, scaling factor, zero point).
pub fn asymmetric_quantize(v: &[f32]) -> (Vec<i32>, f32, i32) {
    let mut q = Vec::new();
    let (sf, zp) = asymmetric_quantize_into(v, &mut q);
    (q.into_iter().map(i32::from).collect(), sf, zp)
}

/// [`asymmetric_quantize`] into `q` (resized to `v.len()`); returns (scaling factor, zero point).
pub fn asymmetric_quantize_into(v: &[f32], q: &mut Vec<i8>) -> (f32, i32) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::current().has_avx2() {
        // SAFETY: the CPU supports AVX2, the only requirement.
        #[allow(unsafe_code)]
        return unsafe { asymmetric_quantize_avx2(v, q) };
    }
    asymmetric_quantize_body(v, q)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn asymmetric_quantize_avx2(v: &[f32], q: &mut Vec<i8>) -> (f32, i32) {
    asymmetric_quantize_body(v, q)
}

#[inline(always)]
fn asymmetric_quantize_body(v: &[f32], q: &mut Vec<i8>) -> (f32, i32) {
    // LiteRT's `NeonAsymmetricQuantizeFloats` (its x86 build): the range includes zero, its
    // width is taken in f32, the scale and zero point in f64, the inverse scale as
    // `(float)(1.0 / (double)scale)`, and the offset is added after rounding.
    let (mn, mx) = v.iter().fold((0f32, 0f32), |(a, b), &x| (a.min(x), b.max(x)));
    q.clear();
    if v.is_empty() || mn == mx {
        q.resize(v.len(), 0);
        return (1.0, 0);
    }
    let (rmin, rmax) = (mn as f64, mx as f64);
    let (qmin, qmax) = (-128f64, 127f64);
    let scale = (mx - mn) as f64 / (qmax - qmin);
    let zp_from_min = qmin - rmin / scale;
    let zp_from_max = qmax - rmax / scale;
    let err_min = qmin.abs() + (rmin / scale).abs();
    let err_max = qmax.abs() + (rmax / scale).abs();
    let zp_d = if err_min < err_max { zp_from_min } else { zp_from_max };
    let zp = if zp_d <= qmin {
        -128
    } else if zp_d >= qmax {
        127
    } else {
        zp_d.round() as i32
    };
    let sf = scale as f32;
    let inv = (1.0 / sf as f64) as f32;
    let head = lanes_of_eight(v.len());
    q.extend(v[..head].iter().map(|&x| (zp + round_by_half_trunc(x * inv)).clamp(-128, 127) as i8));
    q.extend(v[head..].iter().map(|&x| (zp + round_half_away(x * inv) as i32).clamp(-128, 127) as i8));
    (sf, zp)
}
