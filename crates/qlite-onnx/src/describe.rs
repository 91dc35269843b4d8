//! What an ONNX file declares, read from the protobuf alone: the description `qlite inspect`
//! falls back on when the file is valid ONNX that qlite cannot import as it stands (run-time
//! spatial sizes, an operator qlite does not map), so that no valid file is refused.

use crate::import::OnnxError;
use crate::proto::{self, ModelProto, ValueInfoProto};
use bytes::Bytes;
use prost::Message;

/// A graph input or output as the file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredValue {
    pub name: String,
    /// ONNX's element type name ("FLOAT", "INT64", …), "?" when absent.
    pub elem_type: String,
    /// One entry per dimension: the size, the symbolic name (`batch`), or `?`.
    pub dims: Vec<String>,
}

/// One node of the file's graph.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredNode {
    pub name: String,
    /// `op_type`, prefixed with its domain when that is not the default one.
    pub op: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// The file-level description of an ONNX model.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    pub producer: Option<String>,
    pub opset: i64,
    pub inputs: Vec<DeclaredValue>,
    pub outputs: Vec<DeclaredValue>,
    pub nodes: Vec<DeclaredNode>,
    pub initializers: usize,
    /// Bytes of initializer data stored in the file (`raw_data` and the typed fields).
    pub initializer_bytes: usize,
}

fn declared(v: &ValueInfoProto) -> DeclaredValue {
    let (elem_type, dims) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(proto::type_proto::Value::TensorType(t)) => {
            let elem = proto::tensor_proto::DataType::try_from(t.elem_type.unwrap_or(0))
                .map_or_else(|_| "?".to_string(), |d| d.as_str_name().to_string());
            let dims = t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) => v.to_string(),
                            Some(proto::tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => {
                                p.clone()
                            }
                            _ => "?".to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (elem, dims)
        }
        None => ("?".to_string(), Vec::new()),
    };
    DeclaredValue { name: v.name.clone().unwrap_or_default(), elem_type, dims }
}

/// Read what the file declares; fails only when it is not an ONNX model with a graph.
pub fn describe(bytes: Bytes) -> Result<Description, OnnxError> {
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    let graph = model.graph.as_ref().ok_or(OnnxError::NoGraph)?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(1);
    let init_names: std::collections::HashSet<&str> =
        graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let initializer_bytes = graph
        .initializer
        .iter()
        .map(|t| {
            t.raw_data.as_ref().map_or(0, |d| d.len())
                + 4 * (t.float_data.len() + t.int32_data.len())
                + 8 * (t.int64_data.len() + t.double_data.len() + t.uint64_data.len())
        })
        .sum();
    Ok(Description {
        producer: model.producer_name.clone(),
        opset,
        inputs: graph
            .input
            .iter()
            .filter(|v| !init_names.contains(v.name.as_deref().unwrap_or("")))
            .map(declared)
            .collect(),
        outputs: graph.output.iter().map(declared).collect(),
        nodes: graph
            .node
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let op_type = n.op_type.clone().unwrap_or_default();
                let op = match n.domain.as_deref() {
                    None | Some("") | Some("ai.onnx") => op_type.clone(),
                    Some(d) => format!("{d}:{op_type}"),
                };
                DeclaredNode {
                    name: n.name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| format!("{op_type}_{i}")),
                    op,
                    inputs: n.input.clone(),
                    outputs: n.output.clone(),
                }
            })
            .collect(),
        initializers: graph.initializer.len(),
        initializer_bytes,
    })
}
