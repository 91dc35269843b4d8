//! IR → .tflite. Legalize first, then serialize one to one.

use crate::codes;
use crate::fb;
use crate::ops::{self, Aux, AuxOp, AuxTensor, VersionCx};
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};
use qlite_ir::passes::DeadCodeElimination;
use qlite_ir::{
    DType, Dim, Editor, Graph, Op, Pass, PassError, PassManager, Patch, PipelineError, QuantParams, Shape, Tensor,
    TensorId, VerifyError, verify_exportable,
};

/// Why a graph could not be written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("cannot export: {0}")]
    Verify(#[from] VerifyError),
    #[error("TFLite legalization failed: {0}")]
    Legalize(#[from] PipelineError),
    #[error("tensor {tensor} ({name:?}): dimension {dim} does not fit TFLite's int32 shapes")]
    DimTooLarge { tensor: TensorId, name: String, dim: usize },
    #[error("node {node:?}: {message}")]
    Unsupported { node: String, message: String },
    #[error(
        "the model's constants take {size} bytes, too many to keep inside a flatbuffer (at most 2 GiB); write them after it (BufferPlacement::Auto or Outside)"
    )]
    TooLarge { size: usize },
    #[error("writing the model: {0}")]
    Io(String),
}

/// Where the constant data of a written model goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BufferPlacement {
    /// Inside the flatbuffer unless the constants approach its 2 GiB limit (more than
    /// [`OUTSIDE_THRESHOLD`] bytes), as TensorFlow's converter decides.
    #[default]
    Auto,
    /// Always inside the flatbuffer (`Buffer.data`); fails over 2 GiB.
    Inside,
    /// Always after the flatbuffer (`Buffer.offset` / `Buffer.size`, counted from the start of
    /// the file), with the `buffer_location` metadata TensorFlow's converter writes.
    Outside,
}

/// Constants above this many bytes are written after the flatbuffer under
/// [`BufferPlacement::Auto`]: 2 GiB less 512 MiB, the margin TensorFlow's converter keeps for
/// the rest of the flatbuffer.
pub const OUTSIDE_THRESHOLD: usize = (2 << 30) - (512 << 20);

/// The rewrites that bring any verified IR graph into the form the writer maps one to one.
/// The IR already uses TFLite's layouts (NHWC activations, OHWI / 1HWO weights); what is left
/// is TFLite's own requirements: a bias operand on convolutions.
pub fn legalize_pipeline() -> PassManager {
    PassManager::new().with(MaterializeBias).with(DeadCodeElimination)
}

/// LiteRT's CONV_2D and DEPTHWISE_CONV_2D kernels need a bias tensor (the depthwise kernel
/// refuses to prepare without one): give bias-less convolutions a zero bias, float32 for float
/// convolutions, int32 with scale `s_in · s_w[c]` for int8 ones and int64 for 16x8 ones.
#[derive(Debug, Default)]
pub struct MaterializeBias;

impl Pass for MaterializeBias {
    fn name(&self) -> &'static str {
        "tflite-materialize-bias"
    }

    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        for k in ed.keys() {
            let Some(n) = ed.node(k) else { continue };
            let channel_dim = match n.op {
                Op::Conv2d(_) => 0,
                Op::DepthwiseConv2d(_) => 3,
                _ => continue,
            };
            if n.input(2).is_some() {
                continue;
            }
            let (Some(x), Some(w)) = (n.input(0).and_then(|t| ed.tensor(t)), n.input(1).and_then(|t| ed.tensor(t)))
            else {
                continue;
            };
            let Some(oc) = w.shape.dim(channel_dim).and_then(|d| d.fixed()) else { continue };
            let name = format!("{}/zero_bias", n.name);
            let bias = match (x.dtype, &x.quant, &w.quant) {
                (DType::F32, _, _) => Tensor::constant(name, DType::F32, Shape::fixed(&[oc]), vec![0u8; oc * 4].into()),
                (DType::I8 | DType::I16, Some(xq), Some(wq)) => {
                    let scales: Vec<f32> = (0..oc)
                        .map(|c| {
                            let s_w = if wq.scales().len() == 1 {
                                wq.scale()
                            } else {
                                wq.scales().get(c).copied().unwrap_or(1.0)
                            };
                            (xq.scale() as f64 * s_w as f64) as f32
                        })
                        .collect();
                    let q = if wq.scales().len() == 1 {
                        QuantParams::per_tensor(scales[0], 0)
                    } else {
                        QuantParams::per_channel(scales, vec![0; oc], 0)
                    };
                    // int64 for 16x8 (LiteRT's int16 depthwise kernel takes no other).
                    let (dt, width) = if x.dtype == DType::I16 { (DType::I64, 8) } else { (DType::I32, 4) };
                    Tensor::constant(name, dt, Shape::fixed(&[oc]), vec![0u8; oc * width].into()).with_quant(q)
                }
                _ => continue,
            };
            if !ed.budget_left() {
                break;
            }
            let mut node = n.clone();
            let id = ed.add_tensor(bias);
            node.inputs.resize(2, None);
            node.inputs.push(Some(id));
            let mut p = Patch::new();
            p.set(k, node);
            if ed.apply(p).is_none() {
                break;
            }
        }
        Ok(())
    }
}

