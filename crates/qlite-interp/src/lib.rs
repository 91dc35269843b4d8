//! Executes qlite IR graphs.
//!
//! [`Interpreter::new`] verifies the graph and decodes its constants once; [`Interpreter::run`]
//! executes it on input arrays. An [`Observer`] sees every input and every node output as it is
//! computed (calibration uses this). Float32 execution covers every op of the IR; integer
//! execution covers data movement, QUANTIZE and DEQUANTIZE (integer arithmetic kernels come with
//! the int8 reference interpreter). The interpreter never reads files.

pub mod array;
pub mod fixedpoint;
pub mod kernels;

pub use array::{Array, ArrayError, Data};

use qlite_ir::op::UnaryKind;
use qlite_ir::{Dim, Graph, Op, Shape, TensorId, VerifyError, verify};

/// Something that went wrong while preparing or running a graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterpError {
    #[error("invalid graph: {0}")]
    Verify(#[from] VerifyError),
    #[error("graph has unsupported ops: {0}")]
    Opaque(String),
    #[error("constant {tensor} ({name:?}): {source}")]
    Constant { tensor: TensorId, name: String, source: ArrayError },
    #[error("expected {expected} inputs, got {got}")]
    InputCount { expected: usize, got: usize },
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
    consts: Vec<Option<Array>>,
    /// For each tensor, the index of the last node reading it (to free values early).
    last_use: Vec<usize>,
}

impl<'g> Interpreter<'g> {
    /// Verify `graph` and decode its constants.
    pub fn new(graph: &'g Graph) -> Result<Self, InterpError> {
        verify(graph)?;
        let opaque: Vec<String> = graph
            .nodes()
            .iter()
            .filter_map(|n| match &n.op {
                Op::Opaque(o) => Some(format!("{} (node {:?})", o.op_type, n.name)),
                _ => None,
            })
            .collect();
        if !opaque.is_empty() {
            return Err(InterpError::Opaque(opaque.join(", ")));
        }
        let mut consts = Vec::with_capacity(graph.tensors().len());
        for id in graph.tensor_ids() {
            let t = &graph.tensors()[id.index()];
            consts.push(match (&t.data, t.shape.to_fixed()) {
                (Some(d), Some(dims)) => {
                    Some(Array::from_le_bytes(t.dtype, dims, d).map_err(|source| InterpError::Constant {
                        tensor: id,
                        name: t.name.clone(),
                        source,
                    })?)
                }
                _ => None,
            });
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
        Ok(Interpreter { graph, consts, last_use })
    }

    pub fn graph(&self) -> &Graph {
        self.graph
    }

    /// Run on `inputs` (one array per graph input, in order).
    pub fn run(&self, inputs: Vec<Array>) -> Result<Vec<Array>, InterpError> {
        self.run_observed(inputs, &mut NoObserver)
    }

    /// Run, showing every computed value to `observer`.
    pub fn run_observed(&self, inputs: Vec<Array>, observer: &mut dyn Observer) -> Result<Vec<Array>, InterpError> {
        let g = self.graph;
        if inputs.len() != g.inputs().len() {
            return Err(InterpError::InputCount { expected: g.inputs().len(), got: inputs.len() });
        }
        let mut values: Vec<Option<Array>> = vec![None; g.tensors().len()];
        for (i, (arr, &t)) in inputs.into_iter().zip(g.inputs()).enumerate() {
            let decl = &g.tensors()[t.index()];
            if arr.dtype() != decl.dtype || !fits(&decl.shape, arr.shape()) {
                return Err(InterpError::InputMismatch {
                    index: i,
                    name: g.input_name(i).unwrap_or("").to_string(),
                    expected: format!("{}{}", decl.dtype, decl.shape),
                    got: format!("{}{:?}", arr.dtype(), arr.shape()),
                });
            }
            observer.observe(t, &arr);
            values[t.index()] = Some(arr);
        }
        for (ni, node) in g.nodes().iter().enumerate() {
            let err =
                |message: String| InterpError::Node { node: ni, op: node.op.name(), name: node.name.clone(), message };
            let ins: Vec<Option<&Array>> = node
                .inputs
                .iter()
                .map(|t| t.and_then(|t| values[t.index()].as_ref().or(self.consts[t.index()].as_ref())))
                .collect();
            let out = self.eval(node, &ins).map_err(err)?;
            let Some(&out_id) = node.outputs.first() else { continue };
            let decl = &g.tensors()[out_id.index()];
            if out.dtype() != decl.dtype || !fits(&decl.shape, out.shape()) {
                return Err(err(format!(
                    "computed {}{:?} but the output is declared {}{}",
                    out.dtype(),
                    out.shape(),
                    decl.dtype,
                    decl.shape
                )));
            }
            observer.observe(out_id, &out);
            values[out_id.index()] = Some(out);
            for t in node.input_ids() {
                if self.last_use[t.index()] == ni {
                    values[t.index()] = None;
                }
            }
        }
        g.outputs()
            .iter()
            .map(|&o| {
                values[o.index()].clone().or_else(|| self.consts[o.index()].clone()).ok_or_else(|| {
                    InterpError::Verify(VerifyError::UndefinedOutput {
                        tensor: o,
                        name: g.tensors()[o.index()].name.clone(),
                    })
                })
            })
            .collect()
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
            Op::Softmax(o) => make(kernels::softmax_f32(o, f32_in(0)?, input(0)?.shape().last().copied().unwrap_or(1))),
            Op::Unary(u) => match (u.kind, input(0)?.data()) {
                (UnaryKind::Relu | UnaryKind::Relu6 | UnaryKind::Logistic | UnaryKind::Tanh, Data::F32(x)) => {
                    make(kernels::unary_f32(u.kind, x))
                }
                (_, d) => Err(format!("{} on {} is not supported yet (float32 only)", node.op.name(), d.dtype())),
            },
            Op::Reshape(_) => input(0)?.clone().reshaped(out_shape.clone()).map_err(|e| e.to_string()),
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
                make_data(kernels::pad(o, input(0)?, zp, &out_shape))
            }
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

/// Does a concrete shape fit a declared one (dynamic dims match anything)?
fn fits(decl: &Shape, actual: &[usize]) -> bool {
    decl.rank() == actual.len()
        && decl.dims().iter().zip(actual).all(|(d, &a)| match d {
            Dim::Fixed(n) => *n == a,
            Dim::Dynamic => true,
        })
}
