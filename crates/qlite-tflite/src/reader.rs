//! .tflite → IR. Structure is verified by the flatbuffers verifier, every index and size is
//! range-checked here, and the resulting graph must pass the IR verifier.

use crate::codes;
use crate::fb;
use crate::ops;
use crate::shape;
use bytes::Bytes;
use qlite_ir::op::{Opaque, OpaqueSource, Reshape};
use qlite_ir::{
    Dim, Graph, Node, Op, QuantParams, Shape, Signature, SparseForm, SparseLevel, Tensor, TensorId, VerifyError,
};

/// Why a .tflite file could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    #[error("file is {0} bytes, too short to be a .tflite model")]
    TooShort(usize),
    #[error("not a .tflite file: expected identifier \"TFL3\" at bytes 4..8, found {0:?}")]
    WrongIdentifier(String),
    #[error("malformed flatbuffer: {0}")]
    Flatbuffer(String),
    #[error("unsupported schema version {0} (expected 3)")]
    SchemaVersion(u32),
    #[error("the model has no subgraph")]
    NoSubgraph,
    #[error("subgraph {index}: {source}")]
    InSubgraph { index: usize, source: Box<ReadError> },
    #[error("{what} index {index} is out of range ({len} available)")]
    IndexOutOfRange { what: String, index: i64, len: usize },
    #[error("tensor {index} ({name:?}): {message}")]
    Tensor { index: usize, name: String, message: String },
    /// A valid tensor of a kind qlite does not model (a string or 4-bit tensor, weights in a
    /// side file): `inspect` still describes the file ([`crate::describe`]).
    #[error("tensor {index} ({name:?}): {message}")]
    UnsupportedTensor { index: usize, name: String, message: String },
    #[error("operator {index} ({op}): {message}")]
    Operator { index: usize, op: String, message: String },
    #[error("buffer {index}: {message}")]
    Buffer { index: usize, message: String },
    #[error("invalid model: {0}")]
    Invalid(#[from] VerifyError),
}

impl ReadError {
    /// The file is a valid .tflite model using something qlite does not model (control-flow
    /// subgraphs, string or 4-bit tensors, external buffers), not a malformed one.
    pub fn is_unsupported_feature(&self) -> bool {
        match self {
            ReadError::UnsupportedTensor { .. } => true,
            ReadError::InSubgraph { source, .. } => source.is_unsupported_feature(),
            _ => false,
        }
    }
}

/// The verifier's message, with its context trace folded onto one line.
pub(crate) fn flatbuffer_error(e: flatbuffers::InvalidFlatbuffer) -> ReadError {
    let text = e.to_string();
    let parts: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    ReadError::Flatbuffer(parts.join("; "))
}

fn oob(what: impl Into<String>, index: i64, len: usize) -> ReadError {
    ReadError::IndexOutOfRange { what: what.into(), index, len }
}

/// Byte offset of `part` inside `whole`, when `part` is a sub-slice of it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start.checked_add(part.len())? <= whole.len()).then_some(start)
}

/// Dense bytes a sparse constant may expand to: at most [`MAX_SPARSE_EXPANSION`] times the
/// file (a denser claim is a lying header, not a pruned model) and within the default limits.
fn checked_dense_len(dims: &[usize], elem: usize, file_len: usize) -> Result<usize, String> {
    let n = dims.iter().try_fold(elem, |a, &d| a.checked_mul(d)).ok_or("dense size overflows")?;
    let cap = (file_len as u64).saturating_mul(MAX_SPARSE_EXPANSION).min(qlite_ir::Limits::default().max_tensor_bytes);
    if n as u64 > cap {
        return Err(format!(
            "expands to {n} bytes, more than {MAX_SPARSE_EXPANSION}x the {file_len}-byte file (or the tensor size limit)"
        ));
    }
    Ok(n)
}

/// How many times its file's size a sparse constant may expand to (0.1% density).
pub const MAX_SPARSE_EXPANSION: u64 = 1000;

