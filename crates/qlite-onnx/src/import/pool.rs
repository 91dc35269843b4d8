//! ONNX → IR: MaxPool, AveragePool, GlobalAveragePool, ReduceMean and ReduceSum.

use super::*;

impl Importer {
    /// The pool family's ops; `Ok(None)`: `op_type` is not one of them.
    pub(super) fn pool_op(&mut self, n: &NodeProto, op_type: &str, name: &str) -> R<Option<bool>> {
        match op_type {
            "MaxPool" | "AveragePool" => return self.pool(n, name, op_type).map(Some),
            "GlobalAveragePool" => {
                let x = self.input(n, 0)?;
                if self.shape_of(x).rank() != 4 {
                    return Ok(Some(false));
                }
                let y = self.push(name, Op::Mean(Mean { axes: vec![2, 3], keep_dims: true }), vec![Some(x)])?;
                self.output(n, y);
            }
            "ReduceMean" | "ReduceSum" => {
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                let axes_input = if op_type == "ReduceSum" { 13 } else { 18 };
                let axes = if self.opset >= axes_input { self.const_ints(n, 1, "axes")? } else { attr_ints(n, "axes") };
                if axes.as_ref().is_none_or(|a| a.is_empty()) && attr_i(n, "noop_with_empty_axes", 0) != 0 {
                    self.alias(n, Val::Tensor(x));
                    return Ok(Some(true));
                }
                let mut ax: Vec<usize> = match axes {
                    Some(a) if !a.is_empty() => a.iter().map(|&v| norm_axis(v, rank)).collect::<R<_>>()?,
                    _ => (0..rank).collect(),
                };
                ax.sort_unstable();
                ax.dedup();
                let keep = attr_i(n, "keepdims", 1) != 0;
                let attrs = Mean { axes: ax, keep_dims: keep };
                let op = if op_type == "ReduceSum" { Op::Sum(attrs) } else { Op::Mean(attrs) };
                let y = self.push(name, op, vec![Some(x)])?;
                self.output(n, y);
            }
            _ => return Ok(None),
        }
        Ok(Some(true))
    }

