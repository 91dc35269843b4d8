//! .tflite → IR. Structure is verified by the flatbuffers verifier, every index and size is
//! range-checked here, and the resulting graph must pass the IR verifier.

use crate::codes;
use crate::fb;
use crate::shape;
use bytes::Bytes;
use qlite_ir::op::{
    BatchMatMul, Binary, BinaryKind, Concatenation, Conv2d, DepthwiseConv2d, FullyConnected, Gather, LocalResponseNorm,
    Mean, MirrorMode, MirrorPad, Opaque, OpaqueSource, Pad, Pool2d, PoolKind, Reshape, Resize, ResizeMode, SliceDim,
    Softmax, SpaceDepth, StridedSlice, TfSliceMasks, Tile, Transpose, TransposeConv2d, Unary, UnaryKind,
};
use qlite_ir::{
    Activation, DType, Dim, Graph, Node, Op, QuantParams, Shape, Signature, SparseForm, SparseLevel, Tensor, TensorId,
    VerifyError,
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
                for node in split_as_slices(&g, code, &inputs, &outputs).map_err(oerr)? {
                    g.add_node(node);
                }
                continue;
            }
            let converted = if code == fb::BuiltinOperator::CUSTOM.0 {
                custom_op(&g, &op, oc.custom_code(), &outputs).map_err(oerr)?
            } else {
                convert_op(&g, &op, code, &mut inputs, &outputs).map_err(oerr)?
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

/// Integer values of a constant int32/int64 tensor.
fn const_ints(g: &Graph, t: Option<TensorId>, what: &str) -> Result<Vec<i64>, String> {
    let t = t.and_then(|t| g.tensor(t)).ok_or_else(|| format!("{what} input is missing"))?;
    let data = t.data.as_ref().ok_or_else(|| format!("{what} must be a constant tensor"))?;
    match t.dtype {
        DType::I32 if data.len() % 4 == 0 => Ok(qlite_ir::tensor::read_i32s(data).into_iter().map(i64::from).collect()),
        DType::I64 if data.len() % 8 == 0 => Ok(qlite_ir::tensor::read_i64s(data)),
        d => Err(format!("{what} must be int32 or int64, got {d} with {} bytes", data.len())),
    }
}

/// Custom operators that are builtins under another name. MediaPipe's
/// `Convolution2DTransposeBias` (its segmentation models) is TRANSPOSE_CONV with a bias: its
/// custom options are the raw `TfLiteTransposeConvParams` (padding 1 = SAME, 2 = VALID, then the
/// width and height strides, little-endian int32) and its output size is the output tensor's.
fn custom_op(
    g: &Graph,
    op: &fb::Operator<'_>,
    custom_code: Option<&str>,
    outputs: &[TensorId],
) -> Result<Option<Op>, String> {
    if custom_code != Some("Convolution2DTransposeBias") {
        return Ok(None);
    }
    let raw = op.custom_options().map(|v| v.bytes().to_vec()).unwrap_or_default();
    if raw.len() < 12 {
        return Err(format!("custom options of {} bytes, expected 12 (padding, stride_w, stride_h)", raw.len()));
    }
    let int = |k: usize| i32::from_le_bytes([raw[4 * k], raw[4 * k + 1], raw[4 * k + 2], raw[4 * k + 3]]);
    let padding = match int(0) {
        1 => qlite_ir::Padding::Same,
        2 => qlite_ir::Padding::Valid,
        p => return Err(format!("padding {p} (1 = SAME, 2 = VALID)")),
    };
    let out = outputs.first().and_then(|t| g.tensor(*t)).ok_or("the output is missing")?;
    let (Some(h), Some(w)) = (out.shape.dim(1).and_then(|d| d.fixed()), out.shape.dim(2).and_then(|d| d.fixed()))
    else {
        return Err(format!("the output {} needs a static height and width", out.shape));
    };
    Ok(Some(Op::TransposeConv2d(TransposeConv2d {
        padding,
        stride: [positive(int(2), "stride_h")?, positive(int(1), "stride_w")?],
        output: [h, w],
        activation: Activation::None,
    })))
}

/// SPLIT (axis, x) or SPLIT_V (x, size_splits, axis) as one STRIDED_SLICE node per output.
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

fn split_as_slices(
    g: &Graph,
    code: i32,
    inputs: &[Option<TensorId>],
    outputs: &[TensorId],
) -> Result<Vec<Node>, String> {
    let is_v = code == fb::BuiltinOperator::SPLIT_V.0;
    let (x, axis_t) = if is_v { (inputs.first(), inputs.get(2)) } else { (inputs.get(1), inputs.first()) };
    let x = x.copied().flatten().ok_or("the input is missing")?;
    let rank = rank_of(g, Some(x))?;
    let axis = const_ints(g, axis_t.copied().flatten(), "axis")?;
    let &[axis] = axis.as_slice() else { return Err("axis must be one value".into()) };
    let axis = norm_axis(axis, rank, "axis")?;
    let n =
        g.tensor(x).and_then(|t| t.shape.dim(axis)).and_then(|d| d.fixed()).ok_or("the split axis must be static")?;
    let k = outputs.len();
    let sizes: Vec<usize> = if is_v {
        let raw = const_ints(g, inputs.get(1).copied().flatten(), "size_splits")?;
        if raw.len() != k || raw.iter().filter(|&&v| v == -1).count() > 1 || raw.iter().any(|&v| v < -1) {
            return Err(format!("size_splits {raw:?} for {k} outputs"));
        }
        let known: i64 = raw.iter().filter(|&&v| v >= 0).sum();
        let rest = n as i64 - known;
        if rest < 0 || (rest > 0 && !raw.contains(&-1)) {
            return Err(format!("size_splits {raw:?} do not add up to {n}"));
        }
        raw.iter().map(|&v| if v == -1 { rest as usize } else { v as usize }).collect()
    } else {
        if k == 0 || n % k != 0 {
            return Err(format!("{n} does not split into {k} equal parts"));
        }
        vec![n / k; k]
    };
    let mut nodes = Vec::with_capacity(k);
    let mut at = 0i64;
    for (&out, &size) in outputs.iter().zip(&sizes) {
        let mut axes = vec![SliceDim::ALL; rank];
        axes[axis] = SliceDim { begin: Some(at), end: Some(at + size as i64), stride: 1, shrink: false };
        at += size as i64;
        let name = g.tensor(out).map_or_else(|| format!("split{}", nodes.len()), |t| t.name.clone());
        nodes.push(Node::new(name, Op::StridedSlice(StridedSlice { axes }), vec![Some(x)], vec![out]));
    }
    Ok(nodes)
}

/// A constant `[rank, 2]` paddings tensor (PAD, MIRROR_PAD).
fn paddings(g: &Graph, t: Option<TensorId>, rank: usize) -> Result<Vec<[usize; 2]>, String> {
    let raw = const_ints(g, t, "paddings")?;
    if raw.len() != rank * 2 {
        return Err(format!("paddings has {} values for rank {rank}", raw.len()));
    }
    let mut out = Vec::with_capacity(rank);
    for p in raw.chunks_exact(2) {
        let (a, b) = (p[0], p[1]);
        if a < 0 || b < 0 || a > u32::MAX as i64 || b > u32::MAX as i64 {
            return Err(format!("padding [{a}, {b}] is negative or too large"));
        }
        out.push([a as usize, b as usize]);
    }
    Ok(out)
}

fn positive(v: i32, what: &str) -> Result<usize, String> {
    if v < 1 {
        return Err(format!("{what} must be >= 1, got {v}"));
    }
    Ok(v as usize)
}

fn act(a: fb::ActivationFunctionType) -> Result<Activation, String> {
    codes::from_activation(a).ok_or_else(|| {
        format!("unsupported fused activation {}", a.variant_name().map_or_else(|| a.0.to_string(), str::to_string))
    })
}

fn pad_of(p: fb::Padding) -> Result<qlite_ir::Padding, String> {
    codes::from_padding(p).ok_or_else(|| format!("unknown padding {}", p.0))
}

fn rank_of(g: &Graph, t: Option<TensorId>) -> Result<usize, String> {
    t.and_then(|t| g.tensor(t)).map(|t| t.shape.rank()).ok_or_else(|| "input 0 is missing".to_string())
}

fn norm_axis(a: i64, rank: usize, what: &str) -> Result<usize, String> {
    let r = rank as i64;
    if a < -r || a >= r.max(1) {
        return Err(format!("{what} {a} is outside rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// Map one flatbuffer operator to an IR op; `Ok(None)` for an op qlite does not support.
/// Attribute tensors are removed from `inputs`.
fn convert_op(
    g: &Graph,
    op: &fb::Operator<'_>,
    code: i32,
    inputs: &mut Vec<Option<TensorId>>,
    _outputs: &[TensorId],
) -> Result<Option<Op>, String> {
    use fb::BuiltinOperator as B;
    let missing = |what: &str| format!("missing {what}");
    let in0 = inputs.first().copied().flatten();
    let op_ir = match fb::BuiltinOperator(code) {
        B::FULLY_CONNECTED => {
            let o = op.builtin_options_as_fully_connected_options().ok_or_else(|| missing("FullyConnectedOptions"))?;
            if o.weights_format() != fb::FullyConnectedOptionsWeightsFormat::DEFAULT {
                return Err("shuffled weights format is not supported".into());
            }
            Op::FullyConnected(FullyConnected {
                activation: act(o.fused_activation_function())?,
                keep_num_dims: o.keep_num_dims(),
                asymmetric_inputs: o.asymmetric_quantize_inputs(),
            })
        }
        B::CONV_2D => {
            let o = op.builtin_options_as_conv_2_doptions().ok_or_else(|| missing("Conv2DOptions"))?;
            Op::Conv2d(Conv2d {
                padding: pad_of(o.padding())?,
                stride: [positive(o.stride_h(), "stride_h")?, positive(o.stride_w(), "stride_w")?],
                dilation: [
                    positive(o.dilation_h_factor(), "dilation_h")?,
                    positive(o.dilation_w_factor(), "dilation_w")?,
                ],
                activation: act(o.fused_activation_function())?,
            })
        }
        B::DEPTHWISE_CONV_2D => {
            let o =
                op.builtin_options_as_depthwise_conv_2_doptions().ok_or_else(|| missing("DepthwiseConv2DOptions"))?;
            // Old files may store depth_multiplier 0; the runtime derives it from the shapes.
            let derived =
                match (in0.and_then(|t| g.tensor(t)), inputs.get(1).copied().flatten().and_then(|t| g.tensor(t))) {
                    (Some(x), Some(w)) => match (x.shape.dim(3), w.shape.dim(3)) {
                        (Some(Dim::Fixed(c)), Some(Dim::Fixed(oc))) if c > 0 && oc % c == 0 => Some(oc / c),
                        _ => None,
                    },
                    _ => None,
                };
            let dm = derived.unwrap_or(o.depth_multiplier().max(1) as usize);
            Op::DepthwiseConv2d(DepthwiseConv2d {
                padding: pad_of(o.padding())?,
                stride: [positive(o.stride_h(), "stride_h")?, positive(o.stride_w(), "stride_w")?],
                dilation: [
                    positive(o.dilation_h_factor(), "dilation_h")?,
                    positive(o.dilation_w_factor(), "dilation_w")?,
                ],
                depth_multiplier: dm,
                activation: act(o.fused_activation_function())?,
            })
        }
        B::ADD => Op::Binary(Binary {
            kind: BinaryKind::Add,
            activation: act(op
                .builtin_options_as_add_options()
                .map_or(fb::ActivationFunctionType::NONE, |o| o.fused_activation_function()))?,
        }),
        B::SUB => Op::Binary(Binary {
            kind: BinaryKind::Sub,
            activation: act(op
                .builtin_options_as_sub_options()
                .map_or(fb::ActivationFunctionType::NONE, |o| o.fused_activation_function()))?,
        }),
        B::MUL => Op::Binary(Binary {
            kind: BinaryKind::Mul,
            activation: act(op
                .builtin_options_as_mul_options()
                .map_or(fb::ActivationFunctionType::NONE, |o| o.fused_activation_function()))?,
        }),
        B::DIV => Op::Binary(Binary {
            kind: BinaryKind::Div,
            activation: act(op
                .builtin_options_as_div_options()
                .map_or(fb::ActivationFunctionType::NONE, |o| o.fused_activation_function()))?,
        }),
        B::MAXIMUM => Op::Binary(Binary { kind: BinaryKind::Maximum, activation: Activation::None }),
        B::MINIMUM => Op::Binary(Binary { kind: BinaryKind::Minimum, activation: Activation::None }),
        B::MAX_POOL_2D | B::AVERAGE_POOL_2D => {
            let o = op.builtin_options_as_pool_2_doptions().ok_or_else(|| missing("Pool2DOptions"))?;
            Op::Pool2d(Pool2d {
                kind: if code == B::MAX_POOL_2D.0 { PoolKind::Max } else { PoolKind::Average },
                filter: [positive(o.filter_height(), "filter_height")?, positive(o.filter_width(), "filter_width")?],
                stride: [positive(o.stride_h(), "stride_h")?, positive(o.stride_w(), "stride_w")?],
                padding: pad_of(o.padding())?,
                activation: act(o.fused_activation_function())?,
            })
        }
        B::MEAN | B::SUM => {
            let keep_dims = op.builtin_options_as_reducer_options().is_some_and(|o| o.keep_dims());
            let rank = rank_of(g, in0)?;
            let raw = const_ints(g, inputs.get(1).copied().flatten(), "axes")?;
            let mut axes = raw.iter().map(|&a| norm_axis(a, rank, "axis")).collect::<Result<Vec<_>, _>>()?;
            axes.sort_unstable();
            axes.dedup();
            inputs.truncate(1);
            if code == B::SUM.0 { Op::Sum(Mean { axes, keep_dims }) } else { Op::Mean(Mean { axes, keep_dims }) }
        }
        B::RESHAPE => {
            let shape = match inputs.get(1).copied().flatten() {
                Some(t) => const_ints(g, Some(t), "shape")?,
                None => match op.builtin_options_as_reshape_options().and_then(|o| o.new_shape()) {
                    Some(v) => v.iter().map(i64::from).collect(),
                    None => {
                        let out = _outputs.first().and_then(|t| g.tensor(*t)).ok_or("output missing")?;
                        out.shape.dims().iter().map(|d| d.fixed().map_or(-1, |v| v as i64)).collect()
                    }
                },
            };
            inputs.truncate(1);
            Op::Reshape(Reshape { shape })
        }
        B::RESIZE_NEAREST_NEIGHBOR | B::RESIZE_BILINEAR => {
            let size = const_ints(g, inputs.get(1).copied().flatten(), "size")?;
            let &[h, w] = size.as_slice() else { return Err(format!("size has {} values, not 2", size.len())) };
            let dim = |v: i64| usize::try_from(v).ok().filter(|&v| (1..=1 << 20).contains(&v));
            let (Some(h), Some(w)) = (dim(h), dim(w)) else {
                return Err(format!("resize to {h}x{w}: sizes must be between 1 and 2^20"));
            };
            let (mode, (align_corners, half_pixel_centers)) = if code == B::RESIZE_BILINEAR.0 {
                let o = op.builtin_options_as_resize_bilinear_options();
                (ResizeMode::Bilinear, o.map_or((false, false), |o| (o.align_corners(), o.half_pixel_centers())))
            } else {
                let o = op.builtin_options_as_resize_nearest_neighbor_options();
                (ResizeMode::NearestNeighbor, o.map_or((false, false), |o| (o.align_corners(), o.half_pixel_centers())))
            };
            inputs.truncate(1);
            Op::Resize(Resize { mode, size: [h, w], align_corners, half_pixel_centers })
        }
        B::STRIDED_SLICE => {
            let rank = rank_of(g, in0)?;
            let (begin, end, strides) = (
                const_ints(g, inputs.get(1).copied().flatten(), "begin")?,
                const_ints(g, inputs.get(2).copied().flatten(), "end")?,
                const_ints(g, inputs.get(3).copied().flatten(), "strides")?,
            );
            let masks =
                op.builtin_options_as_strided_slice_options().map_or(TfSliceMasks::default(), |o| TfSliceMasks {
                    begin: o.begin_mask().into(),
                    end: o.end_mask().into(),
                    shrink: o.shrink_axis_mask().into(),
                    ellipsis: o.ellipsis_mask().into(),
                    new_axis: o.new_axis_mask().into(),
                    offset: o.offset(),
                });
            let slice = StridedSlice::from_tf(rank, &begin, &end, &strides, masks)?;
            inputs.truncate(1);
            Op::StridedSlice(slice)
        }
        B::BATCH_MATMUL => {
            let o = op.builtin_options_as_batch_mat_mul_options();
            Op::BatchMatMul(BatchMatMul { adj_x: o.is_some_and(|o| o.adj_x()), adj_y: o.is_some_and(|o| o.adj_y()) })
        }
        B::TRANSPOSE_CONV => {
            let o = op.builtin_options_as_transpose_conv_options().ok_or_else(|| missing("TransposeConvOptions"))?;
            let shape = const_ints(g, inputs.first().copied().flatten(), "output_shape")?;
            let &[_, h, w, _] = shape.as_slice() else {
                return Err(format!("output_shape {shape:?} is not [N, H, W, C]"));
            };
            let dim = |v: i64| usize::try_from(v).ok().filter(|&v| (1..=1 << 20).contains(&v));
            let (Some(h), Some(w)) = (dim(h), dim(w)) else {
                return Err(format!("output size {h}x{w} must be between 1 and 2^20"));
            };
            let (weights, x, bias) =
                (inputs.get(1).copied().flatten(), inputs.get(2).copied().flatten(), inputs.get(3).copied().flatten());
            *inputs = vec![x, weights];
            if bias.is_some() {
                inputs.push(bias);
            }
            Op::TransposeConv2d(TransposeConv2d {
                padding: pad_of(o.padding())?,
                stride: [positive(o.stride_h(), "stride_h")?, positive(o.stride_w(), "stride_w")?],
                output: [h, w],
                activation: act(o.fused_activation_function())?,
            })
        }
        B::GATHER => {
            let o = op.builtin_options_as_gather_options();
            if o.is_some_and(|o| o.batch_dims() != 0) {
                return Ok(None);
            }
            let rank = rank_of(g, in0)?;
            Op::Gather(Gather { axis: norm_axis(o.map_or(0, |o| o.axis()) as i64, rank, "axis")? })
        }
        B::TILE => {
            let raw = const_ints(g, inputs.get(1).copied().flatten(), "multiples")?;
            if raw.len() != rank_of(g, in0)? || raw.iter().any(|&m| !(0..=1 << 20).contains(&m)) {
                return Err(format!("multiples {raw:?} do not fit the input"));
            }
            inputs.truncate(1);
            Op::Tile(Tile { multiples: raw.into_iter().map(|m| m as usize).collect() })
        }
        B::DEPTH_TO_SPACE | B::SPACE_TO_DEPTH => {
            let block = if code == B::DEPTH_TO_SPACE.0 {
                op.builtin_options_as_depth_to_space_options().map(|o| o.block_size())
            } else {
                op.builtin_options_as_space_to_depth_options().map(|o| o.block_size())
            };
            let block = positive(block.ok_or_else(|| missing("block_size"))?, "block_size")?;
            if code == B::DEPTH_TO_SPACE.0 {
                Op::DepthToSpace(SpaceDepth { block })
            } else {
                Op::SpaceToDepth(SpaceDepth { block })
            }
        }
        B::MIRROR_PAD => {
            let mode = match op.builtin_options_as_mirror_pad_options().map(|o| o.mode()) {
                Some(fb::MirrorPadMode::SYMMETRIC) => MirrorMode::Symmetric,
                Some(fb::MirrorPadMode::REFLECT) | None => MirrorMode::Reflect,
                Some(m) => return Err(format!("unknown mirror pad mode {}", m.0)),
            };
            let paddings = paddings(g, inputs.get(1).copied().flatten(), rank_of(g, in0)?)?;
            inputs.truncate(1);
            Op::MirrorPad(MirrorPad { paddings, mode })
        }
        B::PRELU => Op::Prelu,
        // Pure reshapes: read as RESHAPE to the shape they give.
        B::SQUEEZE | B::EXPAND_DIMS => {
            let x = in0.and_then(|t| g.tensor(t)).ok_or("input 0 is missing")?;
            let dims = x.shape.dims();
            let mut target: Vec<i64> = dims.iter().map(|d| d.fixed().map_or(-1, |v| v as i64)).collect();
            if code == B::SQUEEZE.0 {
                let listed: Vec<i64> = op
                    .builtin_options_as_squeeze_options()
                    .and_then(|o| o.squeeze_dims())
                    .map(|v| v.iter().map(i64::from).collect())
                    .unwrap_or_default();
                let axes =
                    listed.iter().map(|&a| norm_axis(a, dims.len(), "squeeze dim")).collect::<Result<Vec<_>, _>>()?;
                let drop = |k: usize| if axes.is_empty() { dims[k].fixed() == Some(1) } else { axes.contains(&k) };
                if axes.iter().any(|&k| dims[k].fixed() != Some(1)) {
                    return Err(format!("squeeze of a dimension that is not 1 in {}", x.shape));
                }
                target = target.into_iter().enumerate().filter(|(k, _)| !drop(*k)).map(|(_, v)| v).collect();
            } else {
                let axis = const_ints(g, inputs.get(1).copied().flatten(), "axis")?;
                let &[a] = axis.as_slice() else { return Err("EXPAND_DIMS axis must be one value".into()) };
                let at = norm_axis(if a < 0 { a + 1 } else { a }, dims.len() + 1, "axis")?;
                target.insert(at, 1);
            }
            if target.iter().filter(|&&v| v == -1).count() > 1 {
                return Err(format!("{} with more than one run-time dimension", x.shape));
            }
            inputs.truncate(1);
            Op::Reshape(Reshape { shape: target })
        }
        // SLICE is a STRIDED_SLICE with stride 1 (size -1: to the end).
        B::SLICE => {
            let rank = rank_of(g, in0)?;
            let begin = const_ints(g, inputs.get(1).copied().flatten(), "begin")?;
            let size = const_ints(g, inputs.get(2).copied().flatten(), "size")?;
            if begin.len() != rank || size.len() != rank {
                return Err(format!("begin {begin:?} and size {size:?} do not match rank {rank}"));
            }
            let mut axes = Vec::with_capacity(rank);
            for (&b, &n) in begin.iter().zip(&size) {
                if b < 0 || n < -1 {
                    return Err(format!("slice begin {b} and size {n} must be >= 0 (size -1: to the end)"));
                }
                let end = if n == -1 { None } else { Some(b.checked_add(n).ok_or("slice end overflows")?) };
                axes.push(SliceDim { begin: Some(b), end, stride: 1, shrink: false });
            }
            inputs.truncate(1);
            Op::StridedSlice(StridedSlice { axes })
        }
        B::TRANSPOSE => {
            let perm = const_ints(g, inputs.get(1).copied().flatten(), "perm")?;
            let rank = rank_of(g, in0)?;
            let perm = perm.iter().map(|&p| norm_axis(p, rank, "perm entry")).collect::<Result<Vec<_>, _>>()?;
            inputs.truncate(1);
            Op::Transpose(Transpose { perm })
        }
        B::CONCATENATION => {
            let o = op.builtin_options_as_concatenation_options().ok_or_else(|| missing("ConcatenationOptions"))?;
            let rank = rank_of(g, in0)?;
            Op::Concatenation(Concatenation {
                axis: norm_axis(o.axis() as i64, rank, "axis")?,
                activation: act(o.fused_activation_function())?,
            })
        }
        B::PAD | B::PADV2 => {
            let paddings = paddings(g, inputs.get(1).copied().flatten(), rank_of(g, in0)?)?;
            // PADV2's value (input 2) becomes the IR's input 1.
            let value = if code == B::PADV2.0 { inputs.get(2).copied().flatten() } else { None };
            inputs.truncate(1);
            if value.is_some() {
                inputs.push(value);
            }
            Op::Pad(Pad { paddings })
        }
        B::SOFTMAX => {
            let beta = op.builtin_options_as_softmax_options().map_or(1.0, |o| o.beta());
            if !beta.is_finite() {
                return Err(format!("softmax beta {beta} is not finite"));
            }
            Op::Softmax(Softmax { beta })
        }
        B::LOCAL_RESPONSE_NORMALIZATION => {
            let o = op
                .builtin_options_as_local_response_normalization_options()
                .ok_or_else(|| missing("LocalResponseNormalizationOptions"))?;
            let (bias, alpha, beta) = (o.bias(), o.alpha(), o.beta());
            if o.radius() < 0 || ![bias, alpha, beta].iter().all(|v| v.is_finite()) {
                return Err(format!(
                    "LocalResponseNormalizationOptions radius {} bias {bias} alpha {alpha} beta {beta} are invalid",
                    o.radius()
                ));
            }
            Op::LocalResponseNorm(LocalResponseNorm { radius: o.radius() as usize, bias, alpha, beta })
        }
        B::RELU => Op::Unary(Unary { kind: UnaryKind::Relu }),
        B::RELU6 => Op::Unary(Unary { kind: UnaryKind::Relu6 }),
        B::LOGISTIC => Op::Unary(Unary { kind: UnaryKind::Logistic }),
        B::TANH => Op::Unary(Unary { kind: UnaryKind::Tanh }),
        B::HARD_SWISH => Op::Unary(Unary { kind: UnaryKind::HardSwish }),
        B::EXP => Op::Unary(Unary { kind: UnaryKind::Exp }),
        B::SQRT => Op::Unary(Unary { kind: UnaryKind::Sqrt }),
        B::NEG => Op::Unary(Unary { kind: UnaryKind::Neg }),
        B::ABS => Op::Unary(Unary { kind: UnaryKind::Abs }),
        B::RELU_N1_TO_1 => Op::Unary(Unary { kind: UnaryKind::ReluN1To1 }),
        B::ELU => Op::Unary(Unary { kind: UnaryKind::Elu }),
        B::RSQRT => Op::Unary(Unary { kind: UnaryKind::Rsqrt }),
        B::GELU => Op::Unary(Unary {
            kind: if op.builtin_options_as_gelu_options().is_some_and(|o| o.approximate()) {
                UnaryKind::GeluTanh
            } else {
                UnaryKind::Gelu
            },
        }),
        B::LOG_SOFTMAX => Op::LogSoftmax,
        B::SQUARED_DIFFERENCE => {
            Op::Binary(Binary { kind: BinaryKind::SquaredDifference, activation: Activation::None })
        }
        B::QUANTIZE => Op::Quantize,
        B::DEQUANTIZE => Op::Dequantize,
        B::DENSIFY => Op::Densify,
        _ => return Ok(None),
    };
    Ok(Some(op_ir))
}
