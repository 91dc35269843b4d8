//! Requantization of i32 accumulators to int8 outputs with the reference kernels' arithmetic
//! (double rounding), per ISA tier: per-channel multipliers, 16-lane AVX-512 and portable forms.

use super::*;

/// FULLY_CONNECTED's reference requantization, `clamp(round(acc · scale) + zp)` with `round`
/// half away from zero in double, written so it vectorizes (`v − trunc(v)` is exact).
pub(crate) fn requantize_double(acc: &[i32], scales: &[f64], zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::current().has_avx512() {
        // SAFETY: the CPU has AVX-512 F, BW, DQ and VL, the only requirements.
        #[allow(unsafe_code)]
        unsafe {
            requantize_double_avx512(acc, scales, zp, lo, hi, out)
        };
        return;
    }
    requantize_double_portable(acc, scales, zp, lo, hi, out);
}

/// 8 at a time: `v = acc · scale` in double (exact product of an integer and the scale, as
/// the reference), round half away from zero as `sign(v)·floor(|v| + ½)` for |v| >= ½ (the
/// floor is exact: where the sum rounds it stays between the same integers; beyond 2^52 every
/// double is an integer) and 0 below, then the zero point and clamp in double (exact for
/// integers below 2^53, and the clamp decides beyond).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(unsafe_code)]
pub(crate) fn requantize_double_avx512(acc: &[i32], scales: &[f64], zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    use std::arch::x86_64::*;
    let n = acc.len().min(scales.len()).min(out.len());
    let (vzp, vlo, vhi) = (_mm512_set1_pd(zp as f64), _mm512_set1_pd(lo as f64), _mm512_set1_pd(hi as f64));
    let half = _mm512_set1_pd(0.5);
    let sign = _mm512_set1_epi64(i64::MIN);
    const FLOOR: i32 = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
    // 8 lanes (those `mask` selects from i) → 8 clamped i32.
    let eight = |i: usize, mask: u8| {
        // SAFETY: (in the loops below) the mask selects lanes inside `acc` and `scales`.
        unsafe {
            let a = _mm512_cvtepi32_pd(_mm256_maskz_loadu_epi32(mask, acc.as_ptr().add(i)));
            let v = _mm512_mul_pd(a, _mm512_maskz_loadu_pd(mask, scales.as_ptr().add(i)));
            let m = _mm512_abs_pd(v);
            let fl = _mm512_roundscale_pd::<FLOOR>(_mm512_add_pd(m, half));
            let r = _mm512_castsi512_pd(_mm512_ternarylogic_epi64::<0xF8>(
                _mm512_castpd_si512(fl),
                _mm512_castpd_si512(v),
                sign,
            ));
            // |v| < ½: 0 + zp.
            let c = _mm512_mask_add_pd(vzp, _mm512_cmp_pd_mask::<_CMP_GE_OQ>(m, half), r, vzp);
            _mm512_cvttpd_epi32(_mm512_min_pd(_mm512_max_pd(c, vlo), vhi))
        }
    };
    let mut i = 0;
    while i + 16 <= n {
        let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(eight(i, 0xFF)), eight(i + 8, 0xFF));
        // SAFETY: i + 16 <= n <= out.len().
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut _, _mm512_cvtepi32_epi8(q)) };
        i += 16;
    }
    while i < n {
        let k = (n - i).min(8);
        let mask = ((1u32 << k) - 1) as u8;
        // SAFETY: the mask selects lanes i..i + k <= n, inside `out`.
        unsafe {
            _mm_mask_storeu_epi8(out.as_mut_ptr().add(i) as *mut _, mask as u16, _mm256_cvtepi32_epi8(eight(i, mask)))
        };
        i += 8;
    }
}

