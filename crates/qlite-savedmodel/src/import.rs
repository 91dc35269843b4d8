//! SavedModel / GraphDef → IR.
//!
//! A SavedModel's signature names placeholder inputs and the outputs of a
//! `StatefulPartitionedCall` into the function library. qlite follows the call: it binds the
//! function's trailing resource arguments to checkpoint keys (the concrete function's
//! `bound_inputs` → object-graph node → `VARIABLE_VALUE` key in the tensor bundle), then
//! evaluates only the nodes the outputs depend on, in dependency order, inlining nested calls.
//! `ReadVariableOp` of a bound resource becomes a constant sliced from the mapped shard.
//! Shape arithmetic (`Shape` → `StridedSlice` → `Pack`, as Keras's Reshape and Flatten emit)
//! is folded symbolically, a dynamic batch kept as -1. Nothing in the model is executed.

use crate::bundle::{Bundle, StoredTensor};
use crate::proto::{
    self, AttrValue, DataType, FunctionDef, GraphDef, NodeDef, SavedModel, TensorProto, TensorShapeProto,
    TrackableObjectGraph, attr_value,
};
use crate::{SmError, map_file};
use bytes::Bytes;
use prost::Message;
use qlite_ir::op::*;
use qlite_ir::sym::{self, SliceAxis, SymDim, SymOp, SymVal};
use qlite_ir::tensor::{f32_bytes, i64_bytes, read_f32s, read_i32s, read_i64s};
use qlite_ir::{DType, Dim, Graph, Node, Shape, Signature, Tensor, TensorId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

type R<T> = Result<T, String>;

/// Options of [`import_saved_model`] and [`import_graph_def`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The signature to import (default `serving_default`).
    pub signature: Option<String>,
    /// Input shapes that override the model's, by signature input name.
    pub input_shapes: BTreeMap<String, Vec<Dim>>,
}

/// Deepest nesting of function calls followed.
const MAX_CALL_DEPTH: usize = 64;
/// Largest constant (elements) built from a TensorProto's typed fields.
const MAX_CONST_ELEMENTS: usize = 1 << 26;

/// A value during import.
#[derive(Debug, Clone)]
enum Val {
    /// A runtime IR tensor.
    T(TensorId),
    /// A constant known at import time.
    C(Const),
    /// A resource handle bound to a checkpoint key.
    Res(String),
    /// A 1-D integer vector with unknown entries (a shape with a dynamic batch).
    Sym(Vec<Option<i64>>),
    /// An integer scalar that may be unknown.
    SymScalar(Option<i64>),
    /// No data (NoOp, an unsupported op's output).
    Nothing,
}

#[derive(Debug, Clone)]
struct Const {
    dtype: DType,
    dims: Vec<usize>,
    data: Bytes,
}

impl Const {
    fn f32(dims: Vec<usize>, v: &[f32]) -> Self {
        Const { dtype: DType::F32, dims, data: f32_bytes(v) }
    }
    fn i64(dims: Vec<usize>, v: &[i64]) -> Self {
        Const { dtype: DType::I64, dims, data: i64_bytes(v) }
    }
    fn f32s(&self) -> Option<Vec<f32>> {
        (self.dtype == DType::F32).then(|| read_f32s(&self.data))
    }
    fn ints(&self) -> Option<Vec<i64>> {
        match self.dtype {
            DType::I32 => Some(read_i32s(&self.data).into_iter().map(i64::from).collect()),
            DType::I64 => Some(read_i64s(&self.data)),
            _ => None,
        }
    }
}

fn ir_dtype(d: i32) -> Option<DType> {
    Some(match DataType::try_from(d).ok()? {
        DataType::DtFloat => DType::F32,
        DataType::DtHalf => DType::F16,
        DataType::DtBfloat16 => DType::BF16,
        DataType::DtInt8 => DType::I8,
        DataType::DtUint8 => DType::U8,
        DataType::DtInt16 => DType::I16,
        DataType::DtInt32 => DType::I32,
        DataType::DtInt64 => DType::I64,
        DataType::DtBool => DType::Bool,
        _ => return None,
    })
}

fn dtype_name(d: i32) -> String {
    DataType::try_from(d).map_or_else(|_| format!("type {d}"), |t| t.as_str_name().to_string())
}

fn dims_of(s: Option<&TensorShapeProto>) -> R<Vec<usize>> {
    let Some(s) = s else { return Ok(Vec::new()) };
    if s.unknown_rank {
        return Err("a constant has an unknown rank".into());
    }
    s.dim.iter().map(|d| usize::try_from(d.size).map_err(|_| format!("negative dimension {}", d.size))).collect()
}

