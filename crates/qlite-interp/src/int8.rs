//! Integer kernels, bit-exact with TensorFlow Lite's reference kernels (the double-rounding
//! build, `OpResolverType.BUILTIN_REF`), and the hybrid (dynamic-range) float kernels.
//!
//! Plain loops over `i32` values: this is the reference the fast kernels are checked against.
//! Which upstream kernel each function follows is named in its doc comment.

use crate::fixedpoint::*;
use qlite_ir::op::{Activation, BinaryKind, Conv2d, DepthwiseConv2d, Mean, Pool2d, PoolKind, UnaryKind};
use qlite_ir::{DType, QuantParams};

/// Per-tensor (scale, zero point) of a tensor, or an error naming it.
pub fn per_tensor(q: Option<&QuantParams>, what: &str) -> Result<(f32, i32), String> {
    let q = q.ok_or_else(|| format!("{what} has no quantization parameters"))?;
    if q.scales().len() != 1 {
        return Err(format!("{what} must be quantized per tensor"));
    }
    Ok((q.scale(), q.zero_point() as i32))
}

/// `CalculateActivationRangeQuantized`.
pub fn activation_range(act: Activation, dtype: DType, scale: f32, zp: i32) -> (i32, i32) {
    let (lo, hi) = dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let quantize = |f: f32| zp.saturating_add(round_half_away(f / scale) as i32);
    match act {
        Activation::None => (lo, hi),
        Activation::Relu => (lo.max(quantize(0.0)), hi),
        Activation::Relu6 => (lo.max(quantize(0.0)), hi.min(quantize(6.0))),
        Activation::ReluN1To1 => (lo.max(quantize(-1.0)), hi.min(quantize(1.0))),
    }
}

/// Multipliers for conv-like ops (`PopulateConvolutionQuantizationParams`): per channel, in
/// double: `s_in · s_w[c] / s_out`.
pub(crate) fn per_channel_multipliers(s_in: f32, w: &QuantParams, s_out: f32, channels: usize) -> Vec<(i32, i32)> {
    (0..channels)
        .map(|c| {
            let s_w = if w.scales().len() == 1 { w.scale() } else { w.scales().get(c).copied().unwrap_or(0.0) };
            quantize_multiplier(s_in as f64 * s_w as f64 / s_out as f64)
        })
        .collect()
}

/// Output quantization of an integer op.
#[derive(Debug, Clone, Copy)]
pub struct OutQ {
    pub dtype: DType,
    pub scale: f32,
    pub zp: i32,
}

impl OutQ {
    pub fn range(&self, act: Activation) -> (i32, i32) {
        activation_range(act, self.dtype, self.scale, self.zp)
    }
}

/// `reference_integer_ops::FullyConnected` / `FullyConnectedPerChannel` in the form the
/// reference resolver calls them (with the float scales): the int32 accumulator is rescaled in
/// double, `round(acc · (s_in · s_w[c] / s_out))`, not with a fixed-point multiplier.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected(
    x: &[i32],
    (s_in, z_in): (f32, i32),
    w: &[i32],
    w_shape: &[usize],
    wq: &QuantParams,
    bias: Option<&[i32]>,
    out: OutQ,
    act: Activation,
) -> Vec<i32> {
    let (units, depth) = (w_shape[0], w_shape[1]);
    let batches = x.len() / depth.max(1);
    let (lo, hi) = out.range(act);
    // Per-channel weights are symmetric by spec: their zero points are ignored.
    let w_off = if wq.scales().len() == 1 { -(wq.zero_point() as i32) } else { 0 };
    let scales: Vec<f64> = (0..units)
        .map(|o| {
            let s_w = if wq.scales().len() == 1 { wq.scale() } else { wq.scales().get(o).copied().unwrap_or(0.0) };
            s_in as f64 * s_w as f64 / out.scale as f64
        })
        .collect();
    let mut y = vec![0i32; batches * units];
    for b in 0..batches {
        for o in 0..units {
            let mut acc: i32 = 0;
            for d in 0..depth {
                acc = acc.wrapping_add((w[o * depth + d] + w_off).wrapping_mul(x[b * depth + d] - z_in));
            }
            if let Some(bias) = bias {
                acc = acc.wrapping_add(bias[o]);
            }
            let scaled = (acc as f64 * scales[o]).round() as i32;
            y[b * units + o] = scaled.saturating_add(out.zp).clamp(lo, hi);
        }
    }
    y
}

/// Where input tap (y, x) of an output position falls, or None in the padding.
#[inline]
fn tap(o: usize, stride: usize, k: usize, dilation: usize, pad: usize, size: usize) -> Option<usize> {
    let p = (o * stride + k * dilation) as isize - pad as isize;
    (p >= 0 && (p as usize) < size).then_some(p as usize)
}

