//! safetensors ↔ IR constants.
//!
//! Export convention for quantized constants: tensor `W` (I8 / U8 / I16 / I32) is written with
//! two companion tensors, `W.qscale` (F32, one scale per channel) and `W.qzero` (I64), and the
//! metadata entry `W.qaxis` = the channel axis (absent for per-tensor parameters). Reading a
//! file back re-attaches them.

use crate::format::{StError, StFile, StTensor};
use bytes::Bytes;
use qlite_ir::tensor::{f32_bytes, i64_bytes, read_f32s, read_i64s};
use qlite_ir::{DType, Graph, QuantParams, Shape, Tensor};
use safetensors::Dtype;
use std::collections::BTreeMap;

pub fn to_ir(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::I16 => DType::I16,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

/// The safetensors dtype of an IR dtype (`None`: strings, which safetensors has no type for).
pub fn from_ir(d: DType) -> Option<Dtype> {
    Some(match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::I16 => Dtype::I16,
        DType::I32 => Dtype::I32,
        DType::I64 => Dtype::I64,
        DType::Bool => Dtype::BOOL,
        _ => return None,
    })
}

const SCALE: &str = ".qscale";
const ZERO: &str = ".qzero";
const AXIS: &str = ".qaxis";

/// A weights-only graph: every tensor becomes a constant, in file order (no nodes, no I/O).
pub fn to_graph(file: &StFile) -> Result<Graph, StError> {
    let mut g = Graph::new("weights");
    // Quantization axes are re-attached to their tensors; every other entry is kept as is.
    *g.metadata_mut() = file.metadata.iter().filter(|(k, _)| !k.ends_with(AXIS)).cloned().collect();
    let by_name: BTreeMap<&str, &StTensor> = file.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    for t in &file.tensors {
        if (t.name.ends_with(SCALE) || t.name.ends_with(ZERO))
            && by_name.contains_key(t.name.trim_end_matches(SCALE).trim_end_matches(ZERO))
        {
            continue;
        }
        let dtype = to_ir(t.dtype).ok_or_else(|| StError::Tensor {
            name: t.name.clone(),
            message: format!("dtype {} has no qlite IR equivalent (use `qlite weights` to convert it)", t.dtype),
        })?;
        let mut tensor = Tensor::constant(t.name.clone(), dtype, Shape::fixed(&t.shape), t.data.clone());
        if let (Some(s), Some(z)) =
            (by_name.get(format!("{}{SCALE}", t.name).as_str()), by_name.get(format!("{}{ZERO}", t.name).as_str()))
        {
            let axis = match file.meta(&format!("{}{AXIS}", t.name)) {
                Some(a) => Some(a.parse::<usize>().map_err(|_| StError::Tensor {
                    name: t.name.clone(),
                    message: format!("bad quantization axis {a:?}"),
                })?),
                None => None,
            };
            tensor.quant = Some(QuantParams::from_parts(read_f32s(&s.data), read_i64s(&z.data), axis));
        }
        g.add_tensor(tensor);
    }
    qlite_ir::verify(&g).map_err(|e| StError::Format(e.to_string()))?;
    Ok(g)
}

/// Every constant of `g`, in tensor order, with quantization companions; the graph's own
/// metadata is kept. String constants (a .tflite's lookup tables, not weights) have no
/// safetensors type and are left out.
pub fn from_graph(g: &Graph) -> (Vec<StTensor>, Vec<(String, String)>) {
    let mut out = Vec::new();
    let mut meta = g.metadata().to_vec();
    for t in g.tensors() {
        let (Some(data), Some(dtype)) = (&t.data, from_ir(t.dtype)) else { continue };
        let shape = t.shape.to_fixed().unwrap_or_default();
        out.push(StTensor { name: t.name.clone(), dtype, shape, data: data.clone() });
        if let Some(q) = &t.quant {
            let n = q.scales().len();
            out.push(StTensor {
                name: format!("{}{SCALE}", t.name),
                dtype: Dtype::F32,
                shape: vec![n],
                data: f32_bytes(q.scales()),
            });
            out.push(StTensor {
                name: format!("{}{ZERO}", t.name),
                dtype: Dtype::I64,
                shape: vec![n],
                data: i64_bytes(q.zero_points()),
            });
            if let Some(a) = q.axis() {
                meta.push((format!("{}{AXIS}", t.name), a.to_string()));
            }
        }
    }
    (out, meta)
}

/// Replace the constants of `g` whose names appear in `file` with the file's data (shape and
/// dtype checked per tensor). Every tensor of the file must match a constant; all that do not
/// are listed in one error.
pub fn bind_weights(g: &Graph, file: &StFile) -> Result<(Graph, usize), StError> {
    let mut out = g.clone();
    let mut unmatched = Vec::new();
    let mut problems = Vec::new();
    let mut bound = 0;
    for t in &file.tensors {
        let Some(id) = out
            .tensor_ids()
            .find(|&id| out.tensors()[id.index()].name == t.name && out.tensors()[id.index()].is_const())
        else {
            unmatched.push(t.name.clone());
            continue;
        };
        let target = &out.tensors()[id.index()];
        let want_shape = target.shape.to_fixed().unwrap_or_default();
        if want_shape != t.shape || to_ir(t.dtype) != Some(target.dtype) {
            problems.push(format!(
                "{:?} is {}{:?} in the weights but {}{} in the model",
                t.name, t.dtype, t.shape, target.dtype, target.shape
            ));
            continue;
        }
        if let Some(tm) = out.tensor_mut(id) {
            tm.data = Some(t.data.clone());
        }
        bound += 1;
    }
    if !problems.is_empty() {
        return Err(StError::Bind(format!("weights do not fit the model: {}", problems.join("; "))));
    }
    if !unmatched.is_empty() {
        return Err(StError::Bind(format!("weights match no constant of the model: {}", unmatched.join(", "))));
    }
    Ok((out, bound))
}

/// Raw little-endian bytes of f32 values (helper for builders).
pub fn f32_data(v: &[f32]) -> Bytes {
    f32_bytes(v)
}