/// A TensorProto (Const node value) as a constant.
fn tensor_const(t: &TensorProto) -> R<Const> {
    let dims = dims_of(t.tensor_shape.as_ref())?;
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("constant element count overflows")?;
    let dtype = if t.dtype == DataType::DtDouble as i32 {
        DType::F32
    } else {
        ir_dtype(t.dtype).ok_or_else(|| format!("constants of {} are not supported", dtype_name(t.dtype)))?
    };
    if !t.tensor_content.is_empty() {
        if t.dtype == DataType::DtDouble as i32 {
            if t.tensor_content.len() != n.saturating_mul(8) {
                return Err("DT_DOUBLE constant content disagrees with its shape".into());
            }
            let v: Vec<f32> = t
                .tensor_content
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                .collect();
            return Ok(Const::f32(dims, &v));
        }
        if t.tensor_content.len() != n.saturating_mul(dtype.size()) {
            return Err(format!(
                "constant content is {} bytes but shape {dims:?} of {dtype} needs {}",
                t.tensor_content.len(),
                n.saturating_mul(dtype.size())
            ));
        }
        return Ok(Const { dtype, dims, data: t.tensor_content.clone() });
    }
    if n > MAX_CONST_ELEMENTS {
        return Err(format!("a constant of {n} elements is too large"));
    }
    // Typed fields; fewer values than elements repeat the last one (TensorFlow's rule).
    fn fill<T: Copy>(v: &[T], n: usize, zero: T) -> R<Vec<T>> {
        if v.len() > n {
            return Err(format!("{} values for {n} elements", v.len()));
        }
        let last = v.last().copied().unwrap_or(zero);
        Ok((0..n).map(|i| v.get(i).copied().unwrap_or(last)).collect())
    }
    let data = match dtype {
        DType::F32 if t.dtype == DataType::DtDouble as i32 => {
            f32_bytes(&fill(&t.double_val, n, 0.0)?.iter().map(|&v| v as f32).collect::<Vec<_>>())
        }
        DType::F32 => f32_bytes(&fill(&t.float_val, n, 0.0)?),
        DType::I32 => qlite_ir::tensor::i32_bytes(&fill(&t.int_val, n, 0)?),
        DType::I64 => i64_bytes(&fill(&t.int64_val, n, 0)?),
        DType::I8 | DType::U8 | DType::Bool => {
            let v = if dtype == DType::Bool {
                fill(&t.bool_val, n, false)?.iter().map(|&b| b as u8).collect()
            } else {
                fill(&t.int_val, n, 0)?.iter().map(|&b| b as u8).collect::<Vec<u8>>()
            };
            Bytes::from(v)
        }
        DType::F16 | DType::BF16 | DType::I16 => {
            let v = fill(&t.half_val, n, 0)?;
            Bytes::from(v.iter().flat_map(|&h| (h as u16).to_le_bytes()).collect::<Vec<u8>>())
        }
        d => return Err(format!("a {d} constant")),
    };
    Ok(Const { dtype, dims, data })
}

fn attr<'a>(n: &'a NodeDef, k: &str) -> Option<&'a attr_value::Value> {
    n.attr.get(k).and_then(|a: &AttrValue| a.value.as_ref())
}
fn attr_i(n: &NodeDef, k: &str) -> Option<i64> {
    match attr(n, k)? {
        attr_value::Value::I(i) => Some(*i),
        _ => None,
    }
}
fn attr_f(n: &NodeDef, k: &str) -> Option<f32> {
    match attr(n, k)? {
        attr_value::Value::F(f) => Some(*f),
        _ => None,
    }
}
fn attr_b(n: &NodeDef, k: &str) -> Option<bool> {
    match attr(n, k)? {
        attr_value::Value::B(b) => Some(*b),
        _ => None,
    }
}
fn attr_s(n: &NodeDef, k: &str) -> Option<String> {
    match attr(n, k)? {
        attr_value::Value::S(s) => Some(String::from_utf8_lossy(s).into_owned()),
        _ => None,
    }
}
fn attr_ints(n: &NodeDef, k: &str) -> Option<Vec<i64>> {
    match attr(n, k)? {
        attr_value::Value::List(l) => Some(l.i.clone()),
        _ => None,
    }
}
fn attr_func(n: &NodeDef, k: &str) -> Option<String> {
    match attr(n, k)? {
        attr_value::Value::Func(f) => Some(f.name.clone()),
        _ => None,
    }
}

/// Split a reference: "^ctrl" → None; "node", "node:2" (graph) or "node:out:2" (function body).
fn parse_ref(r: &str) -> Option<(&str, Option<&str>, usize)> {
    if r.starts_with('^') || r.is_empty() {
        return None;
    }
    let mut parts = r.split(':');
    let node = parts.next()?;
    match (parts.next(), parts.next()) {
        (None, _) => Some((node, None, 0)),
        (Some(i), None) => Some((node, None, i.parse().ok()?)),
        (Some(out), Some(i)) => Some((node, Some(out), i.parse().ok()?)),
    }
}

const CALLS: [&str; 2] = ["StatefulPartitionedCall", "PartitionedCall"];

struct Im<'a> {
    g: Graph,
    /// The library's functions, encoded, by name; decoded once each when first called.
    lib: HashMap<String, Bytes>,
    decoded: HashMap<String, std::rc::Rc<FunctionDef>>,
    bundle: Option<&'a Bundle>,
    /// Checkpoint keys of the resources each concrete function binds as trailing arguments.
    /// Per function, the values its trailing captured inputs are bound to: variables (their
    /// checkpoint keys) or constants captured by value.
    bound: HashMap<String, Vec<Val>>,
    unsupported: BTreeSet<(String, String)>,
    /// Set by `dispatch` when no arm handles the op type at all.
    unknown_op: bool,
    /// Checksums and weight reorders, done together at the end.
    deferred: deferred::Deferred,
}

/// One graph or function body being evaluated.
struct Frame<'f> {
    nodes: HashMap<&'f str, &'f NodeDef>,
    /// Values of evaluated nodes (all outputs) and of arguments.
    vals: HashMap<String, Vec<Val>>,
    /// References per node name (for folding a BiasAdd into its only producer).
    uses: HashMap<&'f str, usize>,
    /// Prefix for IR tensor names created in this frame.
    prefix: String,
}

