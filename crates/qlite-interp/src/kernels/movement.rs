//! Data movement for any dtype: TRANSPOSE, CONCATENATION, STRIDED_SLICE, PAD/PADV2, MIRROR_PAD,
//! GATHER, TILE, DEPTH_TO_SPACE/SPACE_TO_DEPTH. The bytes are moved as LiteRT moves them, so
//! one kernel serves float and integer tensors.

use super::*;

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