const DESCRIPTION: &str = "qlite";

/// Serialize `g` as a .tflite file in memory. Runs [`legalize_pipeline`] on a copy first
/// (constants are shared, not copied).
pub fn write_model(g: &Graph) -> Result<bytes::Bytes, WriteError> {
    write_model_with(g, BufferPlacement::Auto)
}

/// [`write_model`] with the constants placed as asked.
pub fn write_model_with(g: &Graph, placement: BufferPlacement) -> Result<bytes::Bytes, WriteError> {
    let s = serialize_placed(g, placement)?;
    let mut out = Vec::with_capacity(s.len as usize);
    s.write_into(&mut out).map_err(|e| WriteError::Io(e.to_string()))?;
    Ok(out.into())
}

/// Serialize `g` into `w`, streaming the constants straight from the graph (no second copy of
/// the weights). Returns the number of bytes written.
pub fn write_model_to(g: &Graph, placement: BufferPlacement, w: &mut dyn std::io::Write) -> Result<u64, WriteError> {
    let s = serialize_placed(g, placement)?;
    let len = s.len;
    s.write_into(w).map_err(|e| WriteError::Io(e.to_string()))?;
    Ok(len)
}

/// A serialized model: the flatbuffer's tables, then each constant at its offset.
///
/// Constants are not copied into a builder. Inside the flatbuffer (`Buffer.data`) they are byte
/// vectors placed after every table: a flatbuffer offset only has to point forward, so the
/// tables are built first with placeholder offsets, patched once the vectors' positions are
/// known, and the constants are streamed after them. Outside it (`Buffer.offset`), the same
/// with absolute offsets and no length prefix.
struct Serialized {
    flatbuffer: Vec<u8>,
    /// Where each constant's first byte goes (16-aligned, ascending), and its bytes.
    blobs: Vec<(u64, bytes::Bytes)>,
    /// Inside the flatbuffer: each constant is a vector, preceded by its u32 length.
    prefixed: bool,
    /// Total file length.
    len: u64,
}

impl Serialized {
    /// Write the file, dropping each constant once written (a graph given up to the writer
    /// frees its computed constants one by one).
    fn write_into(self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        const ZEROS: [u8; 64] = [0; 64];
        w.write_all(&self.flatbuffer)?;
        let mut pos = self.flatbuffer.len() as u64;
        for (off, data) in self.blobs {
            let start = if self.prefixed { off - 4 } else { off };
            w.write_all(&ZEROS[..(start - pos) as usize])?;
            if self.prefixed {
                w.write_all(&(data.len() as u32).to_le_bytes())?;
            }
            // Large constants in blocks, each released once written: a weight mapped from the
            // input file is then never resident whole (a 100 MB FC weight: 100 → 17 MB peak).
            for block in data.chunks(RELEASE_BLOCK) {
                w.write_all(block)?;
                qlite_ir::hint::constant_consumed(block);
            }
            pos = off + data.len() as u64;
        }
        w.write_all(&ZEROS[..(self.len - pos) as usize])?;
        Ok(())
    }
}

/// Bytes of a constant written between two calls of the release hook.
const RELEASE_BLOCK: usize = 16 << 20;

fn align16(x: u64) -> u64 {
    x.next_multiple_of(16)
}

/// Legalize `g` (and its subgraphs) in place and check it can be written.
fn legalize(g: &mut Graph) -> Result<(), WriteError> {
    legalize_pipeline().run(g)?;
    let mut subgraphs = g.subgraphs().to_vec();
    for sg in &mut subgraphs {
        legalize_pipeline().run(sg)?;
    }
    g.set_subgraphs(subgraphs);
    verify_exportable(g, "tflite")?;
    Ok(())
}

