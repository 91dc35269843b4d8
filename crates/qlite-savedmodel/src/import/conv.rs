//! SavedModel → IR: Conv2D, DepthwiseConv2dNative, Conv2DBackpropInput (Keras Conv2DTranspose) and
//! FusedBatchNorm.

use super::*;

impl Im<'_> {
    /// The conv family's ops; `Ok(None)` with `unknown_op` set: not one of them.
    pub(super) fn conv_op(
        &mut self,
        _fr: &mut Frame<'_>,
        n: &NodeDef,
        ins: &[Val],
        _depth: usize,
        name: &str,
    ) -> R<Option<Vec<Val>>> {
        let one = |v: Val| Ok(Some(vec![v]));
        let get = |i: usize| ins.get(i).cloned().ok_or_else(|| format!("input {i} is missing"));
        match n.op.as_str() {
            "Conv2D" | "DepthwiseConv2dNative" => {
                self.conv(n, name, get(0)?, get(1)?).map(|o| o.map(|t| vec![Val::T(t)]))
            }
            // Keras's Conv2DTranspose: input_sizes, filter [kh, kw, out, in], the input.
            "Conv2DBackpropInput" => {
                if attr_s(n, "data_format").is_some_and(|f| f != "NHWC") {
                    return Ok(None);
                }
                // input_sizes: Keras computes it from the input's (dynamic) batch; height and
                // width must be known.
                let sz: Vec<i64> = match get(0)? {
                    Val::C(c) => c.ints().ok_or("input_sizes must be integers")?,
                    Val::Sym(v) if v.len() == 4 => v.iter().map(|d| d.unwrap_or(1)).collect(),
                    _ => return Ok(None),
                };
                let Val::C(w) = get(1)? else { return Ok(None) };
                if w.dtype != DType::F32 {
                    return Err("filters must be float32".into());
                }
                if sz.len() != 4 || w.dims.len() != 4 {
                    return Err(format!("input_sizes {sz:?} / filter {:?}", w.dims));
                }
                let s = attr_ints(n, "strides").unwrap_or_else(|| vec![1, 1, 1, 1]);
                let d = attr_ints(n, "dilations").unwrap_or_else(|| vec![1, 1, 1, 1]);
                if s.len() != 4 || s[0] != 1 || s[3] != 1 || d.iter().any(|&v| v != 1) {
                    return Ok(None);
                }
                let Some(padding) = padding(n)? else { return Ok(None) };
                let pos = |v: i64| {
                    usize::try_from(v).ok().filter(|&v| (1..=1 << 20).contains(&v)).ok_or("sizes must be positive")
                };
                // HWOI → OHWI.
                let wt = self.reordered(format!("{name}/filter"), &w, &[2, 0, 1, 3], "filter size mismatch")?;
                let x = self.materialize(&format!("{name}/x"), &get(2)?)?;
                let op = Op::TransposeConv2d(TransposeConv2d {
                    padding,
                    stride: [pos(s[1])?, pos(s[2])?],
                    output: [pos(sz[1])?, pos(sz[2])?],
                    activation: Activation::None,
                });
                one(Val::T(self.push(name, op, vec![Some(x), Some(wt)])?))
            }
            "FusedBatchNormV3" | "FusedBatchNorm" => {
                if attr_b(n, "is_training") == Some(true) {
                    return Err("batch normalization in training mode".into());
                }
                if attr_s(n, "data_format").is_some_and(|f| f != "NHWC") {
                    return Ok(None);
                }
                let c = |i: usize| match ins.get(i) {
                    Some(Val::C(c)) => c.f32s().ok_or_else(|| format!("input {i} must be float")),
                    _ => Err(format!("input {i} must be a constant")),
                };
                let (scale, offset, mean, var) = (c(1)?, c(2)?, c(3)?, c(4)?);
                let eps = attr_f(n, "epsilon").unwrap_or(1e-3);
                let s: Vec<f32> = scale.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
                let b: Vec<f32> = offset.iter().zip(&mean).zip(&s).map(|((o, m), s)| o - m * s).collect();
                let x = self.materialize(&format!("{name}/x"), &get(0)?)?;
                let st = self.materialize(&format!("{name}/scale"), &Val::C(Const::f32(vec![s.len()], &s)))?;
                let bt = self.materialize(&format!("{name}/shift"), &Val::C(Const::f32(vec![b.len()], &b)))?;
                let mul = Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::None });
                let y = self.push(&format!("{name}/scaled"), mul, vec![Some(x), Some(st)])?;
                let add = Op::Binary(Binary { kind: BinaryKind::Add, activation: Activation::None });
                let y = self.push(name, add, vec![Some(y), Some(bt)])?;
                Ok(Some(vec![Val::T(y), Val::Nothing, Val::Nothing, Val::Nothing, Val::Nothing, Val::Nothing]))
            }
            _ => {
                self.unknown_op = true;
                Ok(None)
            }
        }
    }

    pub(super) fn conv(&mut self, n: &NodeDef, name: &str, a: Val, w: Val) -> R<Option<TensorId>> {
        if attr_s(n, "data_format").is_some_and(|f| f != "NHWC") {
            return Ok(None);
        }
        let Val::C(w) = w else { return Ok(None) };
        if w.dims.len() != 4 {
            return Err(format!("filter of rank {}", w.dims.len()));
        }
        if w.dtype != DType::F32 {
            return Err("filters must be float32".into());
        }
        let s = attr_ints(n, "strides").unwrap_or_else(|| vec![1, 1, 1, 1]);
        let d = attr_ints(n, "dilations").unwrap_or_else(|| vec![1, 1, 1, 1]);
        if s.len() != 4 || d.len() != 4 || s[0] != 1 || s[3] != 1 || d[0] != 1 || d[3] != 1 {
            return Ok(None);
        }
        let pos = |v: i64| usize::try_from(v).ok().filter(|&v| v > 0).ok_or("strides and dilations must be positive");
        let (stride, dilation) = ([pos(s[1])?, pos(s[2])?], [pos(d[1])?, pos(d[2])?]);
        let mut x = self.materialize(&format!("{name}/x"), &a)?;
        let padding = match padding(n)? {
            Some(p) => p,
            None => {
                // EXPLICIT: a PAD before a VALID convolution.
                let e = attr_ints(n, "explicit_paddings").unwrap_or_default();
                if e.len() != 8 || e.iter().any(|&v| v < 0) {
                    return Err(format!("explicit_paddings {e:?}"));
                }
                let paddings = e.chunks_exact(2).map(|c| [c[0] as usize, c[1] as usize]).collect();
                x = self.push(&format!("{name}/pad"), Op::Pad(Pad { paddings }), vec![Some(x)])?;
                Padding::Valid
            }
        };
        let (kh, kw, ci, co) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
        let (op, wt) = if n.op == "Conv2D" {
            // HWIO → OHWI.
            let wt = self.reordered(format!("{name}/filter"), &w, &[3, 0, 1, 2], "filter size mismatch")?;
            (Op::Conv2d(Conv2d { padding, stride, dilation, activation: Activation::None }), wt)
        } else {
            // [kh, kw, C, M] is already [1, kh, kw, C·M] with channel c·M + m.
            let wt = self.g.add_tensor(Tensor::constant(
                format!("{name}/filter"),
                DType::F32,
                Shape::fixed(&[1, kh, kw, ci * co]),
                w.data.clone(),
            ));
            let op = DepthwiseConv2d { padding, stride, dilation, depth_multiplier: co, activation: Activation::None };
            (Op::DepthwiseConv2d(op), wt)
        };
        Ok(Some(self.push(name, op, vec![Some(x), Some(wt), None])?))
    }
}
