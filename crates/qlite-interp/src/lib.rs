//! Executes qlite IR graphs.
//!
//! [`Interpreter::new`] verifies the graph and decodes its constants once; [`Interpreter::run`]
//! executes it on input arrays. An [`Observer`] sees every input and every node output as it is
//! computed (calibration uses this). Float32 execution covers every op of the IR; integer
//! execution covers data movement, QUANTIZE and DEQUANTIZE (integer arithmetic kernels come with
//! the int8 reference interpreter). The interpreter never reads files.

// Library code never unwraps: values derived from a file are checked and errors returned.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod array;
pub mod compare;
pub mod fast;
pub mod fixedpoint;
pub mod isa;
pub mod kernels;
pub mod session;
pub mod threads;

pub use array::{Array, ArrayError, Data};
pub use compare::{Agreement, Mismatch, Tolerance, compare, compare_all};
pub use isa::Isa;
pub use session::Session;

use qlite_ir::op::{Activation, UnaryKind};
use qlite_ir::{DType, Dim, Graph, Op, QuantParams, Shape, TensorId, VerifyError, verify};
use std::sync::Arc;

/// Something that went wrong while preparing or running a graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterpError {
    #[error("invalid graph: {0}")]
    Verify(#[from] VerifyError),
    #[error("cannot run ops qlite does not model: {0}")]
    Opaque(String),
    #[error("cannot run nodes on element types qlite has no kernels for: {0}")]
    KeptOnlyTypes(String),
    #[error("constant {tensor} ({name:?}): {source}")]
    Constant { tensor: TensorId, name: String, source: ArrayError },
    #[error("expected {expected} inputs, got {got}")]
    InputCount { expected: usize, got: usize },
    #[error("output {index} asked of a graph with {count} outputs")]
    OutputIndex { index: usize, count: usize },
    #[error("input {index} ({name:?}) must be {expected}, got {got}")]
    InputMismatch { index: usize, name: String, expected: String, got: String },
    #[error("node {node} ({op} {name:?}): {message}")]
    Node { node: usize, op: &'static str, name: String, message: String },
}

/// Sees every tensor value the interpreter computes.
pub trait Observer {
    /// Called once for each graph input and each node output, in execution order.
    fn observe(&mut self, tensor: TensorId, value: &Array);
}

/// An observer that does nothing.
#[derive(Debug, Default)]
pub struct NoObserver;
impl Observer for NoObserver {
    fn observe(&mut self, _: TensorId, _: &Array) {}
}

/// A prepared graph.
#[derive(Debug)]
pub struct Interpreter<'g> {
    graph: &'g Graph,
    /// Constants decoded once; shared (not copied) by the fast kernels that read them as is.
    consts: Vec<Option<Arc<Array>>>,
    /// Nodes whose inputs are all constant, evaluated once at load (e.g. DEQUANTIZE of
    /// float16 weights, as TFLite does in Prepare).
    folded: Vec<bool>,
    /// For each tensor, the index of the last node reading it (to free values early).
    last_use: Vec<usize>,
    /// Run LOCAL_RESPONSE_NORMALIZATION as LiteRT's reference kernel does (see
    /// [`Interpreter::litert_reference_lrn`]).
    reference_lrn: bool,
    /// Per node: its packed fast kernel, when [`Kernels::Fast`] is selected and one applies.
    packed: Vec<Option<fast::Packed>>,
    /// Per node: an element-wise unary op whose only reader computes it itself (a fused pair:
    /// int8 `x · sigmoid(x)` tables, float swish); plain runs skip it, observed runs (which
    /// must see every value) do not.
    elided: Vec<bool>,
    /// Per node: it reads a value `elided` skips (the binary half of such a pair).
    reads_elided: Vec<bool>,
    /// Worker threads the large fast kernels split over ([`Interpreter::threads`]).
    pool: Option<Arc<threads::ThreadPool>>,
    /// The least work a part of a split kernel gets.
    min_work: usize,
    /// The kernels chosen with [`Interpreter::kernels`].
    kernels: Kernels,
    /// The instruction-set tier the fast kernels are packed for and run at.
    isa: Isa,
}

/// Which integer kernels run: the plain reference loops (the oracle) or the fast ones, which
/// give the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    #[default]
    Reference,
    Fast,
}

impl std::str::FromStr for Kernels {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reference" => Ok(Kernels::Reference),
            "fast" => Ok(Kernels::Fast),
            _ => Err(format!("unknown kernels {s:?} (expected reference or fast)")),
        }
    }
}

