//! ONNX → IR: Conv, ConvTranspose and BatchNormalization (NCHW → NHWC around the IR op), and the
//! lifting of 1-D Conv / MaxPool / AveragePool to 2-D.

use super::*;

impl Importer {
    /// The conv family's ops; `Ok(None)`: `op_type` is not one of them.
    pub(super) fn conv_op(&mut self, n: &NodeProto, op_type: &str, name: &str) -> R<Option<bool>> {
        match op_type {
            "Conv" | "MaxPool" | "AveragePool" if self.input(n, 0).map(|x| self.shape_of(x).rank()) == Ok(3) => {
                self.lift_1d(n, name, op_type).map(Some)
            }
            "Conv" => self.conv(n, name).map(Some),
            "ConvTranspose" => self.conv_transpose(n, name).map(Some),
            "BatchNormalization" => self.batch_norm(n, name).map(Some),
            _ => Ok(None),
        }
    }

    /// Conv (2-D): NCHW → Transpose → Conv2d / DepthwiseConv2d (NHWC) → Transpose → NCHW.
    pub(super) fn conv(&mut self, n: &NodeProto, name: &str) -> R<bool> {
        let x = self.input(n, 0)?;
        let xs = self.shape_of(x);
        let wname = n.input.get(1).cloned().unwrap_or_default();
        let Some(w) = self.constant(&wname).filter(|c| c.dims.len() == 4) else { return Ok(false) };
        if xs.rank() != 4 {
            return Ok(false);
        }
        if w.dtype != DType::F32 {
            return Err("Conv weights must be float".into());
        }
        let (o, ig, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
        let group = attr_i(n, "group", 1).max(1) as usize;
        let strides = attr_ints(n, "strides").unwrap_or_else(|| vec![1, 1]);
        let dil = attr_ints(n, "dilations").unwrap_or_else(|| vec![1, 1]);
        if strides.len() != 2 || dil.len() != 2 || strides.iter().chain(&dil).any(|&v| !(1..=MAX_WINDOW).contains(&v)) {
            return Err(format!("strides {strides:?} / dilations {dil:?} must be two values in [1, {MAX_WINDOW}]"));
        }
        let (stride, dilation) = ([strides[0] as usize, strides[1] as usize], [dil[0] as usize, dil[1] as usize]);
        let c = xs.dim(1).and_then(|d| d.fixed()).ok_or("Conv needs a known channel count")?;
        let hw = [xs.dim(2).unwrap_or(Dim::Fixed(1)), xs.dim(3).unwrap_or(Dim::Fixed(1))];
        let (padding, explicit) = window_padding(n, hw, [kh, kw], stride, dilation)?;
        let mut t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
        if let Some(p) = explicit {
            t = self.push(
                &format!("{name}/pad"),
                Op::Pad(Pad { paddings: vec![[0, 0], [p[0], p[2]], [p[1], p[3]], [0, 0]] }),
                vec![Some(t)],
            )?;
        }
        let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(bn) => {
                let b = self.constant(bn).and_then(|c| c.f32s()).ok_or("Conv bias must be a float constant")?;
                Some(self.new_const(bn, DType::F32, &[o], f32_bytes(&b)))
            }
            None => None,
        };
        let (op, wt, axis) = if ig * group == c && o % group == 0 && !(group == c && ig == 1 && group > 1) {
            // Plain or grouped (CONV_2D infers the groups from input / filter depth).
            // OIHW → OHWI, from the file's bytes into the constant's, in one pass.
            let ohwi = qlite_ir::passes::transpose_bytes(&w.data, &[o, ig, kh, kw], &[0, 2, 3, 1], 4)
                .ok_or("Conv weight size mismatch")?;
            let wt = self.new_const(&wname, DType::F32, &[o, kh, kw, ig], Bytes::from(ohwi));
            (Op::Conv2d(Conv2d { padding, stride, dilation, activation: Activation::None }), wt, 0)
        } else if group == c && ig == 1 && o % c == 0 {
            // Depthwise: [C*M, 1, kh, kw] → [1, kh, kw, C*M].
            let dw = qlite_ir::passes::transpose_bytes(&w.data, &[o, kh * kw], &[1, 0], 4)
                .ok_or("Conv weight size mismatch")?;
            let wt = self.new_const(&wname, DType::F32, &[1, kh, kw, o], Bytes::from(dw));
            (
                Op::DepthwiseConv2d(DepthwiseConv2d {
                    padding,
                    stride,
                    dilation,
                    depth_multiplier: o / c,
                    activation: Activation::None,
                }),
                wt,
                3,
            )
        } else {
            return Ok(false);
        };
        // The file's OIHW bytes are read for the last time (mapped pages can go).
        qlite_ir::hint::constant_consumed(&w.data);
        let y = self.push(&format!("{name}/nhwc"), op, vec![Some(t), Some(wt), bias])?;
        let conv_node = self.g.nodes().len() - 1;
        let back = self.transpose(name, y, vec![0, 3, 1, 2])?;
        if let Some(out) = n.output.first() {
            self.convs.insert(out.clone(), (conv_node, wt, bias, axis));
        }
        self.output(n, back);
        Ok(true)
    }

