//! Shape arithmetic in .tflite files: the `SHAPE → STRIDED_SLICE / GATHER / REDUCE_PROD →
//! PACK / CONCATENATION → RESHAPE` chains TensorFlow's converter writes for a dynamic batch
//! (Keras Flatten, Reshape, Dense on 3-D inputs), evaluated at read time over
//! `qlite_ir::sym` values. The chain leaves no node: its RESHAPE gets a constant target with
//! one `-1`. A value that is fully known and read by another op becomes a constant tensor; one
//! known only at run time and read by another op is an error naming both.

use crate::fb;
use qlite_ir::sym::{self, SliceAxis, SymDim, SymVal};
use qlite_ir::{DType, Graph, TensorId};
use std::collections::{HashMap, HashSet};

/// The shape values computed so far, by tensor, and the tensors whose shape (only) was read.
#[derive(Debug, Default)]
pub struct Values(HashMap<TensorId, SymVal>, HashSet<TensorId>);

/// What the reader does with an operator.
pub enum Step {
    /// Evaluated: no node.
    Folded,
    /// A RESHAPE whose target was computed: this constant target.
    Reshape(Vec<i64>),
    /// An ordinary operator.
    Op,
}

/// An integer constant as a shape value (`None` if the tensor is not one).
fn constant(g: &Graph, t: TensorId) -> Option<SymVal> {
    let t = g.tensor(t)?;
    let data = t.data.as_ref()?;
    let v: Vec<i64> = match t.dtype {
        DType::I32 if data.len() % 4 == 0 => qlite_ir::tensor::read_i32s(data).into_iter().map(i64::from).collect(),
        DType::I64 if data.len() % 8 == 0 => qlite_ir::tensor::read_i64s(data),
        _ => return None,
    };
    match t.shape.rank() {
        0 if v.len() == 1 => Some(SymVal::Scalar(SymDim::Known(v[0]))),
        1 => Some(SymVal::from_ints(&v)),
        _ => None,
    }
}

fn value(g: &Graph, vals: &Values, t: Option<TensorId>) -> Option<SymVal> {
    let t = t?;
    vals.0.get(&t).cloned().or_else(|| constant(g, t))
}

fn ints(g: &Graph, vals: &Values, t: Option<TensorId>, what: &str) -> Result<Vec<i64>, String> {
    value(g, vals, t)
        .and_then(|v| v.known())
        .ok_or_else(|| format!("{what} must be a constant (it is computed at run time)"))
}

