//! Convolutions: CONV_2D, DEPTHWISE_CONV_2D and TRANSPOSE_CONV, float, int8 (bit-exact with
//! LiteRT's reference kernels) and hybrid (dynamic-range), side by side.

use super::*;

pub fn conv2d_f32(
    op: &Conv2d,
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    bias: Option<&[f32]>,
    os: &[usize],
) -> Vec<f32> {
    let (n, ih, iw, ic) = (xs[0], xs[1], xs[2], xs[3]);
    let (oc, kh, kw, icg) = (ws[0], ws[1], ws[2], ws[3]);
    let (oh, ow) = (os[1], os[2]);
    let groups = ic / icg;
    let ocg = oc / groups;
    let (_, pad_h) = op.padding.compute(ih, kh, op.stride[0], op.dilation[0]).unwrap_or((0, 0));
    let (_, pad_w) = op.padding.compute(iw, kw, op.stride[1], op.dilation[1]).unwrap_or((0, 0));
    let mut out = vec![0f32; n * oh * ow * oc];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..oc {
                    let g = o / ocg;
                    let mut acc = 0f32;
                    for ky in 0..kh {
                        let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - pad_h as isize;
                        if iy < 0 || iy >= ih as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize - pad_w as isize;
                            if ix < 0 || ix >= iw as isize {
                                continue;
                            }
                            let xb = ((b * ih + iy as usize) * iw + ix as usize) * ic + g * icg;
                            let wb = ((o * kh + ky) * kw + kx) * icg;
                            for c in 0..icg {
                                acc += x[xb + c] * w[wb + c];
                            }
                        }
                    }
                    if let Some(bias) = bias {
                        acc += bias[o];
                    }
                    out[((b * oh + oy) * ow + ox) * oc + o] = op.activation.apply(acc);
                }
            }
        }
    }
    out
}

pub fn depthwise_f32(
    op: &DepthwiseConv2d,
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    bias: Option<&[f32]>,
    os: &[usize],
) -> Vec<f32> {
    let (n, ih, iw, ic) = (xs[0], xs[1], xs[2], xs[3]);
    let (kh, kw, oc) = (ws[1], ws[2], ws[3]);
    let (oh, ow) = (os[1], os[2]);
    let m = op.depth_multiplier;
    let (_, pad_h) = op.padding.compute(ih, kh, op.stride[0], op.dilation[0]).unwrap_or((0, 0));
    let (_, pad_w) = op.padding.compute(iw, kw, op.stride[1], op.dilation[1]).unwrap_or((0, 0));
    let mut out = vec![0f32; n * oh * ow * oc];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..ic {
                    for mi in 0..m {
                        let o = c * m + mi;
                        let mut acc = 0f32;
                        for ky in 0..kh {
                            let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - pad_h as isize;
                            if iy < 0 || iy >= ih as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize - pad_w as isize;
                                if ix < 0 || ix >= iw as isize {
                                    continue;
                                }
                                acc += x[((b * ih + iy as usize) * iw + ix as usize) * ic + c]
                                    * w[(ky * kw + kx) * oc + o];
                            }
                        }
                        if let Some(bias) = bias {
                            acc += bias[o];
                        }
                        out[((b * oh + oy) * ow + ox) * oc + o] = op.activation.apply(acc);
                    }
                }
            }
        }
    }
    out
}