/// `reference_integer_ops::ConvPerChannel` (also grouped convolution).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    op: &Conv2d,
    x: &[i32],
    xs: &[usize],
    (s_in, z_in): (f32, i32),
    w: &[i32],
    ws: &[usize],
    wq: &QuantParams,
    bias: Option<&[i32]>,
    os: &[usize],
    out: OutQ,
) -> Vec<i32> {
    let oc = ws[0];
    let mults = per_channel_multipliers(s_in, wq, out.scale, oc);
    let (lo, hi) = out.range(op.activation);
    let accs = accumulators(None, Some(op), x, xs, z_in, w, ws, os);
    requantize_channels(accs, oc, bias, &mults, out.zp, lo, hi)
}

/// `reference_integer_ops::DepthwiseConvPerChannel`.
#[allow(clippy::too_many_arguments)]
pub fn depthwise(
    op: &DepthwiseConv2d,
    x: &[i32],
    xs: &[usize],
    (s_in, z_in): (f32, i32),
    w: &[i32],
    ws: &[usize],
    wq: &QuantParams,
    bias: Option<&[i32]>,
    os: &[usize],
    out: OutQ,
) -> Vec<i32> {
    let oc = ws[3];
    let mults = per_channel_multipliers(s_in, wq, out.scale, oc);
    let (lo, hi) = out.range(op.activation);
    let accs = accumulators(Some(op), None, x, xs, z_in, w, ws, os);
    requantize_channels(accs, oc, bias, &mults, out.zp, lo, hi)
}

/// Add the bias, apply the per-channel multiplier, offset and clamp (channels innermost).
fn requantize_channels(
    accs: Vec<i32>,
    oc: usize,
    bias: Option<&[i32]>,
    mults: &[(i32, i32)],
    zp: i32,
    lo: i32,
    hi: i32,
) -> Vec<i32> {
    accs.into_iter()
        .enumerate()
        .map(|(i, acc)| {
            let c = i % oc.max(1);
            let acc = bias.map_or(acc, |b| acc.wrapping_add(b[c]));
            let (m, sh) = mults[c];
            mbqm(acc, m, sh).wrapping_add(zp).clamp(lo, hi)
        })
        .collect()
}

/// Prepared parameters of `reference_integer_ops::Add` (general path, left shift 20) and the
/// matching SUB.
pub fn add_params(s1: f32, s2: f32, s_out: f32) -> Result<[(i32, i32); 3], String> {
    let left_shift = 20;
    let twice_max = (2.0 * s1.max(s2)) as f64;
    let r1 = s1 as f64 / twice_max;
    let r2 = s2 as f64 / twice_max;
    let r_out = twice_max / (((1i64 << left_shift) as f32 * s_out) as f64);
    for (r, what) in [(r1, "input 1"), (r2, "input 2"), (r_out, "output")] {
        if !multiplier_in_unit(r) {
            return Err(format!("the {what} rescale multiplier {r} is outside (0, 1): scales are inconsistent"));
        }
    }
    Ok([quantize_multiplier(r1), quantize_multiplier(r2), quantize_multiplier(r_out)])
}

/// ADD / SUB / MUL over broadcast index pairs (`reference_integer_ops::Add`, `sub.h`, `Mul`).
#[allow(clippy::too_many_arguments)]
pub fn binary(
    kind: BinaryKind,
    a: &[i32],
    b: &[i32],
    pairs: &[(usize, usize)],
    (s1, z1): (f32, i32),
    (s2, z2): (f32, i32),
    out: OutQ,
    act: Activation,
) -> Result<Vec<i32>, String> {
    let (lo, hi) = out.range(act);
    match kind {
        BinaryKind::Add | BinaryKind::Sub => {
            let [(m1, sh1), (m2, sh2), (mo, sho)] = add_params(s1, s2, out.scale)?;
            Ok(pairs
                .iter()
                .map(|&(i, j)| {
                    let sa = mbqm((a[i] - z1).wrapping_mul(1 << 20), m1, sh1);
                    let sb = mbqm((b[j] - z2).wrapping_mul(1 << 20), m2, sh2);
                    let raw = if kind == BinaryKind::Add { sa.wrapping_add(sb) } else { sa.wrapping_sub(sb) };
                    mbqm(raw, mo, sho).wrapping_add(out.zp).clamp(lo, hi)
                })
                .collect())
        }
        BinaryKind::Mul => {
            let (m, sh) = quantize_multiplier((s1 * s2 / out.scale) as f64);
            Ok(pairs
                .iter()
                .map(|&(i, j)| out.zp.wrapping_add(mbqm((a[i] - z1).wrapping_mul(b[j] - z2), m, sh)).clamp(lo, hi))
                .collect())
        }
        // reference_ops::MaximumMinimumBroadcastSlow: the raw values compared (TFLite's spec
        // gives inputs and output the same parameters; LiteRT does not rescale either way).
        BinaryKind::Maximum => Ok(pairs.iter().map(|&(i, j)| a[i].max(b[j])).collect()),
        BinaryKind::Minimum => Ok(pairs.iter().map(|&(i, j)| a[i].min(b[j])).collect()),
        // squared_difference.cc: both inputs rescaled to twice the larger scale with 7 bits of
        // headroom, the difference squared in int32, then rescaled to the output.
        BinaryKind::SquaredDifference => {
            let twice_max = 2.0 * s1.max(s2);
            let smaller = |real: f64| {
                let (m, sh) = quantize_multiplier(real);
                if sh > 0 {
                    Err(format!("SquaredDifference multiplier {real} is not below 1 (LiteRT aborts on it)"))
                } else {
                    Ok((m, sh))
                }
            };
            let (m1, sh1) = smaller(s1 as f64 / twice_max as f64)?;
            let (m2, sh2) = smaller(s2 as f64 / twice_max as f64)?;
            let (mo, sho) = smaller((twice_max as f64 * twice_max as f64) / ((1i32 << 14) as f32 * out.scale) as f64)?;
            Ok(pairs
                .iter()
                .map(|&(i, j)| {
                    let sa = mbqm((a[i] - z1).wrapping_mul(1 << 7), m1, sh1);
                    let sb = mbqm((b[j] - z2).wrapping_mul(1 << 7), m2, sh2);
                    let d = sa.wrapping_sub(sb);
                    mbqm(d.wrapping_mul(d), mo, sho).wrapping_add(out.zp).clamp(lo, hi)
                })
                .collect())
        }
        BinaryKind::Div => {
            Err("Div has no int8 kernel (LiteRT has none either; the quantizer keeps it in float)".into())
        }
    }
}