#[inline(always)]
pub(crate) fn requantize_double_portable(acc: &[i32], scales: &[f64], zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    let (zp, lo, hi) = (zp as f64, lo as f64, hi as f64);
    for ((o, &a), &s) in out.iter_mut().zip(acc).zip(scales) {
        let v = a as f64 * s;
        let t = v.trunc();
        let r = if (v - t).abs() >= 0.5 { t + 1f64.copysign(v) } else { t };
        // Integers below 2^53 are exact in double: clamping `r + zp` there equals the
        // reference's saturating integer add and clamp.
        let c = (r + zp).clamp(lo, hi);
        // SAFETY: `scales` are finite (checked when packing) and `a` is an integer, so `c` is
        // a finite integer in [lo, hi] ⊂ [-128, 127]: representable in i32.
        #[allow(unsafe_code)]
        let q = unsafe { c.to_int_unchecked::<i32>() };
        *o = q as i8;
    }
}

/// 16 i32 lanes on a 64-byte boundary.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub(crate) struct Lane16(pub(crate) [i32; 16]);

/// i32 values stored from a 64-byte boundary (so a vector of 16 of them at a multiple of 16
/// never splits a cache line), zero-padded to a whole number of vectors; derefs to the
/// values (without the padding).
#[derive(Debug, Clone, Default)]
pub(crate) struct AlignedI32 {
    pub(crate) lanes: Vec<Lane16>,
    pub(crate) len: usize,
}

impl AlignedI32 {
    pub(crate) fn new(values: &[i32]) -> Self {
        let mut lanes = vec![Lane16::default(); values.len().div_ceil(16)];
        for (l, chunk) in lanes.iter_mut().zip(values.chunks(16)) {
            l.0[..chunk.len()].copy_from_slice(chunk);
        }
        AlignedI32 { lanes, len: values.len() }
    }
}

impl FromIterator<i32> for AlignedI32 {
    fn from_iter<I: IntoIterator<Item = i32>>(iter: I) -> Self {
        AlignedI32::new(&iter.into_iter().collect::<Vec<_>>())
    }
}

impl std::ops::Deref for AlignedI32 {
    type Target = [i32];
    #[allow(unsafe_code)]
    fn deref(&self) -> &[i32] {
        // `Lane16` is `repr(C)` around `[i32; 16]`, 64 bytes with no padding: the lanes are
        // 16·lanes.len() >= len consecutive, initialized i32 values.
        let flat: &[[i32; 16]] =
            // SAFETY: as above, `[Lane16]` and `[[i32; 16]]` have the same layout per element,
            // and the pointer is at least as aligned as `[i32; 16]` needs.
            unsafe { std::slice::from_raw_parts(self.lanes.as_ptr() as *const [i32; 16], self.lanes.len()) };
        &flat.as_flattened()[..self.len]
    }
}

/// Per-channel `MultiplyByQuantizedMultiplier` parameters in the form the vector loops want.
#[derive(Debug, Clone)]
pub(crate) struct Multipliers {
    pub(crate) m: AlignedI32,
    /// `2^max(shift, 0)`.
    pub(crate) left: AlignedI32,
    /// `max(shift, 0) + 1`: the short form doubles `x·2^left` by one variable shift.
    pub(crate) left1: AlignedI32,
    /// `max(−shift, 0)`, at most 31.
    pub(crate) right: AlignedI32,
    /// The multiplier of the next channel at even positions (what `vpmuldq` reads for the
    /// odd lanes), 0 at odd ones.
    pub(crate) m_odd: AlignedI32,
    /// `2^right − 1` and half of it: RoundingDivideByPOT's remainder mask and threshold.
    pub(crate) mask: AlignedI32,
    pub(crate) half: AlignedI32,
    /// Some channel shifts left (otherwise the multiply by `left` is skipped).
    pub(crate) any_left: bool,
    /// Some multiplier is `i32::MIN` (the only one SaturatingRoundingDoublingHighMul can
    /// saturate with; quantized multipliers are positive, so in practice never).
    pub(crate) any_min: bool,
    /// The short form (see [`Multipliers::bounded`]): per block of 16 channels, the 64-bit
    /// rounding constants `2·(2^30 + 2^(right − 1)·2^31)` of its 8 even channels, then of its
    /// 8 odd ones (as i32 pairs), and what a negative accumulator subtracts (1, or 0 when
    /// `right` is 0).
    pub(crate) k64: AlignedI32,
    pub(crate) cnt: AlignedI32,
    /// `k64` and `cnt` are filled: the vector paths may use the short form.
    pub(crate) short: bool,
    /// The largest |accumulator + bias| the layer can produce, if known.
    pub(crate) bound: Option<i64>,
    /// The output zero point, added to every result.
    pub(crate) zp: i32,
}