    pub(super) fn pool(&mut self, n: &NodeProto, name: &str, op_type: &str) -> R<bool> {
        let x = self.input(n, 0)?;
        let xs = self.shape_of(x);
        let k = attr_ints(n, "kernel_shape").unwrap_or_default();
        if k.iter().any(|&v| v > MAX_WINDOW) {
            return Err(format!("kernel_shape {k:?} is larger than {MAX_WINDOW}"));
        }
        if xs.rank() != 4 || k.len() != 2 || k.iter().any(|&v| v < 1) {
            return Ok(false);
        }
        let ceil_mode = attr_i(n, "ceil_mode", 0) != 0;
        if attr_ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Ok(false);
        }
        let s = attr_ints(n, "strides").unwrap_or_else(|| vec![1, 1]);
        if s.len() != 2 || s.iter().any(|&v| !(1..=MAX_WINDOW).contains(&v)) {
            return Err(format!("strides {s:?} must be two values in [1, {MAX_WINDOW}]"));
        }
        let filter = [k[0] as usize, k[1] as usize];
        let stride = [s[0] as usize, s[1] as usize];
        let hwd = [xs.dim(2).unwrap_or(Dim::Fixed(1)), xs.dim(3).unwrap_or(Dim::Fixed(1))];
        let (mut padding, explicit) = window_padding(n, hwd, filter, stride, [1, 1])?;
        let kind = if op_type == "MaxPool" { PoolKind::Max } else { PoolKind::Average };
        let include_pad = kind == PoolKind::Average && attr_i(n, "count_include_pad", 0) != 0;
        if (ceil_mode || include_pad) && hwd.contains(&Dim::Dynamic) {
            return Err(format!(
                "{op_type} with ceil_mode or count_include_pad on {xs}: the padding depends on a size known only at run time (fix it with --input-shape)"
            ));
        }
        let hw = hwd.map(|d| d.fixed().unwrap_or(1));
        if n.output.len() > 1 {
            return Ok(false);
        }
        // TFLite pools pad implicitly (SAME) and leave the padding out of every window. Other
        // paddings are an explicit zero PAD before a VALID pool, exact when zeros are what the
        // window should see: an average pool with count_include_pad, or a max pool over
        // values known to be >= 0 (the output of a ReLU, as in ResNet / VGG / SqueezeNet).
        let mut pads = explicit;
        if include_pad && padding == Padding::Same && pads.is_none() {
            pads = Some(same_pads(hw, filter, stride));
        }
        let declared = pads;
        if ceil_mode {
            let p = pads.get_or_insert(match padding {
                Padding::Same => same_pads(hw, filter, stride),
                Padding::Valid => [0; 4],
            });
            for i in 0..2 {
                let padded = hw[i] + p[i] + p[i + 2];
                if padded < filter[i] {
                    return Err(format!("kernel {filter:?} is larger than the padded input"));
                }
                let mut out = (padded - filter[i]).div_ceil(stride[i]) + 1;
                // The last window must start inside the input or its leading padding.
                if (out - 1) * stride[i] >= hw[i] + p[i] {
                    out -= 1;
                }
                p[i + 2] += ((out - 1) * stride[i] + filter[i]).saturating_sub(padded);
            }
        }
        // An average pool over a zero-padded input divides by the full window; where ONNX
        // divides by fewer elements (padding excluded, or windows cut by ceil_mode), a constant
        // per-position factor `window / count` corrects it.
        let mut correction: Option<(Vec<f32>, [usize; 2])> = None;
        if let Some(p) = pads {
            if kind == PoolKind::Max && !self.nonneg.contains(&x) && p != [0; 4] {
                return Ok(false);
            }
            if kind == PoolKind::Average && p != [0; 4] {
                if hwd.contains(&Dim::Dynamic) {
                    return Err(format!(
                        "AveragePool with explicit pads on {xs}: how many elements each window averages depends on a size known only at run time (fix it with --input-shape)"
                    ));
                }
                let d = declared.unwrap_or([0; 4]);
                let outs = [0, 1].map(|i| (hw[i] + p[i] + p[i + 2]).saturating_sub(filter[i]) / stride[i] + 1);
                if outs[0].saturating_mul(outs[1]) > 1 << 24 {
                    return Err(format!("an average pool output of {}x{} is too large", outs[0], outs[1]));
                }
                let counts = |i: usize| -> Vec<usize> {
                    let out = outs[i];
                    (0..out)
                        .map(|o| {
                            let start = (o * stride[i]) as isize - p[i] as isize;
                            let end = start + filter[i] as isize;
                            let (lo, hi) = if include_pad {
                                (-(d[i] as isize), (hw[i] + d[i + 2]) as isize)
                            } else {
                                (0, hw[i] as isize)
                            };
                            (end.min(hi) - start.max(lo)).max(1) as usize
                        })
                        .collect()
                };
                let (ch, cw) = (counts(0), counts(1));
                let full = (filter[0] * filter[1]) as f32;
                let map: Vec<f32> = ch.iter().flat_map(|&a| cw.iter().map(move |&b| full / (a * b) as f32)).collect();
                if map.iter().any(|&v| v != 1.0) {
                    correction = Some((map, [ch.len(), cw.len()]));
                }
            }
        }
        let mut t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
        if let Some(p) = pads.filter(|p| *p != [0; 4]) {
            t = self.push(
                &format!("{name}/pad"),
                Op::Pad(Pad { paddings: vec![[0, 0], [p[0], p[2]], [p[1], p[3]], [0, 0]] }),
                vec![Some(t)],
            )?;
            padding = Padding::Valid;
        } else if pads.is_some() {
            padding = Padding::Valid;
        }
        let y = self.push(
            &format!("{name}/nhwc"),
            Op::Pool2d(Pool2d { kind, filter, stride, padding, activation: Activation::None }),
            vec![Some(t)],
        )?;
        let y = match correction {
            Some((map, [oh, ow])) => {
                let c =
                    self.new_const(&format!("{name}/count_correction"), DType::F32, &[1, oh, ow, 1], f32_bytes(&map));
                self.push(
                    &format!("{name}/corrected"),
                    Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::None }),
                    vec![Some(y), Some(c)],
                )?
            }
            None => y,
        };
        let back = self.transpose(name, y, vec![0, 3, 1, 2])?;
        if kind == PoolKind::Max && self.nonneg.contains(&x) {
            self.nonneg.insert(back);
        }
        self.output(n, back);
        Ok(true)
    }
}
