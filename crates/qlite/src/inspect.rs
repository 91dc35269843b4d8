//! `qlite inspect`: what a model file contains, as text or JSON.

use crate::{Error, Registry, load_bytes};
use qlite_ir::{Graph, TensorId};
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TensorSummary {
    pub index: usize,
    pub name: String,
    pub dtype: String,
    pub shape: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quant: Option<QuantSummary>,
    /// Bytes of constant data; `None` for activations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub const_bytes: Option<usize>,
    /// For a constant the file stores sparse: the bytes of its stored values (`const_bytes` is
    /// its dense size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse_bytes: Option<usize>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QuantSummary {
    pub scales: Vec<f32>,
    pub zero_points: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub axis: Option<usize>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IoSummary {
    pub name: String,
    pub tensor: usize,
    pub dtype: String,
    pub shape: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpSummary {
    pub index: usize,
    pub op: String,
    /// The format's own op name and version (e.g. "CONV_2D", 3), when the file records them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format_op: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    pub attrs: String,
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
}

/// Everything `qlite inspect` prints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub file: String,
    pub format: String,
    pub file_bytes: usize,
    pub description: Option<String>,
    pub signature_key: Option<String>,
    pub min_runtime_version: Option<String>,
    pub metadata: Vec<String>,
    pub inputs: Vec<IoSummary>,
    pub outputs: Vec<IoSummary>,
    pub ops: Vec<OpSummary>,
    pub tensors: Vec<TensorSummary>,
    pub constant_tensors: usize,
    pub constant_bytes: usize,
    /// Transpose ops in the graph (a converted CNN should have none inside).
    pub transposes: usize,
    /// The file's operators that became no node: the shape arithmetic of a dynamic batch,
    /// evaluated at read time.
    pub folded_ops: Vec<String>,
    /// Set when the file is valid but qlite cannot import it as it stands (an ONNX model whose
    /// spatial sizes are known only at run time, an operator qlite does not map): why, and what
    /// to do. The summary then describes what the file declares (`ops` are its nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_imported: Option<String>,
    /// The control-flow subgraphs the file keeps with the main one (WHILE's condition and
    /// body, IF's branches), in file order: index 1 is the file's subgraph 1.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subgraphs: Vec<SubgraphSummary>,
}

/// One control-flow subgraph: its name, I/O and operators.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubgraphSummary {
    pub index: usize,
    pub name: String,
    pub inputs: Vec<IoSummary>,
    pub outputs: Vec<IoSummary>,
    /// Each operator's name (an opaque operator's source name).
    pub ops: Vec<String>,
}

fn io_summary(g: &Graph, name: Option<&str>, t: TensorId) -> IoSummary {
    let tensor = g.tensor(t);
    IoSummary {
        name: name.unwrap_or("").to_string(),
        tensor: t.index(),
        dtype: tensor.map_or("?".into(), |t| t.dtype.to_string()),
        shape: tensor.map_or("?".into(), |t| t.shape.to_string()),
    }
}