impl Multipliers {
    pub(crate) fn new(mults: &[(i32, i32)]) -> Self {
        let m: Vec<i32> = mults.iter().map(|&(m, _)| m).collect();
        let right: Vec<i32> = mults.iter().map(|&(_, s)| (-s).clamp(0, 31)).collect();
        let mask: Vec<i32> = right.iter().map(|&e| ((1u32 << e) - 1) as i32).collect();
        Multipliers {
            left: mults.iter().map(|&(_, s)| 1i32.wrapping_shl(s.clamp(0, 31) as u32)).collect(),
            left1: mults.iter().map(|&(_, s)| s.clamp(0, 31) + 1).collect(),
            m_odd: (0..m.len()).map(|i| if i % 2 == 0 { m.get(i + 1).copied().unwrap_or(0) } else { 0 }).collect(),
            half: mask.iter().map(|&k| k >> 1).collect(),
            any_left: mults.iter().any(|&(_, s)| s > 0),
            any_min: m.contains(&i32::MIN),
            m: AlignedI32::new(&m),
            right: AlignedI32::new(&right),
            mask: AlignedI32::new(&mask),
            k64: AlignedI32::default(),
            cnt: AlignedI32::default(),
            short: false,
            bound: None,
            zp: 0,
        }
    }

    /// These multipliers for accumulators (bias included) of at most `bound` in magnitude,
    /// which lets the vector paths use a shorter exact form when it applies: every multiplier
    /// 0 or in [2^30, 2^31) (what QuantizeMultiplier produces), and `|x·2^left| + 2^(right−1)`
    /// far from overflowing i32. Then SaturatingRoundingDoublingHighMul's result `h` is
    /// negative exactly when x is (for x = −1 and m = 2^30, h = 0, and both forms below give
    /// 0 for right >= 1), and RoundingDivideByPOT(h, right) — round half away from zero — is
    /// `(h + 2^(right−1) − [x < 0]) >> right` (arithmetic; no sign term when right = 0),
    /// whose `2^(right−1)` folds into the 64-bit rounding constant: `floor((floor(P/2^31) +
    /// k)/2^e) = floor((P + k·2^31)/2^(31+e))` … applied as `(P + K) >> 31` then `>> right`.
    pub(crate) fn bounded(mut self, bound: i64) -> Self {
        self.bound = Some(bound);
        self.prepare_short();
        self
    }

    /// These multipliers with the output zero point `zp` added to their results (folded into
    /// the short form's constants; one add otherwise).
    pub(crate) fn with_zp(mut self, zp: i32) -> Self {
        self.zp = zp;
        self.prepare_short();
        self
    }

    /// The short form's constants, when it applies (see [`Multipliers::bounded`]); the zero
    /// point rides along: `(h + 2^(right−1) + zp·2^right − [x < 0]) >> right` is the
    /// rounded result plus zp.
    pub(crate) fn prepare_short(&mut self) {
        self.short = false;
        let Some(bound) = self.bound else { return };
        let n = self.m.len();
        let ms_ok = self.m.iter().all(|&m| m == 0 || m >= 1 << 30);
        let left_max = self.left.iter().map(|&l| l as i64).max().unwrap_or(1);
        let right_max = self.right.iter().copied().max().unwrap_or(0).clamp(0, 31);
        let x_max = bound.saturating_mul(left_max);
        let extra = (1i64 << right_max) * (1 + (self.zp as i64).abs()) + 2;
        let fits = x_max.saturating_add(extra) < 1i64 << 30;
        if !ms_ok || !fits || self.any_min || n == 0 {
            return;
        }
        let blocks = n.div_ceil(16);
        let mut k = vec![0i32; blocks * 32];
        let konst = |c: usize| -> i64 {
            let r = self.right.get(c).copied().unwrap_or(0) as i64;
            let rounding = if r > 0 { 1i64 << (r - 1) } else { 0 };
            // Doubled (see `scale16`).
            2 * ((1i64 << 30) + ((rounding + ((self.zp as i64) << r)) << 31))
        };
        for b in 0..blocks {
            for j in 0..8 {
                for (half, c) in [(0, b * 16 + 2 * j), (16, b * 16 + 2 * j + 1)] {
                    let v = konst(c);
                    k[b * 32 + half + 2 * j] = v as i32;
                    k[b * 32 + half + 2 * j + 1] = (v >> 32) as i32;
                }
            }
        }
        let cnt: Vec<i32> = self.right.iter().map(|&r| (r > 0) as i32).collect();
        (self.k64, self.cnt, self.short) = (AlignedI32::new(&k), AlignedI32::new(&cnt), true);
    }
}

