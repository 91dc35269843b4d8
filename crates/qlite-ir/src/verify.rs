//! Graph invariants. `verify` runs after import and after every pass (in tests and debug builds).

use crate::dtype::DType;
use crate::graph::{Graph, TensorId};
use crate::op::Op;
use crate::quant::QuantError;
use crate::shape::{Dim, MAX_RANK, Shape};

/// A broken graph invariant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("subgraph {index}: {source}")]
    InSubgraph { index: usize, source: Box<VerifyError> },
    #[error("{what} refers to tensor {index}, but the graph has {count} tensors")]
    TensorOutOfRange { what: String, index: usize, count: usize },
    #[error("tensor {tensor} ({name:?}) has rank {rank}, more than the maximum {max}")]
    RankTooLarge { tensor: TensorId, name: String, rank: usize, max: usize },
    #[error("constant tensor {tensor} ({name:?}) has shape {shape}, which is not static")]
    DynamicConstant { tensor: TensorId, name: String, shape: Shape },
    #[error(
        "constant tensor {tensor} ({name:?}): shape {shape} of {dtype} needs {expected} bytes but the data has {actual}"
    )]
    DataLength { tensor: TensorId, name: String, shape: Shape, dtype: DType, expected: String, actual: usize },
    #[error("tensor {tensor} ({name:?}): {source}")]
    Quant { tensor: TensorId, name: String, source: QuantError },
    #[error("graph input {tensor} ({name:?}) is {why}")]
    BadInput { tensor: TensorId, name: String, why: &'static str },
    #[error(
        "node {node} ({op} {name:?}) reads tensor {tensor} ({tensor_name:?}) before any node produces it: the graph has a cycle or is out of order"
    )]
    UseBeforeDefinition { node: usize, op: &'static str, name: String, tensor: TensorId, tensor_name: String },
    #[error("node {node} ({op} {name:?}) writes tensor {tensor} ({tensor_name:?}), which is {why}")]
    BadOutput { node: usize, op: &'static str, name: String, tensor: TensorId, tensor_name: String, why: &'static str },
    #[error("node {node} ({op} {name:?}) has {got} {what}, expected {expected}")]
    Arity { node: usize, op: &'static str, name: String, what: &'static str, got: usize, expected: String },
    #[error("node {node} ({op} {name:?}): {message}")]
    Inference { node: usize, op: &'static str, name: String, message: String },
    #[error("node {node} ({op} {name:?}) output {tensor} is declared {declared} but the op gives {inferred}")]
    OutputMismatch { node: usize, op: &'static str, name: String, tensor: TensorId, declared: String, inferred: String },
    #[error("graph output {tensor} ({name:?}) is never produced")]
    UndefinedOutput { tensor: TensorId, name: String },
    #[error("the graph has unsupported ops: {0}")]
    Unsupported(String),
}

/// Check every invariant of `g`.
pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    let count = g.tensors().len();
    let check = |what: String, t: TensorId| -> Result<(), VerifyError> {
        if t.index() >= count {
            return Err(VerifyError::TensorOutOfRange { what, index: t.index(), count });
        }
        Ok(())
    };
    // Tensors on their own.
    for id in g.tensor_ids() {
        let t = &g.tensors()[id.index()];
        if t.shape.rank() > MAX_RANK {
            return Err(VerifyError::RankTooLarge {
                tensor: id,
                name: t.name.clone(),
                rank: t.shape.rank(),
                max: MAX_RANK,
            });
        }
        if let Some(data) = &t.data {
            if !t.shape.is_static() {
                return Err(VerifyError::DynamicConstant { tensor: id, name: t.name.clone(), shape: t.shape.clone() });
            }
            let expected = match t.dtype {
                DType::I4 | DType::U4 | DType::I2 => t.shape.num_elements().and_then(|n| t.dtype.data_len(n)),
                _ => t.shape.num_bytes(t.dtype.size()),
            };
            // A string (resource, variant) constant is a buffer of its own length.
            if t.dtype.data_len(0).is_some() && expected != Some(data.len()) {
                return Err(VerifyError::DataLength {
                    tensor: id,
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    dtype: t.dtype,
                    expected: expected.map_or_else(|| "more than usize::MAX".to_string(), |e| e.to_string()),
                    actual: data.len(),
                });
            }
        }
        if let Some(q) = &t.quant {
            let dims: Vec<Option<usize>> = t.shape.dims().iter().map(|d| d.fixed()).collect();
            q.validate(t.dtype, &dims).map_err(|source| VerifyError::Quant {
                tensor: id,
                name: t.name.clone(),
                source,
            })?;
        }
    }
    // Definitions in execution order.
    let mut defined = vec![false; count];
    let mut produced = vec![false; count];
    for (i, &t) in g.inputs().iter().enumerate() {
        check(format!("graph input #{i}"), t)?;
        let tensor = &g.tensors()[t.index()];
        if tensor.is_const() {
            return Err(VerifyError::BadInput { tensor: t, name: tensor.name.clone(), why: "a constant" });
        }
        if defined[t.index()] {
            return Err(VerifyError::BadInput { tensor: t, name: tensor.name.clone(), why: "listed twice" });
        }
        defined[t.index()] = true;
    }
    for (i, t) in g.tensors().iter().enumerate() {
        if t.is_const() {
            defined[i] = true;
        }
    }
    for (ni, n) in g.nodes().iter().enumerate() {
        let op = n.op.name();
        for (slot, t) in n.inputs.iter().enumerate() {
            let Some(t) = *t else { continue };
            check(format!("node {ni} ({op} {:?}) input {slot}", n.name), t)?;
            if !defined[t.index()] {
                return Err(VerifyError::UseBeforeDefinition {
                    node: ni,
                    op,
                    name: n.name.clone(),
                    tensor: t,
                    tensor_name: g.tensors()[t.index()].name.clone(),
                });
            }
        }
        for (slot, &t) in n.outputs.iter().enumerate() {
            check(format!("node {ni} ({op} {:?}) output {slot}", n.name), t)?;
            let tensor = &g.tensors()[t.index()];
            let why = if tensor.is_const() {
                Some("a constant")
            } else if produced[t.index()] {
                Some("already produced by another node")
            } else if defined[t.index()] {
                Some("a graph input")
            } else if n.input_ids().any(|i| i == t) {
                Some("also its input")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(VerifyError::BadOutput {
                    node: ni,
                    op,
                    name: n.name.clone(),
                    tensor: t,
                    tensor_name: tensor.name.clone(),
                    why,
                });
            }
            produced[t.index()] = true;
            defined[t.index()] = true;
        }
        verify_node_types(g, ni)?;
    }
    for &t in g.outputs() {
        check("graph output".to_string(), t)?;
        if !defined[t.index()] {
            return Err(VerifyError::UndefinedOutput { tensor: t, name: g.tensors()[t.index()].name.clone() });
        }
    }
    for (k, sg) in g.subgraphs().iter().enumerate() {
        verify(sg).map_err(|e| VerifyError::InSubgraph { index: k + 1, source: Box::new(e) })?;
    }
    Ok(())
}

/// Arity and shape/dtype inference for one node; the declared output types must agree.
fn verify_node_types(g: &Graph, ni: usize) -> Result<(), VerifyError> {
    let n = &g.nodes()[ni];
    let op = n.op.name();
    let ar = n.op.arity();
    if let Op::Opaque(_) = n.op {
        return Ok(());
    }
    if n.outputs.len() != ar.outputs {
        return Err(VerifyError::Arity {
            node: ni,
            op,
            name: n.name.clone(),
            what: "outputs",
            got: n.outputs.len(),
            expected: ar.outputs.to_string(),
        });
    }
    if n.inputs.len() < ar.min_inputs || n.inputs.len() > ar.max_inputs {
        let expected = if ar.max_inputs == usize::MAX {
            format!("at least {}", ar.min_inputs)
        } else if ar.min_inputs == ar.max_inputs {
            ar.min_inputs.to_string()
        } else {
            format!("{} to {}", ar.min_inputs, ar.max_inputs)
        };
        return Err(VerifyError::Arity {
            node: ni,
            op,
            name: n.name.clone(),
            what: "inputs",
            got: n.inputs.len(),
            expected,
        });
    }
    let ins: Vec<_> = n.inputs.iter().map(|t| t.and_then(|t| g.tensor(t)).map(|t| (t.dtype, &t.shape))).collect();
    let inferred =
        n.op.infer(&ins).map_err(|e| VerifyError::Inference { node: ni, op, name: n.name.clone(), message: e.0 })?;
    for (&t, inf) in n.outputs.iter().zip(&inferred) {
        let Some(tensor) = g.tensor(t) else { continue };
        let dtype_ok = inf.dtype.is_none_or(|d| d == tensor.dtype);
        let shape_ok = shapes_compatible(&tensor.shape, &inf.shape);
        if !dtype_ok || !shape_ok {
            return Err(VerifyError::OutputMismatch {
                node: ni,
                op,
                name: n.name.clone(),
                tensor: t,
                declared: format!("{}{}", tensor.dtype, tensor.shape),
                inferred: format!("{}{}", inf.dtype.map_or("?".to_string(), |d| d.to_string()), inf.shape),
            });
        }
    }
    Ok(())
}

/// Same rank and every dimension equal where both are known.
pub fn shapes_compatible(a: &Shape, b: &Shape) -> bool {
    a.rank() == b.rank()
        && a.dims().iter().zip(b.dims()).all(|(x, y)| match (x, y) {
            (Dim::Fixed(x), Dim::Fixed(y)) => x == y,
            _ => true,
        })
}

/// `verify`, plus: every `Opaque` op is one `format`'s writer can put back (it was read from
/// that format, which kept it); the others are named at once. Exporters call this.
pub fn verify_exportable(g: &Graph, format: &str) -> Result<(), VerifyError> {
    verify(g)?;
    let unsupported: Vec<String> = std::iter::once(g)
        .chain(g.subgraphs())
        .flat_map(|g| g.nodes())
        .filter_map(|n| match &n.op {
            Op::Opaque(o) if o.source.as_ref().is_none_or(|s| s.format != format) => {
                Some(format!("{} v{} (node {:?})", o.op_type, o.version, n.name))
            }
            _ => None,
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(VerifyError::Unsupported(unsupported.join(", ")));
    }
    Ok(())
}