impl<'g> Interpreter<'g> {
    /// Verify `graph` and decode its constants.
    pub fn new(graph: &'g Graph) -> Result<Self, InterpError> {
        verify(graph)?;
        let opaque: Vec<String> = graph
            .nodes()
            .iter()
            .filter_map(|n| match &n.op {
                Op::Opaque(o) => Some(format!("{} v{} (node {:?})", o.op_type, o.version, n.name)),
                _ => None,
            })
            .collect();
        if !opaque.is_empty() {
            return Err(InterpError::Opaque(opaque.join(", ")));
        }
        // Types read and written back but never computed with (strings, 4-bit, float64, ...):
        // every node that touches one is named.
        let kept: Vec<String> = graph
            .nodes()
            .iter()
            .filter_map(|n| {
                let t = n.input_ids().chain(n.outputs.iter().copied()).find_map(|t| {
                    graph.tensor(t).filter(|t| t.dtype.is_kept_only()).map(|t| (t.dtype, t.name.clone()))
                })?;
                Some(format!("{} (node {:?}: {} tensor {:?})", n.op.name(), n.name, t.0, t.1))
            })
            .collect();
        if !kept.is_empty() {
            return Err(InterpError::KeptOnlyTypes(kept.join(", ")));
        }
        let mut consts = Vec::with_capacity(graph.tensors().len());
        for id in graph.tensor_ids() {
            let t = &graph.tensors()[id.index()];
            consts.push(match (&t.data, t.shape.to_fixed()) {
                (Some(d), Some(dims)) => {
                    let a = Array::from_le_bytes(t.dtype, dims, d).map_err(|source| InterpError::Constant {
                        tensor: id,
                        name: t.name.clone(),
                        source,
                    })?;
                    // Decoded: the file pages behind a mapped constant can go (they are
                    // read again from the file if the graph is used later).
                    qlite_ir::hint::constant_consumed(d);
                    Some(Arc::new(a))
                }
                _ => None,
            });
        }
        for (ni, n) in graph.nodes().iter().enumerate() {
            validate_quantized(graph, n).map_err(|message| InterpError::Node {
                node: ni,
                op: n.op.name(),
                name: n.name.clone(),
                message,
            })?;
        }
        let mut last_use = vec![usize::MAX; graph.tensors().len()];
        for (ni, n) in graph.nodes().iter().enumerate() {
            for t in n.input_ids() {
                last_use[t.index()] = ni;
            }
        }
        for &o in graph.outputs() {
            last_use[o.index()] = usize::MAX;
        }
        let mut interp = Interpreter {
            graph,
            consts,
            folded: vec![false; graph.nodes().len()],
            last_use,
            reference_lrn: false,
            packed: Vec::new(),
            elided: Vec::new(),
            reads_elided: Vec::new(),
            pool: None,
            min_work: fast::DEFAULT_MIN_WORK,
            kernels: Kernels::Reference,
            isa: Isa::process_default(),
        };
        interp.fold_constant_nodes()?;
        Ok(interp)
    }

    /// Evaluate, once, every node whose inputs are all constants (or outputs of such nodes)
    /// and whose output is not a graph output.
    fn fold_constant_nodes(&mut self) -> Result<(), InterpError> {
        let g = self.graph;
        for (ni, node) in g.nodes().iter().enumerate() {
            let all_const = node.input_ids().all(|t| self.consts[t.index()].is_some())
                && node.input_ids().next().is_some()
                && node.outputs.iter().all(|o| !g.outputs().contains(o));
            if !all_const || node.outputs.len() != 1 {
                continue;
            }
            let ins: Vec<Option<&Array>> =
                node.inputs.iter().map(|t| t.and_then(|t| self.consts[t.index()].as_deref())).collect();
            let out = self.eval(node, &ins).map_err(|message| InterpError::Node {
                node: ni,
                op: node.op.name(),
                name: node.name.clone(),
                message,
            })?;
            if let Some(&o) = node.outputs.first() {
                self.consts[o.index()] = Some(Arc::new(out));
                self.folded[ni] = true;
            }
        }
        Ok(())
    }

    /// Sum LOCAL_RESPONSE_NORMALIZATION's squares over channels `[c - radius, c + radius)`, as
    /// LiteRT's reference kernel (`reference_ops::LocalResponseNormalization`) does, instead of
    /// TensorFlow's (and ONNX's, and LiteRT's default kernel's) `[c - radius, c + radius]`.
    /// Only to reproduce that kernel's output; the default is the TensorFlow window.
    pub fn litert_reference_lrn(mut self, on: bool) -> Self {
        self.reference_lrn = on;
        self
    }

    /// Select the integer kernels. [`Kernels::Fast`] packs the weights of every op it has a
    /// fast kernel for now, once; other ops keep running the reference kernels.
    pub fn kernels(mut self, k: Kernels) -> Self {
        self.kernels = k;
        self.pack();
        self
    }

    /// Cap the instruction-set tier of the fast kernels at `cap` (never above the host's, nor
    /// above `QLITE_ISA`): the weights are packed for it and every run uses it. The bytes do
    /// not depend on it; tests use it to run every tier the host has.
    pub fn isa(mut self, cap: Isa) -> Self {
        self.isa = cap.min(Isa::process_default());
        self.pack();
        self
    }

    /// The instruction-set tier this interpreter runs at.
    pub fn current_isa(&self) -> Isa {
        self.isa
    }

    fn pack(&mut self) {
        self.packed = match self.kernels {
            Kernels::Reference => Vec::new(),
            Kernels::Fast => isa::with(self.isa, || {
                self.graph
                    .nodes()
                    .iter()
                    .enumerate()
                    .map(|(ni, n)| {
                        if self.folded[ni] {
                            return None;
                        }
                        self.unary_pair_table(n)
                            .or_else(|| self.float_swish(n))
                            .or_else(|| fast::Packed::new(self.graph, n, &self.consts))
                            .or_else(|| self.table_kernel(n))
                    })
                    .collect()
            }),
        };
        (self.elided, self.reads_elided) = self.elided_pairs();
    }

    /// Nodes plain runs may skip: the unary half of a fused pair (a binary node packed as a
    /// function of `x` alone whose second input is that unary op of `x`), when the pair is its
    /// only reader and its value is not a graph output. Also marks each such pair (the one node
    /// that reads a skipped value), so a run checks it in constant time.
    fn elided_pairs(&self) -> (Vec<bool>, Vec<bool>) {
        let g = self.graph;
        let (mut elided, mut pairs) = (vec![false; g.nodes().len()], vec![false; g.nodes().len()]);
        let mut readers = vec![0usize; g.tensors().len()];
        let mut producer = vec![usize::MAX; g.tensors().len()];
        for (ni, n) in g.nodes().iter().enumerate() {
            for t in n.input_ids() {
                readers[t.index()] += 1;
            }
            if let [o] = n.outputs[..] {
                producer[o.index()] = ni;
            }
        }
        for (ni, n) in g.nodes().iter().enumerate() {
            let fused = matches!(self.packed.get(ni), Some(Some(fast::Packed::Table(_) | fast::Packed::Swish(_))));
            let (Some(s), Op::Binary(_)) = (n.input(1), &n.op) else { continue };
            if !fused || readers[s.index()] != 1 || g.outputs().contains(&s) {
                continue;
            }
            let p = producer[s.index()];
            if g.nodes().get(p).is_some_and(|pn| matches!(pn.op, Op::Unary(_))) && !self.folded[p] {
                elided[p] = true;
                pairs[ni] = true;
            }
        }
        (elided, pairs)
    }

