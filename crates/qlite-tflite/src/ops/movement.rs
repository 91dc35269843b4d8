//! Data movement: RESHAPE (and SQUEEZE / EXPAND_DIMS, read as RESHAPE), STRIDED_SLICE (and
//! SLICE, SPLIT, SPLIT_V, read as STRIDED_SLICE), TRANSPOSE, CONCATENATION, PAD / PADV2,
//! MIRROR_PAD, GATHER, TILE, DEPTH_TO_SPACE, SPACE_TO_DEPTH.

use super::*;
use qlite_ir::op::{
    Concatenation, Gather, MirrorMode, MirrorPad, Pad, Reshape, SliceDim, SpaceDepth, StridedSlice, TfSliceMasks, Tile,
    Transpose,
};

pub(crate) struct Movement;

impl Family for Movement {
    fn codes(&self) -> Codes {
        &[
            (B::RESHAPE, &["1.5.0"]),
            (B::SQUEEZE, &[]),
            (B::EXPAND_DIMS, &[]),
            (B::STRIDED_SLICE, &["1.6.0", "1.14.0", "2.1.0", "2.2.0", "2.5.0", "2.6.0"]),
            (B::SLICE, &[]),
            (B::TRANSPOSE, &["1.6.0", "1.14.0", "1.15.0", "2.3.0", "2.4.0", "2.12.0", "2.14.4", "2.22.0", "2.23.0"]),
            (B::CONCATENATION, &["1.5.0", "1.14.0", "2.3.0", "2.14.0", "2.21.0", "2.23.0"]),
            (B::PAD, &["1.5.0", "1.14.0", "2.4.0", "2.6.0", "2.20.0"]),
            (B::PADV2, &["1.9.0", "1.14.0", "2.4.0", "2.6.0"]),
            (B::MIRROR_PAD, &["1.13.1", "2.3.0"]),
            (B::GATHER, &["1.6.0", "1.14.0", "1.15.0", "2.4.0", "2.5.0"]),
            (B::TILE, &["1.10.1", "2.2.0", "2.8.0"]),
            (B::DEPTH_TO_SPACE, &["2.1.0", "2.5.0"]),
            (B::SPACE_TO_DEPTH, &["1.5.0", "1.14.0"]),
        ]
    }

