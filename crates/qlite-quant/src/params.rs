//! The arithmetic of TensorFlow's quantizer: activation parameters from ranges, weights,
//! biases, float16. See shared/design/tflite-facts.md §c.

use half::f16;
use qlite_ir::QuantParams;

/// Asymmetric int8 activation parameters from a calibrated range (MLIR quantizer with
/// `legacy_float_scale`): the range is widened to include 0, `s = (max − min)/255` in float,
/// `z = −128 − min/s` rounded half away from zero and clamped.
pub fn activation_params(min: f32, max: f32) -> QuantParams {
    let mut lo = min.min(0.0);
    let mut hi = max.max(0.0);
    if hi - lo < 1e-6 {
        lo -= 1e-6;
        hi += 1e-6;
    }
    let s = (hi - lo) / 255.0;
    let zf = -128.0 - lo / s;
    let z = if zf < -128.0 {
        -128
    } else if zf > 127.0 {
        127
    } else {
        zf.round() as i64
    };
    QuantParams::per_tensor(s, z)
}

/// Symmetric int16 activation parameters (16x8, the legacy quantizer TF uses for it): the
/// range widened to include 0, `s = max(|min|, |max|)/32767` in float, zero point 0.
pub fn activation_params_int16(min: f32, max: f32) -> QuantParams {
    let m = min.min(0.0).abs().max(max.max(0.0));
    // Only a range of exactly 0 (or not finite) gets a stand-in: a tiny range keeps its tiny
    // scale, as TF's converter's does (a floor of 1e-6 cost a vanishing-logits network 32 dB);
    // the quantizer widens scales only where LiteRT's kernels need it.
    let m = if m > 0.0 && (m / 32767.0) > 0.0 && m.is_finite() { m } else { 1.0 };
    QuantParams::per_tensor(m / 32767.0, 0)
}

/// Activation parameters for an activation type: asymmetric int8 or symmetric int16.
pub fn activation_params_for(dtype: qlite_ir::DType, min: f32, max: f32) -> QuantParams {
    if dtype == qlite_ir::DType::I16 { activation_params_int16(min, max) } else { activation_params(min, max) }
}

/// Full-integer weights: int8 narrow range [-127, 127], symmetric, per channel along `axis`
/// (or per tensor). Scale `(f32(m) − f32(−m))/254` in float; values `round(w · f32(1/s))`.
pub fn quantize_weights(w: &[f32], dims: &[usize], axis: Option<usize>) -> (Vec<i8>, QuantParams) {
    let (channels, inner, outer) = channel_layout(dims, axis);
    let mut maxes = vec![0f32; channels];
    for (i, &v) in w.iter().enumerate() {
        let c = (i / inner) % channels;
        maxes[c] = maxes[c].max(v.abs());
    }
    let scales: Vec<f32> = maxes.iter().map(|&m| if m > 0.0 { (m - (-m)) / 254.0 } else { 1.0 }).collect();
    let inv: Vec<f32> = scales.iter().map(|&s| 1.0 / s).collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| (v * inv[(i / inner) % channels]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    let _ = outer;
    (q, weight_params(scales, axis))
}

/// Dynamic-range weights: as [`quantize_weights`] but the scale is computed in double as
/// `2m/254` and stored as float, and values are `round(w / s)` with `s` the *double* scale
/// (the MLIR dynamic-range quantizer rounds before narrowing the scale: dividing by the
/// stored float scale instead moved a value by one in 13 of DenseNet-121's 121 weight tensors).
pub fn quantize_weights_dynamic(w: &[f32], dims: &[usize], axis: Option<usize>) -> (Vec<i8>, QuantParams) {
    let (channels, inner, _) = channel_layout(dims, axis);
    let mut maxes = vec![0f32; channels];
    for (i, &v) in w.iter().enumerate() {
        let c = (i / inner) % channels;
        maxes[c] = maxes[c].max(v.abs());
    }
    let exact: Vec<f64> = maxes.iter().map(|&m| if m > 0.0 { 2.0 * m as f64 / 254.0 } else { 1.0 }).collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 / exact[(i / inner) % channels]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, weight_params(exact.iter().map(|&s| s as f32).collect(), axis))
}

fn weight_params(scales: Vec<f32>, axis: Option<usize>) -> QuantParams {
    match axis {
        Some(a) if scales.len() > 1 => {
            let n = scales.len();
            QuantParams::per_channel(scales, vec![0; n], a)
        }
        _ => QuantParams::per_tensor(scales.first().copied().unwrap_or(1.0), 0),
    }
}

