//! Float kernels and dtype-agnostic data movement. Plain, readable loops: this is the
//! reference the fast kernels will be checked against.

use crate::array::{Array, Data, map_data};
use crate::fixedpoint::{mbqm, quantize_multiplier, round_half_away};
use qlite_ir::op::{
    Activation, BatchMatMul, Binary, BinaryKind, Concatenation, Conv2d, DepthwiseConv2d, FullyConnected, Gather,
    LocalResponseNorm, Mean, MirrorMode, MirrorPad, Pad, Pool2d, PoolKind, Resize, Softmax, StridedSlice, Transpose,
    TransposeConv2d, UnaryKind,
};
use qlite_ir::{DType, QuantParams};

/// Row-major strides.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// For each element of `out`, the flat index of the broadcast source element in `input`.
pub fn broadcast_indices(out: &[usize], input: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let rank = out.len();
    let in_strides = strides(input);
    // Stride 0 on broadcast (size-1 or missing) dimensions.
    let mut eff = vec![0usize; rank];
    for k in 0..input.len() {
        let o = rank - input.len() + k;
        if input[k] != 1 {
            eff[o] = in_strides[k];
        }
    }
    let mut idx = vec![0usize; rank];
    let mut res = Vec::with_capacity(n);
    let mut src = 0usize;
    for _ in 0..n {
        res.push(src);
        for k in (0..rank).rev() {
            idx[k] += 1;
            src += eff[k];
            if idx[k] < out[k] {
                break;
            }
            src -= eff[k] * idx[k];
            idx[k] = 0;
        }
    }
    res
}

pub fn binary_f32(op: &Binary, a: &Array, b: &Array, a_in: &[f32], b_in: &[f32], out_shape: &[usize]) -> Vec<f32> {
    let ia = broadcast_indices(out_shape, a.shape());
    let ib = broadcast_indices(out_shape, b.shape());
    ia.iter()
        .zip(&ib)
        .map(|(&i, &j)| {
            let (x, y) = (a_in[i], b_in[j]);
            let v = match op.kind {
                BinaryKind::Add => x + y,
                BinaryKind::Sub => x - y,
                BinaryKind::Mul => x * y,
                BinaryKind::Maximum => x.max(y),
                BinaryKind::Minimum => x.min(y),
                BinaryKind::Div => x / y,
                BinaryKind::SquaredDifference => (x - y) * (x - y),
            };
            op.activation.apply(v)
        })
        .collect()
}

pub fn fully_connected_f32(
    op: &FullyConnected,
    x: &[f32],
    w: &[f32],
    w_shape: &[usize],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (units, depth) = (w_shape[0], w_shape[1]);
    let batches = x.len() / depth;
    let mut out = vec![0f32; batches * units];
    for b in 0..batches {
        let row = &x[b * depth..(b + 1) * depth];
        for o in 0..units {
            let wr = &w[o * depth..(o + 1) * depth];
            let mut acc = 0f32;
            for d in 0..depth {
                acc += row[d] * wr[d];
            }
            if let Some(bias) = bias {
                acc += bias[o];
            }
            out[b * units + o] = op.activation.apply(acc);
        }
    }
    out
}

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

pub fn unary_f32(kind: UnaryKind, x: &[f32]) -> Vec<f32> {
    match kind {
        UnaryKind::Relu => x.iter().map(|v| Activation::Relu.apply(*v)).collect(),
        UnaryKind::Relu6 => x.iter().map(|v| Activation::Relu6.apply(*v)).collect(),
        // As the reference kernel: `in · min(6, max(0, in + 3)) / 6` in float.
        UnaryKind::HardSwish => x.iter().map(|&v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0).collect(),
        UnaryKind::Logistic => x.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
        UnaryKind::Tanh => x.iter().map(|v| v.tanh()).collect(),
        UnaryKind::Exp => x.iter().map(|v| v.exp()).collect(),
        UnaryKind::Sqrt => x.iter().map(|v| v.sqrt()).collect(),
        UnaryKind::Neg => x.iter().map(|v| -v).collect(),
        UnaryKind::Abs => x.iter().map(|v| v.abs()).collect(),
        UnaryKind::ReluN1To1 => x.iter().map(|v| v.clamp(-1.0, 1.0)).collect(),
        UnaryKind::Elu
        | UnaryKind::Gelu
        | UnaryKind::GeluTanh
        | UnaryKind::Rsqrt
        | UnaryKind::Erf
        | UnaryKind::Erfc => {
            let f = unary_fn(kind);
            x.iter().map(|&v| f(v)).collect()
        }
    }
}

