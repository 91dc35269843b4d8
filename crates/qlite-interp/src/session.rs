//! Repeated inference without allocation: a [`Session`] owns a planned arena of output
//! buffers and the fast kernels' scratch space.
//!
//! The plan is made once, from the graph: every value a node computes gets an arena slot, and
//! a slot is handed to a later value of the same dtype once every reader of its current value
//! has run (greedy reuse in execution order, as TFLite's arena planner does with offsets).
//! Buffers grow to the sizes of the first run and are then reused: a single-threaded run of a
//! model whose ops all have in-place kernels (the fast int8 FULLY_CONNECTED, CONV_2D,
//! DEPTHWISE_CONV_2D and spatial MEAN, the hybrid FULLY_CONNECTED, QUANTIZE, DEQUANTIZE,
//! RESHAPE, int8 and float SOFTMAX, MAX/AVERAGE_POOL_2D) allocates nothing after the first. Other ops run the interpreter's
//! general path, which allocates their output. The values are the same bytes
//! [`Interpreter::run`] computes.

use crate::array::{Array, Data};
use crate::fast::Scratch;
use crate::kernels::{self, OutQ};
use crate::{InterpError, Interpreter, check_input, fits};
use qlite_ir::{DType, Node, Op, VerifyError};

/// An interpreter prepared for repeated runs; see the module documentation.
#[derive(Debug)]
pub struct Session<'i, 'g> {
    interp: &'i Interpreter<'g>,
    /// Per tensor: its slot in `slots` (computed values), or `None`.
    slot_of: Vec<Option<usize>>,
    /// Per tensor: its position among the graph inputs.
    input_of: Vec<Option<usize>>,
    slots: Vec<Option<Array>>,
    scratch: Scratch,
}

impl<'i, 'g> Session<'i, 'g> {
    pub(crate) fn new(interp: &'i Interpreter<'g>) -> Self {
        let g = interp.graph;
        let n_tensors = g.tensors().len();
        let mut slot_of = vec![None; n_tensors];
        let mut input_of = vec![None; n_tensors];
        for (i, t) in g.inputs().iter().enumerate() {
            input_of[t.index()] = Some(i);
        }
        // Greedy plan in execution order: free slots by dtype, released after last use.
        let mut slot_dtype: Vec<DType> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        for (ni, node) in g.nodes().iter().enumerate() {
            if interp.folded[ni] {
                continue;
            }
            for o in &node.outputs {
                let dtype = g.tensors()[o.index()].dtype;
                let slot = match free.iter().rposition(|&s| slot_dtype[s] == dtype) {
                    Some(i) => free.swap_remove(i),
                    None => {
                        slot_dtype.push(dtype);
                        slot_dtype.len() - 1
                    }
                };
                slot_of[o.index()] = Some(slot);
            }
            for (k, t) in node.input_ids().enumerate() {
                let once = node.input_ids().take(k).all(|u| u != t);
                if once
                    && interp.last_use[t.index()] == ni
                    && let Some(s) = slot_of[t.index()]
                {
                    free.push(s);
                }
            }
        }
        // A graph output that is a graph input gets a slot of its own for the copy.
        let mut n_slots = slot_dtype.len();
        for &o in g.outputs() {
            if input_of[o.index()].is_some() && slot_of[o.index()].is_none() {
                slot_of[o.index()] = Some(n_slots);
                n_slots += 1;
            }
        }
        Session { interp, slot_of, input_of, slots: vec![None; n_slots], scratch: Scratch::default() }
    }

    /// Run on `inputs` (one array per graph input, in order); the results are then read with
    /// [`Session::output`] / [`Session::outputs`] until the next run.
    pub fn run(&mut self, inputs: &[Array]) -> Result<(), InterpError> {
        self.run_with(inputs, &mut |_| {})
    }

    /// [`Session::run`], calling `after_node` with each node's index once it has run (nodes
    /// folded at load are not run): a profiler's hook.
    pub fn run_with(&mut self, inputs: &[Array], after_node: &mut dyn FnMut(usize)) -> Result<(), InterpError> {
        crate::isa::with(self.interp.isa, || self.run_here(inputs, true, &mut |ni, _, _| after_node(ni)))
    }

    /// [`Session::run`], showing every input and every computed value to `observer` (as
    /// [`Interpreter::run_observed`] does, without allocating per run): calibration's loop.
    pub fn run_observed(&mut self, inputs: &[Array], observer: &mut dyn crate::Observer) -> Result<(), InterpError> {
        let g = self.interp.graph;
        for (arr, &t) in inputs.iter().zip(g.inputs()) {
            observer.observe(t, arr);
        }
        crate::isa::with(self.interp.isa, || self.run_here(inputs, false, &mut |_, t, v| observer.observe(t, v)))
    }

