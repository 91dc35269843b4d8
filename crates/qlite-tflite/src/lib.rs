//! TensorFlow Lite for the qlite IR: a flatbuffer writer and a reader.
//!
//! The writer runs the TFLite legalize pipeline and then serializes the graph one to one
//! (identifier `TFL3`, schema version 3, empty buffer 0, 16-byte aligned constant data,
//! `builtin_code` and `deprecated_builtin_code`, operator versions as TensorFlow's converter
//! assigns them, a `serving_default` SignatureDef, `min_runtime_version` metadata). The same graph
//! always gives the same bytes.
//!
//! The reader runs the flatbuffers verifier first, then range-checks every index and size it
//! uses, and hands the graph to the IR verifier. Constant data is never copied: tensors point
//! into the input [`bytes::Bytes`], which may be a memory map.

// Library code never unwraps: values derived from a file are checked and errors returned.
#![deny(clippy::unwrap_used, clippy::expect_used)]

#[allow(unsafe_code, unused_imports, dead_code, clippy::all, clippy::unwrap_used, clippy::expect_used, missing_debug_implementations, mismatched_lifetime_syntaxes)]
#[rustfmt::skip]
mod generated {
    include!("generated/tflite_generated.rs");
}

mod codes;
mod opaque;
mod ops;
pub mod reader;
mod shape;
pub mod writer;

pub use codes::builtin_name;
pub use generated::tflite as fb;
use reader::flatbuffer_error;
pub use reader::{ReadError, read_model};
pub use writer::{
    BufferPlacement, OUTSIDE_THRESHOLD, WriteError, legalize_pipeline, write_model, write_model_owned, write_model_to,
    write_model_with,
};

/// The file identifier at bytes 4..8 of every .tflite file.
pub const FILE_IDENTIFIER: &[u8; 4] = b"TFL3";

/// Does `bytes` look like a .tflite file?
pub fn sniff(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(&FILE_IDENTIFIER[..])
}

/// What a .tflite file records beyond the graph: operator codes and versions, metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    pub description: Option<String>,
    /// (op name, version, name of its first output tensor) per operator, in execution order.
    pub operators: Vec<(String, i32, String)>,
    pub min_runtime_version: Option<String>,
    pub metadata: Vec<String>,
    pub buffers: usize,
}

/// The verified flatbuffer root (the verifier settings of [`read_model`]).
fn verified_root(bytes: &[u8]) -> Result<fb::Model<'_>, ReadError> {
    if bytes.len() < 8 {
        return Err(ReadError::TooShort(bytes.len()));
    }
    let fb_len = bytes.len().min((1usize << 31) - 1);
    let opts = flatbuffers::VerifierOptions {
        max_depth: 64,
        max_tables: 10_000_000,
        max_apparent_size: 1 << 31,
        ..Default::default()
    };
    flatbuffers::root_with_opts::<fb::Model>(&opts, &bytes[..fb_len]).map_err(flatbuffer_error)
}

/// An operator's code as the file names it: (builtin name or custom code, is custom, version),
/// and the name of its first output tensor.
fn operator_identity(
    model: &fb::Model<'_>,
    sg: &fb::SubGraph<'_>,
    op: &fb::Operator<'_>,
) -> ((String, bool, i32), String) {
    let idx = op.opcode_index() as usize;
    let code = match model.operator_codes().filter(|c| idx < c.len()).map(|c| c.get(idx)) {
        Some(oc) => {
            let code = oc.builtin_code().0.max(oc.deprecated_builtin_code() as i32);
            match oc.custom_code() {
                Some(c) if code == fb::BuiltinOperator::CUSTOM.0 => (c.to_string(), true, oc.version()),
                _ => (codes::builtin_name(code), false, oc.version()),
            }
        }
        None => ("<invalid opcode>".to_string(), false, 0),
    };
    let tensors = sg.tensors();
    let out = op
        .outputs()
        .filter(|o| !o.is_empty())
        .and_then(|o| usize::try_from(o.get(0)).ok())
        .and_then(|i| tensors.filter(|t| i < t.len()).map(|t| t.get(i)))
        .and_then(|t| t.name())
        .unwrap_or("")
        .to_string();
    (code, out)
}

