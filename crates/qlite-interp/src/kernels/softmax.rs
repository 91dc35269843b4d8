//! Normalizations along the last axis: SOFTMAX, LOG_SOFTMAX and LOCAL_RESPONSE_NORMALIZATION,
//! float and int8 side by side.

use super::*;

/// LOCAL_RESPONSE_NORMALIZATION over the last axis with TensorFlow's window
/// `[c - radius, c + radius]` (clipped), as LiteRT's default (optimized) kernel computes it;
/// with `exclusive_end`, `[c - radius, c + radius)` as LiteRT's reference kernel does.
pub fn lrn_f32(op: &LocalResponseNorm, x: &[f32], depth: usize, exclusive_end: bool) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    if depth == 0 {
        return out;
    }
    for (row, orow) in x.chunks(depth).zip(out.chunks_mut(depth)) {
        for (c, o) in orow.iter_mut().enumerate() {
            let lo = c.saturating_sub(op.radius);
            let end = c.saturating_add(op.radius).saturating_add(usize::from(!exclusive_end)).min(depth);
            let sum: f32 = row[lo..end.max(lo)].iter().map(|v| v * v).sum();
            *o = row[c] * (op.bias + op.alpha * sum).powf(-op.beta);
        }
    }
    out
}

pub fn softmax_f32(op: &Softmax, x: &[f32], depth: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    softmax_f32_into(op, x, depth, &mut out);
    out
}

/// [`softmax_f32`] into `out` (as long as `x`).
pub fn softmax_f32_into(op: &Softmax, x: &[f32], depth: usize, out: &mut [f32]) {
    if depth == 0 {
        out.fill(0.0);
        return;
    }
    for (row, orow) in x.chunks(depth).zip(out.chunks_mut(depth)) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for (o, &v) in orow.iter_mut().zip(row) {
            *o = ((v - m) * op.beta).exp();
            sum += *o;
        }
        for o in orow.iter_mut() {
            *o /= sum;
        }
    }
}

/// LOG_SOFTMAX over rows of `depth`: `x − max − log Σ exp(x − max)`.
pub fn log_softmax_f32(x: &[f32], depth: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    if depth == 0 {
        return out;
    }
    for (row, orow) in x.chunks(depth).zip(out.chunks_mut(depth)) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|&v| (v - m).exp()).sum();
        let log_sum = sum.ln();
        for (o, &v) in orow.iter_mut().zip(row) {
            *o = v - m - log_sum;
        }
    }
    out
}

/// `reference_ops::Softmax` (fixed point, int8/uint8 in and out), as the reference resolver runs it.
pub fn softmax(x: &[i32], depth: usize, beta: f32, s_in: f32, out: OutQ) -> Vec<i32> {
    let mut y = vec![0i32; x.len()];
    softmax_with(x, depth, beta, s_in, out, |i, v| y[i] = v);
    y
}

/// [`softmax`] on any integer input slice, handing each output (index, value) to `store`.
pub fn softmax_with<T: Copy + Into<i32>>(
    x: &[T],
    depth: usize,
    beta: f32,
    s_in: f32,
    out: OutQ,
    mut store: impl FnMut(usize, i32),
) {
    const SCALED_DIFF_INTEGER_BITS: i32 = 5;
    const ACCUM_INTEGER_BITS: i32 = 12;
    let real =
        (beta as f64 * s_in as f64 * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64).min((1i64 << 31) as f64 - 1.0);
    let (mult, left_shift) = quantize_multiplier(real);
    let max_input_rescaled = ((1i64 << SCALED_DIFF_INTEGER_BITS) - 1) as f64
        * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64
        / (1i64 << left_shift.clamp(0, 62)) as f64;
    let diff_min = -(max_input_rescaled.floor() as i32);
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let bits = (out.dtype.size() * 8) as i32;
    if depth == 0 {
        for i in 0..x.len() {
            store(i, 0);
        }
        return;
    }
    for (r, row) in x.chunks(depth).enumerate() {
        let max = row.iter().map(|&v| v.into()).max().unwrap_or(0);
        let mut sum: i32 = 0;
        for &v in row {
            let diff = v.into() - max;
            if diff >= diff_min {
                let r = mbqm_greater_than_one(diff, mult, left_shift);
                sum = sum.wrapping_add(sat_mul_pot(
                    exp_on_negative_values(r, SCALED_DIFF_INTEGER_BITS),
                    -ACCUM_INTEGER_BITS,
                ));
            }
        }
        let (recip, num_bits_over_unit) = get_reciprocal(sum, ACCUM_INTEGER_BITS);
        let exponent = (num_bits_over_unit + 31 - bits).clamp(0, 31);
        for (i, &v) in row.iter().enumerate() {
            let diff = v.into() - max;
            let o = if diff >= diff_min {
                let r = mbqm_greater_than_one(diff, mult, left_shift);
                let e = exp_on_negative_values(r, SCALED_DIFF_INTEGER_BITS);
                (rdbpot(srdhm(recip, e), exponent) + lo).clamp(lo, hi)
            } else {
                lo
            };
            store(r * depth + i, o);
        }
    }
}