fn outside_of(g: &Graph, placement: BufferPlacement) -> bool {
    match placement {
        BufferPlacement::Inside => false,
        BufferPlacement::Outside => true,
        BufferPlacement::Auto => g.constant_bytes() > OUTSIDE_THRESHOLD,
    }
}

/// [`write_model_to`] for a caller that gives up its graph: each constant is freed once it is
/// written (when nothing else holds it), so a computed weight is never in memory twice.
pub fn write_model_owned(
    mut g: Graph,
    placement: BufferPlacement,
    w: &mut dyn std::io::Write,
) -> Result<u64, WriteError> {
    legalize(&mut g)?;
    let outside = outside_of(&g, placement);
    let prepared = prepare_all(&g)?;
    strip_constants(&mut g);
    let s = build(&g, prepared, outside)?;
    drop(g);
    let len = s.len;
    s.write_into(w).map_err(|e| WriteError::Io(e.to_string()))?;
    Ok(len)
}

/// Drop the graph's references to its constants' bytes (the prepared buffers hold them now).
fn strip_constants(g: &mut Graph) {
    for id in g.tensor_ids() {
        if let Some(t) = g.tensor_mut(id) {
            t.data = None;
            t.sparse = None;
        }
    }
    let mut subgraphs = g.subgraphs().to_vec();
    g.set_subgraphs(Vec::new());
    for sg in &mut subgraphs {
        strip_constants(sg);
    }
    g.set_subgraphs(subgraphs);
}

fn serialize_placed(g: &Graph, placement: BufferPlacement) -> Result<Serialized, WriteError> {
    let mut g = g.clone();
    legalize(&mut g)?;
    let outside = outside_of(&g, placement);
    let prepared = prepare_all(&g)?;
    build(&g, prepared, outside)
}

fn i32_dim(g: &Graph, id: TensorId, d: usize) -> Result<i32, WriteError> {
    i32::try_from(d).map_err(|_| WriteError::DimTooLarge {
        tensor: id,
        name: g.tensor(id).map(|t| t.name.clone()).unwrap_or_default(),
        dim: d,
    })
}

/// One graph's part of the file, decided before building: the buffer of each constant, its
/// aux tensors and operators, and its operator codes.
struct Prep {
    tensor_buffer: Vec<u32>,
    sparse: Vec<Option<qlite_ir::SparseForm>>,
    aux: Vec<AuxTensor>,
    aux_index: Vec<Vec<i32>>,
    aux_ops: Vec<Vec<AuxOp>>,
    aux_buffer: Vec<u32>,
    node_opcode: Vec<u32>,
    aux_opcode: Vec<Vec<u32>>,
}

type OpcodeKey = (fb::BuiltinOperator, i32, Option<String>);

fn prepare(
    g: &Graph,
    buffer_data: &mut Vec<Option<bytes::Bytes>>,
    opcodes: &mut Vec<OpcodeKey>,
) -> Result<Prep, WriteError> {
    let mut tensor_buffer = vec![0u32; g.tensors().len()];
    // A constant read sparse is written sparse while its stored form still expands to its data
    // (a pass that changed the data, or the dtype, makes it dense).
    let sparse: Vec<Option<qlite_ir::SparseForm>> = g
        .tensors()
        .iter()
        .map(|t| {
            let (sp, data, dims) = (t.sparse.as_deref()?, t.data.as_ref()?, t.shape.to_fixed()?);
            sp.densify(&dims, t.dtype.size()).ok().filter(|d| d[..] == data[..]).map(|_| sp.clone())
        })
        .collect();
    for id in g.tensor_ids() {
        if let Some(d) = &g.tensors()[id.index()].data {
            tensor_buffer[id.index()] = buffer_data.len() as u32;
            buffer_data.push(Some(sparse[id.index()].as_ref().map_or_else(|| d.clone(), |sp| sp.values.clone())));
        }
    }
    // Aux tensors, in node order, after the graph's own tensors.
    let mut aux: Vec<AuxTensor> = Vec::new();
    let mut aux_index: Vec<Vec<i32>> = Vec::with_capacity(g.nodes().len());
    let mut aux_ops: Vec<Vec<AuxOp>> = Vec::with_capacity(g.nodes().len());
    for n in g.nodes() {
        let mut ids = Vec::new();
        let base = n.outputs.first().and_then(|t| g.tensor(*t)).map_or(n.name.as_str(), |t| t.name.as_str());
        let Aux { tensors, ops } = ops::family(&n.op).aux(n, g, base)?;
        for a in tensors {
            ids.push((g.tensors().len() + aux.len()) as i32);
            aux.push(a);
        }
        aux_index.push(ids);
        aux_ops.push(ops);
    }
    let mut aux_buffer = Vec::with_capacity(aux.len());
    for a in &aux {
        aux_buffer.push(match &a.data {
            Some(d) => {
                buffer_data.push(Some(d.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into()));
                buffer_data.len() as u32 - 1
            }
            None => 0,
        });
    }
    let mut node_opcode = Vec::with_capacity(g.nodes().len());
    for n in g.nodes() {
        let key = match &n.op {
            Op::Opaque(o) => {
                let src =
                    o.source.as_ref().filter(|s| s.format == "tflite").ok_or_else(|| WriteError::Unsupported {
                        node: n.name.clone(),
                        message: format!("{} was not read from a .tflite file", o.op_type),
                    })?;
                let code = i32::try_from(src.code).map_err(|_| WriteError::Unsupported {
                    node: n.name.clone(),
                    message: format!("operator code {} does not fit int32", src.code),
                })?;
                (fb::BuiltinOperator(code), o.version.clamp(1, i32::MAX as i64) as i32, src.custom_code.clone())
            }
            op => {
                let family = ops::family(op);
                let code = family.builtin(n).ok_or_else(|| WriteError::Unsupported {
                    node: n.name.clone(),
                    message: format!("{} has no TFLite builtin", n.op.name()),
                })?;
                (code, family.version(&VersionCx { g, n }), None)
            }
        };
        node_opcode.push(opcode_index(opcodes, key));
    }
    let aux_opcode: Vec<Vec<u32>> =
        aux_ops.iter().map(|ops| ops.iter().map(|o| opcode_index(opcodes, (o.code, 1, None))).collect()).collect();
    Ok(Prep { tensor_buffer, sparse, aux, aux_index, aux_ops, aux_buffer, node_opcode, aux_opcode })
}