    fn read(&self, cx: &mut ReadCx<'_, '_>) -> Result<Option<Op>, String> {
        let (g, op, code) = (cx.g, cx.op, cx.code);
        let op_ir = match code {
            B::RESHAPE => {
                let shape = match cx.input(1) {
                    Some(_) => cx.ints(1, "shape")?,
                    None => match op.builtin_options_as_reshape_options().and_then(|o| o.new_shape()) {
                        Some(v) => v.iter().map(i64::from).collect(),
                        None => {
                            let out = cx.outputs.first().and_then(|t| g.tensor(*t)).ok_or("output missing")?;
                            out.shape.dims().iter().map(|d| d.fixed().map_or(-1, |v| v as i64)).collect()
                        }
                    },
                };
                cx.inputs.truncate(1);
                Op::Reshape(Reshape { shape })
            }
            // Pure reshapes: read as RESHAPE to the shape they give.
            B::SQUEEZE | B::EXPAND_DIMS => {
                let x = cx.input(0).and_then(|t| g.tensor(t)).ok_or("input 0 is missing")?;
                let dims = x.shape.dims();
                let mut target: Vec<i64> = dims.iter().map(|d| d.fixed().map_or(-1, |v| v as i64)).collect();
                if code == B::SQUEEZE {
                    let listed: Vec<i64> = op
                        .builtin_options_as_squeeze_options()
                        .and_then(|o| o.squeeze_dims())
                        .map(|v| v.iter().map(i64::from).collect())
                        .unwrap_or_default();
                    let axes = listed
                        .iter()
                        .map(|&a| norm_axis(a, dims.len(), "squeeze dim"))
                        .collect::<Result<Vec<_>, _>>()?;
                    let drop = |k: usize| if axes.is_empty() { dims[k].fixed() == Some(1) } else { axes.contains(&k) };
                    if axes.iter().any(|&k| dims[k].fixed() != Some(1)) {
                        return Err(format!("squeeze of a dimension that is not 1 in {}", x.shape));
                    }
                    target = target.into_iter().enumerate().filter(|(k, _)| !drop(*k)).map(|(_, v)| v).collect();
                } else {
                    let axis = cx.ints(1, "axis")?;
                    let &[a] = axis.as_slice() else { return Err("EXPAND_DIMS axis must be one value".into()) };
                    let at = norm_axis(if a < 0 { a + 1 } else { a }, dims.len() + 1, "axis")?;
                    target.insert(at, 1);
                }
                if target.iter().filter(|&&v| v == -1).count() > 1 {
                    return Err(format!("{} with more than one run-time dimension", x.shape));
                }
                cx.inputs.truncate(1);
                Op::Reshape(Reshape { shape: target })
            }
            B::STRIDED_SLICE => {
                let rank = cx.rank0()?;
                let (begin, end, strides) = (cx.ints(1, "begin")?, cx.ints(2, "end")?, cx.ints(3, "strides")?);
                let masks =
                    op.builtin_options_as_strided_slice_options().map_or(TfSliceMasks::default(), |o| TfSliceMasks {
                        begin: o.begin_mask().into(),
                        end: o.end_mask().into(),
                        shrink: o.shrink_axis_mask().into(),
                        ellipsis: o.ellipsis_mask().into(),
                        new_axis: o.new_axis_mask().into(),
                        offset: o.offset(),
                    });
                let slice = StridedSlice::from_tf(rank, &begin, &end, &strides, masks)?;
                cx.inputs.truncate(1);
                Op::StridedSlice(slice)
            }
            // SLICE is a STRIDED_SLICE with stride 1 (size -1: to the end).
            B::SLICE => {
                let rank = cx.rank0()?;
                let (begin, size) = (cx.ints(1, "begin")?, cx.ints(2, "size")?);
                if begin.len() != rank || size.len() != rank {
                    return Err(format!("begin {begin:?} and size {size:?} do not match rank {rank}"));
                }
                let mut axes = Vec::with_capacity(rank);
                for (&b, &n) in begin.iter().zip(&size) {
                    if b < 0 || n < -1 {
                        return Err(format!("slice begin {b} and size {n} must be >= 0 (size -1: to the end)"));
                    }
                    let end = if n == -1 { None } else { Some(b.checked_add(n).ok_or("slice end overflows")?) };
                    axes.push(SliceDim { begin: Some(b), end, stride: 1, shrink: false });
                }
                cx.inputs.truncate(1);
                Op::StridedSlice(StridedSlice { axes })
            }
            B::TRANSPOSE => {
                let perm = cx.ints(1, "perm")?;
                let rank = cx.rank0()?;
                let perm = perm.iter().map(|&p| norm_axis(p, rank, "perm entry")).collect::<Result<Vec<_>, _>>()?;
                cx.inputs.truncate(1);
                Op::Transpose(Transpose { perm })
            }
            B::CONCATENATION => {
                let o = op.builtin_options_as_concatenation_options().ok_or_else(|| missing("ConcatenationOptions"))?;
                Op::Concatenation(Concatenation {
                    axis: norm_axis(o.axis() as i64, cx.rank0()?, "axis")?,
                    activation: act(o.fused_activation_function())?,
                })
            }
            B::PAD | B::PADV2 => {
                let paddings = paddings(g, cx.input(1), cx.rank0()?)?;
                // PADV2's value (input 2) becomes the IR's input 1.
                let value = if code == B::PADV2 { cx.input(2) } else { None };
                cx.inputs.truncate(1);
                if value.is_some() {
                    cx.inputs.push(value);
                }
                Op::Pad(Pad { paddings })
            }
            B::MIRROR_PAD => {
                let mode = match op.builtin_options_as_mirror_pad_options().map(|o| o.mode()) {
                    Some(fb::MirrorPadMode::SYMMETRIC) => MirrorMode::Symmetric,
                    Some(fb::MirrorPadMode::REFLECT) | None => MirrorMode::Reflect,
                    Some(m) => return Err(format!("unknown mirror pad mode {}", m.0)),
                };
                let paddings = paddings(g, cx.input(1), cx.rank0()?)?;
                cx.inputs.truncate(1);
                Op::MirrorPad(MirrorPad { paddings, mode })
            }
            B::GATHER => {
                let o = op.builtin_options_as_gather_options();
                if o.is_some_and(|o| o.batch_dims() != 0) {
                    return Ok(None);
                }
                Op::Gather(Gather { axis: norm_axis(o.map_or(0, |o| o.axis()) as i64, cx.rank0()?, "axis")? })
            }
            B::TILE => {
                let raw = cx.ints(1, "multiples")?;
                if raw.len() != cx.rank0()? || raw.iter().any(|&m| !(0..=1 << 20).contains(&m)) {
                    return Err(format!("multiples {raw:?} do not fit the input"));
                }
                cx.inputs.truncate(1);
                Op::Tile(Tile { multiples: raw.into_iter().map(|m| m as usize).collect() })
            }
            _ => {
                // DEPTH_TO_SPACE / SPACE_TO_DEPTH.
                let block = if code == B::DEPTH_TO_SPACE {
                    op.builtin_options_as_depth_to_space_options().map(|o| o.block_size())
                } else {
                    op.builtin_options_as_space_to_depth_options().map(|o| o.block_size())
                };
                let block = positive(block.ok_or_else(|| missing("block_size"))?, "block_size")?;
                if code == B::DEPTH_TO_SPACE {
                    Op::DepthToSpace(SpaceDepth { block })
                } else {
                    Op::SpaceToDepth(SpaceDepth { block })
                }
            }
        };
        Ok(Some(op_ir))
    }