/// (channels, elements per channel step, outer count) for per-channel indexing.
fn channel_layout(dims: &[usize], axis: Option<usize>) -> (usize, usize, usize) {
    match axis {
        Some(a) if a < dims.len() => {
            let inner: usize = dims[a + 1..].iter().product();
            let outer: usize = dims[..a].iter().product();
            (dims[a].max(1), inner.max(1), outer)
        }
        _ => (1, dims.iter().product::<usize>().max(1), 1),
    }
}

/// The bias scales `s_b[c] = f32(double(s_in) · double(s_w[c]))` and their parameters
/// (per channel when the weights are).
fn bias_scales(channels: usize, s_in: f32, w: &QuantParams) -> (Vec<f32>, QuantParams) {
    let scales: Vec<f32> = (0..channels)
        .map(|c| {
            let s_w = if w.scales().len() == 1 { w.scale() } else { w.scales().get(c).copied().unwrap_or(1.0) };
            (s_in as f64 * s_w as f64) as f32
        })
        .collect();
    let params = if w.scales().len() > 1 {
        QuantParams::per_channel(scales.clone(), vec![0; channels], 0)
    } else {
        QuantParams::per_tensor(scales.first().copied().unwrap_or(1.0), 0)
    };
    (scales, params)
}

/// int32 bias with the scales of [`bias_scales`], values `clamp(round(b · f32(1/s_b)),
/// −(2³¹−1), 2³¹−1)`.
pub fn quantize_bias(b: &[f32], s_in: f32, w: &QuantParams) -> (Vec<i32>, QuantParams) {
    let (scales, params) = bias_scales(b.len(), s_in, w);
    let q = b
        .iter()
        .zip(&scales)
        .map(|(&v, &s)| {
            let r = (v * (1.0 / s)).round() as f64;
            r.clamp(-(i32::MAX as f64), i32::MAX as f64) as i32
        })
        .collect();
    (q, params)
}

/// int64 bias of 16x8 convolutions and FULLY_CONNECTED: the scales of [`bias_scales`], values
/// `round(b · f32(1/s_b))` without the int32 clamp.
pub fn quantize_bias_i64(b: &[f32], s_in: f32, w: &QuantParams) -> (Vec<i64>, QuantParams) {
    let (scales, params) = bias_scales(b.len(), s_in, w);
    let q = b.iter().zip(&scales).map(|(&v, &s)| (v * (1.0 / s)).round() as f64 as i64).collect();
    (q, params)
}

/// float32 → IEEE half: clamp to ±65504, round to nearest even.
pub fn to_f16(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x.clamp(-65504.0, 65504.0))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_params_follow_the_converter() {
        let q = activation_params(0.0, 1.0);
        assert_eq!((q.scale(), q.zero_point()), (1.0 / 255.0, -128));
        // z = -128 + 127.5 rounds half away from zero.
        let q = activation_params(-1.0, 1.0);
        assert_eq!(q.zero_point(), -1);
        // A range not containing 0 is widened to include it.
        let q = activation_params(2.0, 4.0);
        assert_eq!(q.zero_point(), -128);
        assert!((q.scale() - 4.0 / 255.0).abs() < 1e-9);
        let q = activation_params(0.0, 0.0);
        assert!(q.scale() > 0.0);
    }

    /// Dynamic-range values are rounded against the double scale, as TF's converter rounds
    /// them: here `w / f32(s)` is 90.5000x and rounds up, `w / s` is 90.4999x.
    #[test]
    fn dynamic_weights_round_against_the_double_scale() {
        let (m, w) = (f32::from_bits(0x3e12_73fe), f32::from_bits(0x3dd0_b978));
        let (q, p) = quantize_weights_dynamic(&[m, w], &[2], None);
        assert_eq!(q, vec![127, 90]);
        assert_eq!(p.scale(), (2.0 * m as f64 / 254.0) as f32);
        // The float-scale division would give 91.
        assert_eq!((w / p.scale()).round(), 91.0);
    }

    #[test]
    fn weights_are_symmetric_narrow_range_per_channel() {
        let w = [0.5, -1.0, 0.25, 2.0, 0.0, -2.0];
        let (q, p) = quantize_weights(&w, &[2, 3], Some(0));
        assert_eq!(q, vec![64, -127, 32, 127, 0, -127]);
        assert_eq!(p.scales(), &[2.0 / 254.0, 4.0 / 254.0]);
        let (b, bp) = quantize_bias(&[1.0, -1.0], 0.5, &p);
        assert_eq!(bp.scales().len(), 2);
        assert_eq!(b[0], (1.0f32 * (1.0 / (0.5f32 * (2.0 / 254.0)))).round() as i32);
    }
}