/// TRANSPOSE_CONV in float, reference_ops::TransposeConv's order: every input pixel scattered
/// through the filter into the output, then the bias and the activation.
pub fn transpose_conv_f32(
    op: &TransposeConv2d,
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    bias: Option<&[f32]>,
    os: &[usize],
) -> Vec<f32> {
    let (n, ih, iw, ic) = (xs[0], xs[1], xs[2], xs[3]);
    let (oc, kh, kw) = (ws[0], ws[1], ws[2]);
    let (oh, ow) = (os[1], os[2]);
    let [ph, pw] = op.pad_before([kh, kw]);
    let mut out = vec![0f32; n * oh * ow * oc];
    for b in 0..n {
        for iy in 0..ih {
            for ix in 0..iw {
                for c in 0..ic {
                    let v = x[((b * ih + iy) * iw + ix) * ic + c];
                    for fy in 0..kh {
                        let Some(oy) = (iy * op.stride[0] + fy).checked_sub(ph).filter(|&y| y < oh) else { continue };
                        for fx in 0..kw {
                            let Some(ox) = (ix * op.stride[1] + fx).checked_sub(pw).filter(|&v| v < ow) else {
                                continue;
                            };
                            for o in 0..oc {
                                out[((b * oh + oy) * ow + ox) * oc + o] += v * w[((o * kh + fy) * kw + fx) * ic + c];
                            }
                        }
                    }
                }
            }
        }
    }
    for (i, v) in out.iter_mut().enumerate() {
        if let Some(bv) = bias {
            *v += bv[i % oc];
        }
        *v = op.activation.apply(*v);
    }
    out
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
    bias: Option<&[i64]>,
    acc: Acc,
    os: &[usize],
    out: OutQ,
) -> Vec<i32> {
    let oc = ws[0];
    let mults = per_channel_multipliers(s_in, wq, out.scale, oc);
    let (lo, hi) = out.range(op.activation);
    let accs = accumulators(None, Some(op), x, xs, z_in, w, ws, os);
    requantize_channels(accs, oc, bias, acc, &mults, out.zp, lo, hi)
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
    bias: Option<&[i64]>,
    acc: Acc,
    os: &[usize],
    out: OutQ,
) -> Vec<i32> {
    let oc = ws[3];
    let mults = per_channel_multipliers(s_in, wq, out.scale, oc);
    let (lo, hi) = out.range(op.activation);
    let accs = accumulators(Some(op), None, x, xs, z_in, w, ws, os);
    requantize_channels(accs, oc, bias, acc, &mults, out.zp, lo, hi)
}

/// Add the bias, apply the per-channel multiplier, offset and clamp (channels innermost).
#[allow(clippy::too_many_arguments)]
fn requantize_channels(
    accs: Vec<i64>,
    oc: usize,
    bias: Option<&[i64]>,
    acc: Acc,
    mults: &[(i32, i32)],
    zp: i32,
    lo: i32,
    hi: i32,
) -> Vec<i32> {
    accs.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let c = i % oc.max(1);
            let (m, sh) = mults[c];
            acc.requantize(a, bias.map_or(0, |b| b[c]), m, sh).wrapping_add(zp).clamp(lo, hi)
        })
        .collect()
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
            let acc = acc as i32; // the int32 accumulator wraps, as LiteRT's does
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
) -> Vec<i64> {
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
    y: &mut Vec<i64>,
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
                    let mut acc: i64 = 0;
                    for ky in 0..kh {
                        let Some(iy) = tap(oy, op.stride[0], ky, op.dilation[0], pad_h, ih) else { continue };
                        for kx in 0..kw {
                            let Some(ix) = tap(ox, op.stride[1], kx, op.dilation[1], pad_w, iw) else { continue };
                            acc += w[(ky * kw + kx) * oc + o] as i64 * (x[(iy * iw + ix) * ic + c] - z_in) as i64;
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
                    let mut acc: i64 = 0;
                    for ky in 0..kh {
                        let Some(iy) = tap(oy, op.stride[0], ky, op.dilation[0], pad_h, ih) else { continue };
                        for kx in 0..kw {
                            let Some(ix) = tap(ox, op.stride[1], kx, op.dilation[1], pad_w, iw) else { continue };
                            let xb = (iy * iw + ix) * ic + g * icg;
                            let wb = ((o * kh + ky) * kw + kx) * icg;
                            for c in 0..icg {
                                acc += w[wb + c] as i64 * (x[xb + c] - z_in) as i64;
                            }
                        }
                    }
                    y.push(acc);
                }
            }
        }
    }
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
    bias: Option<&[i64]>,
    acc: Acc,
    os: &[usize],
    out: OutQ,
) -> Vec<i32> {
    let (n, ih, iw, ic) = (xs[0], xs[1], xs[2], xs[3]);
    let (oc, kh, kw) = (ws[0], ws[1], ws[2]);
    let (oh, ow) = (os[1], os[2]);
    let [ph, pw] = op.pad_before([kh, kw]);
    let mut sums = vec![0i64; n * oh * ow * oc];
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
                                sums[((b * oh + oy) * ow + ox) * oc + o] +=
                                    v as i64 * w[((o * kh + fy) * kw + fx) * ic + c] as i64;
                            }
                        }
                    }
                }
            }
        }
    }
    let mults = per_channel_multipliers(s_in, wq, out.scale, oc);
    let (lo, hi) = out.range(op.activation);
    requantize_channels(sums, oc, bias, acc, &mults, out.zp, lo, hi)
}