    fn builtin(&self, n: &Node) -> Option<B> {
        Some(match &n.op {
            Op::Reshape(_) => B::RESHAPE,
            Op::Transpose(_) => B::TRANSPOSE,
            Op::Concatenation(_) => B::CONCATENATION,
            // A pad value makes PAD a PADV2 (same versions).
            Op::Pad(_) if n.input(1).is_some() => B::PADV2,
            Op::Pad(_) => B::PAD,
            Op::MirrorPad(_) => B::MIRROR_PAD,
            Op::StridedSlice(_) => B::STRIDED_SLICE,
            Op::Gather(_) => B::GATHER,
            Op::Tile(_) => B::TILE,
            Op::DepthToSpace(_) => B::DEPTH_TO_SPACE,
            Op::SpaceToDepth(_) => B::SPACE_TO_DEPTH,
            _ => return None,
        })
    }

    fn version(&self, v: &VersionCx<'_>) -> i32 {
        use DType::*;
        let (x, rank) = (v.dtype(0), v.rank(0));
        match &v.n.op {
            Op::Reshape(_) => 1,
            Op::Transpose(_) => {
                if rank > 6 {
                    8
                } else if rank > 5 {
                    6
                } else if x == Some(I16) {
                    5
                } else if rank > 4 {
                    4
                } else if x == Some(Bool) {
                    3
                } else if x == Some(I8) {
                    2
                } else {
                    1
                }
            }
            // op_version.cc: ellipsis / new-axis masks 6 (never written), string 5, rank > 4 4,
            // bool 3, int8 2.
            Op::StridedSlice(_) => {
                if rank > 4 {
                    4
                } else if x == Some(Bool) {
                    3
                } else if x == Some(I8) {
                    2
                } else {
                    1
                }
            }
            Op::Pad(_) => {
                if x == Some(Bool) {
                    5
                } else if rank > 4 {
                    4
                } else if x == Some(I16) {
                    3
                } else if x == Some(I8) {
                    2
                } else {
                    1
                }
            }
            Op::Gather(_) => match x {
                Some(I16) => 4,
                Some(Bool) => 3,
                Some(I8) => 2,
                _ => 1,
            },
            Op::Tile(_) => {
                if x == Some(I8) {
                    3
                } else {
                    1
                }
            }
            Op::DepthToSpace(_) | Op::SpaceToDepth(_) => {
                if x == Some(I8) {
                    2
                } else {
                    1
                }
            }
            // CONCATENATION, MIRROR_PAD.
            _ => match x {
                Some(I16) => 3,
                Some(I8) => 2,
                _ => 1,
            },
        }
    }