    /// A float MUL of `x` and LOGISTIC of that same `x` (either order) as one swish kernel.
    fn float_swish(&self, n: &qlite_ir::Node) -> Option<fast::Packed> {
        let Op::Binary(b) = &n.op else { return None };
        if b.kind != qlite_ir::BinaryKind::Mul {
            return None;
        }
        let g = self.graph;
        let (x, s, out) = (n.input(0)?, n.input(1)?, *n.outputs.first()?);
        let (xt, st, ot) = (g.tensor(x)?, g.tensor(s)?, g.tensor(out)?);
        if [xt.dtype, st.dtype, ot.dtype] != [DType::F32; 3] || xt.shape != st.shape || xt.is_const() {
            return None;
        }
        let p = g.nodes().iter().find(|p| p.outputs.first() == Some(&s))?;
        let logistic = matches!(&p.op, Op::Unary(u) if u.kind == UnaryKind::Logistic);
        (logistic && p.inputs.len() == 1 && p.input(0) == Some(x))
            .then_some(fast::Packed::Swish(fast::PackedSwish { activation: b.activation }))
    }

    /// An int8 → int8 element-wise unary op or requantization as a 256-entry table: this
    /// interpreter's own reference result for each input value (bit-exact by construction).
    fn table_kernel(&self, n: &qlite_ir::Node) -> Option<fast::Packed> {
        let dtype = |t: Option<TensorId>| t.and_then(|t| self.graph.tensor(t)).map(|t| t.dtype);
        let elementwise = match &n.op {
            Op::Unary(_) => true,
            Op::Quantize => dtype(n.input(0)) == Some(DType::I8),
            _ => false,
        };
        if !elementwise
            || n.inputs.len() != 1
            || dtype(n.input(0)) != Some(DType::I8)
            || dtype(n.outputs.first().copied()) != Some(DType::I8)
        {
            return None;
        }
        let all = Array::new(vec![256], Data::I8((-128..=127).collect())).ok()?;
        let out = self.eval(n, &[Some(&all)]).ok()?;
        match out.data() {
            Data::I8(t) if out.shape() == [256] => Some(fast::Packed::Table(fast::PackedTable { table: t.clone() })),
            _ => None,
        }
    }

    /// An int8 ADD / SUB / MUL of `x` and an element-wise unary op of that same `x` (swish:
    /// `x · sigmoid(x)`, EfficientNet's and MobileNetV3's activation) is a function of `x`
    /// alone: a 256-entry table of the reference kernels' own results (the unary op's, then
    /// the binary op's on the pair), looked up on `x` (the unary node still runs, for its other
    /// readers and observers). Bit-exact by construction.
    fn unary_pair_table(&self, n: &qlite_ir::Node) -> Option<fast::Packed> {
        use qlite_ir::BinaryKind;
        let Op::Binary(b) = &n.op else { return None };
        if !matches!(b.kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul) {
            return None;
        }
        let g = self.graph;
        let (x, s, out) = (n.input(0)?, n.input(1)?, *n.outputs.first()?);
        let (xt, st, ot) = (g.tensor(x)?, g.tensor(s)?, g.tensor(out)?);
        if [xt.dtype, st.dtype, ot.dtype] != [DType::I8; 3] || xt.shape != st.shape || xt.is_const() {
            return None;
        }
        let p = g.nodes().iter().find(|p| p.outputs.first() == Some(&s))?;
        if !matches!(p.op, Op::Unary(_)) || p.inputs.len() != 1 || p.input(0) != Some(x) {
            return None;
        }
        let all = Array::new(vec![256], Data::I8((-128..=127).collect())).ok()?;
        let sv = self.eval(p, &[Some(&all)]).ok()?;
        let y = self.eval(n, &[Some(&all), Some(&sv)]).ok()?;
        match y.data() {
            Data::I8(t) if y.shape() == [256] => Some(fast::Packed::Table(fast::PackedTable { table: t.clone() })),
            _ => None,
        }
    }

    /// Let the large fast kernels (convolutions, depthwise, fully connected, GEMMs) split one
    /// inference over `n` threads in all (default 1): `n − 1` worker threads are started here,
    /// once, and kept for the life of the interpreter. A kernel is split only into parts of at
    /// least [`fast::DEFAULT_MIN_WORK`] multiply-adds. The output bytes do not depend on it.
    pub fn threads(mut self, n: usize) -> Self {
        self.pool = if n > 1 { threads::ThreadPool::new(n).map(Arc::new) } else { None };
        self
    }

    /// The least work (multiply-adds) a part of a split kernel must get. Lower it to split
    /// smaller layers (tests use it to exercise the split on small shapes).
    pub fn min_macs_per_thread(mut self, macs: usize) -> Self {
        self.min_work = macs.max(1);
        self
    }