/// The largest |Σ w·(x − z) + bias| of `channels` channels over any int8 input (|x − z| at most
/// 255): `w` holds the weights with the channel `channel_last` (depthwise) or first.
pub(crate) fn acc_bound(w: &[i8], bias: Option<&[i32]>, channels: usize, channel_last: bool) -> i64 {
    if channels == 0 {
        return 0;
    }
    let mut sums = vec![0i64; channels];
    let per = w.len() / channels;
    for (i, &v) in w.iter().enumerate() {
        let c = if channel_last { i % channels } else { (i / per.max(1)).min(channels - 1) };
        sums[c] += (v as i64).abs();
    }
    (0..channels)
        .map(|c| sums[c] * 255 + bias.and_then(|b| b.get(c)).map_or(0, |&b| (b as i64).abs()))
        .max()
        .unwrap_or(0)
}

/// A convolution's output stage: per-channel multipliers, output zero point and the clamp of
/// its fused activation.
#[derive(Debug, Clone)]
pub(crate) struct ChannelOut {
    pub(crate) mults: Multipliers,
    /// For fewer than 16 channels dividing 16: the multipliers repeated over 16 lanes.
    pub(crate) tiled: Option<Multipliers>,
    /// For more than 16 channels, not a multiple of 16: the multipliers repeated over
    /// lcm(channels, 16) lanes, so whole vectors run across pixels (24 channels were a full
    /// and a half-empty vector per pixel, each with a masked store).
    pub(crate) periodic: Option<Multipliers>,
    /// The output zero point (also in `mults.zp`: the vector paths add it there).
    pub(crate) zp: i32,
    pub(crate) lo: i32,
    pub(crate) hi: i32,
}

impl ChannelOut {
    pub(crate) fn new(c: &Common, activation: qlite_ir::op::Activation, channels: usize, channel_last: bool) -> Self {
        let (lo, hi) = c.out.range(activation);
        let mults = Multipliers::new(&per_channel_multipliers(c.s_in, c.wq, c.out.scale, channels))
            .with_zp(c.out.zp)
            .bounded(acc_bound(c.w, c.bias, channels, channel_last));
        ChannelOut { tiled: mults.tiled16(), periodic: mults.periodic(), mults, zp: c.out.zp, lo, hi }
    }

    /// Requantize pixels × channels accumulators (plus `bias`, unless the accumulators hold
    /// it already) into `out`: the reference's bias, `MultiplyByQuantizedMultiplier`, offset
    /// and clamp, branch-free so it vectorizes.
    pub(crate) fn apply(&self, acc: &[i32], bias: Option<&[i32]>, out: &mut [i8]) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa::current().has_avx512() {
            // SAFETY: the CPU has AVX-512 F, BW, DQ and VL, the only requirements.
            #[allow(unsafe_code)]
            unsafe {
                requantize_fixed_avx512(acc, bias, self, out)
            };
            return;
        }
        requantize_fixed_portable(acc, bias, self, out);
    }
}