    fn options(&self, fbb: &mut FlatBufferBuilder<'_>, n: &Node, _g: &qlite_ir::Graph) -> Options {
        use fb::BuiltinOptions as O;
        match &n.op {
            Op::Reshape(r) => {
                let v: Vec<i32> = r.shape.iter().map(|&d| d as i32).collect();
                let new_shape = Some(fbb.create_vector(&v));
                (
                    O::ReshapeOptions,
                    Some(fb::ReshapeOptions::create(fbb, &fb::ReshapeOptionsArgs { new_shape }).as_union_value()),
                )
            }
            Op::Transpose(_) => empty_options!(fbb, TransposeOptions, TransposeOptionsArgs),
            Op::Concatenation(c) => {
                let args = fb::ConcatenationOptionsArgs { axis: c.axis as i32, fused_activation_function: fused(n) };
                (O::ConcatenationOptions, Some(fb::ConcatenationOptions::create(fbb, &args).as_union_value()))
            }
            Op::Pad(_) if n.input(1).is_some() => empty_options!(fbb, PadV2Options, PadV2OptionsArgs),
            Op::Pad(_) => empty_options!(fbb, PadOptions, PadOptionsArgs),
            Op::StridedSlice(o) => {
                let mask = |f: fn(&SliceDim) -> bool| {
                    o.axes.iter().enumerate().filter(|(_, a)| f(a)).fold(0i32, |m, (i, _)| m | (1 << i))
                };
                let args = fb::StridedSliceOptionsArgs {
                    begin_mask: mask(|a| a.begin.is_none() && !a.shrink),
                    end_mask: mask(|a| a.end.is_none() && !a.shrink),
                    ellipsis_mask: 0,
                    new_axis_mask: 0,
                    shrink_axis_mask: mask(|a| a.shrink),
                    offset: false,
                };
                (O::StridedSliceOptions, Some(fb::StridedSliceOptions::create(fbb, &args).as_union_value()))
            }
            Op::Gather(o) => {
                let args = fb::GatherOptionsArgs { axis: o.axis as i32, batch_dims: 0 };
                (O::GatherOptions, Some(fb::GatherOptions::create(fbb, &args).as_union_value()))
            }
            Op::Tile(_) => empty_options!(fbb, TileOptions, TileOptionsArgs),
            Op::DepthToSpace(o) => {
                let args = fb::DepthToSpaceOptionsArgs { block_size: o.block as i32 };
                (O::DepthToSpaceOptions, Some(fb::DepthToSpaceOptions::create(fbb, &args).as_union_value()))
            }
            Op::SpaceToDepth(o) => {
                let args = fb::SpaceToDepthOptionsArgs { block_size: o.block as i32 };
                (O::SpaceToDepthOptions, Some(fb::SpaceToDepthOptions::create(fbb, &args).as_union_value()))
            }
            Op::MirrorPad(o) => {
                let mode = match o.mode {
                    MirrorMode::Reflect => fb::MirrorPadMode::REFLECT,
                    MirrorMode::Symmetric => fb::MirrorPadMode::SYMMETRIC,
                };
                let args = fb::MirrorPadOptionsArgs { mode };
                (O::MirrorPadOptions, Some(fb::MirrorPadOptions::create(fbb, &args).as_union_value()))
            }
            _ => (O::NONE, None),
        }
    }