/// LOG_SOFTMAX on int8 as LiteRT's reference kernel computes it
/// (`reference_integer_ops::LogSoftmax`, fixed point: exp sums in Q12, their log in Q5); the
/// output is (16/256, 127), as LiteRT requires.
pub fn log_softmax(x: &[i32], depth: usize, s_in: f32, out: OutQ) -> Result<Vec<i32>, String> {
    const INPUT_BITS: i32 = 5;
    const ACCUM_BITS: i32 = 12;
    const OUTPUT_BITS: i32 = 4;
    if out.zp != 127 || out.scale != 16.0 / 256.0 {
        return Err(format!("int8 LogSoftmax output must be quantized (16/256, 127), got ({}, {})", out.scale, out.zp));
    }
    // PreprocessLogSoftmaxScalingExp (beta 1).
    let real = (s_in as f64 * (1i64 << (31 - INPUT_BITS)) as f64).min((1i64 << 31) as f64 - 1.0);
    let (mult, left_shift) = quantize_multiplier(real);
    let reverse_real = (1i64 << (31 - left_shift).clamp(0, 62)) as f64 / mult as f64;
    let (reverse_mult, reverse_left_shift) = quantize_multiplier(reverse_real);
    if reverse_left_shift > 0 {
        return Err(format!("LogSoftmax input scale {s_in} is too small (LiteRT aborts on it)"));
    }
    let max_input_rescaled = ((1i64 << INPUT_BITS) - 1) as f64 * (1i64 << (31 - INPUT_BITS)) as f64
        / (1i64 << left_shift.clamp(0, 62)) as f64;
    let diff_min = -(max_input_rescaled.floor() as i32);
    let mut y = vec![0i32; x.len()];
    if depth == 0 {
        return Ok(y);
    }
    for (row, orow) in x.chunks(depth).zip(y.chunks_mut(depth)) {
        let max = row.iter().copied().max().unwrap_or(-128);
        let mut sum: i32 = 0;
        for &v in row {
            let diff = v - max;
            if diff >= diff_min {
                let q5 = mbqm(diff, mult, left_shift);
                sum = sum.wrapping_add(sat_mul_pot(exp_on_negative_values(q5, INPUT_BITS), -ACCUM_BITS));
            }
        }
        let log_sum = log_x_for_x_ge_1(sum, ACCUM_BITS, INPUT_BITS);
        let shifted = log_sum.wrapping_add(i32::MIN);
        let adjusted_diff_min = (diff_min - 1).max(mbqm(shifted, reverse_mult, reverse_left_shift));
        for (&v, o) in row.iter().zip(orow.iter_mut()) {
            let diff = v - max;
            *o = if diff > adjusted_diff_min {
                let q5 = mbqm(diff, mult, left_shift);
                (rdbpot(q5.wrapping_sub(log_sum), 31 - INPUT_BITS - OUTPUT_BITS) + 127).clamp(-128, 127)
            } else {
                -128
            };
        }
    }
    Ok(y)
}