/// The float function of ELU, GELU (both forms) and RSQRT as LiteRT's float kernels compute
/// them; the int8 kernels tabulate the same function.
pub fn unary_fn(kind: UnaryKind) -> fn(f32) -> f32 {
    match kind {
        UnaryKind::Elu => |v| if v < 0.0 { libm::expm1f(v) } else { v },
        // reference_ops::Gelu: 0.5 · x · erfc(x · −1/√2).
        UnaryKind::Gelu => |v| 0.5 * v * libm::erfcf(v * -std::f32::consts::FRAC_1_SQRT_2),
        UnaryKind::GeluTanh => |v| {
            const SQRT_2_OVER_PI: f32 = 0.797_884_6;
            0.5 * v * (1.0 + (SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)).tanh())
        },
        UnaryKind::Rsqrt => |v| 1.0 / v.sqrt(),
        UnaryKind::Erf => libm::erff,
        UnaryKind::Erfc => libm::erfcf,
        UnaryKind::Logistic => |v| 1.0 / (1.0 + (-v).exp()),
        UnaryKind::Tanh => |v| v.tanh(),
        UnaryKind::Exp => |v| v.exp(),
        UnaryKind::Sqrt => |v| v.sqrt(),
        UnaryKind::Neg => |v| -v,
        UnaryKind::Abs => |v| v.abs(),
        UnaryKind::Relu => |v| v.max(0.0),
        UnaryKind::Relu6 => |v| v.clamp(0.0, 6.0),
        UnaryKind::ReluN1To1 => |v| v.clamp(-1.0, 1.0),
        UnaryKind::HardSwish => |v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
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

// ---- data movement (any dtype) ----

pub fn transpose(op: &Transpose, x: &Array) -> (Vec<usize>, Data) {
    let xs = x.shape();
    let st = strides(xs);
    let out_dims: Vec<usize> = op.perm.iter().map(|&p| xs[p]).collect();
    let n: usize = out_dims.iter().product();
    let mut idx = vec![0usize; out_dims.len()];
    let mut src = Vec::with_capacity(n);
    for _ in 0..n {
        src.push(idx.iter().zip(&op.perm).map(|(&i, &p)| i * st[p]).sum());
        for k in (0..out_dims.len()).rev() {
            idx[k] += 1;
            if idx[k] < out_dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    (out_dims, x.data().gather(&src))
}

pub fn concatenate(op: &Concatenation, xs: &[&Array], out_shape: &[usize]) -> Data {
    let axis = op.axis;
    let outer: usize = out_shape[..axis].iter().product();
    // Source (input, flat index) for each output element, block by block.
    let mut pieces: Vec<(usize, usize)> = Vec::with_capacity(out_shape.iter().product());
    for o in 0..outer {
        for (k, x) in xs.iter().enumerate() {
            let inner: usize = x.shape()[axis..].iter().product();
            pieces.extend((0..inner).map(|i| (k, o * inner + i)));
        }
    }
    macro_rules! cat {
        ($var:ident) => {{
            let srcs: Vec<&Vec<_>> = xs
                .iter()
                .map(|x| match x.data() {
                    Data::$var(v) => v,
                    _ => unreachable!("concatenation inputs share a dtype (verified)"),
                })
                .collect();
            Data::$var(pieces.iter().map(|&(k, i)| srcs[k][i]).collect())
        }};
    }
    match xs[0].data() {
        Data::F32(_) => cat!(F32),
        Data::F16(_) => cat!(F16),
        Data::BF16(_) => cat!(BF16),
        Data::I8(_) => cat!(I8),
        Data::U8(_) => cat!(U8),
        Data::I16(_) => cat!(I16),
        Data::I32(_) => cat!(I32),
        Data::I64(_) => cat!(I64),
        Data::Bool(_) => cat!(Bool),
    }
}

/// STRIDED_SLICE of any dtype (a gather: the bytes are copied, as LiteRT's kernel copies
/// them, whatever the quantization). Returns the output's dims and data.
pub fn strided_slice(op: &StridedSlice, x: &Array) -> Result<(Vec<usize>, Data), String> {
    let xs = x.shape();
    if op.axes.len() != xs.len() {
        return Err(format!("StridedSlice has {} axes for rank {}", op.axes.len(), xs.len()));
    }
    let st = strides(xs);
    let mut axes = Vec::with_capacity(xs.len());
    for (k, (a, &n)) in op.axes.iter().zip(xs).enumerate() {
        let (start, count) = a.resolve(n).ok_or_else(|| format!("StridedSlice axis {k} is outside {n}"))?;
        axes.push((start, count, if a.shrink { 1 } else { a.stride }));
    }
    let counts: Vec<usize> = axes.iter().map(|a| a.1).collect();
    let total: usize = counts.iter().product();
    let mut src = Vec::with_capacity(total);
    let mut idx = vec![0usize; xs.len()];
    for _ in 0..total {
        let mut s = 0i64;
        for (k, &i) in idx.iter().enumerate() {
            let (start, _, step) = axes[k];
            s += (start + i as i64 * step) * st[k] as i64;
        }
        src.push(s as usize);
        for k in (0..idx.len()).rev() {
            idx[k] += 1;
            if idx[k] < counts[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    let dims = counts.iter().zip(&op.axes).filter(|(_, a)| !a.shrink).map(|(&c, _)| c).collect();
    Ok((dims, x.data().gather(&src)))
}

/// RESIZE_NEAREST_NEIGHBOR of any dtype (the bytes copied, as LiteRT's kernel copies them).
pub fn resize_nearest(op: &Resize, x: &Array) -> Result<Data, String> {
    let &[n, ih, iw, c] = x.shape() else { return Err("Resize needs a rank-4 input".into()) };
    let [oh, ow] = op.size;
    if ih == 0 || iw == 0 {
        return Err("Resize of an empty image".into());
    }
    let ys: Vec<usize> = (0..oh).map(|y| op.nearest(y, ih, oh)).collect();
    let xs: Vec<usize> = (0..ow).map(|v| op.nearest(v, iw, ow)).collect();
    let mut src = Vec::with_capacity(n * oh * ow * c);
    for b in 0..n {
        for &y in &ys {
            for &v in &xs {
                let base = ((b * ih + y) * iw + v) * c;
                src.extend(base..base + c);
            }
        }
    }
    Ok(x.data().gather(&src))
}

/// RESIZE_BILINEAR: float as reference_ops::ResizeBilinear (the same float operations in the
/// same order), integers as ResizeBilinearInteger (10-bit fixed-point positions, products in
/// 20 bits, rounded half away from zero).
pub fn resize_bilinear(op: &Resize, x: &Array) -> Result<Data, String> {
    let &[n, ih, iw, c] = x.shape() else { return Err("Resize needs a rank-4 input".into()) };
    let [oh, ow] = op.size;
    if ih == 0 || iw == 0 || oh == 0 || ow == 0 {
        return Err("Resize of an empty image".into());
    }
    let at = |b: usize, y: usize, v: usize, k: usize| ((b * ih + y) * iw + v) * c + k;
    match x.data() {
        Data::F32(v) => {
            let scale = |i: usize, o: usize| {
                if op.align_corners && o > 1 { (i - 1) as f32 / (o - 1) as f32 } else { i as f32 / o as f32 }
            };
            let axis = |o: usize, s: f32, size: usize| -> Vec<(f32, usize, usize)> {
                (0..o)
                    .map(|p| {
                        let sv = if op.half_pixel_centers { (p as f32 + 0.5) * s - 0.5 } else { p as f32 * s };
                        let lo = (sv.floor() as i32).max(0) as usize;
                        let hi = (sv.ceil() as i32).min(size as i32 - 1).max(0) as usize;
                        (sv, lo, hi)
                    })
                    .collect()
            };
            let (ys, xs) = (axis(oh, scale(ih, oh), ih), axis(ow, scale(iw, ow), iw));
            let mut out = Vec::with_capacity(n * oh * ow * c);
            for b in 0..n {
                for &(iy, y0, y1) in &ys {
                    for &(ix, x0, x1) in &xs {
                        let (dy, dx) = (iy - y0 as f32, ix - x0 as f32);
                        for k in 0..c {
                            out.push(
                                v[at(b, y0, x0, k)] * (1.0 - dy) * (1.0 - dx)
                                    + v[at(b, y1, x0, k)] * dy * (1.0 - dx)
                                    + v[at(b, y0, x1, k)] * (1.0 - dy) * dx
                                    + v[at(b, y1, x1, k)] * dy * dx,
                            );
                        }
                    }
                }
            }
            Ok(Data::F32(out))
        }
        d => {
            let vals: Vec<i64> = match d {
                Data::I8(v) => v.iter().map(|&q| q as i64).collect(),
                Data::U8(v) => v.iter().map(|&q| q as i64).collect(),
                Data::I16(v) => v.iter().map(|&q| q as i64).collect(),
                d => return Err(format!("RESIZE_BILINEAR of {} is not supported", d.dtype())),
            };
            let scale10 = |i: usize, o: usize| -> i64 {
                let (i, o) = (i as i64, o as i64);
                if op.align_corners && o > 1 {
                    ((1 << 10) * (i - 1) + (o - 1) / 2) / (o - 1)
                } else {
                    ((1 << 10) * i + o / 2) / o
                }
            };
            let axis = |o: usize, s: i64, size: usize| -> Vec<(i64, usize, usize)> {
                (0..o as i64)
                    .map(|p| {
                        let sv = if op.half_pixel_centers { p * s + s / 2 - (1 << 9) } else { p * s };
                        // C++ integer division truncates toward zero.
                        let lo = (sv / (1 << 10)).max(0) as usize;
                        let hi = ((sv + (1 << 10) - 1) / (1 << 10)).min(size as i64 - 1).max(0) as usize;
                        (sv, lo, hi)
                    })
                    .collect()
            };
            let (ys, xs) = (axis(oh, scale10(ih, oh), ih), axis(ow, scale10(iw, ow), iw));
            let mut out = Vec::with_capacity(n * oh * ow * c);
            for b in 0..n {
                for &(iy, y0, y1) in &ys {
                    for &(ix, x0, x1) in &xs {
                        let fy = iy - (1 << 10) * y0 as i64;
                        let fx = ix - (1 << 10) * x0 as i64;
                        for k in 0..c {
                            let o20 = vals[at(b, y0, x0, k)] * ((1 << 10) - fy) * ((1 << 10) - fx)
                                + vals[at(b, y1, x0, k)] * fy * ((1 << 10) - fx)
                                + vals[at(b, y0, x1, k)] * ((1 << 10) - fy) * fx
                                + vals[at(b, y1, x1, k)] * fy * fx;
                            let round = if o20 > 0 { 1 << 19 } else { -(1 << 19) };
                            out.push((o20 + round) / (1 << 20));
                        }
                    }
                }
            }
            Ok(match d {
                Data::I8(_) => Data::I8(out.into_iter().map(|v| v as i8).collect()),
                Data::U8(_) => Data::U8(out.into_iter().map(|v| v as u8).collect()),
                _ => Data::I16(out.into_iter().map(|v| v as i16).collect()),
            })
        }
    }
}

/// For each element of the padded output, its source in the input, or `x.len()` (one past the
/// input: the fill value appended to it) in the padding.
fn pad_sources(op: &Pad, xs: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let st = strides(xs);
    let fill: usize = xs.iter().product();
    let mut src = Vec::with_capacity(out_shape.iter().product());
    for_each_index(out_shape, |idx| {
        let mut s = 0usize;
        for (k, &i) in idx.iter().enumerate() {
            let before = op.paddings[k][0];
            if i < before || i - before >= xs[k] {
                src.push(fill);
                return;
            }
            s += (i - before) * st[k];
        }
        src.push(s);
    });
    src
}

/// PADV2: padding with the one element of `value` (any dtype, copied as it is).
pub fn pad_with(op: &Pad, x: &Array, value: &Array, out_shape: &[usize]) -> Result<Data, String> {
    if value.dtype() != x.dtype() || value.len() != 1 {
        return Err(format!("Pad value must be one {}, got {} of {}", x.dtype(), value.len(), value.dtype()));
    }
    let flat = |a: &Array| a.clone().reshaped(vec![a.len()]).map_err(|e| e.to_string());
    let (xf, vf) = (flat(x)?, flat(value)?);
    let joined = concatenate(&Concatenation { axis: 0, activation: Activation::None }, &[&xf, &vf], &[x.len() + 1]);
    let src = pad_sources(op, x.shape(), out_shape);
    Ok(joined.gather(&src))
}

/// Constant padding; quantized tensors are padded with their zero point.
pub fn pad(op: &Pad, x: &Array, zero_point: i64, out_shape: &[usize]) -> Data {
    let src = pad_sources(op, x.shape(), out_shape);
    let z = zero_point;
    let extended = map_data!(x.data().clone(), |v| {
        let mut v = v;
        v.push(Default::default());
        v
    });
    let extended = match extended {
        Data::I8(mut v) => {
            *v.last_mut().unwrap_or(&mut 0) = z as i8;
            Data::I8(v)
        }
        Data::U8(mut v) => {
            *v.last_mut().unwrap_or(&mut 0) = z as u8;
            Data::U8(v)
        }
        Data::I16(mut v) => {
            *v.last_mut().unwrap_or(&mut 0) = z as i16;
            Data::I16(v)
        }
        other => other,
    };
    extended.gather(&src)
}

// ---- quantize / dequantize ----

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

/// Visit every index of `shape` in row-major order.
fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    let n: usize = shape.iter().product();
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        f(&idx);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// GATHER of any dtype: an index outside the axis is an error, as in LiteRT.
pub fn gather(op: &Gather, x: &Array, indices: &Array) -> Result<Data, String> {
    let xs = x.shape();
    let n = *xs.get(op.axis).ok_or("Gather axis is outside the input")?;
    let idx: Vec<i64> = match indices.data() {
        Data::I32(v) => v.iter().map(|&i| i as i64).collect(),
        Data::I64(v) => v.clone(),
        d => return Err(format!("Gather indices must be int32 or int64, got {}", d.dtype())),
    };
    let outer: usize = xs[..op.axis].iter().product();
    let inner: usize = xs[op.axis + 1..].iter().product();
    let mut src = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in &idx {
            if i < 0 || i as usize >= n {
                return Err(format!("Gather index {i} is outside [0, {n})"));
            }
            let base = (o * n + i as usize) * inner;
            src.extend(base..base + inner);
        }
    }
    Ok(x.data().gather(&src))
}

/// TILE of any dtype.
pub fn tile(x: &Array, out_shape: &[usize]) -> Data {
    let xs = x.shape();
    let st = strides(xs);
    let mut src = Vec::with_capacity(out_shape.iter().product());
    for_each_index(out_shape, |idx| src.push(idx.iter().zip(xs).zip(&st).map(|((&i, &n), &s)| (i % n) * s).sum()));
    x.data().gather(&src)
}

/// DEPTH_TO_SPACE (`to_space`) or SPACE_TO_DEPTH of any dtype, NHWC, TensorFlow's order.
pub fn space_depth(block: usize, to_space: bool, x: &Array, out_shape: &[usize]) -> Result<Data, String> {
    let &[_, _, iw, ic] = x.shape() else { return Err("DepthToSpace/SpaceToDepth needs a rank-4 input".into()) };
    let ih = x.shape()[1];
    let oc = out_shape[3];
    let b = block;
    let mut src = Vec::with_capacity(out_shape.iter().product());
    for_each_index(out_shape, |i| {
        let (n, h, w, c) = (i[0], i[1], i[2], i[3]);
        let (sh, sw, sc) = if to_space {
            // out[n, h, w, c] = in[n, h / b, w / b, ((h % b) · b + w % b) · oc + c]
            (h / b, w / b, ((h % b) * b + w % b) * oc + c)
        } else {
            // out[n, h, w, (bh · b + bw) · ic + c'] = in[n, h · b + bh, w · b + bw, c']
            let (blk, cc) = (c / ic, c % ic);
            (h * b + blk / b, w * b + blk % b, cc)
        };
        src.push(((n * ih + sh) * iw + sw) * ic + sc);
    });
    Ok(x.data().gather(&src))
}

/// MIRROR_PAD of any dtype.
pub fn mirror_pad(op: &MirrorPad, x: &Array, out_shape: &[usize]) -> Data {
    let xs = x.shape();
    let st = strides(xs);
    let reflect = op.mode == MirrorMode::Reflect;
    let mut src = Vec::with_capacity(out_shape.iter().product());
    for_each_index(out_shape, |idx| {
        let mut s = 0;
        for (k, &i) in idx.iter().enumerate() {
            let (n, before) = (xs[k] as i64, op.paddings[k][0] as i64);
            let j = i as i64 - before;
            let j = if j < 0 {
                if reflect { -j } else { -j - 1 }
            } else if j >= n {
                if reflect { 2 * n - 2 - j } else { 2 * n - 1 - j }
            } else {
                j
            };
            s += j.clamp(0, n - 1) as usize * st[k];
        }
        src.push(s);
    });
    x.data().gather(&src)
}

/// PRELU in float: `x` where `x >= 0`, else `x · alpha` (alpha broadcast).
pub fn prelu_f32(x: &Array, alpha: &Array, xv: &[f32], av: &[f32], out_shape: &[usize]) -> Vec<f32> {
    let ix = broadcast_indices(out_shape, x.shape());
    let ia = broadcast_indices(out_shape, alpha.shape());
    ix.iter().zip(&ia).map(|(&i, &a)| if xv[i] >= 0.0 { xv[i] } else { xv[i] * av[a] }).collect()
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

/// BATCH_MATMUL's index arithmetic: for every batch of the output, the offsets of the two
/// operands' matrices, and the strides of a[i][k] and b[k][j] (after adj_x / adj_y).
#[derive(Debug)]
pub struct MatMulPlan {
    pub batches: Vec<(usize, usize)>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// (row stride, column stride) of a as M×K and of b as K×N.
    pub a_st: (usize, usize),
    pub b_st: (usize, usize),
}

impl MatMulPlan {
    pub fn new(op: &BatchMatMul, a: &[usize], b: &[usize], out: &[usize]) -> Result<Self, String> {
        let (ra, rb, ro) = (a.len(), b.len(), out.len());
        if ra < 2 || rb < 2 || ro < 2 {
            return Err("BatchMatMul needs rank >= 2".into());
        }
        let (ar, ac) = (a[ra - 2], a[ra - 1]);
        let (br, bc) = (b[rb - 2], b[rb - 1]);
        let (m, k, a_st) = if op.adj_x { (ac, ar, (1, ac)) } else { (ar, ac, (ac, 1)) };
        let (n, b_st) = if op.adj_y { (br, (1, bc)) } else { (bc, (bc, 1)) };
        let batch_out = &out[..ro - 2];
        let ia = broadcast_indices(batch_out, &a[..ra - 2]);
        let ib = broadcast_indices(batch_out, &b[..rb - 2]);
        let batches = ia.into_iter().zip(ib).map(|(x, y)| (x * ar * ac, y * br * bc)).collect();
        Ok(MatMulPlan { batches, m, n, k, a_st, b_st })
    }
}

/// BATCH_MATMUL in float: each output `Σ_k a[i][k] · b[k][j]` in k order.
pub fn batch_matmul_f32(p: &MatMulPlan, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(p.batches.len() * p.m * p.n);
    for &(oa, ob) in &p.batches {
        for i in 0..p.m {
            for j in 0..p.n {
                let mut acc = 0f32;
                for k in 0..p.k {
                    acc += a[oa + i * p.a_st.0 + k * p.a_st.1] * b[ob + k * p.b_st.0 + j * p.b_st.1];
                }
                out.push(acc);
            }
        }
    }
    out
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