/// One graph's SubGraph table.
fn build_subgraph<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    g: &Graph,
    p: &Prep,
) -> Result<WIPOffset<fb::SubGraph<'a>>, WriteError> {
    let Prep { tensor_buffer, sparse, aux, aux_index, aux_ops, aux_buffer, node_opcode, aux_opcode } = p;
    let mut tensors = Vec::with_capacity(g.tensors().len() + aux.len());
    for id in g.tensor_ids() {
        let t = &g.tensors()[id.index()];
        let mut shape = Vec::with_capacity(t.shape.rank());
        let mut sig = Vec::with_capacity(t.shape.rank());
        for d in t.shape.dims() {
            match d {
                Dim::Fixed(n) => {
                    let v = i32_dim(g, id, *n)?;
                    shape.push(v);
                    sig.push(v);
                }
                Dim::Dynamic => {
                    shape.push(1);
                    sig.push(-1);
                }
            }
        }
        let shape = Some(fbb.create_vector(&shape));
        let shape_signature = if t.shape.is_static() { None } else { Some(fbb.create_vector(&sig)) };
        let name = Some(fbb.create_string(&t.name));
        let quantization = Some(match &t.quant {
            Some(q) => {
                let scale = Some(fbb.create_vector(q.scales()));
                let zero_point = Some(fbb.create_vector(q.zero_points()));
                fb::QuantizationParameters::create(
                    fbb,
                    &fb::QuantizationParametersArgs {
                        scale,
                        zero_point,
                        quantized_dimension: q.axis().unwrap_or(0) as i32,
                        ..Default::default()
                    },
                )
            }
            None => fb::QuantizationParameters::create(fbb, &Default::default()),
        });
        let sparsity = sparse[id.index()].as_ref().map(|sp| sparsity_table(fbb, sp));
        tensors.push(fb::Tensor::create(
            fbb,
            &fb::TensorArgs {
                shape,
                type_: codes::tensor_type(t.dtype),
                buffer: tensor_buffer[id.index()],
                name,
                quantization,
                sparsity,
                shape_signature,
                has_rank: true,
                ..Default::default()
            },
        ));
    }
    for (k, a) in aux.iter().enumerate() {
        let shape = Some(fbb.create_vector(&a.shape));
        let name = Some(fbb.create_string(&a.name));
        let quantization = Some(fb::QuantizationParameters::create(fbb, &Default::default()));
        tensors.push(fb::Tensor::create(
            fbb,
            &fb::TensorArgs {
                shape,
                type_: fb::TensorType::INT32,
                buffer: aux_buffer[k],
                name,
                quantization,
                has_rank: true,
                ..Default::default()
            },
        ));
    }
    let tensors = fbb.create_vector(&tensors);

    let mut operators = Vec::with_capacity(g.nodes().len());
    for (ni, n) in g.nodes().iter().enumerate() {
        for (o, &opcode_index) in aux_ops[ni].iter().zip(&aux_opcode[ni]) {
            let aux_id = |k: usize| aux_index[ni][k];
            let ins: Vec<i32> = o
                .inputs
                .iter()
                .map(|r| match *r {
                    Ok(i) => n.input(i).map_or(-1, |t| t.index() as i32),
                    Err(k) => aux_id(k),
                })
                .collect();
            let outs: Vec<i32> = o.outputs.iter().map(|&k| aux_id(k)).collect();
            let (builtin_options_type, builtin_options) = aux_options(fbb, o.code);
            let args = fb::OperatorArgs {
                opcode_index,
                inputs: Some(fbb.create_vector(&ins)),
                outputs: Some(fbb.create_vector(&outs)),
                builtin_options_type,
                builtin_options,
                ..Default::default()
            };
            operators.push(fb::Operator::create(fbb, &args));
        }
        let inputs: Vec<i32> = n.inputs.iter().map(|i| i.map_or(-1, |t| t.index() as i32)).collect();
        let inputs = ops::family(&n.op).inputs(n, inputs, &aux_index[ni]);
        let outputs: Vec<i32> = n.outputs.iter().map(|t| t.index() as i32).collect();
        let inputs = Some(fbb.create_vector(&inputs));
        let outputs = Some(fbb.create_vector(&outputs));
        let (builtin_options_type, builtin_options) = ops::family(&n.op).options(fbb, n, g);
        let mut args = fb::OperatorArgs {
            opcode_index: node_opcode[ni],
            inputs,
            outputs,
            builtin_options_type,
            builtin_options,
            ..Default::default()
        };
        if let Op::Opaque(o) = &n.op
            && let Some(src) = &o.source
        {
            for t in &src.options {
                let table = crate::opaque::emit(fbb, t);
                if t.slot == 2 {
                    args.builtin_options_2_type = t.type_id;
                    args.builtin_options_2 = Some(WIPOffset::new(table.value()));
                } else {
                    args.builtin_options_type = fb::BuiltinOptions(t.type_id);
                    args.builtin_options = Some(table);
                }
            }
            if !src.custom_options.is_empty() {
                args.custom_options = Some(fbb.create_vector(&src.custom_options));
            }
            args.custom_options_format = fb::CustomOptionsFormat(src.custom_options_format.clamp(0, 127) as i8);
        }
        operators.push(fb::Operator::create(fbb, &args));
    }
    let operators = fbb.create_vector(&operators);
    let sg_inputs: Vec<i32> = g.inputs().iter().map(|t| t.index() as i32).collect();
    let sg_outputs: Vec<i32> = g.outputs().iter().map(|t| t.index() as i32).collect();
    let sg_inputs = Some(fbb.create_vector(&sg_inputs));
    let sg_outputs = Some(fbb.create_vector(&sg_outputs));
    let sg_name = Some(fbb.create_string(if g.name().is_empty() { "main" } else { g.name() }));
    let subgraph = fb::SubGraph::create(
        fbb,
        &fb::SubGraphArgs {
            tensors: Some(tensors),
            inputs: sg_inputs,
            outputs: sg_outputs,
            operators: Some(operators),
            name: sg_name,
            debug_metadata_index: -1,
        },
    );
    Ok(subgraph)
}