fn index_vector(m: &fb::DimensionMetadata<'_>, segments: bool, what: &str) -> Result<(Vec<u32>, u8), String> {
    let missing = || format!("{what} is missing");
    let (i32s, u16s, u8s) = if segments {
        (m.array_segments_as_int_32_vector(), m.array_segments_as_uint_16_vector(), m.array_segments_as_uint_8_vector())
    } else {
        (m.array_indices_as_int_32_vector(), m.array_indices_as_uint_16_vector(), m.array_indices_as_uint_8_vector())
    };
    if let Some(v) = i32s {
        let v = v.values().ok_or_else(missing)?;
        let mut out = Vec::with_capacity(v.len());
        for x in v.iter() {
            out.push(u32::try_from(x).map_err(|_| format!("{what} holds the negative value {x}"))?);
        }
        Ok((out, 4))
    } else if let Some(v) = u16s {
        Ok((v.values().ok_or_else(missing)?.iter().map(u32::from).collect(), 2))
    } else if let Some(v) = u8s {
        Ok((v.values().ok_or_else(missing)?.iter().map(u32::from).collect(), 1))
    } else {
        Err(missing())
    }
}

fn read_sparsity(sp: &fb::SparsityParameters<'_>, values: Bytes) -> Result<SparseForm, String> {
    let ints = |v: Option<flatbuffers::Vector<'_, i32>>, what: &str| -> Result<Vec<usize>, String> {
        v.map(|v| v.iter().collect::<Vec<i32>>())
            .unwrap_or_default()
            .into_iter()
            .map(|x| usize::try_from(x).map_err(|_| format!("{what} holds {x}")))
            .collect()
    };
    let traversal_order = ints(sp.traversal_order(), "traversal_order")?;
    let block_map = ints(sp.block_map(), "block_map")?;
    let mut levels = Vec::new();
    for (l, m) in sp.dim_metadata().map(|v| v.iter().collect::<Vec<_>>()).unwrap_or_default().into_iter().enumerate() {
        levels.push(match m.format() {
            fb::DimensionType::DENSE => SparseLevel::Dense(
                usize::try_from(m.dense_size()).map_err(|_| format!("level {l}: dense size {}", m.dense_size()))?,
            ),
            fb::DimensionType::SPARSE_CSR => {
                let (segments, segments_width) = index_vector(&m, true, &format!("level {l} segments"))?;
                let (indices, indices_width) = index_vector(&m, false, &format!("level {l} indices"))?;
                SparseLevel::Csr { segments, indices, segments_width, indices_width }
            }
            other => return Err(format!("level {l} has unknown format {}", other.0)),
        });
    }
    Ok(SparseForm { traversal_order, block_map, levels, values })
}

/// An operator qlite does not model, as the file stores it.
fn opaque_source(
    file: &[u8],
    op: &fb::Operator<'_>,
    code: i32,
    custom_code: Option<&str>,
) -> Result<OpaqueSource, String> {
    let mut options = Vec::new();
    if let Some(loc) = crate::opaque::follow_field(op._tab.buf(), op._tab.loc(), fb::Operator::VT_BUILTIN_OPTIONS)? {
        options.push(crate::opaque::capture(op._tab.buf(), loc, 1, op.builtin_options_type().0)?);
    }
    if let Some(t) = op.builtin_options_2() {
        options.push(crate::opaque::capture(t._tab.buf(), t._tab.loc(), 2, op.builtin_options_2_type())?);
    }
    let custom_options = match op.custom_options() {
        Some(c) if !c.is_empty() => c.bytes().to_vec(),
        _ if op.large_custom_options_size() > 0 => {
            let (off, size) = (op.large_custom_options_offset(), op.large_custom_options_size());
            off.checked_add(size)
                .filter(|&e| off > 1 && e <= file.len() as u64)
                .map(|e| file[off as usize..e as usize].to_vec())
                .ok_or_else(|| {
                    format!(
                        "custom options at offset {off} with size {size} run past the end of the {}-byte file",
                        file.len()
                    )
                })?
        }
        _ => Vec::new(),
    };
    Ok(OpaqueSource {
        format: "tflite".into(),
        code: code as i64,
        custom_code: custom_code.map(str::to_string),
        options,
        custom_options,
        custom_options_format: op.custom_options_format().0 as i64,
    })
}