    /// How the fast kernels may split work.
    pub(crate) fn par(&self) -> fast::Parallel<'_> {
        fast::Parallel { pool: self.pool.as_deref(), min_work: self.min_work }
    }

    /// A [`Session`] for repeated runs: a planned arena reused from run to run, so that once
    /// it has grown a run allocates nothing (for the ops with in-place kernels).
    pub fn session(&self) -> Session<'_, 'g> {
        Session::new(self)
    }

    /// The number of nodes a fast kernel runs.
    pub fn fast_nodes(&self) -> usize {
        self.packed.iter().filter(|p| p.is_some()).count()
    }

    pub fn graph(&self) -> &Graph {
        self.graph
    }

    /// Run on `inputs` (one array per graph input, in order).
    pub fn run(&self, inputs: Vec<Array>) -> Result<Vec<Array>, InterpError> {
        self.run_observed(inputs, &mut NoObserver)
    }

    /// Run, showing every computed value to `observer`. The one executor is the session's: a
    /// plain run is a session run once, its outputs handed out.
    pub fn run_observed(&self, inputs: Vec<Array>, observer: &mut dyn Observer) -> Result<Vec<Array>, InterpError> {
        let mut session = self.session();
        session.run_observed(&inputs, observer)?;
        Ok(session.outputs()?.into_iter().cloned().collect())
    }

    fn eval(&self, node: &qlite_ir::Node, ins: &[Option<&Array>]) -> Result<Array, String> {
        let g = self.graph;
        let input = |i: usize| -> Result<&Array, String> {
            ins.get(i).copied().flatten().ok_or_else(|| format!("input {i} has no value"))
        };
        let in_tensor = |i: usize| node.input(i).and_then(|t| g.tensor(t));
        let out_tensor = node.outputs.first().and_then(|t| g.tensor(*t)).ok_or("node has no output")?;
        // Concrete output shape from the same inference the verifier uses.
        let shapes: Vec<Shape> = ins.iter().map(|a| a.map(|a| Shape::fixed(a.shape())).unwrap_or_default()).collect();
        let infer_in: Vec<_> = ins.iter().zip(&shapes).map(|(a, s)| a.map(|a| (a.dtype(), s))).collect();
        let inferred = node.op.infer(&infer_in).map_err(|e| e.0)?;
        let out_shape =
            inferred.first().and_then(|i| i.shape.to_fixed()).ok_or("output shape is not known at run time")?;
        let numel = qlite_ir::shape::checked_product(&out_shape).ok_or("output shape overflows")?;
        const MAX_ELEMENTS: usize = 1 << 31;
        if numel > MAX_ELEMENTS {
            return Err(format!("output of {numel} elements exceeds the interpreter limit of {MAX_ELEMENTS}"));
        }
        let f32_in = |i: usize| -> Result<&[f32], String> {
            let a = input(i)?;
            a.as_f32().ok_or_else(|| {
                format!(
                    "{} input {i} is {}: integer kernels are not supported yet (float32 only)",
                    node.op.name(),
                    a.dtype()
                )
            })
        };
        let opt_f32 = |i: usize| -> Result<Option<&[f32]>, String> {
            match ins.get(i).copied().flatten() {
                Some(_) => f32_in(i).map(Some),
                None => Ok(None),
            }
        };
        let make = |v: Vec<f32>| Array::f32(out_shape.clone(), v).map_err(|e| e.to_string());
        let make_data = |d: Data| Array::new(out_shape.clone(), d).map_err(|e| e.to_string());
        let x_dtype = input(0)?.dtype();
        if matches!(x_dtype, DType::I8 | DType::U8 | DType::I16) {
            if let Some(v) = self.eval_int(node, ins, &out_shape, numel)? {
                return make_data(store_ints(out_tensor.dtype, v)?);
            }
        } else if x_dtype == DType::F32
            && matches!(
                node.op,
                Op::FullyConnected(_) | Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::TransposeConv2d(_)
            )
            && input(1)?.dtype() == DType::I8
        {
            return make(self.eval_hybrid(node, ins, &out_shape)?);
        }
        match &node.op {
            Op::FullyConnected(o) => {
                make(kernels::fully_connected_f32(o, f32_in(0)?, f32_in(1)?, input(1)?.shape(), opt_f32(2)?))
            }
            Op::Conv2d(o) => make(kernels::conv2d_f32(
                o,
                f32_in(0)?,
                input(0)?.shape(),
                f32_in(1)?,
                input(1)?.shape(),
                opt_f32(2)?,
                &out_shape,
            )),
            Op::BatchMatMul(o) => {
                let plan = kernels::MatMulPlan::new(o, input(0)?.shape(), input(1)?.shape(), &out_shape)?;
                make(kernels::batch_matmul_f32(&plan, f32_in(0)?, f32_in(1)?))
            }
            Op::TransposeConv2d(o) => make(kernels::transpose_conv_f32(
                o,
                f32_in(0)?,
                input(0)?.shape(),
                f32_in(1)?,
                input(1)?.shape(),
                opt_f32(2)?,
                &out_shape,
            )),
            Op::DepthwiseConv2d(o) => make(kernels::depthwise_f32(
                o,
                f32_in(0)?,
                input(0)?.shape(),
                f32_in(1)?,
                input(1)?.shape(),
                opt_f32(2)?,
                &out_shape,
            )),
            Op::Binary(o) => make(kernels::binary_f32(o, input(0)?, input(1)?, f32_in(0)?, f32_in(1)?, &out_shape)),
            Op::Pool2d(o) => make(kernels::pool_f32(o, f32_in(0)?, input(0)?.shape(), &out_shape)),
            Op::Mean(o) => make(kernels::mean_f32(o, f32_in(0)?, input(0)?.shape(), numel)),
            Op::Sum(o) => make(kernels::sum_f32(o, f32_in(0)?, input(0)?.shape(), numel)),
            Op::LogSoftmax => {
                make(kernels::log_softmax_f32(f32_in(0)?, input(0)?.shape().last().copied().unwrap_or(1)))
            }
            Op::Softmax(o) => make(kernels::softmax_f32(o, f32_in(0)?, input(0)?.shape().last().copied().unwrap_or(1))),
            Op::LocalResponseNorm(o) => make(kernels::lrn_f32(
                o,
                f32_in(0)?,
                input(0)?.shape().last().copied().unwrap_or(1),
                self.reference_lrn,
            )),
            Op::Unary(u) => match (u.kind, input(0)?.data()) {
                (_, Data::F32(x)) => make(kernels::unary_f32(u.kind, x)),
                (_, d) => Err(format!("{} on {} is not supported yet (float32 only)", node.op.name(), d.dtype())),
            },
            Op::Reshape(_) => input(0)?.clone().reshaped(out_shape.clone()).map_err(|e| e.to_string()),
            // The input is a constant already dense in the IR (folded at load).
            Op::Densify => Ok(input(0)?.clone()),
            Op::Gather(o) => make_data(kernels::gather(o, input(0)?, input(1)?)?),
            Op::Tile(_) => make_data(kernels::tile(input(0)?, &out_shape)),
            Op::DepthToSpace(o) => make_data(kernels::space_depth(o.block, true, input(0)?, &out_shape)?),
            Op::SpaceToDepth(o) => make_data(kernels::space_depth(o.block, false, input(0)?, &out_shape)?),
            Op::MirrorPad(o) => make_data(kernels::mirror_pad(o, input(0)?, &out_shape)),
            Op::Prelu => make(kernels::prelu_f32(input(0)?, input(1)?, f32_in(0)?, f32_in(1)?, &out_shape)),
            Op::Transpose(o) => {
                let (_, d) = kernels::transpose(o, input(0)?);
                make_data(d)
            }
            Op::Concatenation(o) => {
                let xs: Vec<&Array> = (0..ins.len()).map(input).collect::<Result<_, _>>()?;
                if o.activation != qlite_ir::Activation::None {
                    let Data::F32(v) = kernels::concatenate(o, &xs, &out_shape) else {
                        return Err("fused activation on integer Concatenation is not supported yet".into());
                    };
                    return make(v.into_iter().map(|x| o.activation.apply(x)).collect());
                }
                make_data(kernels::concatenate(o, &xs, &out_shape))
            }
            Op::Pad(o) => {
                let zp = in_tensor(0).and_then(|t| t.quant.as_ref()).map_or(0, |q| q.zero_point());
                match ins.get(1).copied().flatten() {
                    // PADV2: pad with the given value (raw, as LiteRT copies it).
                    Some(v) => make_data(kernels::pad_with(o, input(0)?, v, &out_shape)?),
                    None => make_data(kernels::pad(o, input(0)?, zp, &out_shape)),
                }
            }
            Op::StridedSlice(o) => {
                let (_, d) = kernels::strided_slice(o, input(0)?)?;
                make_data(d)
            }
            Op::Resize(o) if o.mode == qlite_ir::op::ResizeMode::Bilinear => {
                make_data(kernels::resize_bilinear(o, input(0)?)?)
            }
            Op::Resize(o) => make_data(kernels::resize_nearest(o, input(0)?)?),
            Op::Quantize => {
                let q = out_tensor.quant.as_ref().ok_or("Quantize output has no quantization parameters")?;
                let in_q = in_tensor(0).and_then(|t| t.quant.as_ref());
                make_data(kernels::quantize(input(0)?, in_q, out_tensor.dtype, q)?)
            }
            Op::Dequantize => {
                let q = in_tensor(0).and_then(|t| t.quant.as_ref());
                make(kernels::dequantize(input(0)?, q)?)
            }
            Op::Opaque(o) => Err(format!("unsupported op {}", o.op_type)),
        }
    }
}