/// `LUTPopulateInt16<double>` (common.h): 513 entries over the int16 input range, each sample
/// lowered by half the error a linear interpolation would make at the step's midpoint.
fn lut_int16(input_scale: f64, input_zp: i32, output_scale: f64, output_zp: i32, f: impl Fn(f64) -> f64) -> Vec<i16> {
    let (tmin, tmax) = (i16::MIN as f64, i16::MAX as f64);
    let input_min = input_scale * (i16::MIN as i32 - input_zp) as f64;
    let input_max = input_scale * (i16::MAX as i32 - input_zp) as f64;
    let output_min = output_scale * (i16::MIN as i32 - output_zp) as f64;
    let output_max = output_scale * (i16::MAX as i32 - output_zp) as f64;
    const STEPS: usize = 512;
    let step = (input_max - input_min) / STEPS as f64;
    let half_step = step / 2.0;
    let inv = 65536.0 / (output_max - output_min);
    let mut lut = Vec::with_capacity(STEPS + 1);
    for i in 0..STEPS {
        let val = f(input_min + i as f64 * step);
        let val_mid = f(input_min + i as f64 * step + half_step);
        let val_next = f(input_min + (i + 1) as f64 * step);
        let sample = (val * inv).round();
        let mid_interp = ((val_next * inv + (val * inv).round()) / 2.0).round();
        let mid = (val_mid * inv).round();
        let bias = ((mid_interp - mid) / 2.0).round();
        lut.push((sample - bias).clamp(tmin, tmax) as i16);
    }
    lut.push((f(input_max) * inv).round().clamp(tmin, tmax) as i16);
    lut
}

/// `LUTLookup` on int16: 9 bits index the table, 7 interpolate.
fn lut_lookup_int16(v: i16, lut: &[i16]) -> i16 {
    let index = (256 + (v >> 7) as i32) as usize;
    let offset = (v & 0x7f) as i32;
    let base = lut[index] as i32;
    let slope = lut[index + 1] as i32 - base;
    (base + ((slope * offset + 64) >> 7)) as i16
}

/// `reference_ops::SoftmaxInt16` with `SoftmaxPrepare`'s tables: exp on [-10, 0] and
/// 1/(1 + x) on [0, 1], both 513-entry int16 tables built in double; output (1/32768, 0).
pub fn softmax_int16(x: &[i32], depth: usize, beta: f32, s_in: f32) -> Vec<i32> {
    let t = SoftmaxInt16::new(beta, s_in);
    let depth = depth.max(1);
    let mut y = vec![0i16; x.len()];
    for (row, out) in x.chunks(depth).zip(y.chunks_mut(depth)) {
        t.row(row, out);
    }
    y.into_iter().map(i32::from).collect()
}

/// `SoftmaxPrepare`'s int16 tables and input multiplier, for [`SoftmaxInt16::row`]; built once
/// per layer by the fast kernels.
#[derive(Debug, Clone)]
pub struct SoftmaxInt16 {
    exp_lut: Vec<i16>,
    recip_lut: Vec<i16>,
    m: i32,
    shift: i32,
}

impl SoftmaxInt16 {
    pub fn new(beta: f32, s_in: f32) -> Self {
        let range = (i16::MAX as i32 - i16::MIN as i32) as f64;
        let exp_lut = lut_int16(10.0 / range, i16::MAX as i32, 2.0 / range, 0, f64::exp);
        let recip_lut = lut_int16(1.0 / range, i16::MIN as i32, 2.0 / range, 0, |v| 1.0 / (1.0 + v));
        let (m, shift) = quantize_multiplier((s_in * beta) as f64 / (10.0 / 65535.0));
        SoftmaxInt16 { exp_lut, recip_lut, m, shift }
    }

    /// One row (`reference_ops::SoftmaxInt16`): the exponentials are kept in `out` until the
    /// sum's reciprocal turns them into the outputs.
    pub fn row<T: Copy + Into<i32>>(&self, row: &[T], out: &mut [i16]) {
        let max = row.iter().map(|&v| v.into()).max().unwrap_or(0);
        let mut sum: i32 = 0;
        for (e, &v) in out.iter_mut().zip(row) {
            let scaled = mbqm(v.into() - max, self.m, self.shift);
            let sym = scaled.wrapping_add(32767).clamp(-32768, 32767) as i16;
            *e = lut_lookup_int16(sym, &self.exp_lut);
            sum = sum.wrapping_add(*e as i32);
        }
        let headroom_plus_one = (sum as u32).leading_zeros() as i32;
        let shifted = ((((sum as i64) << (headroom_plus_one - 1).clamp(0, 62)) + (1 << 13)) >> 14) as i32;
        let sym = shifted.wrapping_add(-((1 << 15) + (1 << 16))).clamp(-32768, 32767) as i16;
        let reciprocal = lut_lookup_int16(sym, &self.recip_lut) as i64;
        let right_shift = (31 - headroom_plus_one).clamp(1, 62);
        let round = 1i64 << (right_shift - 1);
        for o in out.iter_mut().take(row.len()) {
            let r = ((*o as i64 * reciprocal + round) >> right_shift) as i32;
            *o = r.clamp(0, 32767) as i16;
        }
    }
}