/// (op name, version, name of its first output tensor) of each operator of a subgraph; a
/// custom op is named `CUSTOM(code)`.
fn operator_list(model: &fb::Model<'_>, sg: &fb::SubGraph<'_>) -> Vec<(String, i32, String)> {
    sg.operators()
        .iter()
        .flat_map(|v| v.iter())
        .map(|op| {
            let ((name, custom, version), out) = operator_identity(model, sg, &op);
            (if custom { format!("CUSTOM({name})") } else { name }, version, out)
        })
        .collect()
}

/// Read the operator versions and metadata of a .tflite file (after the same verification as
/// [`read_model`]; call that first).
pub fn file_info(bytes: &[u8]) -> Result<FileInfo, ReadError> {
    let model = verified_root(bytes)?;
    let operators = match model.subgraphs().filter(|s| !s.is_empty()).map(|s| s.get(0)) {
        Some(sg) => operator_list(&model, &sg),
        None => Vec::new(),
    };
    let mut metadata = Vec::new();
    let mut min_runtime_version = None;
    if let Some(md) = model.metadata() {
        for m in md.iter() {
            let name = m.name().unwrap_or("").to_string();
            if name == "min_runtime_version"
                && let Some(b) =
                    model.buffers().filter(|b| (m.buffer() as usize) < b.len()).map(|b| b.get(m.buffer() as usize))
                && let Some(d) = b.data()
            {
                let s: Vec<u8> = d.bytes().iter().copied().take_while(|&c| c != 0).collect();
                min_runtime_version = Some(String::from_utf8_lossy(&s).into_owned());
            }
            metadata.push(name);
        }
    }
    Ok(FileInfo {
        description: model.description().map(str::to_string),
        operators,
        min_runtime_version,
        metadata,
        buffers: model.buffers().map_or(0, |b| b.len()),
    })
}

/// A tensor of a subgraph as the file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredTensor {
    pub index: usize,
    pub name: String,
    /// The schema's type name ("FLOAT32", "STRING", "INT4", …).
    pub dtype: String,
    /// `shape_signature` when present (-1 for a dynamic dimension), else `shape`.
    pub shape: Vec<i32>,
}

/// One subgraph as the file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredSubgraph {
    pub name: String,
    pub inputs: Vec<DeclaredTensor>,
    pub outputs: Vec<DeclaredTensor>,
    /// (op name, version, name of its first output tensor) per operator.
    pub operators: Vec<(String, i32, String)>,
    pub tensors: usize,
}

/// What a valid .tflite file declares, read from the flatbuffer alone: what `qlite inspect`
/// shows of a file qlite cannot import (control flow, string or 4-bit tensors).
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    pub info: FileInfo,
    pub subgraphs: Vec<DeclaredSubgraph>,
    /// Signature keys with their subgraph index.
    pub signatures: Vec<(String, usize)>,
}

/// Describe a .tflite file from its flatbuffer (verified as [`read_model`] verifies it).
pub fn describe(bytes: &[u8]) -> Result<Description, ReadError> {
    if bytes.get(4..8) != Some(&FILE_IDENTIFIER[..]) {
        return Err(ReadError::WrongIdentifier(String::from_utf8_lossy(bytes.get(4..8).unwrap_or(&[])).into_owned()));
    }
    let info = file_info(bytes)?;
    let model = verified_root(bytes)?;
    let mut subgraphs = Vec::new();
    for sg in model.subgraphs().iter().flat_map(|v| v.iter()) {
        let tensors = sg.tensors();
        let declared = |i: i32| -> DeclaredTensor {
            let t = usize::try_from(i).ok().and_then(|i| tensors.filter(|t| i < t.len()).map(|t| (i, t.get(i))));
            match t {
                Some((index, t)) => DeclaredTensor {
                    index,
                    name: t.name().unwrap_or("").to_string(),
                    dtype: t.type_().variant_name().map_or_else(|| t.type_().0.to_string(), str::to_string),
                    shape: t.shape_signature().or(t.shape()).map(|v| v.iter().collect()).unwrap_or_default(),
                },
                None => DeclaredTensor {
                    index: 0,
                    name: format!("<tensor {i} out of range>"),
                    dtype: "?".into(),
                    shape: vec![],
                },
            }
        };
        let operators = operator_list(&model, &sg);
        subgraphs.push(DeclaredSubgraph {
            name: sg.name().unwrap_or("").to_string(),
            inputs: sg.inputs().iter().flat_map(|v| v.iter()).map(declared).collect(),
            outputs: sg.outputs().iter().flat_map(|v| v.iter()).map(declared).collect(),
            operators,
            tensors: tensors.map_or(0, |t| t.len()),
        });
    }
    let signatures = model
        .signature_defs()
        .iter()
        .flat_map(|v| v.iter())
        .map(|s| (s.signature_key().unwrap_or("").to_string(), s.subgraph_index() as usize))
        .collect();
    Ok(Description { info, subgraphs, signatures })
}

