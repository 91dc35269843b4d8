//! Pooling and reductions: MAX/AVERAGE_POOL_2D, MEAN and SUM, float and int8 side by side.

use super::*;

pub fn pool_f32(op: &Pool2d, x: &[f32], xs: &[usize], os: &[usize]) -> Vec<f32> {
    let (n, ih, iw, c) = (xs[0], xs[1], xs[2], xs[3]);
    let (oh, ow) = (os[1], os[2]);
    let (_, pad_h) = op.padding.compute(ih, op.filter[0], op.stride[0], 1).unwrap_or((0, 0));
    let (_, pad_w) = op.padding.compute(iw, op.filter[1], op.stride[1], 1).unwrap_or((0, 0));
    let mut out = vec![0f32; n * oh * ow * c];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let y0 = (oy * op.stride[0]) as isize - pad_h as isize;
                let x0 = (ox * op.stride[1]) as isize - pad_w as isize;
                let ys = y0.max(0) as usize..((y0 + op.filter[0] as isize).min(ih as isize)).max(0) as usize;
                let xr = x0.max(0) as usize..((x0 + op.filter[1] as isize).min(iw as isize)).max(0) as usize;
                for ch in 0..c {
                    let mut acc = match op.kind {
                        PoolKind::Max => f32::NEG_INFINITY,
                        PoolKind::Average => 0.0,
                    };
                    let mut count = 0usize;
                    for iy in ys.clone() {
                        for ix in xr.clone() {
                            let v = x[((b * ih + iy) * iw + ix) * c + ch];
                            acc = match op.kind {
                                PoolKind::Max => acc.max(v),
                                PoolKind::Average => acc + v,
                            };
                            count += 1;
                        }
                    }
                    if op.kind == PoolKind::Average {
                        acc = if count == 0 { 0.0 } else { acc / count as f32 };
                    }
                    out[((b * oh + oy) * ow + ox) * c + ch] = op.activation.apply(acc);
                }
            }
        }
    }
    out
}

pub fn mean_f32(op: &Mean, x: &[f32], xs: &[usize], out_len: usize) -> Vec<f32> {
    let count: usize = op.axes.iter().map(|&a| xs[a]).product();
    let n = count.max(1) as f32;
    sum_f32(op, x, xs, out_len).into_iter().map(|s| s / n).collect()
}

/// SUM: the sums over `op.axes`, accumulated in input order.
pub fn sum_f32(op: &Mean, x: &[f32], xs: &[usize], out_len: usize) -> Vec<f32> {
    let st = strides(xs);
    // Output index of each input element: the input index with reduced axes dropped.
    let kept: Vec<usize> = (0..xs.len()).filter(|a| !op.axes.contains(a)).collect();
    let kept_dims: Vec<usize> = kept.iter().map(|&a| xs[a]).collect();
    let kst = strides(&kept_dims);
    let mut sums = vec![0f32; out_len];
    for (i, &v) in x.iter().enumerate() {
        let mut o = 0;
        for (k, &a) in kept.iter().enumerate() {
            o += (i / st[a]) % xs[a] * kst[k];
        }
        sums[o] += v;
    }
    sums
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