impl<'f> Frame<'f> {
    fn new(nodes: &'f [NodeDef], prefix: String) -> Self {
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for n in nodes {
            for r in &n.input {
                if let Some((src, _, _)) = parse_ref(r) {
                    *uses.entry(src).or_default() += 1;
                }
            }
        }
        Frame { nodes: nodes.iter().map(|n| (n.name.as_str(), n)).collect(), vals: HashMap::new(), uses, prefix }
    }
}

mod conv;
mod deferred;
mod elementwise;
mod fc;
mod graph;
mod movement;
mod norm;
mod pool;
mod resize;

impl<'a> Im<'a> {
    fn push(&mut self, name: &str, op: Op, inputs: Vec<Option<TensorId>>) -> R<TensorId> {
        let ins: Vec<_> =
            inputs.iter().map(|i| i.and_then(|t| self.g.tensor(t)).map(|t| (t.dtype, &t.shape))).collect();
        let inf = op.infer(&ins).map_err(|e| format!("{name}: {}", e.0))?.remove(0);
        let out = self.g.add_tensor(Tensor::activation(name, inf.dtype.unwrap_or(DType::F32), inf.shape));
        self.g.add_node(Node::new(name, op, inputs, vec![out]));
        Ok(out)
    }

    fn shape(&self, t: TensorId) -> Shape {
        self.g.tensor(t).map(|t| t.shape.clone()).unwrap_or_default()
    }

    fn materialize(&mut self, name: &str, v: &Val) -> R<TensorId> {
        match v {
            Val::T(t) => Ok(*t),
            Val::C(c) => Ok(self.g.add_tensor(Tensor::constant(name, c.dtype, Shape::fixed(&c.dims), c.data.clone()))),
            Val::Sym(s) if s.iter().all(Option::is_some) => {
                let v: Vec<i64> = s.iter().flatten().copied().collect();
                Ok(self.g.add_tensor(Tensor::constant(name, DType::I64, Shape::fixed(&[v.len()]), i64_bytes(&v))))
            }
            _ => Err(format!("{name}: a tensor is needed here, got {}", describe(v))),
        }
    }

    /// The value of a variable (checkpoint key) as a constant (a slice of the mapped shard).
    /// Its checksum is verified at the end of the import, in the name of `node`, which read it.
    fn variable(&mut self, key: &str, node: &NodeDef) -> R<Const> {
        let b = self.bundle.ok_or("a variable is read but the model has no variables/ bundle")?;
        let (StoredTensor { dtype, shape, data }, check) = b.tensor_unverified(key).map_err(|e| e.to_string())?;
        if let Some(c) = check {
            self.deferred.check(key, &data, c, format!("node {:?} ({})", node.name, node.op));
        }
        let dt = ir_dtype(dtype as i32).ok_or_else(|| format!("variable {key:?} has type {}", dtype.as_str_name()))?;
        let dims = shape.iter().map(|&d| d as usize).collect();
        Ok(Const { dtype: dt, dims, data })
    }

    /// A float32 constant `name` of `w` permuted by `perm`, filled at the end of the import
    /// (see [`deferred`]); `err` if `w`'s bytes do not match its dims.
    fn reordered(&mut self, name: String, w: &Const, perm: &[usize], err: &str) -> R<TensorId> {
        let n = w.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if w.dtype != DType::F32 || n.and_then(|n| n.checked_mul(4)) != Some(w.data.len()) || perm.len() != w.dims.len()
        {
            return Err(err.into());
        }
        let dims: Vec<usize> =
            perm.iter().map(|&p| w.dims.get(p).copied().ok_or_else(|| err.to_string())).collect::<R<_>>()?;
        let id = self.g.add_tensor(Tensor::constant(name, DType::F32, Shape::fixed(&dims), Bytes::new()));
        self.deferred.reorder(id, &w.data, &w.dims, perm);
        Ok(id)
    }

    /// Evaluate `refs` in frame `fr` (only the nodes they depend on), returning their values.
    fn eval(&mut self, fr: &mut Frame<'_>, refs: &[String], depth: usize) -> R<Vec<Val>> {
        // Iterative post-order over the needed nodes, with cycle detection.
        let mut order: Vec<String> = Vec::new();
        let mut state: HashMap<String, u8> = HashMap::new(); // 1 = in progress, 2 = done
        for r in refs {
            let Some((root, _, _)) = parse_ref(r) else { continue };
            if fr.vals.contains_key(root) {
                continue;
            }
            let mut stack: Vec<(String, usize)> = vec![(root.to_string(), 0)];
            while let Some((name, next)) = stack.pop() {
                if next == 0 {
                    match state.get(&name) {
                        Some(2) => continue,
                        Some(_) => return Err(format!("node {name:?} depends on itself: the graph has a cycle")),
                        None => {
                            state.insert(name.clone(), 1);
                        }
                    }
                }
                let n = *fr.nodes.get(name.as_str()).ok_or_else(|| format!("input {name:?} names no node"))?;
                let deps = self.data_inputs(n);
                if next < deps.len() {
                    stack.push((name.clone(), next + 1));
                    if let Some((dep, _, _)) = parse_ref(&deps[next])
                        && !fr.vals.contains_key(dep)
                    {
                        match state.get(dep) {
                            Some(2) => {}
                            Some(_) => return Err(format!("node {dep:?} depends on itself: the graph has a cycle")),
                            None => stack.push((dep.to_string(), 0)),
                        }
                    }
                    continue;
                }
                state.insert(name.clone(), 2);
                order.push(name);
            }
        }
        for name in order {
            let n = *fr.nodes.get(name.as_str()).ok_or("node vanished")?;
            let deps = self.data_inputs(n);
            let mut ins = Vec::with_capacity(deps.len());
            for d in &deps {
                ins.push(self.lookup(fr, n, d)?);
            }
            let outs = match self.node(fr, n, ins, depth) {
                Ok(Some(v)) => v,
                Ok(None) => {
                    self.unsupported.insert((n.op.clone(), n.name.clone()));
                    vec![Val::Nothing]
                }
                // The innermost node names the problem; callers around it add nothing.
                Err(e) if e.starts_with("node ") => return Err(e),
                Err(e) => return Err(format!("node {:?} ({}): {e}", n.name, n.op)),
            };
            fr.vals.insert(name, outs);
        }
        refs.iter()
            .map(|r| {
                let (node, out, idx) = parse_ref(r).ok_or_else(|| format!("bad reference {r:?}"))?;
                let n = fr.nodes.get(node).copied();
                self.pick(fr, n, node, out, idx)
            })
            .collect()
    }