/// Buffers kept after the flatbuffer (`offset` > 1, no `data`; files over 2 GiB) must lie in
/// the file, and two of them may share a range (the converter stores identical constants
/// once) but not partly overlap.
fn check_offset_buffers(
    bs: &flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::Buffer<'_>>>,
    file_len: usize,
) -> Result<(), ReadError> {
    let mut ranges = Vec::new();
    for (i, b) in bs.iter().enumerate() {
        if b.data().is_some_and(|d| !d.is_empty()) || b.offset() <= 1 {
            continue;
        }
        let (off, size) = (b.offset(), b.size());
        let end = off.checked_add(size).filter(|&e| e <= file_len as u64).ok_or_else(|| ReadError::Buffer {
            index: i,
            message: format!("offset {off} with size {size} runs past the end of the {file_len}-byte file"),
        })?;
        if size > 0 {
            ranges.push((off, end, i));
        }
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        let ((a0, a1, ai), (b0, b1, bi)) = (w[0], w[1]);
        if b0 < a1 && (a0, a1) != (b0, b1) {
            return Err(ReadError::Buffer {
                index: bi,
                message: format!("bytes {b0}..{b1} partly overlap buffer {ai}'s bytes {a0}..{a1}"),
            });
        }
    }
    Ok(())
}

/// Parse a .tflite model. Constant data stays in `bytes` (no copy).
pub fn read_model(bytes: Bytes) -> Result<Graph, ReadError> {
    if bytes.len() < 8 {
        return Err(ReadError::TooShort(bytes.len()));
    }
    if !crate::sniff(&bytes) {
        let id = bytes.get(4..8).unwrap_or_default();
        return Err(ReadError::WrongIdentifier(String::from_utf8_lossy(id).into_owned()));
    }
    // The flatbuffer part is at most 2 GiB; larger files keep data after it (offset buffers).
    let fb_len = bytes.len().min((1usize << 31) - 1);
    let opts = flatbuffers::VerifierOptions {
        max_depth: 64,
        max_tables: 10_000_000,
        max_apparent_size: 1 << 31,
        ignore_missing_null_terminator: false,
    };
    let model = flatbuffers::root_with_opts::<fb::Model>(&opts, &bytes[..fb_len]).map_err(flatbuffer_error)?;
    if model.version() != 3 {
        return Err(ReadError::SchemaVersion(model.version()));
    }
    let subgraphs = model.subgraphs().ok_or(ReadError::NoSubgraph)?;
    if subgraphs.is_empty() {
        return Err(ReadError::NoSubgraph);
    }
    if let Some(bs) = model.buffers() {
        check_offset_buffers(&bs, bytes.len())?;
    }
    let mut g = read_subgraph(&bytes, &model, subgraphs.get(0))?;
    g.set_description(model.description().map(str::to_string));
    // Control-flow bodies (WHILE, IF, CALL_ONCE name them by index): kept, in order.
    let mut rest = Vec::with_capacity(subgraphs.len() - 1);
    for k in 1..subgraphs.len() {
        let mut sg = read_subgraph(&bytes, &model, subgraphs.get(k))
            .map_err(|e| ReadError::InSubgraph { index: k, source: Box::new(e) })?;
        sg.compact_tensors();
        rest.push(sg);
    }
    g.set_subgraphs(rest);

    // Signature names for subgraph 0, when every input and output has one.
    if let Some(sigs) = model.signature_defs()
        && let Some(sig) = sigs.iter().find(|s| s.subgraph_index() == 0)
    {
        let lookup = |maps: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::TensorMap<'_>>>>,
                      ids: &[TensorId]|
         -> Option<Vec<String>> {
            let maps = maps?;
            ids.iter()
                .map(|t| {
                    maps.iter()
                        .find(|m| m.tensor_index() as usize == t.index())
                        .and_then(|m| m.name().map(str::to_string))
                })
                .collect()
        };
        if let (Some(i), Some(o)) = (lookup(sig.inputs(), g.inputs()), lookup(sig.outputs(), g.outputs())) {
            g.set_signature(Some(Signature {
                key: sig.signature_key().unwrap_or("serving_default").to_string(),
                inputs: i,
                outputs: o,
            }));
        }
    }
    // Attribute tensors (shape, perm, axes, paddings) are now unused: drop them (after the
    // signature, whose tensor indices are the file's).
    g.compact_tensors();
    qlite_ir::verify(&g)?;
    Ok(g)
}