pub(crate) fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Multipliers {
    /// The vector paths can use these for `n` channels: every parameter vector holds `n`
    /// entries and no multiplier is `i32::MIN` (which the vector high-mul does not saturate).
    pub(crate) fn vector_ready(&self, n: usize) -> bool {
        [&self.m, &self.left, &self.left1, &self.right, &self.m_odd, &self.mask, &self.half]
            .iter()
            .all(|v| v.len() == n)
            && !self.any_min
    }

    /// For `n` < 16 channels with `n` dividing 16, the parameters repeated over 16 lanes (a
    /// vector then covers 16/n pixels).
    pub(crate) fn tiled16(&self) -> Option<Multipliers> {
        let n = self.m.len();
        if n == 0 || n >= 16 || !16usize.is_multiple_of(n) {
            return None;
        }
        self.repeated(16)
    }

    /// For `n` > 16 channels not a multiple of 16, the parameters repeated over lcm(n, 16)
    /// lanes (at most 4096).
    pub(crate) fn periodic(&self) -> Option<Multipliers> {
        let n = self.m.len();
        if n <= 16 || n.is_multiple_of(16) {
            return None;
        }
        let period = n / gcd(n, 16) * 16;
        (period <= 4096).then(|| self.repeated(period)).flatten()
    }

    /// The parameters of channel `i mod n` for lanes `i < len`.
    fn repeated(&self, len: usize) -> Option<Multipliers> {
        let n = self.m.len();
        if n == 0 {
            return None;
        }
        let pairs: Vec<(i32, i32)> = (0..len)
            .map(|i| {
                let c = i % n;
                let shift = if self.left[c] != 1 { self.left[c].trailing_zeros() as i32 } else { -self.right[c] };
                (self.m[c], shift)
            })
            .collect();
        let mut q = Multipliers::new(&pairs);
        (q.bound, q.zp) = (self.bound, self.zp);
        q.prepare_short();
        Some(q)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(unsafe_code)]
pub(crate) fn requantize_fixed_avx512(acc: &[i32], bias: Option<&[i32]>, co: &ChannelOut, out: &mut [i8]) {
    let (q, n) = (&co.mults, co.mults.m.len());
    if n == 0 || !q.vector_ready(n) || bias.is_some_and(|b| b.len() != n) {
        requantize_fixed_portable(acc, bias, co, out);
        return;
    }
    // SAFETY: the CPU has what this function enables; the short form only when every set
    // of multipliers used has it.
    unsafe {
        if q.short && co.tiled.as_ref().is_none_or(|t| t.short) && co.periodic.as_ref().is_none_or(|t| t.short) {
            requantize_fixed_avx512_as::<true>(acc, bias, co, out)
        } else {
            requantize_fixed_avx512_as::<false>(acc, bias, co, out)
        }
    }
}

/// [`requantize_fixed_avx512`] with the form of [`OutVec::scale`] chosen.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/DQ/VL; with `SHORT`, `co.mults.short` and (if present)
/// `co.tiled`'s and `co.periodic`'s `short` must be true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(unsafe_code)]
pub(crate) unsafe fn requantize_fixed_avx512_as<const SHORT: bool>(
    acc: &[i32],
    bias: Option<&[i32]>,
    co: &ChannelOut,
    out: &mut [i8],
) {
    use std::arch::x86_64::*;
    let (q, n) = (&co.mults, co.mults.m.len());
    if n == 0 || !q.vector_ready(n) || bias.is_some_and(|b| b.len() != n) {
        requantize_fixed_portable(acc, bias, co, out);
        return;
    }
    let pixels = (acc.len() / n).min(out.len() / n);
    let k = OutVec::new(co.lo, co.hi);
    if let Some(t) = co.tiled.as_ref().filter(|t| n < 16 && 16 % n == 0 && t.vector_ready(16)) {
        // Few channels: each vector covers 16/n pixels, the parameters tiled to match.
        let mut tb = [0i32; 16];
        if let Some(bias) = bias {
            for (i, b) in tb.iter_mut().enumerate() {
                *b = bias[i % n];
            }
        }
        let total = pixels * n;
        let mut i = 0;
        while i < total {
            let lanes = ((1u32 << (total - i).min(16)) - 1) as u16;
            // SAFETY: the lanes selected are i..min(i + 16, total) <= acc.len(), out.len(),
            // and lanes < 16 of the 16-entry tiled parameters and `tb`.
            unsafe {
                let x = _mm512_add_epi32(
                    _mm512_maskz_loadu_epi32(lanes, acc.as_ptr().add(i)),
                    _mm512_loadu_si512(tb.as_ptr() as *const _),
                );
                _mm_mask_storeu_epi8(out.as_mut_ptr().add(i) as *mut _, lanes, requant16!(SHORT, &k, x, t, 0, lanes));
            }
            i += 16;
        }
        return;
    }
    // The accumulators plus the bias of channels c.. (the lanes selected), if one is given.
    let bias = bias.map(|b| b.as_ptr());
    macro_rules! plus_bias {
        ($x:expr, $c:expr, $lanes:expr) => {
            match bias {
                // (In the callers' unsafe blocks: the bias holds n entries, the lanes selected
                // lie below n.)
                Some(b) => _mm512_add_epi32($x, _mm512_maskz_loadu_epi32($lanes, b.add($c))),
                None => $x,
            }
        };
    }
    // The outputs as one run of whole vectors across pixels, 64 per packed store, the
    // parameters of output i at lane i mod `period` (a multiple of 16 and of n), the last
    // vector (fewer than 16 outputs) masked.
    macro_rules! stream {
        ($q:expr, $period:expr) => {{
            let (q, period) = ($q, $period);
            let total = pixels * n;
            // The parameter lane of output i (i mod period), kept without dividing.
            let (mut i, mut c) = (0, 0);
            let next = |c: &mut usize| {
                let now = *c;
                *c = if now + 16 < period { now + 16 } else { 0 };
                now
            };
            while i + 64 <= total {
                let cs = [next(&mut c), next(&mut c), next(&mut c), next(&mut c)];
                // SAFETY: i + 64 <= total <= acc.len(), out.len(); each vector's lanes
                // cs[v] .. cs[v] + 16 lie inside the parameter slices (period lanes, a multiple
                // of 16). A plain loop: built with `array::from_fn` and a closure, `scale` was
                // not inlined (measured: the 48×48×32 pointwise convolution took 46 µs, not 32).
                unsafe {
                    let mut r = [_mm512_setzero_si512(); 4];
                    for v in 0..4 {
                        let x =
                            plus_bias!(_mm512_loadu_si512(acc.as_ptr().add(i + 16 * v) as *const _), cs[v], u16::MAX);
                        r[v] = scale16!(SHORT, x, q, cs[v], u16::MAX);
                    }
                    _mm512_storeu_si512(out.as_mut_ptr().add(i) as *mut _, k.finish4(r));
                }
                i += 64;
            }
            while i < total {
                let c = next(&mut c);
                let lanes = ((1u32 << (total - i).min(16)) - 1) as u16;
                // SAFETY: the lanes selected are i..min(i + 16, total), inside acc and out;
                // c + 16 <= period.
                unsafe {
                    let x = plus_bias!(_mm512_maskz_loadu_epi32(lanes, acc.as_ptr().add(i)), c, lanes);
                    _mm_mask_storeu_epi8(
                        out.as_mut_ptr().add(i) as *mut _,
                        lanes,
                        requant16!(SHORT, &k, x, q, c, lanes),
                    );
                }
                i += 16;
            }
        }};
    }
    if n.is_multiple_of(16) {
        stream!(q, n);
        return;
    }
    // More than 16 channels, not a multiple of 16, the bias already in the accumulators: the
    // parameters repeated with period lcm(n, 16).
    if let Some(t) = co.periodic.as_ref().filter(|t| {
        bias.is_none() && t.m.len().is_multiple_of(n) && t.m.len().is_multiple_of(16) && t.vector_ready(t.m.len())
    }) {
        stream!(t, t.m.len());
        return;
    }
    for px in 0..pixels {
        for c in (0..n).step_by(16) {
            let lanes = ((1u32 << (n - c).min(16)) - 1) as u16;
            let i = px * n + c;
            // SAFETY (every masked load and store): the lanes selected are c..min(c + 16, n),
            // inside each parameter slice (length n), and i..i + (n − c) <= (px + 1)·n <=
            // acc.len(), out.len().
            unsafe {
                let x = plus_bias!(_mm512_maskz_loadu_epi32(lanes, acc.as_ptr().add(i)), c, lanes);
                let y = requant16!(SHORT, &k, x, q, c, lanes);
                _mm_mask_storeu_epi8(out.as_mut_ptr().add(i) as *mut _, lanes, y);
            }
        }
    }
}

/// The constants of a 16-lane requantization.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct OutVec {
    pub(crate) lo: std::arch::x86_64::__m512i,
    pub(crate) hi: std::arch::x86_64::__m512i,
    /// `lo` and `hi` as bytes.
    pub(crate) lo8: std::arch::x86_64::__m512i,
    pub(crate) hi8: std::arch::x86_64::__m512i,
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
impl OutVec {
    #[target_feature(enable = "avx512f")]
    pub(crate) fn new(lo: i32, hi: i32) -> Self {
        use std::arch::x86_64::*;
        let byte = |v: i32| _mm512_set1_epi8(v.clamp(-128, 127) as i8);
        OutVec { lo: _mm512_set1_epi32(lo), hi: _mm512_set1_epi32(hi), lo8: byte(lo), hi8: byte(hi) }
    }

    /// Four vectors of [`scale16`] results (zero point included) → 64 int8 in order: packed
    /// to i16 and i8 with saturation (which cannot
    /// change what the clamp to [lo, hi] ⊂ [−128, 127] makes of a value), clamped, and the
    /// 4-byte groups the packs interleave put back in order.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    #[inline]
    pub(crate) fn finish4(&self, r: [std::arch::x86_64::__m512i; 4]) -> std::arch::x86_64::__m512i {
        use std::arch::x86_64::*;
        let a = _mm512_packs_epi32(r[0], r[1]);
        let b = _mm512_packs_epi32(r[2], r[3]);
        let v = _mm512_packs_epi16(a, b);
        let v = _mm512_min_epi8(_mm512_max_epi8(v, self.lo8), self.hi8);
        // 128-bit lane L holds the 4-byte groups L of r0, r1, r2, r3: dword L·4 + k → k·4 + L.
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        _mm512_permutexvar_epi32(order, v)
    }
}

#[inline(always)]
pub(crate) fn requantize_fixed_portable(acc: &[i32], bias: Option<&[i32]>, co: &ChannelOut, out: &mut [i8]) {
    let n = co.mults.m.len();
    if n == 0 || bias.is_some_and(|b| b.len() != n) {
        return;
    }
    for (out, acc) in out.chunks_exact_mut(n).zip(acc.chunks_exact(n)) {
        requantize_pixel(acc, bias, &co.mults, co.zp, co.lo, co.hi, out);
    }
}

/// One pixel's channels (`acc`, `out` and the bias as long as `q`).
#[inline(always)]
pub(crate) fn requantize_pixel(
    acc: &[i32],
    bias: Option<&[i32]>,
    q: &Multipliers,
    zp: i32,
    lo: i32,
    hi: i32,
    out: &mut [i8],
) {
    let n = q.m.len();
    let (out, acc) = (&mut out[..n], &acc[..n]);
    let (ms, left, right) = (&q.m[..n], &q.left[..n], &q.right[..n]);
    for i in 0..n {
        let b = bias.map_or(0, |b| b[i]);
        let x = acc[i].wrapping_add(b).wrapping_mul(left[i]);
        let m = ms[i];
        // SaturatingRoundingDoublingHighMul: (x·m + nudge) / 2^31, rounding toward zero.
        let p = x as i64 * m as i64;
        let neg = p >> 63; // 0 or −1
        let t = p + (((1i64 << 30) ^ neg) - 2 * neg); // p ≥ 0: +2^30; p < 0: 1 − 2^30
        let hmul = ((t + (neg & ((1i64 << 31) - 1))) >> 31) as i32;
        let sat = (x == i32::MIN) & (m == i32::MIN);
        let hmul = if sat { i32::MAX } else { hmul };
        // RoundingDivideByPOT.
        let e = right[i];
        let mask = ((1i32 as u32).wrapping_shl(e as u32).wrapping_sub(1)) as i32;
        let rem = hmul & mask;
        let threshold = (mask >> 1) + ((hmul >> 31) & 1);
        let r = (hmul >> e) + (rem > threshold) as i32;
        out[i] = (r.wrapping_add(zp)).clamp(lo, hi) as i8;
    }
}