    /// The inputs a node's value depends on: data inputs only, and for a call whose function
    /// binds its trailing resources to variables, not those (they are bound, not evaluated).
    fn data_inputs(&self, n: &NodeDef) -> Vec<String> {
        let data: Vec<String> = n.input.iter().filter(|r| !r.starts_with('^')).cloned().collect();
        if CALLS.contains(&n.op.as_str())
            && let Some(k) = attr_func(n, "f").and_then(|f| self.bound.get(&f)).map(Vec::len)
        {
            return data[..data.len().saturating_sub(k)].to_vec();
        }
        data
    }

    fn lookup(&self, fr: &Frame<'_>, consumer: &NodeDef, r: &str) -> R<Val> {
        let (node, out, idx) = parse_ref(r).ok_or_else(|| format!("bad reference {r:?}"))?;
        let _ = consumer;
        self.pick(fr, fr.nodes.get(node).copied(), node, out, idx)
    }

    fn pick(&self, fr: &Frame<'_>, n: Option<&NodeDef>, node: &str, out: Option<&str>, idx: usize) -> R<Val> {
        let vals = fr.vals.get(node).ok_or_else(|| format!("{node:?} has no value"))?;
        // Function bodies name outputs "node:arg:i"; every op qlite converts has one output
        // argument except calls and IdentityN, whose "output:i" is the i-th value.
        let i = match (n.map(|n| n.op.as_str()), out) {
            (Some("FusedBatchNormV3" | "FusedBatchNorm"), Some(o)) if o != "y" => {
                return Err(format!("output {o:?} of a batch normalization is not supported"));
            }
            _ => idx,
        };
        vals.get(i).cloned().ok_or_else(|| format!("{node:?} has no output {i}"))
    }

    /// Make `bias` the bias of the FULLY_CONNECTED / CONV_2D / DEPTHWISE that produced `x`,
    /// when node `n` (reading `x` as input `slot`) is its only reader, it has no bias yet and
    /// the bias matches its output channels. Returns the (renamed) output.
    fn fold_bias(
        &mut self,
        fr: &Frame<'_>,
        n: &NodeDef,
        slot: usize,
        x: TensorId,
        bias: &Const,
        name: &str,
    ) -> R<Option<TensorId>> {
        let data_inputs: Vec<&String> = n.input.iter().filter(|r| !r.starts_with('^')).collect();
        let producer = data_inputs.get(slot).and_then(|r| parse_ref(r)).map(|(p, _, _)| p);
        let single = producer.is_some_and(|p| fr.uses.get(p) == Some(&1));
        let channels = self.shape(x).dims().last().and_then(|d| d.fixed());
        if !single || bias.dtype != DType::F32 || bias.dims.len() != 1 || Some(bias.dims[0]) != channels {
            return Ok(None);
        }
        let Some(pi) = self.g.producer(x) else { return Ok(None) };
        let foldable = self.g.nodes().get(pi.index()).is_some_and(|pn| {
            matches!(pn.op, Op::FullyConnected(_) | Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::TransposeConv2d(_))
                && pn.input(2).is_none()
        });
        if !foldable || self.g.outputs().contains(&x) {
            return Ok(None);
        }
        let bt = self.materialize(&format!("{name}/bias"), &Val::C(bias.clone()))?;
        if let Some(node) = self.g.node_mut(pi) {
            while node.inputs.len() < 3 {
                node.inputs.push(None);
            }
            node.inputs[2] = Some(bt);
        }
        if let Some(t) = self.g.tensor_mut(x) {
            t.name = name.to_string();
        }
        Ok(Some(x))
    }

    /// Inline a function call with `args` (the bound resources appended).
    fn call(&mut self, fname: &str, mut args: Vec<Val>, depth: usize) -> R<Vec<Val>> {
        if depth >= MAX_CALL_DEPTH {
            return Err(format!("calls to function {fname:?} nest deeper than {MAX_CALL_DEPTH} (recursion?)"));
        }
        let f = match self.decoded.get(fname) {
            Some(f) => f.clone(),
            None => {
                let raw = self.lib.get(fname).ok_or_else(|| format!("function {fname:?} is not in the library"))?;
                let f =
                    std::rc::Rc::new(FunctionDef::decode(raw.clone()).map_err(|e| format!("function {fname:?}: {e}"))?);
                self.decoded.insert(fname.to_string(), f.clone());
                f
            }
        };
        if let Some(vals) = self.bound.get(fname) {
            args.extend(vals.iter().cloned());
        }
        let sig = f.signature.as_ref().ok_or("function without a signature")?;
        if args.len() != sig.input_arg.len() {
            return Err(format!("{fname} takes {} arguments, the call passes {}", sig.input_arg.len(), args.len()));
        }
        let mut fr = Frame::new(&f.node_def, String::new());
        for (a, v) in sig.input_arg.iter().zip(args) {
            fr.vals.insert(a.name.clone(), vec![v]);
        }
        let refs: Vec<String> = sig
            .output_arg
            .iter()
            .map(|o| f.ret.get(&o.name).cloned().ok_or_else(|| format!("{fname}: output {:?} is not returned", o.name)))
            .collect::<R<_>>()?;
        self.eval(&mut fr, &refs, depth + 1)
    }