/// One subgraph of `model` as a graph, with the file's tensor indices (the caller drops the
/// unused attribute tensors, after reading the signature); signatures are the caller's.
fn read_subgraph(bytes: &Bytes, model: &fb::Model<'_>, sg: fb::SubGraph<'_>) -> Result<Graph, ReadError> {
    let buffers = model.buffers();
    let n_buffers = buffers.map_or(0, |b| b.len());
    let fb_tensors = sg.tensors().ok_or_else(|| ReadError::Tensor {
        index: 0,
        name: String::new(),
        message: "subgraph has no tensor list".into(),
    })?;

    let mut g = Graph::new(sg.name().unwrap_or(""));

    // Tensors.
    for i in 0..fb_tensors.len() {
        let t = fb_tensors.get(i);
        let name = t.name().unwrap_or("").to_string();
        let terr = |message: String| ReadError::Tensor { index: i, name: name.clone(), message };
        let unsupported = |message: String| ReadError::UnsupportedTensor { index: i, name: name.clone(), message };
        let dtype = codes::dtype(t.type_()).ok_or_else(|| {
            unsupported(format!(
                "unsupported tensor type {}",
                t.type_().variant_name().map_or_else(|| t.type_().0.to_string(), str::to_string)
            ))
        })?;
        if t.external_buffer() != 0 {
            return Err(unsupported("external buffers (weights in side files) are not supported".into()));
        }
        let shape_v: Vec<i32> = t.shape().map(|v| v.iter().collect()).unwrap_or_default();
        let sig_v: Option<Vec<i32>> = t.shape_signature().map(|v| v.iter().collect());
        if shape_v.len() > qlite_ir::MAX_RANK {
            return Err(terr(format!("rank {} exceeds the maximum {}", shape_v.len(), qlite_ir::MAX_RANK)));
        }
        if let Some(s) = &sig_v
            && s.len() != shape_v.len()
        {
            return Err(terr(format!("shape_signature has rank {} but shape has rank {}", s.len(), shape_v.len())));
        }
        let mut dims = Vec::with_capacity(shape_v.len());
        for (k, &d) in shape_v.iter().enumerate() {
            let dynamic = sig_v.as_ref().and_then(|s| s.get(k)).is_some_and(|&s| s == -1);
            if dynamic {
                dims.push(Dim::Dynamic);
            } else if d < 0 {
                return Err(terr(format!("negative dimension {d} in shape {shape_v:?}")));
            } else {
                dims.push(Dim::Fixed(d as usize));
            }
        }
        let shape = Shape::new(dims);
        let buf = t.buffer() as usize;
        if buf >= n_buffers.max(1) {
            return Err(oob(format!("tensor {i} ({name:?}) buffer"), buf as i64, n_buffers));
        }
        let data = match buffers {
            Some(bs) if buf != 0 => {
                let b = bs.get(buf);
                match b.data() {
                    Some(d) if !d.is_empty() => {
                        let off = offset_in(bytes, d.bytes())
                            .ok_or_else(|| terr("buffer data lies outside the file".into()))?;
                        Some(bytes.slice(off..off + d.len()))
                    }
                    _ if b.offset() > 1 => {
                        let (off, size) = (b.offset(), b.size());
                        let end = off.checked_add(size).filter(|&e| e <= bytes.len() as u64).ok_or_else(|| {
                            terr(format!(
                                "buffer {buf} at offset {off} with size {size} runs past the end of the {}-byte file",
                                bytes.len()
                            ))
                        })?;
                        Some(bytes.slice(off as usize..end as usize))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let quant = match t.quantization() {
            Some(q) => match q.scale() {
                Some(s) if !s.is_empty() => {
                    let scales: Vec<f32> = s.iter().collect();
                    let zps: Vec<i64> = q.zero_point().map(|z| z.iter().collect()).unwrap_or_default();
                    let qd = q.quantized_dimension();
                    if qd < 0 || (qd as usize >= shape.rank() && scales.len() > 1) {
                        return Err(terr(format!("quantized_dimension {qd} is outside rank {}", shape.rank())));
                    }
                    let axis = (scales.len() > 1).then_some(qd as usize);
                    Some(QuantParams::from_parts(scales, zps, axis))
                }
                _ => None,
            },
            None => None,
        };
        // A sparse constant: its buffer holds the stored values; the IR gets the dense data.
        let (data, sparse) = match (t.sparsity(), data) {
            (Some(sp), Some(values)) => {
                let form = read_sparsity(&sp, values).map_err(|m| terr(format!("sparsity: {m}")))?;
                let dims = shape.to_fixed().ok_or_else(|| terr("a sparse constant needs a static shape".into()))?;
                let dense = checked_dense_len(&dims, dtype.size(), bytes.len())
                    .and_then(|_| form.densify(&dims, dtype.size()))
                    .map_err(|m| terr(format!("sparsity: {m}")))?;
                (Some(Bytes::from(dense)), Some(Box::new(form)))
            }
            (Some(_), None) => return Err(terr("sparsity parameters on a tensor without data".into())),
            (None, data) => (data, None),
        };
        g.add_tensor(Tensor { name, dtype, shape, quant, data, sparse });
    }
    let n_tensors = g.tensors().len();
    let tensor_ref = |what: &str, idx: i32| -> Result<TensorId, ReadError> {
        if idx < 0 || idx as usize >= n_tensors {
            return Err(oob(what, idx as i64, n_tensors));
        }
        Ok(TensorId::from_index(idx as usize))
    };

    // Inputs and outputs.
    let ins: Vec<TensorId> = sg
        .inputs()
        .map(|v| v.iter().enumerate().map(|(k, i)| tensor_ref(&format!("subgraph input {k}"), i)).collect())
        .transpose()?
        .unwrap_or_default();
    let outs: Vec<TensorId> = sg
        .outputs()
        .map(|v| v.iter().enumerate().map(|(k, i)| tensor_ref(&format!("subgraph output {k}"), i)).collect())
        .transpose()?
        .unwrap_or_default();

    // Operators.
    let opcodes = model.operator_codes();
    let n_codes = opcodes.map_or(0, |c| c.len());
    let mut shapes = shape::Values::default();
    if let Some(ops) = sg.operators() {
        for oi in 0..ops.len() {
            let op = ops.get(oi);
            let ci = op.opcode_index() as usize;
            if ci >= n_codes {
                return Err(oob(format!("operator {oi} opcode"), ci as i64, n_codes));
            }
            let Some(codes_v) = opcodes else { return Err(oob(format!("operator {oi} opcode"), ci as i64, 0)) };
            let oc = codes_v.get(ci);
            let code = oc.builtin_code().0.max(oc.deprecated_builtin_code() as i32);
            let version = oc.version();
            let name_of = |code: i32| {
                if code == fb::BuiltinOperator::CUSTOM.0 {
                    format!("CUSTOM({})", oc.custom_code().unwrap_or("?"))
                } else {
                    codes::builtin_name(code)
                }
            };
            let mut inputs = Vec::new();
            for (k, i) in
                op.inputs().map(|v| v.iter().collect::<Vec<i32>>()).unwrap_or_default().into_iter().enumerate()
            {
                inputs.push(if i == -1 { None } else { Some(tensor_ref(&format!("operator {oi} input {k}"), i)?) });
            }
            let mut outputs = Vec::new();
            for (k, i) in
                op.outputs().map(|v| v.iter().collect::<Vec<i32>>()).unwrap_or_default().into_iter().enumerate()
            {
                outputs.push(tensor_ref(&format!("operator {oi} output {k}"), i)?);
            }
            let node_name =
                outputs.first().and_then(|t| g.tensor(*t)).map_or_else(|| format!("op{oi}"), |t| t.name.clone());
            let oerr = |message: String| ReadError::Operator { index: oi, op: name_of(code), message };
            // Shape arithmetic over a dynamic batch is evaluated here, not kept as nodes.
            match shape::step(&mut g, &op, code, &inputs, &outputs, &mut shapes).map_err(oerr)? {
                shape::Step::Folded => continue,
                shape::Step::Reshape(target) => {
                    let op_ir = Op::Reshape(Reshape { shape: target });
                    let id = g.add_node(Node::new(node_name, op_ir, inputs[..1].to_vec(), outputs));
                    refine_outputs(&mut g, id);
                    continue;
                }
                shape::Step::Op => {}
            }
            // SPLIT and SPLIT_V: one STRIDED_SLICE per output.
            if code == fb::BuiltinOperator::SPLIT.0 || code == fb::BuiltinOperator::SPLIT_V.0 {
                for node in ops::split_as_slices(&g, code, &inputs, &outputs).map_err(oerr)? {
                    g.add_node(node);
                }
                continue;
            }
            let converted = if code == fb::BuiltinOperator::CUSTOM.0 {
                ops::mediapipe_transpose_conv(&g, &op, oc.custom_code(), &outputs).map_err(oerr)?
            } else if let Some(family) = ops::reader_of(fb::BuiltinOperator(code)) {
                let mut cx = ops::ReadCx {
                    g: &g,
                    op: &op,
                    code: fb::BuiltinOperator(code),
                    inputs: &mut inputs,
                    outputs: &outputs,
                };
                family.read(&mut cx).map_err(oerr)?
            } else {
                None
            };
            let op_ir = match converted {
                Some(o) => o,
                // Kept as read: `inspect`, `roundtrip` and a plain `convert` write it back;
                // running or quantizing the graph names it.
                None => Op::Opaque(Opaque {
                    op_type: format!("tflite:{}", name_of(code)),
                    version: version as i64,
                    source: Some(opaque_source(bytes, &op, code, oc.custom_code()).map_err(oerr)?),
                }),
            };
            let id = g.add_node(Node::new(node_name, op_ir, inputs, outputs));
            refine_outputs(&mut g, id);
        }
    }
    for &o in &outs {
        shape::materialize(&mut g, o, &shapes).map_err(|message| ReadError::Operator {
            index: sg.operators().map_or(0, |o| o.len()),
            op: "subgraph output".into(),
            message,
        })?;
    }
    g.set_inputs(ins);
    g.set_outputs(outs);
    shape::drop_shape_only_nodes(&mut g, &shapes);
    Ok(g)
}

/// Declared output dims the op's own shape inference knows: TF's converter can declare
/// `shape_signature` -1 for a dim its folding of shape arithmetic lost (Keras 3's
/// UpSampling2D with a dynamic batch: [-1,-1,10,3] after a RESHAPE whose target is
/// [batch, 8, 10, 3]). A dim is only ever made fixed, never changed or made dynamic.
fn refine_outputs(g: &mut Graph, id: qlite_ir::NodeId) {
    let Some(node) = g.node(id) else { return };
    let ins: Vec<_> = node.inputs.iter().map(|i| i.and_then(|t| g.tensor(t)).map(|t| (t.dtype, &t.shape))).collect();
    let Ok(inferred) = node.op.infer(&ins) else { return };
    let outputs = node.outputs.clone();
    for (o, inf) in outputs.into_iter().zip(inferred) {
        let Some(t) = g.tensor_mut(o) else { continue };
        let (have, got) = (t.shape.dims(), inf.shape.dims());
        if have.len() != got.len() || !have.iter().any(|d| matches!(d, Dim::Dynamic)) {
            continue;
        }
        let merged: Option<Vec<Dim>> = have
            .iter()
            .zip(got)
            .map(|(h, n)| match (h, n) {
                (Dim::Dynamic, n) => Some(*n),
                (h, n) if h == n => Some(*h),
                (h, Dim::Dynamic) => Some(*h),
                _ => None,
            })
            .collect();
        if let Some(m) = merged {
            t.shape = Shape::new(m);
        }
    }
}