/// `reference_integer_ops::AveragePool` / `MaxPool`: raw values, window clipped to the image,
/// average rounded half away from zero.
pub fn pool(op: &Pool2d, x: &[i32], xs: &[usize], os: &[usize], out: OutQ) -> Vec<i32> {
    let mut y = vec![0i32; os.iter().product()];
    pool_with(op, x, xs, os, out, |i, v| y[i] = v);
    y
}

/// [`pool`] on any integer input slice, handing each output (index, value) to `store`.
pub fn pool_with<T: Copy + Into<i32>>(
    op: &Pool2d,
    x: &[T],
    xs: &[usize],
    os: &[usize],
    out: OutQ,
    mut store: impl FnMut(usize, i32),
) {
    let (n, ih, iw, c) = (xs[0], xs[1], xs[2], xs[3]);
    let (oh, ow) = (os[1], os[2]);
    let (_, pad_h) = op.padding.compute(ih, op.filter[0], op.stride[0], 1).unwrap_or((0, 0));
    let (_, pad_w) = op.padding.compute(iw, op.filter[1], op.stride[1], 1).unwrap_or((0, 0));
    let (lo, hi) = out.range(op.activation);
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let y0 = (oy * op.stride[0]) as isize - pad_h as isize;
                let x0 = (ox * op.stride[1]) as isize - pad_w as isize;
                let ys = y0.max(0) as usize..((y0 + op.filter[0] as isize).min(ih as isize)).max(0) as usize;
                let xr = x0.max(0) as usize..((x0 + op.filter[1] as isize).min(iw as isize)).max(0) as usize;
                for ch in 0..c {
                    let mut acc: i32 = if op.kind == PoolKind::Max { lo } else { 0 };
                    let mut count: i32 = 0;
                    for iy in ys.clone() {
                        for ix in xr.clone() {
                            let v = x[((b * ih + iy) * iw + ix) * c + ch].into();
                            acc = if op.kind == PoolKind::Max { acc.max(v) } else { acc + v };
                            count += 1;
                        }
                    }
                    if op.kind == PoolKind::Average && count > 0 {
                        acc = if acc > 0 { (acc + count / 2) / count } else { (acc - count / 2) / count };
                    }
                    store(((b * oh + oy) * ow + ox) * c + ch, acc.clamp(lo, hi));
                }
            }
        }
    }
}

/// `reference_ops::QuantizedMeanOrSum` (mean), the path of the reference resolver.
pub fn mean(op: &Mean, x: &[i32], xs: &[usize], out_len: usize, (s_in, z_in): (f32, i32), out: OutQ) -> Vec<i32> {
    let sums = raw_sums(op, x, xs, out_len);
    let count: i64 = op.axes.iter().map(|&a| xs[a] as i64).product();
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    if count == 0 {
        return vec![0; out_len];
    }
    let (m, sh) = mean_multiplier(count, s_in, out.scale);
    sums.into_iter().map(|s| mean_output(s, z_in, count, (m, sh), out.zp, lo, hi)).collect()
}

/// SUM on 8-bit tensors as LiteRT's default kernel computes it (`optimized_ops::QuantizedMeanOrSum`
/// with `compute_sum`): the int32 sum of raw values, rescaled in float,
/// `round(sum · (s_in / s_out) + (−z_in · (s_in / s_out)) · n) + z_out`.
///
/// LiteRT's *reference* SUM kernel reads int8 data as uint8 (`reduce.cc` instantiates
/// `reference_ops::QuantizedMeanOrSum` with `uint8_t` for every 8-bit type), so for int8 it is
/// not a reference: qlite matches the kernel users run.
pub fn sum(op: &Mean, x: &[i32], xs: &[usize], out_len: usize, (s_in, z_in): (f32, i32), out: OutQ) -> Vec<i32> {
    let sums = raw_sums(op, x, xs, out_len);
    let count: usize = op.axes.iter().map(|&a| xs[a]).product();
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    if count == 0 {
        return vec![out.zp.clamp(lo, hi); out_len];
    }
    let scale = s_in / out.scale;
    let bias = (-z_in) as f32 * scale * count as f32;
    sums.into_iter()
        .map(|s| (round_half_away(s as f32 * scale + bias) as i32).wrapping_add(out.zp).clamp(lo, hi))
        .collect()
}