    /// Convert one node. `Ok(None)`: the op is not supported (listed in the final error).
    fn node(&mut self, fr: &mut Frame<'_>, n: &NodeDef, ins: Vec<Val>, depth: usize) -> R<Option<Vec<Val>>> {
        if !ins.iter().any(|v| matches!(v, Val::Nothing)) || matches!(n.op.as_str(), "NoOp" | "IdentityN") {
            return self.dispatch(fr, n, ins, depth);
        }
        // Behind an unsupported node: its cause is already reported, and what this node does
        // with a missing input is not (its result is nothing too). An op type no arm of
        // `dispatch` handles is reported as well, so one error names every op qlite lacks;
        // the arms are the list of known ops, none is kept by hand.
        self.unknown_op = false;
        let r = self.dispatch(fr, n, ins, depth);
        if std::mem::take(&mut self.unknown_op) {
            return Ok(None);
        }
        let outputs = match r {
            Ok(Some(v)) => v.len().max(1),
            _ => 1,
        };
        Ok(Some(vec![Val::Nothing; outputs]))
    }

    /// The conversion of one node: each family's mapping in turn; an op type none of them
    /// maps sets `unknown_op`.
    fn dispatch(&mut self, fr: &mut Frame<'_>, n: &NodeDef, ins: Vec<Val>, depth: usize) -> R<Option<Vec<Val>>> {
        let name = format!("{}{}", fr.prefix, n.name);
        // Each family in turn; the first whose arms know the op type answers.
        macro_rules! family {
            ($($f:ident),*) => {$(
                self.unknown_op = false;
                let r = self.$f(fr, n, &ins, depth, &name);
                if !std::mem::take(&mut self.unknown_op) {
                    return r;
                }
            )*};
        }
        family!(graph_op, elementwise_op, fc_op, conv_op, pool_op, movement_op, resize_op, norm_op);
        self.unknown_op = true;
        Ok(None)
    }
}

/// A 1-D integer value as shape arithmetic (run-time entries anonymous).
fn shape_vector(v: &Val) -> Option<Vec<SymDim>> {
    match v {
        Val::Sym(s) => Some(s.iter().map(|d| d.map_or(SymDim::Runtime, SymDim::Known)).collect()),
        Val::C(c) if c.dims.len() == 1 => Some(c.ints()?.into_iter().map(SymDim::Known).collect()),
        _ => None,
    }
}

/// An integer value of rank 0 or 1 (a constant or a shape value) as shape arithmetic.
fn sym_of(v: &Val) -> Option<SymVal> {
    match v {
        Val::SymScalar(s) => Some(SymVal::Scalar(s.map_or(SymDim::Runtime, SymDim::Known))),
        Val::C(c) if c.dims.is_empty() => Some(SymVal::Scalar(SymDim::Known(*c.ints()?.first()?))),
        _ => shape_vector(v).map(SymVal::Vector),
    }
}

/// A shape value: a constant when every entry is known.
fn sym_val(v: Vec<Option<i64>>) -> Val {
    match v.iter().copied().collect::<Option<Vec<i64>>>() {
        Some(k) => Val::C(Const::i64(vec![k.len()], &k)),
        None => Val::Sym(v),
    }
}

fn from_sym(v: SymVal) -> Val {
    match v {
        SymVal::Scalar(d) => match d.known() {
            Some(k) => Val::C(Const::i64(vec![], &[k])),
            None => Val::SymScalar(None),
        },
        SymVal::Vector(v) => sym_val(v.iter().map(|d| d.known()).collect()),
    }
}

fn describe(v: &Val) -> String {
    match v {
        Val::T(_) => "a runtime tensor".into(),
        Val::C(c) => format!("a constant {}{:?}", c.dtype, c.dims),
        Val::Res(k) => format!("the variable {k:?}"),
        Val::Sym(_) | Val::SymScalar(_) => "a shape with unknown entries".into(),
        Val::Nothing => "nothing".into(),
    }
}

/// A constant `[rank, 2]` paddings operand (Pad, PadV2, MirrorPad).
fn paddings_of(v: &Val) -> R<Vec<[usize; 2]>> {
    let Val::C(p) = v else { return Err("paddings must be a constant".into()) };
    let v = p.ints().ok_or("paddings must be integers")?;
    v.chunks_exact(2)
        .map(|c| {
            Ok([
                usize::try_from(c[0]).map_err(|_| "negative padding")?,
                usize::try_from(c[1]).map_err(|_| "negative padding")?,
            ])
        })
        .collect()
}

fn padding(n: &NodeDef) -> R<Option<Padding>> {
    match attr_s(n, "padding").as_deref() {
        Some("SAME") => Ok(Some(Padding::Same)),
        Some("VALID") => Ok(Some(Padding::Valid)),
        Some("EXPLICIT") => Ok(None),
        other => Err(format!("padding {other:?}")),
    }
}