    /// ConvTranspose (2-D, one group, no dilation): TRANSPOSE_CONV with VALID padding over at
    /// least the whole scatter, `max(pad_begin + out, (in − 1)·s + k)` rows and columns (VALID
    /// adds no padding before, LiteRT wants that size to give back the input's, and what lies
    /// past the scatter, ONNX's `output_padding`, is the bias alone in both), then the window
    /// `[pad_begin, pad_begin + out)` cut by a STRIDED_SLICE.
    pub(super) fn conv_transpose(&mut self, n: &NodeProto, name: &str) -> R<bool> {
        let x = self.input(n, 0)?;
        let xs = self.shape_of(x);
        let wname = n.input.get(1).cloned().unwrap_or_default();
        let Some(w) = self.constant(&wname).filter(|c| c.dims.len() == 4) else { return Ok(false) };
        if xs.rank() != 4 || attr_i(n, "group", 1) != 1 {
            return Ok(false);
        }
        if attr_ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Ok(false);
        }
        let wv = w.f32s().ok_or("ConvTranspose weights must be float")?;
        let (ic, o, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
        let strides = attr_ints(n, "strides").unwrap_or_else(|| vec![1, 1]);
        if strides.len() != 2 || strides.iter().any(|&v| !(1..=MAX_WINDOW).contains(&v)) {
            return Err(format!("strides {strides:?} must be two values in [1, {MAX_WINDOW}]"));
        }
        let stride = [strides[0] as usize, strides[1] as usize];
        let (Some(ih), Some(iw)) = (xs.dim(2).and_then(|d| d.fixed()), xs.dim(3).and_then(|d| d.fixed())) else {
            return Ok(false);
        };
        if xs.dim(1).and_then(|d| d.fixed()) != Some(ic) {
            return Err(format!("ConvTranspose input {xs} and weights {:?} disagree on channels", w.dims));
        }
        let op_pad = attr_ints(n, "output_padding").unwrap_or_else(|| vec![0, 0]);
        if op_pad.len() != 2 || op_pad.iter().any(|&p| !(0..MAX_WINDOW).contains(&p)) {
            return Err(format!("output_padding {op_pad:?} is invalid"));
        }
        let full = [(ih - 1) * stride[0] + kh, (iw - 1) * stride[1] + kw];
        let auto = attr_s(n, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        // pads [top, left, bottom, right]
        let pads: [i64; 4] = match (attr_ints(n, "output_shape"), auto.as_str()) {
            (Some(os), a) if os.len() >= 2 => {
                let out = [os[os.len() - 2], os[os.len() - 1]];
                let mut p = [0i64; 4];
                for i in 0..2 {
                    let total = full[i] as i64 + op_pad[i] - out[i];
                    let (begin, end) =
                        if a == "SAME_UPPER" { (total / 2, total - total / 2) } else { (total - total / 2, total / 2) };
                    p[i] = begin;
                    p[i + 2] = end;
                }
                p
            }
            (_, "SAME_UPPER" | "SAME_LOWER") => {
                let mut p = [0i64; 4];
                for i in 0..2 {
                    let total = full[i] as i64 + op_pad[i] - ([ih, iw][i] * stride[i]) as i64;
                    let (begin, end) = if auto == "SAME_UPPER" {
                        (total / 2, total - total / 2)
                    } else {
                        (total - total / 2, total / 2)
                    };
                    p[i] = begin;
                    p[i + 2] = end;
                }
                p
            }
            _ => {
                let p = attr_ints(n, "pads").unwrap_or_else(|| vec![0; 4]);
                let &[a, b, c, d] = p.as_slice() else { return Err(format!("pads {p:?} must have 4 values")) };
                [a, b, c, d]
            }
        };
        if pads.iter().any(|&p| p < 0) {
            return Ok(false);
        }
        let out = [0, 1].map(|i| full[i] as i64 + op_pad[i] - pads[i] - pads[i + 2]);
        if out.iter().any(|&v| v < 1) {
            return Err(format!("ConvTranspose output {out:?} is empty"));
        }
        // LiteRT requires the VALID output to give back the input size: at least the full scatter.
        let scatter = [0, 1].map(|i| ((pads[i] + out[i]) as usize).max(full[i]));
        // IOHW → OHWI
        let ohwi = qlite_ir::passes::transpose_bytes(&f32_bytes(&wv), &[ic, o, kh, kw], &[1, 2, 3, 0], 4)
            .ok_or("ConvTranspose weights do not match their shape")?;
        let wt = self.new_const(&wname, DType::F32, &[o, kh, kw, ic], ohwi.into());
        let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(bn) => {
                let b =
                    self.constant(bn).and_then(|c| c.f32s()).ok_or("ConvTranspose bias must be a float constant")?;
                Some(self.new_const(bn, DType::F32, &[o], f32_bytes(&b)))
            }
            None => None,
        };
        let t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
        let op = Op::TransposeConv2d(TransposeConv2d {
            padding: Padding::Valid,
            stride,
            output: scatter,
            activation: Activation::None,
        });
        let mut y = self.push(&format!("{name}/nhwc"), op, vec![Some(t), Some(wt), bias])?;
        if (0..2).any(|i| pads[i] > 0 || (pads[i] + out[i]) as usize != scatter[i]) {
            let mut axes = vec![SliceDim::ALL; 4];
            for i in 0..2 {
                axes[i + 1] = SliceDim { begin: Some(pads[i]), end: Some(pads[i] + out[i]), stride: 1, shrink: false };
            }
            y = self.push(&format!("{name}/crop"), Op::StridedSlice(StridedSlice { axes }), vec![Some(y)])?;
        }
        let back = self.transpose(name, y, vec![0, 3, 1, 2])?;
        self.output(n, back);
        Ok(true)
    }