/// Evaluate `op` if it is shape arithmetic (see the module docs).
pub fn step(
    g: &mut Graph,
    op: &fb::Operator<'_>,
    code: i32,
    inputs: &[Option<TensorId>],
    outputs: &[TensorId],
    vals: &mut Values,
) -> Result<Step, String> {
    use fb::BuiltinOperator as B;
    let input = |i: usize| inputs.get(i).copied().flatten();
    let is_sym = |i: usize| input(i).is_some_and(|t| vals.0.contains_key(&t));
    let any_sym = inputs.iter().flatten().any(|t| vals.0.contains_key(t));
    let out = outputs.first().copied();
    let b = fb::BuiltinOperator(code);
    let result: Option<SymVal> = match b {
        B::SHAPE => {
            let t = input(0).ok_or("SHAPE has no input")?;
            let shape = &g.tensor(t).ok_or("SHAPE input is missing")?.shape;
            vals.1.insert(t);
            Some(SymVal::Vector(sym::shape_of(shape, t.index())))
        }
        // A shape value given another rank (a scalar as [1], [1] as a scalar): the output's
        // declared rank says which.
        B::RESHAPE | B::EXPAND_DIMS | B::SQUEEZE if is_sym(0) => {
            let e = value(g, vals, input(0)).map(|v| v.elements()).unwrap_or_default();
            let rank = out.and_then(|o| g.tensor(o)).map(|t| t.shape.rank());
            Some(match (rank, e.len()) {
                (Some(0), 1) => SymVal::Scalar(e[0]),
                (Some(1), _) => SymVal::Vector(e),
                _ => return Err(format!("{} of a shape value to rank {rank:?}", crate::codes::builtin_name(code))),
            })
        }
        // Integer arithmetic on shape values (Keras 3's UpSampling2D: `shape[1] * 2`).
        B::MUL | B::ADD | B::SUB | B::FLOOR_DIV | B::MAXIMUM | B::MINIMUM if any_sym => {
            let (Some(x), Some(y)) = (value(g, vals, input(0)), value(g, vals, input(1))) else {
                return Err(format!(
                    "{} of a shape value and a tensor that is not one",
                    crate::codes::builtin_name(code)
                ));
            };
            let fused = match b {
                B::MUL => op.builtin_options_as_mul_options().map(|o| o.fused_activation_function()),
                B::ADD => op.builtin_options_as_add_options().map(|o| o.fused_activation_function()),
                B::SUB => op.builtin_options_as_sub_options().map(|o| o.fused_activation_function()),
                _ => None,
            };
            if fused.is_some_and(|f| f != fb::ActivationFunctionType::NONE) {
                return Err("shape arithmetic with a fused activation".into());
            }
            let sop = match b {
                B::MUL => sym::SymOp::Mul,
                B::ADD => sym::SymOp::Add,
                B::SUB => sym::SymOp::Sub,
                B::FLOOR_DIV => sym::SymOp::FloorDiv,
                B::MAXIMUM => sym::SymOp::Max,
                _ => sym::SymOp::Min,
            };
            Some(sym::binary(sop, &x, &y).map_err(|e| e.to_string())?)
        }
        B::RESHAPE if is_sym(1) => {
            let x = input(0).ok_or("RESHAPE has no input")?;
            let shape = sym::shape_of(&g.tensor(x).ok_or("RESHAPE input is missing")?.shape, x.index());
            let target = value(g, vals, input(1)).map(|v| v.elements()).unwrap_or_default();
            return sym::reshape_target(&shape, &target).map(Step::Reshape).map_err(|e| e.to_string());
        }
        B::STRIDED_SLICE if is_sym(0) => {
            let v = value(g, vals, input(0)).map(|v| v.elements()).unwrap_or_default();
            let (begin, end, strides) = (
                ints(g, vals, input(1), "STRIDED_SLICE begin")?,
                ints(g, vals, input(2), "STRIDED_SLICE end")?,
                ints(g, vals, input(3), "STRIDED_SLICE strides")?,
            );
            let (&[begin], &[end], &[stride]) = (begin.as_slice(), end.as_slice(), strides.as_slice()) else {
                return Err("STRIDED_SLICE of a shape vector needs one begin, end and stride".into());
            };
            let o = op.builtin_options_as_strided_slice_options();
            let m = |f: fn(&fb::StridedSliceOptions<'_>) -> i32| o.as_ref().map_or(0, f) & 1 != 0;
            if m(|o| o.ellipsis_mask()) || m(|o| o.new_axis_mask()) {
                return Err("STRIDED_SLICE of a shape vector with an ellipsis or new axis".into());
            }
            let end = if o.as_ref().is_some_and(|o| o.offset()) { begin.saturating_add(end) } else { end };
            let axis = SliceAxis {
                begin,
                end,
                stride,
                begin_mask: m(|o| o.begin_mask()),
                end_mask: m(|o| o.end_mask()),
                shrink: m(|o| o.shrink_axis_mask()),
            };
            Some(sym::strided_slice(&v, axis).map_err(|e| e.to_string())?)
        }
        B::GATHER if is_sym(0) => {
            if op.builtin_options_as_gather_options().is_some_and(|o| o.axis() != 0) {
                return Err("GATHER of a shape vector along an axis other than 0".into());
            }
            let v = value(g, vals, input(0)).map(|v| v.elements()).unwrap_or_default();
            let idx = ints(g, vals, input(1), "GATHER indices")?;
            let scalar = input(1).and_then(|t| g.tensor(t)).is_some_and(|t| t.shape.rank() == 0);
            Some(sym::gather(&v, &idx, scalar).map_err(|e| e.to_string())?)
        }
        B::REDUCE_PROD if is_sym(0) => {
            let v = value(g, vals, input(0)).map(|v| v.elements()).unwrap_or_default();
            let axes = ints(g, vals, input(1), "REDUCE_PROD axes")?;
            if !axes.iter().all(|&a| a == 0 || a == -1) {
                return Err(format!("REDUCE_PROD of a shape vector over axes {axes:?}"));
            }
            let p = sym::product(&v).map_err(|e| e.to_string())?;
            let keep = op.builtin_options_as_reducer_options().is_some_and(|o| o.keep_dims());
            Some(if keep { SymVal::Vector(vec![p]) } else { SymVal::Scalar(p) })
        }
        B::PACK | B::CONCATENATION if any_sym => {
            let axis = match b {
                B::PACK => op.builtin_options_as_pack_options().map_or(0, |o| o.axis()),
                _ => op.builtin_options_as_concatenation_options().map_or(0, |o| o.axis()),
            };
            if axis != 0 && axis != -1 {
                return Err(format!("{} of shape values along axis {axis}", crate::codes::builtin_name(code)));
            }
            let parts = inputs
                .iter()
                .map(|&t| value(g, vals, t).ok_or("every input must be a shape value or an integer constant"))
                .collect::<Result<Vec<_>, _>>()?;
            Some(sym::concat(&parts))
        }
        B::CAST if is_sym(0) => value(g, vals, input(0)),
        // TF's converter computes a dynamic-batch TRANSPOSE_CONV's output_shape at run time; the
        // op needs only its height and width, which are known: the batch (and any other
        // unknown) is written as 1 in a constant.
        B::TRANSPOSE_CONV if is_sym(0) => {
            let t = input(0).ok_or("TRANSPOSE_CONV has no output_shape")?;
            let v = value(g, vals, Some(t)).map(|v| v.elements()).unwrap_or_default();
            let known: Vec<i64> = v.iter().map(|d| d.known().unwrap_or(1)).collect();
            if v.len() != 4 || v[1].known().is_none() || v[2].known().is_none() {
                return Err(format!("TRANSPOSE_CONV output_shape {} needs a known height and width", sym::show(&v)));
            }
            let data: Vec<u8> = known.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect();
            let tensor = g.tensor_mut(t).ok_or("tensor missing")?;
            tensor.dtype = DType::I32;
            tensor.data = Some(data.into());
            return Ok(Step::Op);
        }
        _ => {
            // Any other reader of a shape value: a known one becomes a constant.
            for &t in inputs.iter().flatten() {
                materialize(g, t, vals)?;
            }
            return Ok(Step::Op);
        }
    };
    let (Some(o), Some(v)) = (out, result) else { return Err("no output".into()) };
    vals.0.insert(o, v);
    Ok(Step::Folded)
}

/// If `t` holds a shape value, make it a constant tensor; an error if it is not fully known.
pub fn materialize(g: &mut Graph, t: TensorId, vals: &Values) -> Result<(), String> {
    let Some(v) = vals.0.get(&t) else { return Ok(()) };
    let Some(known) = v.known() else {
        let name = g.tensor(t).map_or(String::new(), |t| t.name.clone());
        return Err(format!(
            "tensor {name:?} is shape arithmetic known only at run time ({}): qlite folds it into a RESHAPE's target, and cannot run it as data",
            sym::show(&v.elements())
        ));
    };
    let tensor = g.tensor_mut(t).ok_or("tensor missing")?;
    let bytes: Vec<u8> = match tensor.dtype {
        DType::I64 => known.iter().flat_map(|x| x.to_le_bytes()).collect(),
        _ => {
            let narrow: Vec<i32> = known
                .iter()
                .map(|&x| i32::try_from(x).map_err(|_| format!("shape value {x} does not fit int32")))
                .collect::<Result<_, _>>()?;
            narrow.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
    };
    tensor.data = Some(bytes.into());
    Ok(())
}

/// Remove the nodes that only fed shape arithmetic (a RESHAPE whose result only a SHAPE read):
/// once the arithmetic is folded nothing reads them. Other dead nodes of the file are kept.
pub fn drop_shape_only_nodes(g: &mut Graph, vals: &Values) {
    loop {
        let outputs: HashSet<TensorId> = g.outputs().iter().copied().collect();
        let read: HashSet<TensorId> = g.nodes().iter().flat_map(|n| n.input_ids()).collect();
        let dead = |n: &qlite_ir::Node| {
            n.outputs.iter().all(|o| !outputs.contains(o) && !read.contains(o))
                && n.outputs.iter().any(|o| vals.1.contains(o))
        };
        let before = g.nodes().len();
        g.retain_nodes(|n| !dead(n));
        if g.nodes().len() == before {
            return;
        }
    }
}