fn norm_axis(a: i64, rank: i64) -> R<usize> {
    let v = if a < 0 { a + rank } else { a };
    if v < 0 || v >= rank.max(1) {
        return Err(format!("axis {a} is out of range for rank {rank}"));
    }
    Ok(v as usize)
}

fn resolve_reshape(dims: &[usize], target: &[i64]) -> R<Vec<usize>> {
    let bad = || format!("cannot reshape {dims:?} to {target:?}");
    let total = qlite_ir::shape::checked_product(dims).ok_or_else(bad)?;
    let known = target
        .iter()
        .filter(|&&d| d >= 0)
        .try_fold(1usize, |a, &d| usize::try_from(d).ok().and_then(|d| a.checked_mul(d)))
        .ok_or_else(bad)?;
    let unknown = target.iter().filter(|&&d| d == -1).count();
    let out: Vec<usize> = target
        .iter()
        .map(|&d| match d {
            -1 if unknown == 1 && known > 0 => Ok(total / known),
            d if d >= 0 => usize::try_from(d).map_err(|_| bad()),
            _ => Err(bad()),
        })
        .collect::<R<_>>()?;
    if qlite_ir::shape::checked_product(&out) != Some(total) {
        return Err(bad());
    }
    Ok(out)
}

/// Elementwise arithmetic on two float constants with numpy broadcasting.
fn fold_binary(op: &str, a: &Const, b: &Const) -> R<Const> {
    if let (Some(x), Some(y)) = (a.ints(), b.ints()) {
        return fold_int_binary(op, a, b, &x, &y);
    }
    let (x, y) = (a.f32s().ok_or("mixed-type constant arithmetic")?, b.f32s().ok_or("mixed-type constant arithmetic")?);
    let rank = a.dims.len().max(b.dims.len());
    let pad = |d: &[usize]| {
        let mut v = vec![1usize; rank - d.len()];
        v.extend_from_slice(d);
        v
    };
    let (da, db) = (pad(&a.dims), pad(&b.dims));
    let mut out = Vec::with_capacity(rank);
    for (p, q) in da.iter().zip(&db) {
        out.push(match (p, q) {
            (p, q) if p == q => *p,
            (1, q) => *q,
            (p, 1) => *p,
            _ => return Err(format!("shapes {:?} and {:?} do not broadcast", a.dims, b.dims)),
        });
    }
    let n: usize = out.iter().product();
    if n > MAX_CONST_ELEMENTS {
        return Err("folded constant too large".into());
    }
    let index = |d: &[usize], mut i: usize| {
        let mut k = 0;
        let mut stride = 1;
        for ax in (0..rank).rev() {
            let c = i % out[ax];
            i /= out[ax];
            if d[ax] != 1 {
                k += c * stride;
            }
            stride *= d[ax];
        }
        k
    };
    let f: fn(f32, f32) -> f32 = match op {
        "Sub" => |p, q| p - q,
        "Mul" => |p, q| p * q,
        "RealDiv" => |p, q| p / q,
        "Maximum" => f32::max,
        "Minimum" => f32::min,
        _ => |p, q| p + q,
    };
    let v: Vec<f32> = (0..n).map(|i| f(x[index(&da, i)], y[index(&db, i)])).collect();
    Ok(Const::f32(out, &v))
}

/// Elementwise arithmetic on two integer constants (the first one's type), numpy broadcasting.
fn fold_int_binary(op: &str, a: &Const, b: &Const, x: &[i64], y: &[i64]) -> R<Const> {
    let sa = if a.dims.is_empty() { SymVal::Scalar(SymDim::Known(x[0])) } else { SymVal::from_ints(x) };
    let sb = if b.dims.is_empty() { SymVal::Scalar(SymDim::Known(y[0])) } else { SymVal::from_ints(y) };
    if a.dims.len() > 1 || b.dims.len() > 1 || x.is_empty() || y.is_empty() {
        return Err(format!("integer constant arithmetic on shapes {:?} and {:?}", a.dims, b.dims));
    }
    let op = match op {
        "Sub" => SymOp::Sub,
        "Mul" => SymOp::Mul,
        "FloorDiv" => SymOp::FloorDiv,
        "Maximum" => SymOp::Max,
        "Minimum" => SymOp::Min,
        "RealDiv" => return Err("RealDiv of integers".into()),
        _ => SymOp::Add,
    };
    let r = sym::binary(op, &sa, &sb).map_err(|e| e.to_string())?;
    let v = r.known().ok_or("integer constant arithmetic")?;
    let dims = if matches!(r, SymVal::Scalar(_)) { vec![] } else { vec![v.len()] };
    Ok(match a.dtype {
        DType::I32 => {
            let w: Vec<i32> =
                v.iter().map(|&e| i32::try_from(e)).collect::<Result<_, _>>().map_err(|_| "int32 overflow")?;
            Const { dtype: DType::I32, dims, data: qlite_ir::tensor::i32_bytes(&w) }
        }
        _ => Const::i64(dims, &v),
    })
}

fn ir_input_shape(ti: Option<&TensorShapeProto>, over: Option<&Vec<Dim>>) -> R<Shape> {
    if let Some(o) = over {
        return Ok(Shape::new(o.clone()));
    }
    let s = ti.ok_or("an input without a shape")?;
    if s.unknown_rank {
        return Err("an input of unknown rank (give it with --input-shape)".into());
    }
    Ok(Shape::new(s.dim.iter().map(|d| if d.size < 0 { Dim::Dynamic } else { Dim::Fixed(d.size as usize) }).collect()))
}

