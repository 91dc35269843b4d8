//! Tensors: a name, a type, a shape, optional quantization and optional constant data.

use crate::dtype::DType;
use crate::quant::QuantParams;
use crate::shape::Shape;
use bytes::Bytes;

/// A tensor of the graph. Constant tensors carry their data as shared bytes, which may point
/// into a memory-mapped file: cloning a tensor or a graph never copies weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Shape,
    pub quant: Option<QuantParams>,
    /// Little-endian, row-major constant data. `None` for activations.
    pub data: Option<Bytes>,
    /// How the source file stored this constant sparsely; `data` is its dense form. Writers
    /// store it sparse again only while it still expands to `data`.
    pub sparse: Option<Box<crate::sparse::SparseForm>>,
}

impl Tensor {
    /// A non-constant tensor.
    pub fn activation(name: impl Into<String>, dtype: DType, shape: Shape) -> Self {
        Tensor { name: name.into(), dtype, shape, quant: None, data: None, sparse: None }
    }

    /// A constant tensor; the length is checked by the verifier.
    pub fn constant(name: impl Into<String>, dtype: DType, shape: Shape, data: Bytes) -> Self {
        Tensor { name: name.into(), dtype, shape, quant: None, data: Some(data), sparse: None }
    }

    pub fn with_quant(mut self, q: QuantParams) -> Self {
        self.quant = Some(q);
        self
    }

    pub fn is_const(&self) -> bool {
        self.data.is_some()
    }
}

/// Encode f32 values as little-endian bytes.
pub fn f32_bytes(v: &[f32]) -> Bytes {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(out)
}

/// Encode i32 values as little-endian bytes.
pub fn i32_bytes(v: &[i32]) -> Bytes {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(out)
}

/// Encode i64 values as little-endian bytes.
pub fn i64_bytes(v: &[i64]) -> Bytes {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(out)
}

/// Decode little-endian i32 values (a trailing partial element is ignored).
pub fn read_i32s(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Decode little-endian i64 values (a trailing partial element is ignored).
pub fn read_i64s(b: &[u8]) -> Vec<i64> {
    b.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()
}

/// Decode little-endian f32 values (a trailing partial element is ignored).
pub fn read_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