    /// `elide`: skip the nodes whose only reader computes them itself (see
    /// `Interpreter::elided`); observed runs must not, as every value is shown.
    fn run_here(
        &mut self,
        inputs: &[Array],
        elide: bool,
        after_node: &mut dyn FnMut(usize, qlite_ir::TensorId, &Array),
    ) -> Result<(), InterpError> {
        let Session { interp, slot_of, input_of, slots, scratch } = self;
        let g = interp.graph;
        if inputs.len() != g.inputs().len() {
            return Err(InterpError::InputCount { expected: g.inputs().len(), got: inputs.len() });
        }
        for (i, arr) in inputs.iter().enumerate() {
            check_input(g, i, arr)?;
        }
        for (ni, node) in g.nodes().iter().enumerate() {
            if interp.folded[ni] || (elide && interp.elided.get(ni) == Some(&true)) {
                continue;
            }
            let err =
                |message: String| InterpError::Node { node: ni, op: node.op.name(), name: node.name.clone(), message };
            let Some(&out_id) = node.outputs.first() else { continue };
            let Some(slot) = slot_of[out_id.index()] else { continue };
            let mut out = slots[slot].take();
            let value = |t: qlite_ir::TensorId| -> Option<&Array> {
                match (input_of[t.index()], slot_of[t.index()]) {
                    (Some(i), _) => inputs.get(i),
                    (None, Some(s)) => slots[s].as_ref(),
                    (None, None) => interp.consts[t.index()].as_deref(),
                }
            };
            let x = node.input(0).and_then(value);
            let x2 = node.input(1).and_then(value);
            let packed = interp.packed.get(ni).and_then(|p| p.as_ref());
            let done = match (packed, x) {
                (Some(p), Some(x)) => p.run_into(x, x2, &mut out, scratch, interp.par()).is_some(),
                _ => false,
            } || x.is_some_and(|x| in_place(interp, node, x, &mut out).is_some());
            if !done {
                // A fused pair's unary half was skipped: its slot holds no value of this run.
                if elide && interp.reads_elided.get(ni) == Some(&true) {
                    return Err(err("a fused kernel did not run on its input (internal error)".into()));
                }
                let ins: Vec<Option<&Array>> = node.inputs.iter().map(|t| t.and_then(value)).collect();
                Array::store_keeping(&mut out, interp.eval(node, &ins).map_err(err)?);
            }
            let decl = &g.tensors()[out_id.index()];
            let Some(o) = &out else { return Err(err("no value was computed".into())) };
            if o.dtype() != decl.dtype || !fits(&decl.shape, o.shape()) {
                return Err(err(format!(
                    "computed {}{:?} but the output is declared {}{}",
                    o.dtype(),
                    o.shape(),
                    decl.dtype,
                    decl.shape
                )));
            }
            after_node(ni, out_id, o);
            slots[slot] = out;
        }
        // Outputs that are graph inputs (passed through) are copied into their own slots.
        for &o in g.outputs() {
            if let (Some(i), Some(s)) = (input_of[o.index()], slot_of[o.index()]) {
                slots[s] = inputs.get(i).cloned();
            }
        }
        Ok(())
    }

    /// Output `i` of the last run.
    pub fn output(&self, i: usize) -> Result<&Array, InterpError> {
        let g = self.interp.graph;
        let o = *g.outputs().get(i).ok_or(InterpError::OutputIndex { index: i, count: g.outputs().len() })?;
        let v = match self.slot_of[o.index()] {
            Some(s) => self.slots.get(s).and_then(|v| v.as_ref()),
            None => self.interp.consts[o.index()].as_deref(),
        };
        v.ok_or_else(|| {
            InterpError::Verify(VerifyError::UndefinedOutput { tensor: o, name: g.tensors()[o.index()].name.clone() })
        })
    }

    /// Every output of the last run, in order.
    pub fn outputs(&self) -> Result<Vec<&Array>, InterpError> {
        (0..self.interp.graph.outputs().len()).map(|i| self.output(i)).collect()
    }

    /// The arena's slots (buffers shared by values whose lifetimes do not overlap).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Bytes the arena and the kernels' scratch hold now (after a run: the peak the session
    /// needs; the model's constants are not counted).
    pub fn arena_bytes(&self) -> usize {
        self.slots.iter().flatten().map(Array::capacity_bytes).sum::<usize>() + self.scratch.capacity_bytes()
    }
}