/// Checkpoint key of each object-graph node with a VARIABLE_VALUE attribute.
fn checkpoint_keys(bundle: Option<&Bundle>, sm: &proto::SavedObjectGraph) -> HashMap<i32, String> {
    let mut keys = HashMap::new();
    if let Some(og) = bundle
        .and_then(|b| b.string_scalar("_CHECKPOINTABLE_OBJECT_GRAPH").ok())
        .and_then(|raw| TrackableObjectGraph::decode(raw).ok())
    {
        for (i, n) in og.nodes.iter().enumerate() {
            if let Some(a) = n.attributes.iter().find(|a| a.name == "VARIABLE_VALUE") {
                keys.insert(i as i32, a.checkpoint_key.clone());
            }
        }
        return keys;
    }
    // No object graph in the bundle: the key is the first breadth-first path from the root.
    let escape = |s: &str| s.replace('.', "..").replace('/', ".S");
    let mut path: HashMap<i32, String> = HashMap::from([(0, String::new())]);
    let mut queue = std::collections::VecDeque::from([0i32]);
    while let Some(id) = queue.pop_front() {
        let Some(node) = usize::try_from(id).ok().and_then(|i| sm.nodes.get(i)) else { continue };
        let base = path.get(&id).cloned().unwrap_or_default();
        for c in &node.children {
            if path.contains_key(&c.node_id) {
                continue;
            }
            let p = if base.is_empty() { escape(&c.local_name) } else { format!("{base}/{}", escape(&c.local_name)) };
            path.insert(c.node_id, p);
            queue.push_back(c.node_id);
        }
    }
    for (i, n) in sm.nodes.iter().enumerate() {
        if matches!(n.kind, Some(proto::saved_object::Kind::Variable(_)))
            && let Some(p) = path.get(&(i as i32))
        {
            keys.insert(i as i32, format!("{p}/.ATTRIBUTES/VARIABLE_VALUE"));
        }
    }
    keys
}

/// Import the signature of a SavedModel directory.
pub fn import_saved_model(dir: &Path, opts: &ImportOptions) -> Result<Graph, SmError> {
    let pb = map_file(&dir.join("saved_model.pb"))?;
    let sm = SavedModel::decode(pb)
        .map_err(|e| SmError::Decode { what: "saved_model.pb".into(), message: e.to_string() })?;
    let mg = sm
        .meta_graphs
        .iter()
        .find(|m| m.meta_info_def.as_ref().is_none_or(|i| i.tags.is_empty() || i.tags.iter().any(|t| t == "serve")))
        .ok_or_else(|| SmError::Invalid("saved_model.pb has no meta graph tagged \"serve\"".into()))?;
    let key = opts.signature.clone().unwrap_or_else(|| "serving_default".into());
    let sig = mg.signature_def.get(&key).ok_or_else(|| {
        let have: Vec<&str> = mg.signature_def.keys().map(String::as_str).filter(|k| !k.starts_with("__")).collect();
        SmError::Invalid(format!("no signature {key:?}; the model has: {}", have.join(", ")))
    })?;
    let prefix = dir.join("variables").join("variables");
    let bundle =
        if prefix.with_extension("index").exists() { Some(Bundle::open(&prefix, &|p| map_file(p))?) } else { None };
    let graph = mg.graph_def.as_ref().ok_or_else(|| SmError::Invalid("the meta graph has no graph".into()))?;
    let empty = proto::SavedObjectGraph::default();
    let og = mg.object_graph_def.as_ref().unwrap_or(&empty);
    let keys = checkpoint_keys(bundle.as_ref(), og);
    // A function's captures: variables (their checkpoint keys) and tensors captured by value
    // (a Const op of the meta graph: Keras's Rescaling and Normalization constants).
    let consts: HashMap<&str, &NodeDef> =
        graph.node.iter().filter(|n| n.op == "Const").map(|n| (n.name.as_str(), n)).collect();
    let capture = |id: &i32| -> Option<Val> {
        if let Some(k) = keys.get(id) {
            return Some(Val::Res(k.clone()));
        }
        let node = og.nodes.get(usize::try_from(*id).ok()?)?;
        let Some(proto::saved_object::Kind::Constant(c)) = &node.kind else { return None };
        match attr(consts.get(c.operation.as_str())?, "value") {
            Some(attr_value::Value::Tensor(t)) => tensor_const(t).ok().map(Val::C),
            _ => None,
        }
    };
    let mut bound = HashMap::new();
    for (fname, cf) in &og.concrete_functions {
        let vals: Option<Vec<Val>> = cf.bound_inputs.iter().map(capture).collect();
        if let Some(vals) = vals.filter(|v| !v.is_empty()) {
            bound.insert(fname.clone(), vals);
        }
    }
    convert(graph, Some(sig), bundle.as_ref(), bound, opts, &key)
}

/// Import a frozen GraphDef (`.pb`): placeholders are the inputs, nodes nothing reads the outputs.
pub fn import_graph_def(bytes: Bytes, opts: &ImportOptions) -> Result<Graph, SmError> {
    let g = GraphDef::decode(bytes).map_err(|e| SmError::Decode { what: "GraphDef".into(), message: e.to_string() })?;
    convert(&g, None, None, HashMap::new(), opts, "serving_default")
}

