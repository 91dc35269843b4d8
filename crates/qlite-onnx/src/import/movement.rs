//! ONNX → IR: Data movement: Flatten, Reshape, Transpose, Concat, Squeeze, Unsqueeze, DepthToSpace,
//! SpaceToDepth, Tile, Pad, Gather and Slice, over constants, symbolic shapes and run-time tensors.

use super::*;

impl Importer {
    /// The movement family's ops; `Ok(None)`: `op_type` is not one of them.
    pub(super) fn movement_op(&mut self, n: &NodeProto, op_type: &str, name: &str) -> R<Option<bool>> {
        let first = n.input.first().cloned().unwrap_or_default();
        match op_type {
            "Flatten" => {
                let x = self.input(n, 0)?;
                let s = self.shape_of(x);
                let axis = norm_axis(attr_i(n, "axis", 1), s.rank() + 1)?;
                let prod = |d: &[Dim]| d.iter().try_fold(1usize, |a, d| d.fixed().map(|v| a * v));
                let target = match (prod(&s.dims()[..axis]), prod(&s.dims()[axis..])) {
                    (_, Some(inner)) => vec![-1, inner as i64],
                    (Some(outer), None) => vec![outer as i64, -1],
                    (None, None) => {
                        return Err(format!("Flatten needs static dimensions on one side of axis {axis}, got {s}"));
                    }
                };
                let y = self.push(name, Op::Reshape(Reshape { shape: target }), vec![Some(x)])?;
                self.output(n, y);
            }
            "Reshape" if n.input.get(1).is_some_and(|t| self.is_sym(t)) => {
                let x = self.input(n, 0)?;
                let xs = sym::shape_of(&self.shape_of(x), x.index());
                let target = self.shape_value(&n.input[1]).map(|v| v.elements()).unwrap_or_default();
                // ONNX's 0 copies the input's dim (unless allowzero).
                let allowzero = attr_i(n, "allowzero", 0) != 0;
                let target: Vec<SymDim> = target
                    .iter()
                    .enumerate()
                    .map(|(i, d)| match d {
                        SymDim::Known(0) if !allowzero => xs.get(i).copied().unwrap_or(*d),
                        _ => *d,
                    })
                    .collect();
                let target = sym::reshape_target(&xs, &target).map_err(|e| e.to_string())?;
                let y = self.push(name, Op::Reshape(Reshape { shape: target }), vec![Some(x)])?;
                self.output(n, y);
            }
            "Reshape" => {
                let shape = self
                    .const_ints(n, 1, "Reshape shape")?
                    .or_else(|| attr_ints(n, "shape"))
                    .ok_or("Reshape needs a shape")?;
                let allowzero = attr_i(n, "allowzero", 0) != 0;
                if let Some(c) = self.constant(&first) {
                    // Folded at import time (shape arithmetic).
                    let target = resolve_reshape(&c.dims, &shape, allowzero)?;
                    self.alias(n, Val::Const(ConstVal { dims: target, ..c }));
                    return Ok(Some(true));
                }
                let x = self.input(n, 0)?;
                let s = self.shape_of(x);
                let mut target: Vec<i64> = shape.clone();
                for (i, d) in target.iter_mut().enumerate() {
                    if *d == 0 && !allowzero {
                        *d = s.dim(i).and_then(|d| d.fixed()).map(|v| v as i64).unwrap_or(-1);
                    }
                }
                let y = self.push(name, Op::Reshape(Reshape { shape: target }), vec![Some(x)])?;
                self.output(n, y);
            }
            "Transpose" => {
                if let Some(c) = self.constant(&first) {
                    // A transposed initializer (older PyTorch exports of Linear): fold it.
                    let rank = c.dims.len();
                    let perm: Vec<usize> = attr_ints(n, "perm")
                        .map(|p| p.iter().map(|&a| a as usize).collect())
                        .unwrap_or_else(|| (0..rank).rev().collect());
                    let mut seen = vec![false; rank];
                    if perm.len() != rank || perm.iter().any(|&p| p >= rank || std::mem::replace(&mut seen[p], true)) {
                        return Err(format!("perm {perm:?} is not a permutation of rank {rank}"));
                    }
                    let size = c.dtype.size();
                    let dims: Vec<usize> = perm.iter().map(|&p| c.dims[p]).collect();
                    let mut in_strides = vec![1usize; rank];
                    for i in (0..rank.saturating_sub(1)).rev() {
                        in_strides[i] = in_strides[i + 1] * c.dims[i + 1];
                    }
                    let total: usize = dims.iter().product();
                    let mut out = Vec::with_capacity(total * size);
                    let mut idx = vec![0usize; rank];
                    for _ in 0..total {
                        let src: usize = (0..rank).map(|k| idx[k] * in_strides[perm[k]]).sum();
                        out.extend_from_slice(&c.data[src * size..(src + 1) * size]);
                        for k in (0..rank).rev() {
                            idx[k] += 1;
                            if idx[k] < dims[k] {
                                break;
                            }
                            idx[k] = 0;
                        }
                    }
                    self.alias(n, Val::Const(ConstVal { dtype: c.dtype, dims, data: Bytes::from(out) }));
                    return Ok(Some(true));
                }
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                let perm = attr_ints(n, "perm")
                    .map(|p| p.iter().map(|&a| a as usize).collect())
                    .unwrap_or_else(|| (0..rank).rev().collect());
                let y = self.transpose(name, x, perm)?;
                self.output(n, y);
            }
            "Concat" if n.input.iter().any(|i| self.is_sym(i)) => {
                let parts = n
                    .input
                    .iter()
                    .map(|i| self.shape_value(i).ok_or_else(|| format!("Concat of shape values: {i:?} is not one")))
                    .collect::<R<Vec<_>>>()?;
                self.alias(n, Val::Sym(sym::concat(&parts)));
            }
            "Concat" => {
                let consts: Option<Vec<ConstVal>> = n.input.iter().map(|i| self.constant(i)).collect();
                if let Some(cs) = consts.filter(|cs| cs.iter().all(|c| c.dims.len() == 1 && c.dtype == DType::I64)) {
                    let v: Vec<i64> = cs.iter().flat_map(|c| c.i64s().unwrap_or_default()).collect();
                    self.alias(n, Val::Const(ints_const(&v)));
                    return Ok(Some(true));
                }
                let xs: Vec<TensorId> = (0..n.input.len()).map(|i| self.input(n, i)).collect::<R<_>>()?;
                let rank = self.shape_of(xs[0]).rank();
                let axis = norm_axis(attr_i(n, "axis", 0), rank)?;
                let y = self.push(
                    name,
                    Op::Concatenation(Concatenation { axis, activation: Activation::None }),
                    xs.into_iter().map(Some).collect(),
                )?;
                self.output(n, y);
            }
            "Squeeze" | "Unsqueeze" if self.is_sym(&first) => {
                let v = self.shape_value(&first).ok_or("missing shape value")?;
                let axes = if self.opset >= 13 { self.const_ints(n, 1, "axes")? } else { attr_ints(n, "axes") };
                let out = match (op_type, &v, axes.as_deref()) {
                    ("Unsqueeze", SymVal::Scalar(d), Some([0] | [-1])) => SymVal::Vector(vec![*d]),
                    ("Squeeze", SymVal::Vector(e), None | Some([0] | [-1])) if e.len() == 1 => SymVal::Scalar(e[0]),
                    _ => return Err(format!("{op_type} of a shape value along axes {axes:?}")),
                };
                self.alias(n, Val::Sym(out));
            }
            "Squeeze" | "Unsqueeze" => {
                let axes = if self.opset >= 13 { self.const_ints(n, 1, "axes")? } else { attr_ints(n, "axes") };
                let dims: Vec<Dim> = match self.constant(&first) {
                    Some(c) => c.dims.iter().map(|&d| Dim::Fixed(d)).collect(),
                    None => {
                        let x = self.input(n, 0)?;
                        self.shape_of(x).dims().to_vec()
                    }
                };
                let out_dims: Vec<Dim> = if op_type == "Squeeze" {
                    match axes {
                        Some(a) => {
                            let ax: Vec<usize> = a.iter().map(|&v| norm_axis(v, dims.len())).collect::<R<_>>()?;
                            if ax.iter().any(|&i| dims[i] != Dim::Fixed(1)) {
                                return Err(format!("Squeeze of axes {a:?} of {}: each must be 1", Shape::new(dims)));
                            }
                            dims.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect()
                        }
                        None if dims.contains(&Dim::Dynamic) => {
                            return Err(format!(
                                "Squeeze without axes of {}: which dimensions are 1 is known only at run time",
                                Shape::new(dims)
                            ));
                        }
                        None => dims.iter().copied().filter(|&d| d != Dim::Fixed(1)).collect(),
                    }
                } else {
                    let a = axes.ok_or("Unsqueeze needs axes")?;
                    let out_rank = dims.len() + a.len();
                    let ax: Vec<usize> = a.iter().map(|&v| norm_axis(v, out_rank)).collect::<R<_>>()?;
                    let mut it = dims.iter();
                    (0..out_rank)
                        .map(
                            |i| {
                                if ax.contains(&i) {
                                    Dim::Fixed(1)
                                } else {
                                    it.next().copied().unwrap_or(Dim::Fixed(1))
                                }
                            },
                        )
                        .collect()
                };
                if let Some(c) = self.constant(&first) {
                    let dims = out_dims.iter().map(|d| d.fixed().unwrap_or(1)).collect();
                    self.alias(n, Val::Const(ConstVal { dims, ..c }));
                    return Ok(Some(true));
                }
                // A reshape: one dimension known only at run time is its -1.
                if out_dims.iter().filter(|d| **d == Dim::Dynamic).count() > 1 {
                    return Err(format!(
                        "{op_type} to {} keeps more than one dimension known only at run time (fix them with --input-shape)",
                        Shape::new(out_dims)
                    ));
                }
                let x = self.input(n, 0)?;
                let y = self.push(
                    name,
                    Op::Reshape(Reshape {
                        shape: out_dims.iter().map(|d| d.fixed().map_or(-1, |v| v as i64)).collect(),
                    }),
                    vec![Some(x)],
                )?;
                self.output(n, y);
            }
            "DepthToSpace" | "SpaceToDepth" => {
                // ONNX is NCHW; DCR's channel order (block row, block column, channel) is
                // TensorFlow's. CRD is not.
                if op_type == "DepthToSpace" && attr_s(n, "mode").is_some_and(|m| m != "DCR") {
                    return Ok(Some(false));
                }
                let block = attr_i(n, "blocksize", 0);
                if !(1..=64).contains(&block) {
                    return Err(format!("blocksize {block} must be between 1 and 64"));
                }
                let x = self.input(n, 0)?;
                if self.shape_of(x).rank() != 4 {
                    return Ok(Some(false));
                }
                let t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
                let sd = SpaceDepth { block: block as usize };
                let op = if op_type == "DepthToSpace" { Op::DepthToSpace(sd) } else { Op::SpaceToDepth(sd) };
                let y = self.push(&format!("{name}/nhwc"), op, vec![Some(t)])?;
                let y = self.transpose(name, y, vec![0, 3, 1, 2])?;
                self.output(n, y);
            }
            "Tile" => {
                let reps = self.const_ints(n, 1, "repeats")?.ok_or("Tile needs constant repeats")?;
                let x = self.input(n, 0)?;
                if reps.len() != self.shape_of(x).rank() || reps.iter().any(|&r| !(0..=1 << 20).contains(&r)) {
                    return Err(format!("Tile repeats {reps:?} do not fit the input"));
                }
                let multiples = reps.into_iter().map(|r| r as usize).collect();
                let y = self.push(name, Op::Tile(Tile { multiples }), vec![Some(x)])?;
                self.output(n, y);
            }
            "Pad" => {
                let mode = attr_s(n, "mode").unwrap_or_else(|| "constant".into());
                if mode == "reflect" {
                    let pads = if self.opset >= 11 { self.const_ints(n, 1, "pads")? } else { attr_ints(n, "pads") }
                        .ok_or("Pad needs pads")?;
                    let x = self.input(n, 0)?;
                    let rank = self.shape_of(x).rank();
                    if pads.len() != 2 * rank || pads.iter().any(|&p| p < 0) {
                        return Ok(Some(false));
                    }
                    let paddings = (0..rank).map(|i| [pads[i] as usize, pads[i + rank] as usize]).collect();
                    let op = Op::MirrorPad(MirrorPad { paddings, mode: MirrorMode::Reflect });
                    let y = self.push(name, op, vec![Some(x)])?;
                    self.output(n, y);
                    return Ok(Some(true));
                }
                if mode != "constant" {
                    return Ok(Some(false));
                }
                let pads = if self.opset >= 11 { self.const_ints(n, 1, "pads")? } else { attr_ints(n, "pads") }
                    .ok_or("Pad needs pads")?;
                let mut val = if self.opset < 11 { attr_f(n, "value", 0.0) } else { 0.0 };
                if let Some(v) = n.input.get(2).filter(|s| !s.is_empty()) {
                    val = self
                        .constant(v)
                        .and_then(|c| c.f32s())
                        .and_then(|v| v.first().copied())
                        .ok_or("Pad value must be a constant")?;
                }
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                if pads.len() != 2 * rank || pads.iter().any(|&p| p < 0) {
                    return Ok(Some(false));
                }
                let paddings = (0..rank).map(|i| [pads[i] as usize, pads[i + rank] as usize]).collect();
                let mut inputs = vec![Some(x)];
                if val != 0.0 {
                    // PADV2: pad with the value.
                    inputs.push(Some(self.new_const(&format!("{name}/value"), DType::F32, &[], f32_bytes(&[val]))));
                }
                let y = self.push(name, Op::Pad(Pad { paddings }), inputs)?;
                self.output(n, y);
            }
            "Gather" if self.is_sym(&first) => {
                let v = self.shape_value(&first).map(|v| v.elements()).unwrap_or_default();
                if attr_i(n, "axis", 0) != 0 {
                    return Err("Gather of a shape value along an axis other than 0".into());
                }
                let idx = n.input.get(1).and_then(|i| self.constant(i)).ok_or("Gather indices must be a constant")?;
                let ix = idx.i64s().ok_or("Gather indices must be integers")?;
                self.alias(n, Val::Sym(sym::gather(&v, &ix, idx.dims.is_empty()).map_err(|e| e.to_string())?));
            }
            "Slice" if self.is_sym(&first) => {
                let v = self.shape_value(&first).map(|v| v.elements()).unwrap_or_default();
                let one = |k: usize, what: &str| -> R<Option<i64>> {
                    match self.const_ints(n, k, what)? {
                        None => Ok(None),
                        Some(v) if v.len() == 1 => Ok(Some(v[0])),
                        Some(v) => Err(format!("Slice of a shape value with {} {what}", v.len())),
                    }
                };
                if self.opset < 10 {
                    return Err("Slice of a shape value needs opset 10".into());
                }
                if one(3, "axes")?.is_some_and(|a| a != 0 && a != -1) {
                    return Err("Slice of a shape value along an axis other than 0".into());
                }
                let axis = SliceAxis {
                    begin: one(1, "starts")?.ok_or("Slice needs starts")?,
                    end: one(2, "ends")?.ok_or("Slice needs ends")?,
                    stride: one(4, "steps")?.unwrap_or(1),
                    ..Default::default()
                };
                self.alias(n, Val::Sym(sym::strided_slice(&v, axis).map_err(|e| e.to_string())?));
            }
            "Gather" if n.input.get(1).is_some_and(|s| self.constant(s).is_none()) => {
                // Run-time indices (an embedding lookup): GATHER of the data, constant or not.
                let x = self.input(n, 0)?;
                let idx = self.input(n, 1)?;
                let rank = self.shape_of(x).rank() as i64;
                let axis = attr_i(n, "axis", 0);
                if axis < -rank || axis >= rank {
                    return Err(format!("Gather axis {axis} is outside rank {rank}"));
                }
                let axis = if axis < 0 { axis + rank } else { axis } as usize;
                let y = self.push(name, Op::Gather(Gather { axis }), vec![Some(x), Some(idx)])?;
                self.output(n, y);
            }
            "Gather" if self.constant(&first).is_none() => {
                // A runtime tensor gathered at constant indices: GATHER (negative indices
                // resolved here; LiteRT refuses them).
                let Some(idx) = n.input.get(1).and_then(|s| self.constant(s)) else { return Ok(Some(false)) };
                let Some(ix) = idx.i64s() else { return Ok(Some(false)) };
                let x = self.input(n, 0)?;
                let xs = self.shape_of(x);
                let rank = xs.rank() as i64;
                let axis = attr_i(n, "axis", 0);
                if axis < -rank || axis >= rank {
                    return Err(format!("Gather axis {axis} is outside rank {rank}"));
                }
                let axis = if axis < 0 { axis + rank } else { axis } as usize;
                let Some(len) = xs.dim(axis).and_then(|d| d.fixed()) else { return Ok(Some(false)) };
                let mut resolved = Vec::with_capacity(ix.len());
                for &i in &ix {
                    let j = if i < 0 { i + len as i64 } else { i };
                    if j < 0 || j >= len as i64 {
                        return Err(format!("Gather index {i} is outside [0, {len})"));
                    }
                    resolved.push(j as i32);
                }
                let dims: Vec<usize> = idx.dims.clone();
                let indices = self.new_const(&format!("{name}/indices"), DType::I32, &dims, i32_bytes(&resolved));
                let y = self.push(name, Op::Gather(Gather { axis }), vec![Some(x), Some(indices)])?;
                self.output(n, y);
            }
            "Gather" => {
                let (Some(data), Some(idx)) = (self.constant(&first), n.input.get(1).and_then(|s| self.constant(s)))
                else {
                    return Ok(Some(false));
                };
                let (Some(d), Some(ix)) = (data.i64s(), idx.i64s()) else { return Ok(Some(false)) };
                if data.dims.len() != 1 || attr_i(n, "axis", 0) != 0 {
                    return Ok(Some(false));
                }
                let mut out = Vec::with_capacity(ix.len());
                for &i in &ix {
                    let j = if i < 0 { i + d.len() as i64 } else { i };
                    out.push(
                        *d.get(usize::try_from(j).map_err(|_| format!("index {i} out of range"))?)
                            .ok_or_else(|| format!("index {i} out of range"))?,
                    );
                }
                self.alias(
                    n,
                    Val::Const(ConstVal { dtype: DType::I64, dims: idx.dims.clone(), data: i64_bytes(&out) }),
                );
            }
            "Slice" if self.constant(&first).is_none() && !self.is_sym(&first) => {
                // A slice of a run-time tensor: STRIDED_SLICE over the listed axes.
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                let (starts, ends, axes, steps) = if self.opset >= 10 {
                    (
                        self.const_ints(n, 1, "starts")?.ok_or("Slice needs starts")?,
                        self.const_ints(n, 2, "ends")?.ok_or("Slice needs ends")?,
                        self.const_ints(n, 3, "axes")?,
                        self.const_ints(n, 4, "steps")?,
                    )
                } else {
                    (
                        attr_ints(n, "starts").ok_or("Slice needs starts")?,
                        attr_ints(n, "ends").ok_or("Slice needs ends")?,
                        attr_ints(n, "axes"),
                        None,
                    )
                };
                let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
                if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
                    return Err("Slice starts, ends, axes and steps differ in length".into());
                }
                let mut dims = vec![SliceDim::ALL; rank];
                for k in 0..starts.len() {
                    let a = norm_axis(axes[k], rank)?;
                    if steps[k] == 0 {
                        return Err("Slice step 0".into());
                    }
                    dims[a] = SliceDim { begin: Some(starts[k]), end: Some(ends[k]), stride: steps[k], shrink: false };
                }
                let y = self.push(name, Op::StridedSlice(StridedSlice { axes: dims }), vec![Some(x)])?;
                self.output(n, y);
            }
            "Slice" => {
                let Some(c) = self.constant(&first).filter(|c| c.dims.len() == 1) else { return Ok(Some(false)) };
                let v = c.i64s().ok_or("Slice of a non-integer constant")?;
                let (starts, ends) = if self.opset >= 10 {
                    (
                        self.const_ints(n, 1, "starts")?.unwrap_or_default(),
                        self.const_ints(n, 2, "ends")?.unwrap_or_default(),
                    )
                } else {
                    (attr_ints(n, "starts").unwrap_or_default(), attr_ints(n, "ends").unwrap_or_default())
                };
                let len = v.len() as i64;
                let clamp = |x: i64| if x < 0 { (x + len).max(0) } else { x.min(len) } as usize;
                let (s, e) = (clamp(*starts.first().unwrap_or(&0)), clamp(*ends.first().unwrap_or(&len)));
                let out: Vec<i64> = if s < e { v[s..e].to_vec() } else { vec![] };
                self.alias(n, Val::Const(ints_const(&out)));
            }
            _ => return Ok(None),
        }
        Ok(Some(true))
    }
}