/// Wrapping int32 sums of raw values over `op.axes`.
fn raw_sums(op: &Mean, x: &[i32], xs: &[usize], out_len: usize) -> Vec<i32> {
    let st = crate::kernels::strides(xs);
    let kept: Vec<usize> = (0..xs.len()).filter(|a| !op.axes.contains(a)).collect();
    let kept_dims: Vec<usize> = kept.iter().map(|&a| xs[a]).collect();
    let kst = crate::kernels::strides(&kept_dims);
    let mut sums = vec![0i32; out_len];
    for (i, &v) in x.iter().enumerate() {
        let mut o = 0;
        for (k, &a) in kept.iter().enumerate() {
            o += (i / st[a]) % xs[a] * kst[k];
        }
        sums[o] = sums[o].wrapping_add(v);
    }
    sums
}

/// QuantizedMeanOrSum's multiplier for a mean of `count` (> 0) values: `s_in / s_out` with the
/// division by `count` folded in.
pub fn mean_multiplier(count: i64, s_in: f32, s_out: f32) -> (i32, i32) {
    let (mut m, mut sh) = quantize_multiplier(s_in as f64 / s_out as f64);
    let mut shift = 63 - (count as u64).leading_zeros() as i32;
    shift = shift.min(32).min(31 + sh);
    m = (((m as i64) << shift) / count) as i32;
    sh -= shift;
    (m, sh)
}