/// The ops with an in-place kernel besides the packed ones; `None` sends the node to the
/// general path.
fn in_place(interp: &Interpreter, node: &Node, x: &Array, out: &mut Option<Array>) -> Option<()> {
    let g = interp.graph;
    let in_t = node.input(0).and_then(|t| g.tensor(t))?;
    let out_t = node.outputs.first().and_then(|t| g.tensor(*t))?;
    let per_tensor = |q: Option<&qlite_ir::QuantParams>| kernels::per_tensor(q, "").ok();
    match (&node.op, x.data()) {
        (Op::Quantize, Data::F32(v)) if out_t.dtype == DType::I8 => {
            let (s, z) = per_tensor(out_t.quant.as_ref())?;
            let y = Array::reuse_i8(out, x.shape())?;
            crate::kernels::quantize_f32_i8(v, s, z, y);
            Some(())
        }
        (Op::Quantize, Data::F32(v)) if out_t.dtype == DType::I16 => {
            // The reference's arithmetic (`kernels::quantize`), element by element.
            let (s, z) = per_tensor(out_t.quant.as_ref())?;
            let y = Array::reuse_i16(out, x.shape())?;
            for (o, &f) in y.iter_mut().zip(v) {
                let q = (crate::fixedpoint::round_half_away(f / s) as i64).saturating_add(z as i64);
                *o = q.clamp(i16::MIN as i64, i16::MAX as i64) as i16;
            }
            Some(())
        }
        (Op::Dequantize, Data::I8(v)) => {
            let (s, z) = per_tensor(in_t.quant.as_ref())?;
            let y = Array::reuse_f32(out, x.shape())?;
            for (o, &q) in y.iter_mut().zip(v) {
                *o = (s as f64 * (q as i64 - z as i64) as f64) as f32;
            }
            Some(())
        }
        (Op::Dequantize, Data::I16(v)) => {
            let (s, z) = per_tensor(in_t.quant.as_ref())?;
            let y = Array::reuse_f32(out, x.shape())?;
            for (o, &q) in y.iter_mut().zip(v) {
                *o = (s as f64 * (q as i64 - z as i64) as f64) as f32;
            }
            Some(())
        }
        (Op::Reshape(_), Data::I8(_) | Data::I16(_) | Data::F32(_)) => {
            // The declared shape; one dimension known only at run time (a dynamic batch) is what
            // the element count leaves for it. Anything else goes to the general path.
            let decl = out_t.shape.dims();
            let mut dims = [0usize; 8];
            let mut unknown = None;
            let mut known = 1usize;
            for (i, (d, s)) in dims.iter_mut().zip(decl).enumerate() {
                match s {
                    qlite_ir::Dim::Fixed(n) => {
                        *d = *n;
                        known = known.checked_mul(*n)?;
                    }
                    _ if unknown.is_none() => unknown = Some(i),
                    _ => return None,
                }
            }
            let len = x.len();
            if let Some(i) = unknown {
                if known == 0 || !len.is_multiple_of(known) {
                    return None;
                }
                dims[i] = len / known;
            }
            let dims = dims.get(..decl.len())?;
            match x.data() {
                Data::I8(v) => {
                    let y = Array::reuse_i8(out, dims)?;
                    (y.len() == v.len()).then(|| y.copy_from_slice(v))
                }
                Data::F32(v) => {
                    let y = Array::reuse_f32(out, dims)?;
                    (y.len() == v.len()).then(|| y.copy_from_slice(v))
                }
                Data::I16(v) => {
                    let y = Array::reuse_i16(out, dims)?;
                    (y.len() == v.len()).then(|| y.copy_from_slice(v))
                }
                _ => None,
            }
        }
        (Op::Softmax(s), Data::F32(v)) => {
            let depth = x.shape().last().copied().unwrap_or(1);
            let y = Array::reuse_f32(out, x.shape())?;
            crate::kernels::softmax_f32_into(s, v, depth, y);
            Some(())
        }
        (Op::Softmax(s), Data::I8(v)) if out_t.dtype == DType::I8 => {
            let (s_in, _) = per_tensor(in_t.quant.as_ref())?;
            let (scale, zp) = per_tensor(out_t.quant.as_ref())?;
            if zp != -128 || (scale - 1.0 / 256.0).abs() > 0.001 / 256.0 {
                return None; // the general path reports it
            }
            let depth = x.shape().last().copied().unwrap_or(1);
            let y = Array::reuse_i8(out, x.shape())?;
            kernels::softmax_with(v, depth, s.beta, s_in, OutQ { dtype: DType::I8, scale, zp }, |i, q| y[i] = q as i8);
            Some(())
        }
        (Op::Pool2d(p), Data::I8(v)) if out_t.dtype == DType::I8 && x.shape().len() == 4 => {
            let (s_in, z_in) = per_tensor(in_t.quant.as_ref())?;
            let (scale, zp) = per_tensor(out_t.quant.as_ref())?;
            if (s_in, z_in) != (scale, zp) {
                return None;
            }
            let xs = x.shape();
            let (oh, _) = p.padding.compute(xs[1], p.filter[0], p.stride[0], 1)?;
            let (ow, _) = p.padding.compute(xs[2], p.filter[1], p.stride[1], 1)?;
            let os = [xs[0], oh, ow, xs[3]];
            let y = Array::reuse_i8(out, &os)?;
            kernels::pool_with(p, v, xs, &os, OutQ { dtype: DType::I8, scale, zp }, |i, q| y[i] = q as i8);
            Some(())
        }
        _ => None,
    }
}