    fn aux(&self, n: &Node, _g: &Graph, base: &str) -> Result<Aux, WriteError> {
        let ints = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
        match &n.op {
            Op::Reshape(r) => aux_vector(n, base, "shape", &r.shape),
            Op::Transpose(t) => aux_vector(n, base, "perm", &ints(&t.perm)),
            Op::Tile(t) => aux_vector(n, base, "multiples", &ints(&t.multiples)),
            Op::Pad(p) => aux_paddings(n, base, &p.paddings),
            Op::MirrorPad(p) => aux_paddings(n, base, &p.paddings),
            Op::StridedSlice(o) => {
                // begin, end and strides; a masked value is written as 0 (its mask says to
                // ignore it).
                let mut aux = Aux::default();
                for (what, f) in [
                    ("begin", (|a: &SliceDim| a.begin.unwrap_or(0)) as fn(&SliceDim) -> i64),
                    (
                        "end",
                        |a: &SliceDim| {
                            if a.shrink { a.begin.unwrap_or(0).saturating_add(1) } else { a.end.unwrap_or(0) }
                        },
                    ),
                    ("strides", |a: &SliceDim| if a.shrink { 1 } else { a.stride }),
                ] {
                    let values: Vec<i64> = o.axes.iter().map(f).collect();
                    aux.tensors.extend(aux_vector(n, base, what, &values)?.tensors);
                }
                Ok(aux)
            }
            _ => Ok(Aux::default()),
        }
    }

    /// PADV2's order: input, paddings, value.
    fn inputs(&self, n: &Node, mut node: Vec<i32>, aux: &[i32]) -> Vec<i32> {
        match (&n.op, node.get(1).copied(), aux.first()) {
            (Op::Pad(_), Some(value), Some(&paddings)) if value >= 0 => vec![node[0], paddings, value],
            _ => {
                node.extend_from_slice(aux);
                node
            }
        }
    }
}

/// SPLIT (axis, x) or SPLIT_V (x, size_splits, axis) as one STRIDED_SLICE node per output.
pub(crate) fn split_as_slices(
    g: &Graph,
    code: i32,
    inputs: &[Option<TensorId>],
    outputs: &[TensorId],
) -> Result<Vec<Node>, String> {
    let is_v = code == B::SPLIT_V.0;
    let (x, axis_t) = if is_v { (inputs.first(), inputs.get(2)) } else { (inputs.get(1), inputs.first()) };
    let x = x.copied().flatten().ok_or("the input is missing")?;
    let rank = rank_of(g, Some(x))?;
    let axis = const_ints(g, axis_t.copied().flatten(), "axis")?;
    let &[axis] = axis.as_slice() else { return Err("axis must be one value".into()) };
    let axis = norm_axis(axis, rank, "axis")?;
    let n =
        g.tensor(x).and_then(|t| t.shape.dim(axis)).and_then(|d| d.fixed()).ok_or("the split axis must be static")?;
    let k = outputs.len();
    let sizes: Vec<usize> = if is_v {
        let raw = const_ints(g, inputs.get(1).copied().flatten(), "size_splits")?;
        if raw.len() != k || raw.iter().filter(|&&v| v == -1).count() > 1 || raw.iter().any(|&v| v < -1) {
            return Err(format!("size_splits {raw:?} for {k} outputs"));
        }
        let known: i64 = raw.iter().filter(|&&v| v >= 0).sum();
        let rest = n as i64 - known;
        if rest < 0 || (rest > 0 && !raw.contains(&-1)) {
            return Err(format!("size_splits {raw:?} do not add up to {n}"));
        }
        raw.iter().map(|&v| if v == -1 { rest as usize } else { v as usize }).collect()
    } else {
        if k == 0 || n % k != 0 {
            return Err(format!("{n} does not split into {k} equal parts"));
        }
        vec![n / k; k]
    };
    let mut nodes = Vec::with_capacity(k);
    let mut at = 0i64;
    for (&out, &size) in outputs.iter().zip(&sizes) {
        let mut axes = vec![SliceDim::ALL; rank];
        axes[axis] = SliceDim { begin: Some(at), end: Some(at + size as i64), stride: 1, shrink: false };
        at += size as i64;
        let name = g.tensor(out).map_or_else(|| format!("split{}", nodes.len()), |t| t.name.clone());
        nodes.push(Node::new(name, Op::StridedSlice(StridedSlice { axes }), vec![Some(x)], vec![out]));
    }
    Ok(nodes)
}