/// One output of QuantizedMeanOrSum from the wrapping sum of its `count` inputs.
#[inline]
pub fn mean_output(sum: i32, z_in: i32, count: i64, (m, sh): (i32, i32), zp: i32, lo: i32, hi: i32) -> i32 {
    let shifted = sum.wrapping_sub((z_in as i64 * count) as i32);
    mbqm(shifted, m, sh).wrapping_add(zp).clamp(lo, hi)
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

/// `LUTPopulate` + lookup: LOGISTIC and TANH on 8-bit tensors (both resolvers build this table
/// in float).
pub fn lut(kind: UnaryKind, x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Result<Vec<i32>, String> {
    let f: fn(f32) -> f32 = match kind {
        UnaryKind::Logistic
        | UnaryKind::Tanh
        | UnaryKind::Elu
        | UnaryKind::Gelu
        | UnaryKind::GeluTanh
        | UnaryKind::Exp => crate::kernels::unary_fn(kind),
        _ => return Err("only Logistic, Tanh, Elu, Gelu and Exp use a lookup table".into()),
    };
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let inverse_scale = 1.0 / out.scale;
    let entry = |v: i32| {
        let dequantized = s_in * (v - z_in) as f32;
        let rescaled = round_half_away(f(dequantized) * inverse_scale);
        ((rescaled + out.zp as f32) as i32).clamp(lo, hi)
    };
    let table: Vec<i32> = (lo..=hi).map(entry).collect();
    Ok(x.iter().map(|&v| table[(v - lo) as usize]).collect())
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

/// `HardSwishPrepare`: the output and "relu-ish" multipliers as 16-bit fixed point with their
/// exponents; an output exponent above 0 is refused, as LiteRT refuses it.
pub fn hard_swish_params(s_in: f32, s_out: f32) -> Result<(i16, i32, i16, i32), String> {
    let hires_input_scale = (1.0f32 / 128.0) * s_in;
    let reluish_scale = 3.0f32 / 32768.0;
    let (out_m, out_e) = quantize_multiplier((hires_input_scale / s_out) as f64);
    if out_e > 0 {
        return Err(format!(
            "HARD_SWISH input scale {s_in} is more than 128 times the output scale {s_out} (LiteRT refuses it too)"
        ));
    }
    let (rel_m, rel_e) = quantize_multiplier((hires_input_scale / reluish_scale) as f64);
    Ok((downscale_multiplier16(out_m), out_e, downscale_multiplier16(rel_m), rel_e))
}

/// HARD_SWISH on 8-bit tensors: `HardSwishPrepare`'s 16-bit multipliers (computed from the
/// float scales as the kernel does) and `reference_ops::HardSwish`'s int16 arithmetic.
pub fn hard_swish(x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Result<Vec<i32>, String> {
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let (out_m16, out_e, rel_m16, rel_e) = hard_swish_params(s_in, out.scale)?;
    Ok(x.iter()
        .map(|&v| {
            let input_value = (v - z_in) as i16;
            let hires = input_value.wrapping_mul(1 << 7);
            let preshift_out = srdhm16(hires, out_m16);
            let mut reluish = hires;
            if rel_e > 0 {
                reluish = sat_left_shift16(reluish, rel_e - 1);
            }
            reluish = srdhm16(reluish, rel_m16);
            if rel_e > 0 {
                reluish = sat_left_shift16(reluish, 1);
            }
            if rel_e < 0 {
                reluish = rdbpot16(reluish, -rel_e);
            }
            let reluish = ((reluish as i32 + (1 << 15)) >> 1) as i16;
            let pre = sdhm16(reluish, preshift_out);
            let o = rdbpot16(pre, -out_e).wrapping_add(out.zp as i16);
            (o as i32).clamp(lo, hi)
        })
        .collect())
}

/// ABS on 8-bit tensors (`AbsEvalQuantized`): `|q − z_in|`, rescaled only when the scales differ.
pub fn abs(x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Vec<i32> {
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let rescale = (s_in != out.scale).then(|| quantize_multiplier((s_in / out.scale) as f64));
    x.iter()
        .map(|&v| {
            let value = (v - z_in).abs();
            match rescale {
                None => value + out.zp,
                Some((m, sh)) => mbqm(value, m, sh).wrapping_add(out.zp),
            }
            .clamp(lo, hi)
        })
        .collect()
}

/// SQRT on 8-bit tensors (`SqrtEvalQuantized`): computed in float and truncated toward zero,
/// as LiteRT does; a negative input is an error there too.
pub fn sqrt(x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Result<Vec<i32>, String> {
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    x.iter()
        .map(|&v| {
            let d = s_in * (v - z_in) as f32;
            if d < 0.0 {
                return Err(format!("Sqrt is only defined for non-negative values, got {d}"));
            }
            Ok(((d.sqrt() / out.scale) as i32).wrapping_add(out.zp).clamp(lo, hi))
        })
        .collect()
}

/// RSQRT on int8 (`RsqrtEvalQuantizedInt8`): `1/√(q − z_in)` from
/// `GetInvSqrtQuantizedMultiplierExp`, then `1/(√s_in · s_out)`; an input below the zero point
/// is an error, as in LiteRT, and `q = z_in` gives the largest output.
pub fn rsqrt(x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Result<Vec<i32>, String> {
    const K_SHIFT: i32 = 20;
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let (m, sh) = quantize_multiplier(1.0 / (s_in.sqrt() * out.scale) as f64);
    x.iter()
        .map(|&v| {
            if v < z_in {
                return Err("Rsqrt is only defined for positive values".to_string());
            }
            let value = v - z_in;
            if value == 0 {
                return Ok(hi);
            }
            let (inv, inv_sh) = inv_sqrt_quantized_multiplier_exp(value, -1);
            let data = mbqm(1, inv, inv_sh + K_SHIFT);
            Ok(mbqm(data, m, sh - K_SHIFT).wrapping_add(out.zp).clamp(lo, hi))
        })
        .collect()
}

/// Standalone RELU / RELU6 on quantized tensors (`QuantizedReluX` + `ReluX`).
pub fn relu(kind: UnaryKind, x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Vec<i32> {
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let act_min = lo.max(out.zp.saturating_add(round_half_away(0.0 / out.scale) as i32));
    let act_min = match kind {
        UnaryKind::ReluN1To1 => lo.max(out.zp.saturating_add(round_half_away(-1.0 / out.scale) as i32)),
        _ => act_min,
    };
    let act_max = match kind {
        UnaryKind::Relu6 => hi.min(out.zp.saturating_add(round_half_away(6.0 / out.scale) as i32)),
        UnaryKind::ReluN1To1 => hi.min(out.zp.saturating_add(round_half_away(1.0 / out.scale) as i32)),
        _ => hi,
    };
    let (m, sh) = quantize_multiplier((s_in / out.scale) as f64);
    x.iter().map(|&v| out.zp.wrapping_add(mbqm(v - z_in, m, sh)).clamp(act_min, act_max)).collect()
}

// ---------------------------------------------------------------- hybrid (dynamic range)

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
    q.extend(v.iter().map(|&x| (round_half_away(x * inv) as i32).clamp(-127, 127) as i8));
    range / 127.0
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
    let (mn, mx) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let rmin = 0f32.min(mn) as f64;
    let rmax = 0f32.max(mx) as f64;
    q.clear();
    if v.is_empty() || rmin == rmax {
        q.resize(v.len(), 0);
        return (1.0, 0);
    }
    let (qmin, qmax) = (-128f64, 127f64);
    let scale = (rmax - rmin) / (qmax - qmin);
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
    let inv = 1.0 / sf;
    q.extend(v.iter().map(|&x| (round_half_away(zp as f32 + x * inv) as i32).clamp(-128, 127) as i8));
    (sf, zp)
}

/// Hybrid FULLY_CONNECTED (`EvalHybridDense` with the portable tensor utils): each input row
/// is quantized on its own, symmetric or asymmetric.
#[allow(clippy::too_many_arguments)]
pub fn hybrid_fully_connected(
    x: &[f32],
    w: &[i32],
    w_shape: &[usize],
    wq: &QuantParams,
    bias: Option<&[f32]>,
    act: Activation,
    asymmetric: bool,
) -> Vec<f32> {
    let (units, depth) = (w_shape[0], w_shape[1]);
    let batches = x.len() / depth.max(1);
    let mut y: Vec<f32> = (0..batches * units).map(|i| bias.map_or(0.0, |b| b[i % units])).collect();
    if x.iter().all(|&v| v == 0.0) {
        return y.into_iter().map(|v| act.apply(v)).collect();
    }
    let per_channel = wq.scales().len() > 1;
    let row_sums: Vec<i32> = (0..units).map(|o| w[o * depth..(o + 1) * depth].iter().sum()).collect();
    for b in 0..batches {
        let row = &x[b * depth..(b + 1) * depth];
        let (q, mut sf, zp) = if asymmetric {
            asymmetric_quantize(row)
        } else {
            let (q, sf) = symmetric_quantize(row);
            (q, sf, 0)
        };
        if !per_channel {
            sf *= wq.scale();
        }
        for o in 0..units {
            let mut dot: i32 = 0;
            for d in 0..depth {
                dot = dot.wrapping_add(w[o * depth + d].wrapping_mul(q[d]));
            }
            if asymmetric {
                dot = dot.wrapping_sub(row_sums[o].wrapping_mul(zp));
            }
            let scale = if per_channel { sf * wq.scales()[o] } else { sf };
            y[b * units + o] += dot as f32 * scale;
        }
    }
    y.into_iter().map(|v| act.apply(v)).collect()
}

/// Hybrid CONV_2D / DEPTHWISE_CONV_2D: each batch image quantized on its own (asymmetric for
/// per-channel weights and for depthwise, symmetric otherwise), integer accumulation, float
/// rescale plus bias (`HybridConvPerChannel`, `DepthwiseConvHybridPerChannel`).
#[allow(clippy::too_many_arguments)]
pub fn hybrid_conv(
    depthwise: Option<&DepthwiseConv2d>,
    conv: Option<&Conv2d>,
    x: &[f32],
    xs: &[usize],
    w: &[i32],
    ws: &[usize],
    wq: &QuantParams,
    bias: Option<&[f32]>,
    os: &[usize],
) -> Vec<f32> {
    let n = xs[0];
    let per_batch = xs[1] * xs[2] * xs[3];
    let oc = ws[if depthwise.is_some() { 3 } else { 0 }];
    let asymmetric = depthwise.is_some() || wq.scales().len() > 1;
    let out_per_batch = os[1] * os[2] * os[3];
    let mut y = vec![0f32; n * out_per_batch];
    let act = depthwise.map(|d| d.activation).or(conv.map(|c| c.activation)).unwrap_or_default();
    for b in 0..n {
        let img = &x[b * per_batch..(b + 1) * per_batch];
        let (q, sf, zp) = if asymmetric {
            asymmetric_quantize(img)
        } else {
            let (q, sf) = symmetric_quantize(img);
            (q, sf, 0)
        };
        let one = [1, xs[1], xs[2], xs[3]];
        let ones = [1, os[1], os[2], os[3]];
        // Integer accumulation with a unit multiplier is exact: reuse the int8 loops with
        // zero output offset and no clamp by asking for raw accumulators.
        let accs = accumulators(depthwise, conv, &q, &one, zp, w, ws, &ones);
        for (i, acc) in accs.into_iter().enumerate() {
            let c = i % oc;
            let s_w = if wq.scales().len() == 1 { wq.scale() } else { wq.scales()[c] };
            let mut v = if depthwise.is_some() { acc as f32 * (s_w * sf) } else { acc as f32 * s_w * sf };
            if let Some(bias) = bias {
                v += bias[c];
            }
            y[b * out_per_batch + i] = act.apply(v);
        }
    }
    y
}

/// The int32 accumulators `Σ w · (x − z_in)` of a convolution or depthwise convolution, for
/// every output position (NHWC order, channels innermost), taps in the padding skipped. Shared
/// by the integer and the hybrid kernels.
#[allow(clippy::too_many_arguments)]
fn accumulators(
    depthwise: Option<&DepthwiseConv2d>,
    conv: Option<&Conv2d>,
    x: &[i32],
    xs: &[usize],
    z_in: i32,
    w: &[i32],
    ws: &[usize],
    os: &[usize],
) -> Vec<i32> {
    let per_image = xs[1] * xs[2] * xs[3];
    let mut y = Vec::with_capacity(os.iter().product());
    for b in 0..xs[0] {
        image_accumulators(depthwise, conv, &x[b * per_image..(b + 1) * per_image], xs, z_in, w, ws, os, &mut y);
    }
    y
}

#[allow(clippy::too_many_arguments)]
fn image_accumulators(
    depthwise: Option<&DepthwiseConv2d>,
    conv: Option<&Conv2d>,
    x: &[i32],
    xs: &[usize],
    z_in: i32,
    w: &[i32],
    ws: &[usize],
    os: &[usize],
    y: &mut Vec<i32>,
) {
    let (ih, iw, ic) = (xs[1], xs[2], xs[3]);
    let (oh, ow) = (os[1], os[2]);
    if let Some(op) = depthwise {
        let (kh, kw, oc) = (ws[1], ws[2], ws[3]);
        let (_, pad_h) = op.padding.compute(ih, kh, op.stride[0], op.dilation[0]).unwrap_or((0, 0));
        let (_, pad_w) = op.padding.compute(iw, kw, op.stride[1], op.dilation[1]).unwrap_or((0, 0));
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..oc {
                    let c = o / op.depth_multiplier.max(1);
                    let mut acc: i32 = 0;
                    for ky in 0..kh {
                        let Some(iy) = tap(oy, op.stride[0], ky, op.dilation[0], pad_h, ih) else { continue };
                        for kx in 0..kw {
                            let Some(ix) = tap(ox, op.stride[1], kx, op.dilation[1], pad_w, iw) else { continue };
                            acc = acc.wrapping_add(
                                w[(ky * kw + kx) * oc + o].wrapping_mul(x[(iy * iw + ix) * ic + c] - z_in),
                            );
                        }
                    }
                    y.push(acc);
                }
            }
        }
    } else if let Some(op) = conv {
        let (oc, kh, kw, icg) = (ws[0], ws[1], ws[2], ws[3]);
        let groups = ic / icg.max(1);
        let ocg = oc / groups.max(1);
        let (_, pad_h) = op.padding.compute(ih, kh, op.stride[0], op.dilation[0]).unwrap_or((0, 0));
        let (_, pad_w) = op.padding.compute(iw, kw, op.stride[1], op.dilation[1]).unwrap_or((0, 0));
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..oc {
                    let g = o / ocg.max(1);
                    let mut acc: i32 = 0;
                    for ky in 0..kh {
                        let Some(iy) = tap(oy, op.stride[0], ky, op.dilation[0], pad_h, ih) else { continue };
                        for kx in 0..kw {
                            let Some(ix) = tap(ox, op.stride[1], kx, op.dilation[1], pad_w, iw) else { continue };
                            let xb = (iy * iw + ix) * ic + g * icg;
                            let wb = ((o * kh + ky) * kw + kx) * icg;
                            for c in 0..icg {
                                acc = acc.wrapping_add(w[wb + c].wrapping_mul(x[xb + c] - z_in));
                            }
                        }
                    }
                    y.push(acc);
                }
            }
        }
    }
}

/// PRELU's two multipliers, as LiteRT's prepare computes them: the real multipliers in float
/// (`s_in / s_out` and `s_in · s_alpha / s_out`, float arithmetic widened to double).
pub fn prelu_params(s_in: f32, s_alpha: f32, s_out: f32) -> Result<[(i32, i32); 2], String> {
    let r1 = (s_in / s_out) as f64;
    let r2 = (s_in * s_alpha / s_out) as f64;
    for (r, what) in [(r1, "identity"), (r2, "alpha")] {
        if !(r.is_finite() && r > 0.0 && r < (1u64 << 30) as f64) {
            return Err(format!("PRELU {what} multiplier {r:e} has no fixed-point form"));
        }
    }
    Ok([quantize_multiplier(r1), quantize_multiplier(r2)])
}

/// PRELU, reference_ops::BroadcastPrelu4DSlow: `x − z_in` scaled by the first multiplier when
/// non-negative, else `(x − z_in)(alpha − z_alpha)` by the second; plus the output zero point,
/// clamped. `pairs` maps each output to its (input, alpha) elements.
pub fn prelu(
    x: &[i32],
    alpha: &[i32],
    pairs: &[(usize, usize)],
    (s_in, z_in): (f32, i32),
    (s_a, z_a): (f32, i32),
    out: OutQ,
) -> Result<Vec<i32>, String> {
    let [(m1, e1), (m2, e2)] = prelu_params(s_in, s_a, out.scale)?;
    let (lo, hi) = activation_range(Activation::None, out.dtype, out.scale, out.zp);
    Ok(pairs
        .iter()
        .map(|&(i, a)| {
            let v = x[i] - z_in;
            let y = if v >= 0 { mbqm(v, m1, e1) } else { mbqm(v * (alpha[a] - z_a), m2, e2) };
            (y + out.zp).clamp(lo, hi)
        })
        .collect())
}

/// `reference_ops::HybridTransposeConv` (float input, symmetric int8 weights): each image
/// quantized asymmetrically (`AsymmetricQuantizeFloats`), then every input element's
/// contribution `((x − z) · w) · s_w[c] · s_x` scattered in float, in LiteRT's loop order
/// (input row, column, channel, filter row, column, output channel), then the bias and the
/// activation.
#[allow(clippy::too_many_arguments)]
pub fn hybrid_transpose_conv(
    op: &qlite_ir::op::TransposeConv2d,
    x: &[f32],
    xs: &[usize],
    w: &[i32],
    ws: &[usize],
    wq: &QuantParams,
    bias: Option<&[f32]>,
    os: &[usize],
) -> Vec<f32> {
    let (n, ih, iw, ic) = (xs[0], xs[1], xs[2], xs[3]);
    let (oc, kh, kw) = (ws[0], ws[1], ws[2]);
    let (oh, ow) = (os[1], os[2]);
    let [ph, pw] = op.pad_before([kh, kw]);
    let scale = |o: usize| if wq.scales().len() == 1 { wq.scale() } else { wq.scales()[o] };
    let mut y = vec![0f32; n * oh * ow * oc];
    let per_image = ih * iw * ic;
    for b in 0..n {
        let (q, sf, zp) = asymmetric_quantize(&x[b * per_image..(b + 1) * per_image]);
        for iy in 0..ih {
            for ix in 0..iw {
                for c in 0..ic {
                    let v = q[(iy * iw + ix) * ic + c] - zp;
                    for fy in 0..kh {
                        let Some(oy) = (iy * op.stride[0] + fy).checked_sub(ph).filter(|&y| y < oh) else { continue };
                        for fx in 0..kw {
                            let Some(ox) = (ix * op.stride[1] + fx).checked_sub(pw).filter(|&v| v < ow) else {
                                continue;
                            };
                            for o in 0..oc {
                                let acc = v.wrapping_mul(w[((o * kh + fy) * kw + fx) * ic + c]);
                                y[((b * oh + oy) * ow + ox) * oc + o] += acc as f32 * scale(o) * sf;
                            }
                        }
                    }
                }
            }
        }
    }
    for (i, v) in y.iter_mut().enumerate() {
        let o = i % oc;
        let acc = *v + bias.map_or(0.0, |b| b[o]);
        *v = op.activation.apply(acc);
    }
    y
}

/// `reference_integer_ops::TransposeConv`: int32 sums of `(x − z_in) · w` scattered through
/// the filter (symmetric weights), then per output channel the bias, the channel's multiplier,
/// the output zero point and the activation range.
#[allow(clippy::too_many_arguments)]
pub fn transpose_conv(
    op: &qlite_ir::op::TransposeConv2d,
    x: &[i32],
    xs: &[usize],
    (s_in, z_in): (f32, i32),
    w: &[i32],
    ws: &[usize],
    wq: &QuantParams,
    bias: Option<&[i32]>,
    os: &[usize],
    out: OutQ,
) -> Vec<i32> {
    let (n, ih, iw, ic) = (xs[0], xs[1], xs[2], xs[3]);
    let (oc, kh, kw) = (ws[0], ws[1], ws[2]);
    let (oh, ow) = (os[1], os[2]);
    let [ph, pw] = op.pad_before([kh, kw]);
    let mut acc = vec![0i32; n * oh * ow * oc];
    for b in 0..n {
        for iy in 0..ih {
            for ix in 0..iw {
                for c in 0..ic {
                    let v = x[((b * ih + iy) * iw + ix) * ic + c] - z_in;
                    for fy in 0..kh {
                        let Some(oy) = (iy * op.stride[0] + fy).checked_sub(ph).filter(|&y| y < oh) else { continue };
                        for fx in 0..kw {
                            let Some(ox) = (ix * op.stride[1] + fx).checked_sub(pw).filter(|&v| v < ow) else {
                                continue;
                            };
                            for o in 0..oc {
                                let a = &mut acc[((b * oh + oy) * ow + ox) * oc + o];
                                *a = a.wrapping_add(v.wrapping_mul(w[((o * kh + fy) * kw + fx) * ic + c]));
                            }
                        }
                    }
                }
            }
        }
    }
    let mults = per_channel_multipliers(s_in, wq, out.scale, oc);
    let (lo, hi) = out.range(op.activation);
    acc.iter()
        .enumerate()
        .map(|(i, &a)| {
            let o = i % oc;
            let a = a.wrapping_add(bias.map_or(0, |b| b[o]));
            let (m, sh) = mults[o];
            mbqm(a, m, sh).wrapping_add(out.zp).clamp(lo, hi)
        })
        .collect()
}

/// BATCH_MATMUL on 8-bit operands (reference_ops::BatchMatMul): int32 sums of
/// `(a − z_a)(b − z_b)`, the multiplier `(s_a · s_b) / s_out` (the product in float, as
/// `GetQuantizedConvolutionMultipler`), the output zero point, clamped to the type.
pub fn batch_matmul(
    p: &crate::kernels::MatMulPlan,
    a: &[i32],
    b: &[i32],
    (s_a, z_a): (f32, i32),
    (s_b, z_b): (f32, i32),
    out: OutQ,
) -> Vec<i32> {
    let (m, sh) = quantize_multiplier(((s_a * s_b) as f64) / out.scale as f64);
    let (lo, hi) = out.range(Activation::None);
    let mut y = Vec::with_capacity(p.batches.len() * p.m * p.n);
    for &(oa, ob) in &p.batches {
        for i in 0..p.m {
            for j in 0..p.n {
                let mut acc = 0i32;
                for k in 0..p.k {
                    let x = a[oa + i * p.a_st.0 + k * p.a_st.1] - z_a;
                    let w = b[ob + k * p.b_st.0 + j * p.b_st.1] - z_b;
                    acc = acc.wrapping_add(x.wrapping_mul(w));
                }
                y.push(mbqm(acc, m, sh).wrapping_add(out.zp).clamp(lo, hi));
            }
        }
    }
    y
}