/// The index of an operator code, added in first-use order.
fn opcode_index(opcodes: &mut Vec<OpcodeKey>, key: OpcodeKey) -> u32 {
    match opcodes.iter().position(|k| *k == key) {
        Some(i) => i as u32,
        None => {
            opcodes.push(key);
            opcodes.len() as u32 - 1
        }
    }
}

/// Where field `slot` of the table at `loc` sits, from the table's start (read from its vtable:
/// the table starts with the signed distance back to it).
fn vtable_slot(buf: &[u8], loc: usize, slot: flatbuffers::VOffsetT) -> usize {
    let le32 = |at: usize| i32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let vtable = (loc as i64 - le32(loc) as i64) as usize;
    let at = vtable + slot as usize;
    u16::from_le_bytes([buf[at], buf[at + 1]]) as usize
}

/// A sparse constant's `SparsityParameters`, with the index widths it was read with.
fn sparsity_table<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    sp: &qlite_ir::SparseForm,
) -> WIPOffset<fb::SparsityParameters<'a>> {
    fn index_vector<'a>(
        fbb: &mut FlatBufferBuilder<'a>,
        v: &[u32],
        width: u8,
    ) -> (fb::SparseIndexVector, WIPOffset<UnionWIPOffset>) {
        match width {
            1 => {
                let b: Vec<u8> = v.iter().map(|&x| x as u8).collect();
                let values = Some(fbb.create_vector(&b));
                (
                    fb::SparseIndexVector::Uint8Vector,
                    fb::Uint8Vector::create(fbb, &fb::Uint8VectorArgs { values }).as_union_value(),
                )
            }
            2 => {
                let b: Vec<u16> = v.iter().map(|&x| x as u16).collect();
                let values = Some(fbb.create_vector(&b));
                (
                    fb::SparseIndexVector::Uint16Vector,
                    fb::Uint16Vector::create(fbb, &fb::Uint16VectorArgs { values }).as_union_value(),
                )
            }
            _ => {
                let b: Vec<i32> = v.iter().map(|&x| x as i32).collect();
                let values = Some(fbb.create_vector(&b));
                (
                    fb::SparseIndexVector::Int32Vector,
                    fb::Int32Vector::create(fbb, &fb::Int32VectorArgs { values }).as_union_value(),
                )
            }
        }
    }
    let levels: Vec<_> = sp
        .levels
        .iter()
        .map(|l| match l {
            qlite_ir::SparseLevel::Dense(n) => fb::DimensionMetadata::create(
                fbb,
                &fb::DimensionMetadataArgs {
                    format: fb::DimensionType::DENSE,
                    dense_size: *n as i32,
                    ..Default::default()
                },
            ),
            qlite_ir::SparseLevel::Csr { segments, indices, segments_width, indices_width } => {
                let (st, s) = index_vector(fbb, segments, *segments_width);
                let (it, i) = index_vector(fbb, indices, *indices_width);
                fb::DimensionMetadata::create(
                    fbb,
                    &fb::DimensionMetadataArgs {
                        format: fb::DimensionType::SPARSE_CSR,
                        dense_size: 0,
                        array_segments_type: st,
                        array_segments: Some(s),
                        array_indices_type: it,
                        array_indices: Some(i),
                    },
                )
            }
        })
        .collect();
    let dim_metadata = Some(fbb.create_vector(&levels));
    let to = |v: &[usize]| v.iter().map(|&x| x as i32).collect::<Vec<i32>>();
    let traversal_order = Some(fbb.create_vector(&to(&sp.traversal_order)));
    let block_map = Some(fbb.create_vector(&to(&sp.block_map)));
    fb::SparsityParameters::create(fbb, &fb::SparsityParametersArgs { traversal_order, block_map, dim_metadata })
}

