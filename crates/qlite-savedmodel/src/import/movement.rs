//! SavedModel → IR: Data movement: Reshape, Squeeze, ExpandDims, Transpose, ConcatV2, Pad, PadV2,
//! MirrorPad, Tile, DepthToSpace, SpaceToDepth, StridedSlice.

use super::*;

impl Im<'_> {
    /// The movement family's ops; `Ok(None)` with `unknown_op` set: not one of them.
    pub(super) fn movement_op(
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
            "DepthToSpace" | "SpaceToDepth" => {
                if attr_s(n, "data_format").is_some_and(|f| f != "NHWC") {
                    return Ok(None);
                }
                let block =
                    attr_i(n, "block_size").filter(|&b| (1..=64).contains(&b)).ok_or("block_size must be 1..64")?;
                let x = self.materialize(&format!("{name}/x"), &get(0)?)?;
                let sd = SpaceDepth { block: block as usize };
                let op = if n.op == "DepthToSpace" { Op::DepthToSpace(sd) } else { Op::SpaceToDepth(sd) };
                one(Val::T(self.push(name, op, vec![Some(x)])?))
            }
            "Tile" => {
                let Val::C(m) = get(1)? else { return Ok(None) };
                let mult = m.ints().ok_or("multiples must be integers")?;
                if mult.iter().any(|&v| !(0..=1 << 20).contains(&v)) {
                    return Err(format!("multiples {mult:?}"));
                }
                let x = self.materialize(&format!("{name}/x"), &get(0)?)?;
                let op = Op::Tile(Tile { multiples: mult.into_iter().map(|v| v as usize).collect() });
                one(Val::T(self.push(name, op, vec![Some(x)])?))
            }
            "MirrorPad" => {
                let mode = match attr_s(n, "mode").as_deref() {
                    Some("REFLECT") => MirrorMode::Reflect,
                    Some("SYMMETRIC") => MirrorMode::Symmetric,
                    m => return Err(format!("MirrorPad mode {m:?}")),
                };
                let paddings = paddings_of(&get(1)?)?;
                let x = self.materialize(&format!("{name}/x"), &get(0)?)?;
                one(Val::T(self.push(name, Op::MirrorPad(MirrorPad { paddings, mode }), vec![Some(x)])?))
            }
            "Reshape" => {
                let (a, s) = (get(0)?, get(1)?);
                let target: Vec<i64> = match &s {
                    Val::C(c) => c.ints().ok_or("Reshape shape must be integers")?,
                    Val::Sym(v) => {
                        if v.iter().filter(|d| d.is_none()).count() > 1 {
                            return Err("Reshape target has more than one unknown dimension".into());
                        }
                        v.iter().map(|d| d.unwrap_or(-1)).collect()
                    }
                    other => return Err(format!("Reshape shape is {}", describe(other))),
                };
                if let Val::C(c) = &a {
                    let dims = resolve_reshape(&c.dims, &target)?;
                    return one(Val::C(Const { dims, ..c.clone() }));
                }
                let x = self.materialize(&format!("{name}/x"), &a)?;
                one(Val::T(self.push(name, Op::Reshape(Reshape { shape: target }), vec![Some(x)])?))
            }
            "Squeeze" | "ExpandDims" => {
                let a = get(0)?;
                let dims: Vec<Option<i64>> = match &a {
                    Val::C(c) => c.dims.iter().map(|&d| Some(d as i64)).collect(),
                    Val::T(t) => self.shape(*t).dims().iter().map(|d| d.fixed().map(|v| v as i64)).collect(),
                    other => return Err(format!("{} of {}", n.op, describe(other))),
                };
                let rank = dims.len() as i64;
                let mut out = dims.clone();
                if n.op == "Squeeze" {
                    let axes = attr_ints(n, "squeeze_dims").unwrap_or_default();
                    let axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank)).collect::<R<_>>()?;
                    out = dims
                        .iter()
                        .enumerate()
                        .filter(|(i, d)| if axes.is_empty() { **d != Some(1) } else { !axes.contains(i) })
                        .map(|(_, d)| *d)
                        .collect();
                } else {
                    let ax = match get(1)? {
                        Val::C(c) => {
                            c.ints().and_then(|v| v.first().copied()).ok_or("ExpandDims axis must be an integer")?
                        }
                        other => return Err(format!("ExpandDims axis is {}", describe(&other))),
                    };
                    let at = norm_axis(ax, rank + 1)?;
                    out.insert(at, Some(1));
                }
                if let Val::C(c) = &a {
                    let dims = out.iter().map(|d| d.unwrap_or(1) as usize).collect();
                    return one(Val::C(Const { dims, ..c.clone() }));
                }
                if out.iter().filter(|d| d.is_none()).count() > 1 {
                    return Err("more than one unknown dimension".into());
                }
                let x = self.materialize(&format!("{name}/x"), &a)?;
                let shape = out.iter().map(|d| d.unwrap_or(-1)).collect();
                one(Val::T(self.push(name, Op::Reshape(Reshape { shape }), vec![Some(x)])?))
            }
            "Transpose" => {
                let (a, p) = (get(0)?, get(1)?);
                let Val::C(pc) = p else { return Err("Transpose perm must be a constant".into()) };
                let perm: Vec<usize> = pc
                    .ints()
                    .ok_or("perm must be integers")?
                    .iter()
                    .map(|&v| usize::try_from(v).map_err(|_| "negative perm entry".to_string()))
                    .collect::<R<_>>()?;
                if let Val::C(c) = &a {
                    let moved = qlite_ir::passes::transpose_bytes(&c.data, &c.dims, &perm, c.dtype.size())
                        .ok_or("bad transpose of a constant")?;
                    let dims = perm.iter().map(|&i| c.dims.get(i).copied().unwrap_or(1)).collect();
                    return one(Val::C(Const { dims, data: moved.into(), dtype: c.dtype }));
                }
                let x = self.materialize(&format!("{name}/x"), &a)?;
                one(Val::T(self.push(name, Op::Transpose(Transpose { perm }), vec![Some(x)])?))
            }
            "ConcatV2" => {
                let (axis_v, parts) = ins.split_last().ok_or("ConcatV2 without inputs")?;
                let axis = match axis_v {
                    Val::C(c) => c.ints().and_then(|v| v.first().copied()).ok_or("axis must be an integer")?,
                    other => return Err(format!("axis is {}", describe(other))),
                };
                // Shape vectors concatenated symbolically.
                if parts.iter().all(|p| {
                    matches!(p, Val::Sym(_)) || matches!(p, Val::C(c) if c.ints().is_some() && c.dims.len() == 1)
                }) {
                    let mut v = Vec::new();
                    for p in parts {
                        match p {
                            Val::Sym(s) => v.extend(s.iter().copied()),
                            Val::C(c) => v.extend(c.ints().unwrap_or_default().into_iter().map(Some)),
                            _ => {}
                        }
                    }
                    return one(sym_val(v));
                }
                let mut ts = Vec::new();
                for (i, p) in parts.iter().enumerate() {
                    ts.push(Some(self.materialize(&format!("{name}/in{i}"), p)?));
                }
                let rank = ts.first().copied().flatten().map_or(0, |t| self.shape(t).rank()) as i64;
                let op =
                    Op::Concatenation(Concatenation { axis: norm_axis(axis, rank)?, activation: Activation::None });
                one(Val::T(self.push(name, op, ts)?))
            }
            "Pad" | "PadV2" => {
                // PadV2 with a value other than 0: the value is the IR Pad's input 1 (PADV2).
                let value = match (n.op.as_str(), ins.get(2)) {
                    ("PadV2", Some(Val::C(c))) if c.f32s().is_some_and(|v| v.iter().any(|&x| x != 0.0)) => {
                        let v = c.f32s().unwrap_or_default();
                        if v.len() != 1 {
                            return Ok(None);
                        }
                        Some(self.g.add_tensor(Tensor::constant(
                            format!("{name}/value"),
                            DType::F32,
                            Shape::fixed(&[]),
                            f32_bytes(&v),
                        )))
                    }
                    ("PadV2", Some(Val::C(_))) | ("Pad", _) => None,
                    _ => return Ok(None),
                };
                let paddings = paddings_of(&get(1)?)?;
                let x = self.materialize(&format!("{name}/x"), &get(0)?)?;
                let mut inputs = vec![Some(x)];
                if value.is_some() {
                    inputs.push(value);
                }
                one(Val::T(self.push(name, Op::Pad(Pad { paddings }), inputs)?))
            }
            "StridedSlice" => self.strided_slice(n, ins).map(|v| v.map(|v| vec![v])),
            _ => {
                self.unknown_op = true;
                Ok(None)
            }
        }
    }

    /// StridedSlice on a shape vector (the Keras Reshape / Flatten pattern) or a constant.
    pub(super) fn strided_slice(&mut self, n: &NodeDef, ins: &[Val]) -> R<Option<Val>> {
        let ints = |i: usize| match ins.get(i) {
            Some(Val::C(c)) => c.ints().ok_or_else(|| format!("input {i} must be integers")),
            _ => Err(format!("input {i} must be a constant")),
        };
        let (begin, end, strides) = (ints(1)?, ints(2)?, ints(3)?);
        let m = |k: &str| attr_i(n, k).unwrap_or(0);
        if let Some(Val::T(x)) = ins.first() {
            // A slice of a run-time tensor (Keras's Cropping2D): the STRIDED_SLICE op.
            let rank = self.shape(*x).rank();
            if m("ellipsis_mask") != 0 || m("new_axis_mask") != 0 || begin.len() > rank {
                return Ok(None);
            }
            let masks = TfSliceMasks {
                begin: m("begin_mask"),
                end: m("end_mask"),
                shrink: m("shrink_axis_mask"),
                ..TfSliceMasks::default()
            };
            let slice = StridedSlice::from_tf(rank, &begin, &end, &strides, masks)?;
            let name = n.name.clone();
            return Ok(Some(Val::T(self.push(&name, Op::StridedSlice(slice), vec![Some(*x)])?)));
        }
        if m("ellipsis_mask") != 0
            || m("new_axis_mask") != 0
            || begin.len() != 1
            || end.len() != 1
            || strides.len() != 1
        {
            return Ok(None);
        }
        let v: Vec<Option<i64>> = match ins.first() {
            Some(Val::Sym(s)) => s.clone(),
            Some(Val::C(c)) if c.dims.len() == 1 => match c.ints() {
                Some(v) => v.into_iter().map(Some).collect(),
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        // The shared shape arithmetic (qlite_ir::sym): run-time entries as anonymous dims.
        let dims: Vec<SymDim> = v.iter().map(|d| d.map_or(SymDim::Runtime, SymDim::Known)).collect();
        let axis = SliceAxis {
            begin: begin[0],
            end: end[0],
            stride: strides[0],
            begin_mask: m("begin_mask") & 1 != 0,
            end_mask: m("end_mask") & 1 != 0,
            shrink: m("shrink_axis_mask") & 1 != 0,
        };
        let out: Vec<Option<i64>> = match sym::strided_slice(&dims, axis).map_err(|e| e.to_string())? {
            SymVal::Scalar(d) => {
                return Ok(Some(match d.known() {
                    Some(k) => Val::C(Const::i64(vec![], &[k])),
                    None => Val::SymScalar(None),
                }));
            }
            SymVal::Vector(v) => v.iter().map(|d| d.known()).collect(),
        };
        if out.iter().all(Option::is_some) {
            let c: Vec<i64> = out.iter().flatten().copied().collect();
            return Ok(Some(Val::C(Const::i64(vec![c.len()], &c))));
        }
        Ok(Some(Val::Sym(out)))
    }
}