/// A tensor an operator reads or writes, as the file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct OperandDetail {
    /// The schema's type name ("FLOAT32", "INT8", …).
    pub dtype: String,
    /// Holds constant data (a buffer with data, or an offset buffer).
    pub constant: bool,
    /// The axes known only at run time (-1 in `shape_signature`).
    pub dynamic_axes: Vec<usize>,
    /// The declared `shape` (a dynamic dimension holds its placeholder, 1).
    pub dims: Vec<i32>,
}

/// One operator of a file, with what a runtime's support depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorDetail {
    pub subgraph: usize,
    pub index: usize,
    /// The builtin's name ("CONV_2D") or, for a custom op, its custom code.
    pub name: String,
    pub custom: bool,
    pub version: i32,
    /// Name of its first output tensor.
    pub output: String,
    /// `None` for an omitted optional input (-1).
    pub inputs: Vec<Option<OperandDetail>>,
    pub outputs: Vec<OperandDetail>,
}

/// Every operator of every subgraph (after the verification of [`read_model`]), and whether
/// the file keeps constants after the flatbuffer (offset buffers).
pub fn operator_details(bytes: &[u8]) -> Result<(Vec<OperatorDetail>, bool), ReadError> {
    if bytes.get(4..8) != Some(&FILE_IDENTIFIER[..]) {
        return Err(ReadError::WrongIdentifier(String::from_utf8_lossy(bytes.get(4..8).unwrap_or(&[])).into_owned()));
    }
    let model = verified_root(bytes)?;
    let buffers = model.buffers();
    let has_data = |b: u32| {
        buffers
            .filter(|bs| (b as usize) < bs.len())
            .map(|bs| bs.get(b as usize))
            .is_some_and(|b| b.data().is_some_and(|d| !d.is_empty()) || b.offset() > 1)
    };
    let offset_buffers =
        buffers.iter().flat_map(|v| v.iter()).any(|b| b.data().is_none_or(|d| d.is_empty()) && b.offset() > 1);
    let mut out = Vec::new();
    for (si, sg) in model.subgraphs().iter().flat_map(|v| v.iter()).enumerate() {
        let tensors = sg.tensors();
        let operand = |i: i32| -> Option<OperandDetail> {
            let t = usize::try_from(i).ok().and_then(|i| tensors.filter(|t| i < t.len()).map(|t| t.get(i)))?;
            Some(OperandDetail {
                dtype: t.type_().variant_name().map_or_else(|| t.type_().0.to_string(), str::to_string),
                constant: t.buffer() != 0 && has_data(t.buffer()),
                dynamic_axes: t
                    .shape_signature()
                    .map(|s| s.iter().enumerate().filter(|(_, d)| *d < 0).map(|(k, _)| k).collect())
                    .unwrap_or_default(),
                dims: t.shape().map(|v| v.iter().collect()).unwrap_or_default(),
            })
        };
        for (oi, op) in sg.operators().iter().flat_map(|v| v.iter()).enumerate() {
            let ((name, custom, version), output) = operator_identity(&model, &sg, &op);
            let outputs: Vec<OperandDetail> = op.outputs().iter().flat_map(|v| v.iter()).filter_map(operand).collect();
            out.push(OperatorDetail {
                subgraph: si,
                index: oi,
                name,
                custom,
                version,
                output,
                inputs: op.inputs().iter().flat_map(|v| v.iter()).map(operand).collect(),
                outputs,
            });
        }
    }
    Ok((out, offset_buffers))
}