/// A requantization multiplier must have a Q31 fixed-point form: finite, positive and below
/// 2^30 (larger ones would shift an int32 accumulator left by more than 30 bits, which TFLite's
/// kernels leave undefined).
fn check_multiplier(real: f64, what: &str) -> Result<(), String> {
    if !(real.is_finite() && real > 0.0 && real < (1u64 << 30) as f64) {
        return Err(format!("{what} multiplier {real:e} has no fixed-point form: the scales are inconsistent"));
    }
    Ok(())
}

/// Load-time checks of the quantization parameters an integer kernel relies on, so a model
/// whose parameters would break the multiplier arithmetic is refused before it runs.
fn validate_quantized(g: &Graph, n: &qlite_ir::Node) -> Result<(), String> {
    let t = |i: usize| n.input(i).and_then(|t| g.tensor(t));
    let Some(x) = t(0) else { return Ok(()) };
    let Some(out) = n.outputs.first().and_then(|o| g.tensor(*o)) else { return Ok(()) };
    let integer = matches!(x.dtype, DType::I8 | DType::U8 | DType::I16);
    if !integer || matches!(n.op, Op::Quantize | Op::Dequantize | Op::Reshape(_) | Op::Transpose(_) | Op::Densify) {
        return Ok(());
    }
    let in_q = |i: usize| kernels::per_tensor(t(i).and_then(|t| t.quant.as_ref()), &format!("input {i}"));
    let (s_out, z_out) = kernels::per_tensor(out.quant.as_ref(), "the output")?;
    if out.dtype != x.dtype {
        return Err(format!("integer op reads {} but writes {}", x.dtype, out.dtype));
    }
    match &n.op {
        Op::Unary(u) if u.kind == qlite_ir::UnaryKind::HardSwish => {
            let (s_in, _) = in_q(0)?;
            kernels::hard_swish_params(s_in, s_out)?;
        }
        Op::FullyConnected(_) | Op::Conv2d(_) | Op::DepthwiseConv2d(_) => {
            in_q(0)?;
            let w = t(1).ok_or("weights are missing")?;
            let wq = w.quant.as_ref().ok_or("weights are not quantized")?;
            if w.dtype != DType::I8 {
                return Err(format!("integer kernels take int8 weights, got {}", w.dtype));
            }
            if wq.scales().len() > 1 && wq.zero_points().iter().any(|&z| z != 0) {
                return Err("per-channel weights must have zero points of 0".into());
            }
            if let Some(b) = t(2)
                && b.dtype != DType::I32
                && !(b.dtype == DType::I64 && x.dtype == DType::I16)
            {
                return Err(format!(
                    "integer kernels take an int32 bias (int64 with 16-bit activations), got {} on {} input",
                    b.dtype, x.dtype
                ));
            }
            if x.dtype == DType::I16 && (in_q(0)?.1 != 0 || z_out != 0) {
                return Err("16-bit activations must have zero points of 0 (16x8 is symmetric)".into());
            }
            let (s_in, _) = in_q(0)?;
            for (c, &s_w) in wq.scales().iter().enumerate() {
                check_multiplier(s_in as f64 * s_w as f64 / s_out as f64, &format!("channel {c}'s rescale"))?;
            }
        }
        Op::Binary(b) if b.kind == qlite_ir::BinaryKind::Mul => {
            let (s1, _) = in_q(0)?;
            let (s2, _) = in_q(1)?;
            check_multiplier((s1 * s2 / s_out) as f64, "the MUL rescale")?;
        }
        Op::Binary(b) => {
            let (s1, _) = in_q(0)?;
            let (s2, _) = in_q(1)?;
            if matches!(b.kind, qlite_ir::BinaryKind::Add | qlite_ir::BinaryKind::Sub) {
                kernels::add_params(s1, s2, s_out, kernels::add_left_shift(x.dtype))?;
            }
        }
        Op::Pool2d(_) | Op::Concatenation(_) | Op::Pad(_) => {
            for i in 0..n.inputs.len() {
                let (s, z) = in_q(i)?;
                if s != s_out || z != z_out {
                    return Err(format!(
                        "input {i} is quantized ({s}, {z}) but the output ({s_out}, {z_out}); {} needs them equal",
                        n.op.name()
                    ));
                }
            }
        }
        Op::Softmax(_) | Op::Unary(_) | Op::Mean(_) | Op::Sum(_) => {
            in_q(0)?;
            if matches!(n.op, Op::Softmax(_))
                && x.dtype == DType::I8
                && (z_out != -128 || (s_out - 1.0 / 256.0).abs() > 0.001 / 256.0)
            {
                return Err(format!("int8 Softmax output must be quantized (1/256, -128), got ({s_out}, {z_out})"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// int16 SOFTMAX, LOGISTIC and TANH write (2^-15, 0): LiteRT refuses anything else (SOFTMAX
/// within 0.1 % of the scale, LOGISTIC / TANH an exact power of two).
fn check_int16_unit_output(op: &str, o: kernels::OutQ, near: bool) -> Result<(), String> {
    let unit = 1.0 / 32768.0;
    let ok = if near { (o.scale - unit).abs() <= 0.001 * unit } else { kernels::checked_log2(o.scale) == (true, -15) };
    if o.zp != 0 || !ok {
        return Err(format!("int16 {op} output must be quantized (1/32768, 0), got ({}, {})", o.scale, o.zp));
    }
    Ok(())
}

/// Integer values of an integer array.
fn ints(a: &Array) -> Option<Vec<i32>> {
    Some(match a.data() {
        Data::I8(v) => v.iter().map(|&x| x as i32).collect(),
        Data::U8(v) => v.iter().map(|&x| x as i32).collect(),
        Data::I16(v) => v.iter().map(|&x| x as i32).collect(),
        Data::I32(v) => v.clone(),
        _ => return None,
    })
}

/// Store clamped integer results in the output dtype.
fn store_ints(dtype: DType, v: Vec<i32>) -> Result<Data, String> {
    Ok(match dtype {
        DType::I8 => Data::I8(v.into_iter().map(|x| x as i8).collect()),
        DType::U8 => Data::U8(v.into_iter().map(|x| x as u8).collect()),
        DType::I16 => Data::I16(v.into_iter().map(|x| x as i16).collect()),
        DType::I32 => Data::I32(v),
        d => return Err(format!("integer kernel cannot write {d}")),
    })
}

impl Interpreter<'_> {
    /// Integer execution. `Ok(None)` means the op is data movement handled by the generic
    /// path (reshape, transpose, concatenation, pad, quantize, dequantize).
    fn eval_int(
        &self,
        node: &qlite_ir::Node,
        ins: &[Option<&Array>],
        out_shape: &[usize],
        numel: usize,
    ) -> Result<Option<Vec<i32>>, String> {
        let g = self.graph;
        let tensor = |i: usize| node.input(i).and_then(|t| g.tensor(t));
        let q = |i: usize| tensor(i).and_then(|t| t.quant.as_ref());
        let out_t = node.outputs.first().and_then(|t| g.tensor(*t)).ok_or("node has no output")?;
        let arr = |i: usize| ins.get(i).copied().flatten().ok_or_else(|| format!("input {i} has no value"));
        let iv = |i: usize| -> Result<Vec<i32>, String> {
            ints(arr(i)?).ok_or_else(|| {
                format!("input {i} is {}, expected an integer tensor", arr(i).map_or(DType::F32, |a| a.dtype()))
            })
        };
        let out_q = || -> Result<kernels::OutQ, String> {
            let (scale, zp) = kernels::per_tensor(out_t.quant.as_ref(), "the output")?;
            Ok(kernels::OutQ { dtype: out_t.dtype, scale, zp })
        };
        let in_q = |i: usize| kernels::per_tensor(q(i), &format!("input {i}"));
        let bias = |i: usize| -> Result<Option<Vec<i64>>, String> {
            match ins.get(i).copied().flatten().map(|b| b.data()) {
                Some(Data::I64(v)) => Ok(Some(v.clone())),
                Some(Data::I32(v)) => Ok(Some(v.iter().map(|&x| x as i64).collect())),
                Some(d) => Err(format!("an integer op needs an int32 or int64 bias, got {}", d.dtype())),
                None => Ok(None),
            }
        };
        // The accumulator follows the bias type; 16-bit activations without a bias take
        // LiteRT's default, the int64 one.
        let acc = |i: usize| match ins.get(i).copied().flatten().map(|b| b.dtype()) {
            Some(DType::I64) => kernels::Acc::I64,
            None if arr(0).is_ok_and(|a| a.dtype() == DType::I16) => kernels::Acc::I64,
            _ => kernels::Acc::I32,
        };
        let wq = |i: usize| -> Result<&QuantParams, String> {
            q(i).ok_or_else(|| format!("weights (input {i}) are not quantized"))
        };
        Ok(Some(match &node.op {
            Op::FullyConnected(o) => {
                let w = arr(1)?;
                kernels::fully_connected(
                    &iv(0)?,
                    in_q(0)?,
                    &iv(1)?,
                    w.shape(),
                    wq(1)?,
                    bias(2)?.as_deref(),
                    acc(2),
                    out_q()?,
                    o.activation,
                )
            }
            Op::Conv2d(o) => {
                let (x, w) = (arr(0)?, arr(1)?);
                kernels::conv2d(
                    o,
                    &iv(0)?,
                    x.shape(),
                    in_q(0)?,
                    &iv(1)?,
                    w.shape(),
                    wq(1)?,
                    bias(2)?.as_deref(),
                    acc(2),
                    out_shape,
                    out_q()?,
                )
            }
            Op::BatchMatMul(o) => {
                let plan = kernels::MatMulPlan::new(o, arr(0)?.shape(), arr(1)?.shape(), out_shape)?;
                kernels::batch_matmul(&plan, &iv(0)?, &iv(1)?, in_q(0)?, in_q(1)?, out_q()?)
            }
            Op::TransposeConv2d(o) => {
                let (x, w) = (arr(0)?, arr(1)?);
                kernels::transpose_conv(
                    o,
                    &iv(0)?,
                    x.shape(),
                    in_q(0)?,
                    &iv(1)?,
                    w.shape(),
                    wq(1)?,
                    bias(2)?.as_deref(),
                    acc(2),
                    out_shape,
                    out_q()?,
                )
            }
            Op::DepthwiseConv2d(o) => {
                let (x, w) = (arr(0)?, arr(1)?);
                kernels::depthwise(
                    o,
                    &iv(0)?,
                    x.shape(),
                    in_q(0)?,
                    &iv(1)?,
                    w.shape(),
                    wq(1)?,
                    bias(2)?.as_deref(),
                    acc(2),
                    out_shape,
                    out_q()?,
                )
            }
            Op::Binary(b) => {
                let (a, c) = (arr(0)?, arr(1)?);
                let ia = kernels::broadcast_indices(out_shape, a.shape());
                let ib = kernels::broadcast_indices(out_shape, c.shape());
                let pairs: Vec<(usize, usize)> = ia.into_iter().zip(ib).collect();
                kernels::binary(b.kind, &iv(0)?, &iv(1)?, &pairs, in_q(0)?, in_q(1)?, out_q()?, b.activation)?
            }
            Op::Pool2d(p) => {
                let (s_in, z_in) = in_q(0)?;
                let o = out_q()?;
                if s_in != o.scale || z_in != o.zp {
                    return Err("integer pooling needs the same quantization on input and output".into());
                }
                kernels::pool(p, &iv(0)?, arr(0)?.shape(), out_shape, o)
            }
            Op::Mean(m) => kernels::mean(m, &iv(0)?, arr(0)?.shape(), numel, in_q(0)?, out_q()?),
            Op::Sum(m) => kernels::sum(m, &iv(0)?, arr(0)?.shape(), numel, in_q(0)?, out_q()?),
            Op::Softmax(s) => {
                let o = out_q()?;
                let (s_in, _) = in_q(0)?;
                if out_t.dtype == DType::I8 && (o.zp != -128 || (o.scale - 1.0 / 256.0).abs() > 0.001 / 256.0) {
                    return Err(format!(
                        "int8 Softmax output must be quantized (1/256, -128), got ({}, {})",
                        o.scale, o.zp
                    ));
                }
                if out_t.dtype == DType::I16 {
                    check_int16_unit_output("Softmax", o, true)?;
                    return Ok(Some(kernels::softmax_int16(
                        &iv(0)?,
                        arr(0)?.shape().last().copied().unwrap_or(1),
                        s.beta,
                        s_in,
                    )));
                }
                kernels::softmax(&iv(0)?, arr(0)?.shape().last().copied().unwrap_or(1), s.beta, s_in, o)
            }
            Op::Unary(u) if matches!(u.kind, UnaryKind::Logistic | UnaryKind::Tanh) && out_t.dtype == DType::I16 => {
                let (s_in, z_in) = in_q(0)?;
                if z_in != 0 {
                    return Err(format!("int16 {:?} needs an input zero point of 0, got {z_in}", u.kind));
                }
                check_int16_unit_output(&format!("{:?}", u.kind), out_q()?, false)?;
                kernels::sigmoid_tanh_int16(&iv(0)?, s_in, u.kind == UnaryKind::Tanh)
            }
            Op::Unary(u) => match u.kind {
                UnaryKind::Logistic
                | UnaryKind::Tanh
                | UnaryKind::Elu
                | UnaryKind::Gelu
                | UnaryKind::GeluTanh
                | UnaryKind::Exp => kernels::lut(u.kind, &iv(0)?, in_q(0)?, out_q()?)?,
                UnaryKind::Relu | UnaryKind::Relu6 | UnaryKind::ReluN1To1 => {
                    kernels::relu(u.kind, &iv(0)?, in_q(0)?, out_q()?)
                }
                UnaryKind::Abs => kernels::abs(&iv(0)?, in_q(0)?, out_q()?),
                UnaryKind::Sqrt => kernels::sqrt(&iv(0)?, in_q(0)?, out_q()?)?,
                UnaryKind::Rsqrt => kernels::rsqrt(&iv(0)?, in_q(0)?, out_q()?)?,
                UnaryKind::HardSwish => kernels::hard_swish(&iv(0)?, in_q(0)?, out_q()?)?,
                k => return Err(format!("{k:?} has no int8 kernel in qlite (the quantizer keeps it in float)")),
            },
            Op::Concatenation(c) => {
                let o = out_q()?;
                for i in 0..node.inputs.len() {
                    let (s, z) = in_q(i)?;
                    if s != o.scale || z != o.zp {
                        return Err(format!(
                            "integer Concatenation input {i} is quantized ({s}, {z}) but the output ({}, {}): they must match",
                            o.scale, o.zp
                        ));
                    }
                }
                if c.activation != Activation::None {
                    return Err("fused activation on integer Concatenation is not supported".into());
                }
                return Ok(None);
            }
            Op::Reshape(_)
            | Op::Transpose(_)
            | Op::Pad(_)
            | Op::StridedSlice(_)
            | Op::Resize(_)
            | Op::Quantize
            | Op::Dequantize
            | Op::Densify => {
                return Ok(None);
            }
            Op::Gather(_) | Op::Tile(_) | Op::DepthToSpace(_) | Op::SpaceToDepth(_) | Op::MirrorPad(_) => {
                let (s_in, z_in) = in_q(0)?;
                let o = out_q()?;
                if s_in != o.scale || z_in != o.zp {
                    return Err(format!(
                        "integer {} moves data: input ({s_in}, {z_in}) and output ({}, {}) must be quantized alike",
                        node.op.name(),
                        o.scale,
                        o.zp
                    ));
                }
                return Ok(None);
            }
            Op::Prelu => {
                let (a, c) = (arr(0)?, arr(1)?);
                let ia = kernels::broadcast_indices(out_shape, a.shape());
                let ib = kernels::broadcast_indices(out_shape, c.shape());
                let pairs: Vec<(usize, usize)> = ia.into_iter().zip(ib).collect();
                kernels::prelu(&iv(0)?, &iv(1)?, &pairs, in_q(0)?, in_q(1)?, out_q()?)?
            }
            Op::LocalResponseNorm(_) => {
                return Err("LocalResponseNorm has no integer kernel (LiteRT's is float-only)".into());
            }
            Op::LogSoftmax => {
                let depth = arr(0)?.shape().last().copied().unwrap_or(1);
                kernels::log_softmax(&iv(0)?, depth, in_q(0)?.0, out_q()?)?
            }
            Op::Opaque(o) => return Err(format!("unsupported op {}", o.op_type)),
        }))
    }

    /// Hybrid (dynamic-range) execution: float input, int8 weights.
    fn eval_hybrid(
        &self,
        node: &qlite_ir::Node,
        ins: &[Option<&Array>],
        out_shape: &[usize],
    ) -> Result<Vec<f32>, String> {
        let g = self.graph;
        let arr = |i: usize| ins.get(i).copied().flatten().ok_or_else(|| format!("input {i} has no value"));
        let x = arr(0)?;
        let xv = x.as_f32().ok_or("hybrid input must be float32")?;
        let w = arr(1)?;
        let wv = ints(w).ok_or("hybrid weights must be int8")?;
        let wq = node
            .input(1)
            .and_then(|t| g.tensor(t))
            .and_then(|t| t.quant.as_ref())
            .ok_or("hybrid weights are not quantized")?;
        if wq.zero_points().iter().any(|&z| z != 0) {
            return Err("hybrid weights must be symmetric (zero point 0)".into());
        }
        let bias = match ins.get(2).copied().flatten() {
            Some(b) => Some(b.as_f32().ok_or("hybrid bias must be float32")?),
            None => None,
        };
        Ok(match &node.op {
            Op::FullyConnected(o) => kernels::hybrid_fully_connected(
                xv,
                &wv,
                w.shape(),
                wq,
                bias,
                o.activation,
                self.asymmetric_inputs(node),
            ),
            Op::Conv2d(o) => kernels::hybrid_conv(None, Some(o), xv, x.shape(), &wv, w.shape(), wq, bias, out_shape),
            Op::DepthwiseConv2d(o) => {
                kernels::hybrid_conv(Some(o), None, xv, x.shape(), &wv, w.shape(), wq, bias, out_shape)
            }
            Op::TransposeConv2d(o) => {
                kernels::hybrid_transpose_conv(o, xv, x.shape(), &wv, w.shape(), wq, bias, out_shape)
            }
            _ => return Err("not a hybrid op".into()),
        })
    }

    /// Whether a hybrid FULLY_CONNECTED quantizes its input asymmetrically.
    fn asymmetric_inputs(&self, node: &qlite_ir::Node) -> bool {
        matches!(&node.op, Op::FullyConnected(o) if o.asymmetric_inputs)
    }
}

/// Input `i` must have its declared dtype and a shape that fits the declared one.
fn check_input(g: &Graph, i: usize, arr: &Array) -> Result<(), InterpError> {
    let Some(decl) = g.inputs().get(i).and_then(|&t| g.tensor(t)) else {
        return Err(InterpError::InputCount { expected: g.inputs().len(), got: i + 1 });
    };
    if arr.dtype() != decl.dtype || !fits(&decl.shape, arr.shape()) {
        return Err(InterpError::InputMismatch {
            index: i,
            name: g.input_name(i).unwrap_or("").to_string(),
            expected: format!("{}{}", decl.dtype, decl.shape),
            got: format!("{}{:?}", arr.dtype(), arr.shape()),
        });
    }
    Ok(())
}

/// Does a concrete shape fit a declared one (dynamic dims match anything)?
fn fits(decl: &Shape, actual: &[usize]) -> bool {
    decl.rank() == actual.len()
        && decl.dims().iter().zip(actual).all(|(d, &a)| match d {
            Dim::Fixed(n) => *n == a,
            Dim::Dynamic => true,
        })
}