fn convert(
    graph: &GraphDef,
    sig: Option<&proto::SignatureDef>,
    bundle: Option<&Bundle>,
    bound: HashMap<String, Vec<Val>>,
    opts: &ImportOptions,
    key: &str,
) -> Result<Graph, SmError> {
    let mut lib = HashMap::new();
    for raw in graph.library.iter().flat_map(|l| &l.function) {
        let head = proto::FunctionDefName::decode(raw.clone())
            .map_err(|e| SmError::Decode { what: "a library function".into(), message: e.to_string() })?;
        if let Some(s) = head.signature {
            lib.insert(s.name, raw.clone());
        }
    }
    let mut im = Im {
        g: Graph::new(key.to_string()),
        lib,
        decoded: HashMap::new(),
        bundle,
        bound,
        unsupported: BTreeSet::new(),
        unknown_op: false,
        deferred: Default::default(),
    };
    let mut fr = Frame::new(&graph.node, String::new());
    // Inputs and outputs: from the signature, or (frozen graph) placeholders and sinks.
    let (ins, outs): (Vec<InputSpec>, Vec<(String, String)>) = match sig {
        Some(s) => (
            s.inputs.iter().map(|(k, t)| (k.clone(), tensor_name(t), t.dtype, t.tensor_shape.clone())).collect(),
            s.outputs.iter().map(|(k, t)| (k.clone(), tensor_name(t))).collect(),
        ),
        None => {
            let read: BTreeSet<&str> =
                graph.node.iter().flat_map(|n| n.input.iter().filter_map(|r| parse_ref(r).map(|p| p.0))).collect();
            let ins = graph
                .node
                .iter()
                .filter(|n| n.op == "Placeholder")
                .map(|n| {
                    let dt = match attr(n, "dtype") {
                        Some(attr_value::Value::Type(t)) => *t,
                        _ => DataType::DtFloat as i32,
                    };
                    let shape = match attr(n, "shape") {
                        Some(attr_value::Value::Shape(s)) => Some(s.clone()),
                        _ => None,
                    };
                    (n.name.clone(), n.name.clone(), dt, shape)
                })
                .collect();
            let outs = graph
                .node
                .iter()
                .filter(|n| {
                    !read.contains(n.name.as_str())
                        && !matches!(n.op.as_str(), "NoOp" | "Placeholder" | "Const" | "Assert")
                })
                .map(|n| (n.name.clone(), format!("{}:0", n.name)))
                .collect();
            (ins, outs)
        }
    };
    if outs.is_empty() {
        return Err(SmError::Invalid("the graph has no output".into()));
    }
    let mut input_ids = Vec::new();
    let mut input_names = Vec::new();
    for (name, tensor, dt, shape) in &ins {
        let dtype = ir_dtype(*dt)
            .ok_or_else(|| SmError::Unsupported(format!("input {name:?} has type {}", dtype_name(*dt))))?;
        let shape = ir_input_shape(shape.as_ref(), opts.input_shapes.get(name))
            .map_err(|e| SmError::Invalid(format!("input {name:?}: {e}")))?;
        let id = im.g.add_tensor(Tensor::activation(name.clone(), dtype, shape));
        let node = parse_ref(tensor).map(|p| p.0.to_string()).unwrap_or_default();
        fr.vals.insert(node, vec![Val::T(id)]);
        input_ids.push(id);
        input_names.push(name.clone());
    }
    for over in opts.input_shapes.keys() {
        if !input_names.contains(over) {
            return Err(SmError::Invalid(format!(
                "--input-shape names {over:?}, which is not an input ({})",
                input_names.join(", ")
            )));
        }
    }
    im.g.set_inputs(input_ids);
    let refs: Vec<String> = outs.iter().map(|(_, t)| t.clone()).collect();
    let vals = im.eval(&mut fr, &refs, 0);
    if !im.unsupported.is_empty() {
        let list: Vec<String> = im.unsupported.iter().map(|(op, n)| format!("{op} (node {n:?})")).collect();
        return Err(SmError::Unsupported(format!("unsupported TensorFlow operators: {}", list.join(", "))));
    }
    let vals = vals.map_err(SmError::Invalid)?;
    std::mem::take(&mut im.deferred).run(&mut im.g)?;
    let mut out_ids = Vec::new();
    let mut out_names = Vec::new();
    for ((name, _), v) in outs.iter().zip(&vals) {
        let id = im.materialize(name, v).map_err(SmError::Invalid)?;
        if let Some(t) = im.g.tensor_mut(id) {
            t.name = name.clone();
        }
        out_ids.push(id);
        out_names.push(name.clone());
    }
    im.g.set_outputs(out_ids);
    im.g.set_signature(Some(Signature { key: key.to_string(), inputs: input_names, outputs: out_names }));
    im.g.set_description(Some(if sig.is_some() {
        "imported from a TensorFlow SavedModel".into()
    } else {
        "imported from a TensorFlow GraphDef".into()
    }));
    qlite_ir::pass::run_pass(&qlite_ir::passes::DeadCodeElimination, &mut im.g)
        .map_err(|e| SmError::Invalid(e.to_string()))?;
    qlite_ir::verify(&im.g).map_err(|e| SmError::Invalid(e.to_string()))?;
    Ok(im.g)
}

/// (signature name, tensor reference, dtype, shape) of an input.
type InputSpec = (String, String, i32, Option<TensorShapeProto>);

fn tensor_name(t: &proto::TensorInfo) -> String {
    match &t.encoding {
        Some(proto::tensor_info::Encoding::Name(n)) => n.clone(),
        None => String::new(),
    }
}