    /// BatchNormalization (inference): folded into the preceding Conv / Gemm when that is its
    /// only consumer, else `x · scale + shift` with per-channel constants.
    pub(super) fn batch_norm(&mut self, n: &NodeProto, name: &str) -> R<bool> {
        let first = n.input.first().cloned().unwrap_or_default();
        let get = |i: usize| n.input.get(i).and_then(|s| self.constant(s)).and_then(|c| c.f32s());
        let (Some(gamma), Some(beta), Some(mean), Some(var)) = (get(1), get(2), get(3), get(4)) else {
            return Ok(false);
        };
        let eps = attr_f(n, "epsilon", 1e-5);
        let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
        let shift: Vec<f32> = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        let ch = scale.len();
        if let Some(&(node, w, b, axis)) = self.convs.get(&first)
            && self.uses.get(&first).copied() == Some(1)
        {
            let wt = self.g.tensor(w).cloned().ok_or("weights vanished")?;
            let dims = wt.shape.to_fixed().ok_or("weights shape")?;
            if dims.get(axis) == Some(&ch) {
                let mut wv = read_f32s(wt.data.as_ref().ok_or("weights data")?);
                let stride: usize = dims[axis + 1..].iter().product();
                for (i, v) in wv.iter_mut().enumerate() {
                    *v *= scale[(i / stride) % ch];
                }
                let bv: Vec<f32> = match b.and_then(|b| self.g.tensor(b)).and_then(|t| t.data.as_ref()) {
                    Some(d) => read_f32s(d).iter().zip(&scale).zip(&shift).map(|((b, s), sh)| b * s + sh).collect(),
                    None => shift.clone(),
                };
                // The weights tensor is this convolution's own (made by `conv`): its data is
                // replaced, so the unfolded values are freed now, not after the import.
                let folded = f32_bytes(&wv);
                drop(wv);
                if let Some(t) = self.g.tensor_mut(w) {
                    t.name = format!("{}/bn", wt.name);
                    t.data = Some(folded);
                }
                drop(wt);
                let nw = w;
                let nb = self.new_const(&format!("{name}/bias"), DType::F32, &[ch], f32_bytes(&bv));
                if let Some(nd) = self.g.node_mut(qlite_ir::NodeId::from_index(node)) {
                    nd.inputs[1] = Some(nw);
                    if nd.inputs.len() < 3 {
                        nd.inputs.push(Some(nb));
                    } else {
                        nd.inputs[2] = Some(nb);
                    }
                }
                let v = self.vals.get(&first).cloned().ok_or("input missing")?;
                self.alias(n, v);
                return Ok(true);
            }
        }
        let x = self.input(n, 0)?;
        let rank = self.shape_of(x).rank();
        let mut dims = vec![1usize; rank];
        if rank >= 2 {
            dims[1] = ch;
        }
        let s = self.new_const(&format!("{name}/scale"), DType::F32, &dims, f32_bytes(&scale));
        let sh = self.new_const(&format!("{name}/shift"), DType::F32, &dims, f32_bytes(&shift));
        let m = self.push(
            &format!("{name}/mul"),
            Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::None }),
            vec![Some(x), Some(s)],
        )?;
        let y = self.push(
            name,
            Op::Binary(Binary { kind: BinaryKind::Add, activation: Activation::None }),
            vec![Some(m), Some(sh)],
        )?;
        self.output(n, y);
        Ok(true)
    }

    /// A 1-D Conv / pool on [N, C, W]: run the 2-D form on [N, C, 1, W] between Reshapes.
    pub(super) fn lift_1d(&mut self, n: &NodeProto, name: &str, op_type: &str) -> R<bool> {
        let x = self.input(n, 0)?;
        let xs = self.shape_of(x);
        let fixed = |i: usize| xs.dim(i).and_then(|d| d.fixed()).map(|v| v as i64);
        let (Some(c), Some(w)) = (fixed(1), fixed(2)) else { return Ok(false) };
        let batch = fixed(0).unwrap_or(-1);
        let x2 =
            self.push(&format!("{name}/to_2d"), Op::Reshape(Reshape { shape: vec![batch, c, 1, w] }), vec![Some(x)])?;
        let mut n2 = n.clone();
        let x2name = format!("{name}/input_2d");
        self.vals.insert(x2name.clone(), Val::Tensor(x2));
        n2.input[0] = x2name;
        if op_type == "Conv" {
            let wname = n.input.get(1).cloned().unwrap_or_default();
            let Some(wc) = self.constant(&wname).filter(|c| c.dims.len() == 3) else { return Ok(false) };
            let w2name = format!("{name}/weights_2d");
            let dims = vec![wc.dims[0], wc.dims[1], 1, wc.dims[2]];
            self.vals.insert(w2name.clone(), Val::Const(ConstVal { dims, ..wc }));
            n2.input[1] = w2name;
        }
        for a in &mut n2.attribute {
            match a.name.as_deref() {
                Some("kernel_shape" | "strides" | "dilations") if a.ints.len() == 1 => a.ints.insert(0, 1),
                Some("pads") if a.ints.len() == 2 => a.ints = vec![0, a.ints[0], 0, a.ints[1]],
                _ => {}
            }
        }
        let y2name = format!("{name}/output_2d");
        n2.output = vec![y2name.clone()];
        let ok = if op_type == "Conv" { self.conv(&n2, name)? } else { self.pool(&n2, name, op_type)? };
        if !ok {
            return Ok(false);
        }
        let y2 = self.tensor(&y2name)?;
        let ys = self.shape_of(y2);
        let fixed = |i: usize| ys.dim(i).and_then(|d| d.fixed()).map(|v| v as i64);
        let (Some(o), Some(wo)) = (fixed(1), fixed(3)) else { return Err(format!("output shape {ys} is not static")) };
        let y =
            self.push(&format!("{name}/to_1d"), Op::Reshape(Reshape { shape: vec![batch, o, wo] }), vec![Some(y2)])?;
        self.output(n, y);
        Ok(true)
    }
}