/// Everything decided before building, for the main graph and its subgraphs: each graph's
/// [`Prep`], every buffer's data (the constants, shared with the graph), the operator codes.
struct Prepared {
    preps: Vec<Prep>,
    buffer_data: Vec<Option<bytes::Bytes>>,
    opcodes: Vec<OpcodeKey>,
}

fn prepare_all(g: &Graph) -> Result<Prepared, WriteError> {
    // Buffers: 0 is the empty sentinel; each constant gets its own.
    let mut buffer_data: Vec<Option<bytes::Bytes>> = vec![None];
    // Operator codes, deduplicated by (code, version, custom code) in first-use order.
    let mut opcodes: Vec<OpcodeKey> = Vec::new();
    // The main graph, then the control-flow subgraphs it keeps, in order.
    let mut preps = Vec::with_capacity(1 + g.subgraphs().len());
    for g in std::iter::once(g).chain(g.subgraphs()) {
        preps.push(prepare(g, &mut buffer_data, &mut opcodes)?);
    }
    Ok(Prepared { preps, buffer_data, opcodes })
}

/// Build the flatbuffer's tables from what [`prepare_all`] decided and place the constants
/// after them (see [`Serialized`]). `outside`: `Buffer.offset` / `Buffer.size` instead of
/// `Buffer.data`.
fn build(g: &Graph, prepared: Prepared, outside: bool) -> Result<Serialized, WriteError> {
    let Prepared { preps, mut buffer_data, opcodes } = prepared;
    let const_bytes: usize = buffer_data.iter().flatten().map(|d| d.len().next_multiple_of(16) + 16).sum();
    if !outside && const_bytes > (2usize << 30) - (64 << 20) {
        return Err(WriteError::TooLarge { size: const_bytes });
    }
    let graphs: Vec<&Graph> = std::iter::once(g).chain(g.subgraphs()).collect();
    // The tables, names and shapes only: constants never enter the builder.
    let tables: usize = graphs
        .iter()
        .map(|g| {
            let names: usize = g.tensors().iter().map(|t| t.name.len()).sum::<usize>()
                + g.nodes().iter().map(|n| n.name.len()).sum::<usize>();
            names + 256 * (g.tensors().len() + 2 * g.nodes().len())
        })
        .sum();
    let mut fbb = FlatBufferBuilder::with_capacity(tables + (64 << 10));
    // min_runtime_version: max over operators.
    let mut min_rt = String::new();
    for &(code, version, _) in &opcodes {
        if let Some(v) = ops::min_runtime(code, version)
            && (min_rt.is_empty() || codes::version_lt(&min_rt, v))
        {
            min_rt = v.to_string();
        }
    }
    let mut rt_bytes = [0u8; 16];
    if min_rt.len() < 16 {
        rt_bytes[..min_rt.len()].copy_from_slice(min_rt.as_bytes());
    }
    // Metadata buffers stay in the flatbuffer in either mode.
    let n_tensor_buffers = buffer_data.len();
    let rt_buffer = buffer_data.len() as u32;
    buffer_data.push(Some(bytes::Bytes::copy_from_slice(&rt_bytes)));
    let location_buffer = buffer_data.len() as u32;
    if outside {
        buffer_data.push(Some(bytes::Bytes::from_static(b"outside flatbuffers")));
    }

    // ---- build ----
    // Constants placed after the tables: their Buffer table, to patch, and their bytes.
    let mut placed: Vec<(WIPOffset<fb::Buffer>, bytes::Bytes)> = Vec::new();
    let mut buffers: Vec<WIPOffset<fb::Buffer>> = Vec::with_capacity(buffer_data.len());
    for (i, d) in buffer_data.iter_mut().enumerate() {
        let table = match d.take() {
            Some(d) if i < n_tensor_buffers && !d.is_empty() => {
                let table = if outside {
                    // A placeholder offset above 1 (only those are valid) keeps the field present.
                    let args = fb::BufferArgs { data: None, offset: u64::MAX, size: d.len() as u64 };
                    fb::Buffer::create(&mut fbb, &args)
                } else {
                    // The data field as a placeholder uoffset, patched below.
                    let start = fbb.start_table();
                    fbb.push_slot_always::<u32>(fb::Buffer::VT_DATA, 0);
                    WIPOffset::new(fbb.end_table(start).value())
                };
                placed.push((table, d));
                table
            }
            Some(d) => {
                let data = Some(fbb.create_vector(&d[..]));
                fb::Buffer::create(&mut fbb, &fb::BufferArgs { data, offset: 0, size: 0 })
            }
            None => fb::Buffer::create(&mut fbb, &fb::BufferArgs { data: None, offset: 0, size: 0 }),
        };
        buffers.push(table);
    }
    let buffers = fbb.create_vector(&buffers);

    let mut subgraph_tables = Vec::with_capacity(graphs.len());
    for (g, prep) in graphs.iter().zip(&preps) {
        subgraph_tables.push(build_subgraph(&mut fbb, g, prep)?);
    }
    let subgraphs = fbb.create_vector(&subgraph_tables);

    let codes_vec: Vec<_> = opcodes
        .iter()
        .map(|(code, version, custom)| {
            let (code, version) = (*code, *version);
            let custom_code = custom.as_deref().map(|c| fbb.create_string(c));
            fb::OperatorCode::create(
                &mut fbb,
                &fb::OperatorCodeArgs {
                    deprecated_builtin_code: code.0.min(127) as i8,
                    custom_code,
                    version,
                    builtin_code: code,
                },
            )
        })
        .collect();
    let operator_codes = fbb.create_vector(&codes_vec);

    // SignatureDef: maps sorted by name, as TensorFlow's exporter writes them.
    let key = g.signature().map_or("serving_default", |s| s.key.as_str()).to_string();
    let mut in_maps: Vec<(String, u32)> = g
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, t)| (g.input_name(i).unwrap_or("").to_string(), t.index() as u32))
        .collect();
    let mut out_maps: Vec<(String, u32)> = g
        .outputs()
        .iter()
        .enumerate()
        .map(|(i, t)| (g.output_name(i).unwrap_or("").to_string(), t.index() as u32))
        .collect();
    in_maps.sort();
    out_maps.sort();
    fn maps<'a>(
        fbb: &mut FlatBufferBuilder<'a>,
        v: &[(String, u32)],
    ) -> WIPOffset<flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<fb::TensorMap<'a>>>> {
        let items: Vec<_> = v
            .iter()
            .map(|(n, i)| {
                let name = Some(fbb.create_string(n));
                fb::TensorMap::create(fbb, &fb::TensorMapArgs { name, tensor_index: *i })
            })
            .collect();
        fbb.create_vector(&items)
    }
    let sig_inputs = Some(maps(&mut fbb, &in_maps));
    let sig_outputs = Some(maps(&mut fbb, &out_maps));
    let signature_key = Some(fbb.create_string(&key));
    let sig = fb::SignatureDef::create(
        &mut fbb,
        &fb::SignatureDefArgs { inputs: sig_inputs, outputs: sig_outputs, signature_key, subgraph_index: 0 },
    );
    let signature_defs = Some(fbb.create_vector(&[sig]));
    let md_name = Some(fbb.create_string("min_runtime_version"));
    let mut md = vec![fb::Metadata::create(&mut fbb, &fb::MetadataArgs { name: md_name, buffer: rt_buffer })];
    if outside {
        let name = Some(fbb.create_string("buffer_location"));
        md.push(fb::Metadata::create(&mut fbb, &fb::MetadataArgs { name, buffer: location_buffer }));
    }
    let metadata = Some(fbb.create_vector(&md));
    let description = Some(fbb.create_string(g.description().unwrap_or(DESCRIPTION)));
    let model = fb::Model::create(
        &mut fbb,
        &fb::ModelArgs {
            version: 3,
            operator_codes: Some(operator_codes),
            subgraphs: Some(subgraphs),
            description,
            buffers: Some(buffers),
            metadata_buffer: None,
            metadata,
            signature_defs,
            external_buffer_groups: None,
            external_buffers: None,
        },
    );
    fbb.finish(model, Some("TFL3"));
    let (buf, head) = fbb.collapse();
    let mut flatbuffer = buf[head..].to_vec();
    drop(buf);
    let tables_len = flatbuffer.len() as u64;
    // Each constant 16-aligned in the file (inside: after its 4-byte length).
    let mut pos = tables_len;
    let mut blobs = Vec::with_capacity(placed.len());
    for (table, data) in placed {
        let at = align16(pos + if outside { 0 } else { 4 });
        // The table's position in the finished buffer, then its field's, from its vtable.
        let loc = tables_len as usize - table.value() as usize;
        let slot = if outside { fb::Buffer::VT_OFFSET } else { fb::Buffer::VT_DATA };
        let field = loc + vtable_slot(&flatbuffer, loc, slot);
        if outside {
            flatbuffer[field..field + 8].copy_from_slice(&at.to_le_bytes());
        } else {
            // A uoffset counts from the field to the vector's length prefix.
            let rel = u32::try_from(at - 4 - field as u64).map_err(|_| WriteError::TooLarge { size: at as usize })?;
            flatbuffer[field..field + 4].copy_from_slice(&rel.to_le_bytes());
        }
        pos = at + data.len() as u64;
        blobs.push((at, data));
    }
    // 16 zero bytes after the last constant, for kernels that read a vector past its end.
    let len = align16(pos + 16);
    if !outside && len > (2u64 << 30) - 1 {
        return Err(WriteError::TooLarge { size: len as usize });
    }
    Ok(Serialized { flatbuffer, blobs, prefixed: !outside, len })
}

/// The options of an [`AuxOp`]: SHAPE to int32, CONCATENATION along axis 0.
fn aux_options(
    fbb: &mut FlatBufferBuilder<'_>,
    code: fb::BuiltinOperator,
) -> (fb::BuiltinOptions, Option<WIPOffset<UnionWIPOffset>>) {
    type O = fb::BuiltinOptions;
    match code {
        fb::BuiltinOperator::SHAPE => {
            let args = fb::ShapeOptionsArgs { out_type: fb::TensorType::INT32 };
            (O::ShapeOptions, Some(fb::ShapeOptions::create(fbb, &args).as_union_value()))
        }
        fb::BuiltinOperator::STRIDED_SLICE => {
            (O::StridedSliceOptions, Some(fb::StridedSliceOptions::create(fbb, &Default::default()).as_union_value()))
        }
        _ => {
            let args = fb::ConcatenationOptionsArgs { axis: 0, ..Default::default() };
            (O::ConcatenationOptions, Some(fb::ConcatenationOptions::create(fbb, &args).as_union_value()))
        }
    }
}