/// Describe a graph (and, for .tflite bytes, the operator versions and metadata of the file).
pub fn summarize(g: &Graph, file: &str, format: &str, bytes: &[u8]) -> Summary {
    let info = (format == "tflite").then(|| qlite_tflite::file_info(bytes).ok()).flatten();
    // Each node is the file's operator that writes its output tensor; the operators the reader
    // folded (shape arithmetic) match no node.
    let file_ops = info.as_ref().map_or(&[][..], |i| i.operators.as_slice());
    let mut matched = vec![false; file_ops.len()];
    let mut next = 0;
    let mut file_op = |n: &qlite_ir::Node| {
        let name = n.outputs.first().and_then(|t| g.tensor(*t)).map_or("", |t| t.name.as_str());
        let k = (next..file_ops.len()).find(|&k| file_ops[k].2 == name)?;
        matched[k] = true;
        next = k + 1;
        Some(&file_ops[k])
    };
    let ops: Vec<OpSummary> = g
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let fo = file_op(n);
            let attrs: Vec<String> = n.op.attrs().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            OpSummary {
                index: i,
                op: n.op.name().to_string(),
                format_op: fo.map(|f| f.0.clone()),
                version: fo.map(|f| f.1),
                attrs: attrs.join(", "),
                inputs: n.inputs.iter().map(|t| t.map(|t| t.index())).collect(),
                outputs: n.outputs.iter().map(|t| t.index()).collect(),
            }
        })
        .collect();
    let folded: Vec<String> = file_ops.iter().zip(&matched).filter(|(_, m)| !**m).map(|(f, _)| f.0.clone()).collect();
    let tensors = g
        .tensor_ids()
        .map(|id| {
            let t = &g.tensors()[id.index()];
            TensorSummary {
                index: id.index(),
                name: t.name.clone(),
                dtype: t.dtype.to_string(),
                shape: t.shape.to_string(),
                quant: t.quant.as_ref().map(|q| QuantSummary {
                    scales: q.scales().to_vec(),
                    zero_points: q.zero_points().to_vec(),
                    axis: q.axis(),
                }),
                const_bytes: t.data.as_ref().map(|d| d.len()),
                sparse_bytes: t.sparse.as_ref().map(|sp| sp.values.len()),
            }
        })
        .collect();
    Summary {
        file: file.to_string(),
        format: format.to_string(),
        file_bytes: bytes.len(),
        description: info.as_ref().and_then(|i| i.description.clone()).or_else(|| g.description().map(str::to_string)),
        signature_key: g.signature().map(|s| s.key.clone()),
        min_runtime_version: info.as_ref().and_then(|i| i.min_runtime_version.clone()),
        metadata: info.as_ref().map(|i| i.metadata.clone()).unwrap_or_default(),
        inputs: g.inputs().iter().enumerate().map(|(i, &t)| io_summary(g, g.input_name(i), t)).collect(),
        outputs: g.outputs().iter().enumerate().map(|(i, &t)| io_summary(g, g.output_name(i), t)).collect(),
        ops,
        tensors,
        constant_tensors: std::iter::once(g)
            .chain(g.subgraphs())
            .map(|g| g.tensors().iter().filter(|t| t.is_const()).count())
            .sum(),
        constant_bytes: g.constant_bytes(),
        transposes: g.nodes().iter().filter(|n| n.op.name() == "Transpose").count(),
        folded_ops: folded,
        not_imported: None,
        subgraphs: g
            .subgraphs()
            .iter()
            .enumerate()
            .map(|(k, sg)| SubgraphSummary {
                index: k + 1,
                name: sg.name().to_string(),
                inputs: sg.inputs().iter().map(|&t| io_summary(sg, None, t)).collect(),
                outputs: sg.outputs().iter().map(|&t| io_summary(sg, None, t)).collect(),
                ops: sg
                    .nodes()
                    .iter()
                    .map(|n| match &n.op {
                        qlite_ir::Op::Opaque(o) => o.op_type.trim_start_matches("tflite:").to_string(),
                        op => op.name().to_string(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The summary of a valid .tflite file qlite cannot import (control-flow subgraphs, string or
/// 4-bit tensors), from what the file declares: subgraph 0's signature, every subgraph's ops.
fn describe_tflite(d: &qlite_tflite::Description, file: &str, bytes: usize, why: &str) -> Summary {
    let io = |t: &qlite_tflite::DeclaredTensor| IoSummary {
        name: t.name.clone(),
        tensor: t.index,
        dtype: t.dtype.to_lowercase(),
        shape: format!(
            "[{}]",
            t.shape.iter().map(|&v| if v < 0 { "?".to_string() } else { v.to_string() }).collect::<Vec<_>>().join(",")
        ),
    };
    let main = d.subgraphs.first();
    let mut ops = Vec::new();
    for (k, sg) in d.subgraphs.iter().enumerate() {
        for (name, version, out) in &sg.operators {
            ops.push(OpSummary {
                index: ops.len(),
                op: format!("{name} v{version}"),
                format_op: Some(name.clone()),
                version: Some(*version),
                attrs: format!("subgraph {k} {:?}, output {out:?}", sg.name),
                inputs: Vec::new(),
                outputs: Vec::new(),
            });
        }
    }
    let sigs: Vec<String> = d.signatures.iter().map(|(k, i)| format!("{k} (subgraph {i})")).collect();
    Summary {
        file: file.to_string(),
        format: "tflite".to_string(),
        file_bytes: bytes,
        description: d.info.description.clone(),
        signature_key: (!sigs.is_empty()).then(|| sigs.join(", ")),
        min_runtime_version: d.info.min_runtime_version.clone(),
        metadata: d.info.metadata.clone(),
        inputs: main.map(|m| m.inputs.iter().map(io).collect()).unwrap_or_default(),
        outputs: main.map(|m| m.outputs.iter().map(io).collect()).unwrap_or_default(),
        transposes: ops.iter().filter(|o| o.format_op.as_deref() == Some("TRANSPOSE")).count(),
        ops,
        tensors: Vec::new(),
        constant_tensors: 0,
        constant_bytes: 0,
        folded_ops: Vec::new(),
        not_imported: Some(format!("{why} ({} subgraphs, {} buffers)", d.subgraphs.len(), d.info.buffers)),
        subgraphs: Vec::new(),
    }
}

/// The summary of an ONNX file qlite cannot import as it stands, from what the file declares.
fn describe_onnx(d: &qlite_onnx::Description, file: &str, bytes: usize, why: &str) -> Summary {
    let dtype = |e: &str| match e {
        "FLOAT" => "f32".to_string(),
        "FLOAT16" => "f16".to_string(),
        "INT64" => "i64".to_string(),
        "INT32" => "i32".to_string(),
        "INT8" => "i8".to_string(),
        "UINT8" => "u8".to_string(),
        other => other.to_lowercase(),
    };
    let io = |(i, v): (usize, &qlite_onnx::DeclaredValue)| IoSummary {
        name: v.name.clone(),
        tensor: i,
        dtype: dtype(&v.elem_type),
        shape: format!("[{}]", v.dims.join(",")),
    };
    let run_time_dims = d.inputs.iter().any(|v| v.dims.iter().any(|x| x.parse::<usize>().is_err()));
    let hint =
        if run_time_dims { " (fix the dimensions known only at run time with --input-shape NAME=D,D,…)" } else { "" };
    Summary {
        file: file.to_string(),
        format: "onnx".to_string(),
        file_bytes: bytes,
        description: d.producer.as_ref().map(|p| format!("ONNX from {p}, opset {}", d.opset)),
        signature_key: None,
        min_runtime_version: None,
        metadata: Vec::new(),
        inputs: d.inputs.iter().enumerate().map(io).collect(),
        outputs: d.outputs.iter().enumerate().map(io).collect(),
        ops: d
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| OpSummary {
                index: i,
                op: n.op.clone(),
                format_op: None,
                version: None,
                attrs: format!("name={:?}", n.name),
                inputs: Vec::new(),
                outputs: Vec::new(),
            })
            .collect(),
        tensors: Vec::new(),
        constant_tensors: d.initializers,
        constant_bytes: d.initializer_bytes,
        transposes: d.nodes.iter().filter(|n| n.op == "Transpose").count(),
        folded_ops: Vec::new(),
        not_imported: Some(format!("{why}{hint}")),
        subgraphs: Vec::new(),
    }
}

/// Inspect a model file (memory-mapped: weights are not copied).
pub fn inspect_file(reg: &Registry, path: &Path) -> Result<Summary, Error> {
    let bytes = crate::model_bytes(path)?;
    let format = reg.importer_for(path, &bytes[..bytes.len().min(64)]).map_or("unknown", |i| i.name());
    let file = path.file_name().map_or_else(|| path.display().to_string(), |f| f.to_string_lossy().into_owned());
    match load_bytes(reg, path, bytes.clone()) {
        Ok(g) => Ok(summarize(&g, &file, format, &bytes)),
        // A valid ONNX file qlite cannot import as it stands is described from its declarations.
        Err(Error::Import { message, .. }) if format == "onnx" => match qlite_onnx::describe(bytes.clone()) {
            Ok(d) => Ok(describe_onnx(&d, &file, bytes.len(), &message)),
            Err(_) => Err(Error::Import { path: path.to_path_buf(), message }),
        },
        // A valid .tflite file with what qlite does not model is described from the flatbuffer;
        // a malformed one is still an error.
        Err(e @ Error::Import { .. }) if format == "tflite" => match qlite_tflite::read_model(bytes.clone()) {
            Err(re) if re.is_unsupported_feature() => match qlite_tflite::describe(&bytes) {
                Ok(d) => Ok(describe_tflite(&d, &file, bytes.len(), &re.to_string())),
                Err(_) => Err(e),
            },
            _ => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Human-readable text of a summary (stable: used in snapshots).
pub fn render_text(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "model: {} ({}, {} bytes)", s.file, s.format, s.file_bytes);
    if let Some(d) = &s.description {
        let _ = writeln!(o, "description: {d}");
    }
    if let Some(k) = &s.signature_key {
        let _ = writeln!(o, "signature: {k}");
    }
    if let Some(v) = &s.min_runtime_version {
        let _ = writeln!(o, "min runtime version: {v}");
    }
    if !s.metadata.is_empty() {
        let _ = writeln!(o, "metadata: {}", s.metadata.join(", "));
    }
    let _ = writeln!(o, "inputs:");
    for i in &s.inputs {
        let _ = writeln!(o, "  {:?}: {}{} (tensor {})", i.name, i.dtype, i.shape, i.tensor);
    }
    let _ = writeln!(o, "outputs:");
    for i in &s.outputs {
        let _ = writeln!(o, "  {:?}: {}{} (tensor {})", i.name, i.dtype, i.shape, i.tensor);
    }
    if let Some(why) = &s.not_imported {
        let _ = writeln!(o, "not imported as it stands: {why}");
        let _ = writeln!(o, "nodes as declared ({}):", s.ops.len());
        for op in &s.ops {
            let _ = writeln!(o, "  {:>3} {:<24} {}", op.index, op.op, op.attrs);
        }
        if s.format == "onnx" {
            let _ = writeln!(o, "constants: {} initializers, {} bytes", s.constant_tensors, s.constant_bytes);
        }
        return o;
    }
    let _ = writeln!(o, "ops ({}, {} Transpose):", s.ops.len(), s.transposes);
    if !s.folded_ops.is_empty() {
        let _ = writeln!(o, "  (shape arithmetic folded at read: {})", s.folded_ops.join(", "));
    }
    for op in &s.ops {
        let fmt = match (&op.format_op, op.version) {
            (Some(f), Some(v)) => format!("{f} v{v}"),
            _ => op.op.clone(),
        };
        let ins: Vec<String> = op.inputs.iter().map(|i| i.map_or("-".into(), |i| i.to_string())).collect();
        let outs: Vec<String> = op.outputs.iter().map(|i| i.to_string()).collect();
        let attrs = if op.attrs.is_empty() { String::new() } else { format!(" {{{}}}", op.attrs) };
        let _ =
            writeln!(o, "  {:>3} {:<24} {}{} ({}) -> {}", op.index, fmt, op.op, attrs, ins.join(", "), outs.join(", "));
    }
    for sg in &s.subgraphs {
        let io = |v: &[IoSummary]| v.iter().map(|t| format!("{}{}", t.dtype, t.shape)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            o,
            "subgraph {} {:?} ({}) -> ({}): {} ops: {}",
            sg.index,
            sg.name,
            io(&sg.inputs),
            io(&sg.outputs),
            sg.ops.len(),
            sg.ops.join(", ")
        );
    }
    let _ = writeln!(o, "tensors ({}):", s.tensors.len());
    for t in &s.tensors {
        let mut line = format!("  {:>3} {}{} {:?}", t.index, t.dtype, t.shape, t.name);
        if let Some(b) = t.const_bytes {
            let _ = write!(line, " const {b} B");
        }
        if let Some(b) = t.sparse_bytes {
            let _ = write!(line, " (sparse, {b} B stored)");
        }
        if let Some(q) = &t.quant {
            match q.axis {
                Some(a) => {
                    let _ = write!(line, " per-channel(axis {a}, {} scales)", q.scales.len());
                }
                None => {
                    let _ = write!(
                        line,
                        " q(scale={:e}, zp={})",
                        q.scales.first().unwrap_or(&0.0),
                        q.zero_points.first().unwrap_or(&0)
                    );
                }
            }
        }
        let _ = writeln!(o, "{line}");
    }
    let _ = writeln!(o, "constants: {} tensors, {} bytes", s.constant_tensors, s.constant_bytes);
    o
}
