//! Every builtin operator qlite maps, one module per op family. A family holds everything the
//! TFLite format says about its ops, side by side: the builtin codes it reads, reading an
//! operator into an IR op, the IR op's builtin code, its kernel version (op_version.cc), the
//! runtime version that first ran each version (runtime_version.cc), its options table and
//! the attribute tensors (and operators) written next to it.
//!
//! [`family`] assigns every IR op to its family by an exhaustive match, so a new op does not
//! compile until it has one; [`FAMILIES`] lists them for reading, by builtin code.

mod conv;
mod elementwise;
mod fc;
mod movement;
mod pool;
mod quantize;
mod resize;
mod softmax;

pub(crate) use conv::mediapipe_transpose_conv;
pub(crate) use movement::split_as_slices;

use crate::codes;
use crate::fb;
use crate::writer::WriteError;
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};
use qlite_ir::{Activation, DType, Graph, Node, Op, TensorId};

pub(crate) use fb::BuiltinOperator as B;

/// A builtin options table as the writer stores it in an operator.
pub(crate) type Options = (fb::BuiltinOptions, Option<WIPOffset<UnionWIPOffset>>);

/// The builtin codes of a family, each with the runtime version that first ran each of its
/// versions (runtime_version.cc; index 0 is version 1).
pub(crate) type Codes = &'static [(B, &'static [&'static str])];

/// An int32 attribute tensor written as an extra operator input (a RESHAPE's shape, a
/// TRANSPOSE's perm, ...).
pub(crate) struct AuxTensor {
    pub name: String,
    pub shape: Vec<i32>,
    /// `None`: computed at run time by an [`AuxOp`].
    pub data: Option<Vec<i32>>,
}

/// An operator the writer adds before a node's own, over the node's inputs and its aux tensors
/// (the run-time `output_shape` of a TRANSPOSE_CONV with a dynamic batch).
pub(crate) struct AuxOp {
    pub code: B,
    /// `Ok(i)`: the node's input `i`; `Err(k)`: the node's aux tensor `k`.
    pub inputs: Vec<Result<usize, usize>>,
    /// The node's aux tensors it writes.
    pub outputs: Vec<usize>,
}

/// A node's aux tensors and the operators that compute the run-time ones.
#[derive(Default)]
pub(crate) struct Aux {
    pub tensors: Vec<AuxTensor>,
    pub ops: Vec<AuxOp>,
}

/// One operator being read: the graph so far, the flatbuffer operator, its code, and its
/// inputs (a family removes the attribute tensors it turns into op attributes).
pub(crate) struct ReadCx<'a, 'b> {
    pub g: &'a Graph,
    pub op: &'a fb::Operator<'b>,
    pub code: B,
    pub inputs: &'a mut Vec<Option<TensorId>>,
    pub outputs: &'a [TensorId],
}

impl ReadCx<'_, '_> {
    pub fn input(&self, i: usize) -> Option<TensorId> {
        self.inputs.get(i).copied().flatten()
    }
    /// The integer values of constant input `i`.
    pub fn ints(&self, i: usize, what: &str) -> Result<Vec<i64>, String> {
        const_ints(self.g, self.input(i), what)
    }
    pub fn rank0(&self) -> Result<usize, String> {
        rank_of(self.g, self.input(0))
    }
}

/// One node being written: its dtypes, shapes and quantization, as op_version.cc reads them.
pub(crate) struct VersionCx<'a> {
    pub g: &'a Graph,
    pub n: &'a Node,
}

impl VersionCx<'_> {
    pub fn dtype(&self, i: usize) -> Option<DType> {
        self.n.input(i).and_then(|t| self.g.tensor(t)).map(|t| t.dtype)
    }
    pub fn out_dtype(&self) -> Option<DType> {
        self.n.outputs.first().and_then(|t| self.g.tensor(*t)).map(|t| t.dtype)
    }
    pub fn rank(&self, i: usize) -> usize {
        self.n.input(i).and_then(|t| self.g.tensor(t)).map_or(0, |t| t.shape.rank())
    }
    /// Input `i` has per-channel quantization.
    pub fn per_channel(&self, i: usize) -> bool {
        self.n
            .input(i)
            .and_then(|t| self.g.tensor(t))
            .and_then(|t| t.quant.as_ref())
            .is_some_and(|q| q.scales().len() > 1)
    }
}

/// What a family knows of its builtin operators.
pub(crate) trait Family: Sync {
    /// The builtin codes it reads, with their runtime versions.
    fn codes(&self) -> Codes;
    /// The IR op of a flatbuffer operator whose code is one of [`Family::codes`]; `Ok(None)`
    /// for a form qlite does not model (kept as an opaque op).
    fn read(&self, cx: &mut ReadCx<'_, '_>) -> Result<Option<Op>, String>;
    /// The builtin code of a node of this family (`None`: no TFLite form).
    fn builtin(&self, n: &Node) -> Option<B>;
    /// The kernel version of a node of this family (op_version.cc, for the forms qlite writes).
    fn version(&self, v: &VersionCx<'_>) -> i32;
    /// The options table of a node of this family.
    fn options(&self, fbb: &mut FlatBufferBuilder<'_>, n: &Node, _g: &qlite_ir::Graph) -> Options;
    /// The attribute tensors written after the node's inputs.
    fn aux(&self, _n: &Node, _g: &Graph, _base: &str) -> Result<Aux, WriteError> {
        Ok(Aux::default())
    }
    /// The operator's inputs in TFLite's order, given the node's and its aux tensors' indices
    /// (-1 for an absent optional input); by default the node's, then the aux tensors.
    fn inputs(&self, _n: &Node, mut node: Vec<i32>, aux: &[i32]) -> Vec<i32> {
        node.extend_from_slice(aux);
        node
    }
}

/// The families, for reading by builtin code.
pub(crate) const FAMILIES: [&dyn Family; 8] = [
    &conv::Conv,
    &fc::Fc,
    &pool::Pool,
    &elementwise::Elementwise,
    &softmax::Softmax,
    &resize::Resize,
    &movement::Movement,
    &quantize::Quantize,
];

/// The family of an IR op.
pub(crate) fn family(op: &Op) -> &'static dyn Family {
    match op {
        Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::TransposeConv2d(_) => &conv::Conv,
        Op::FullyConnected(_) | Op::BatchMatMul(_) => &fc::Fc,
        Op::Pool2d(_) | Op::Mean(_) | Op::Sum(_) => &pool::Pool,
        Op::Binary(_) | Op::Unary(_) | Op::Prelu => &elementwise::Elementwise,
        Op::Softmax(_) | Op::LogSoftmax | Op::LocalResponseNorm(_) => &softmax::Softmax,
        Op::Resize(_) => &resize::Resize,
        Op::Reshape(_)
        | Op::Transpose(_)
        | Op::Concatenation(_)
        | Op::Pad(_)
        | Op::MirrorPad(_)
        | Op::StridedSlice(_)
        | Op::Gather(_)
        | Op::Tile(_)
        | Op::DepthToSpace(_)
        | Op::SpaceToDepth(_) => &movement::Movement,
        Op::Quantize | Op::Dequantize | Op::Densify => &quantize::Quantize,
        Op::Opaque(_) => &Opaque,
    }
}

/// Ops kept as read (their own code, version and options are copied by the writer).
struct Opaque;

impl Family for Opaque {
    fn codes(&self) -> Codes {
        &[]
    }
    fn read(&self, _: &mut ReadCx<'_, '_>) -> Result<Option<Op>, String> {
        Ok(None)
    }
    fn builtin(&self, _: &Node) -> Option<B> {
        None
    }
    fn version(&self, _: &VersionCx<'_>) -> i32 {
        1
    }
    fn options(&self, _: &mut FlatBufferBuilder<'_>, _: &Node, _: &qlite_ir::Graph) -> Options {
        (fb::BuiltinOptions::NONE, None)
    }
}

/// The family that reads `code`.
pub(crate) fn reader_of(code: B) -> Option<&'static dyn Family> {
    FAMILIES.into_iter().find(|f| f.codes().iter().any(|(c, _)| *c == code))
}

/// The TFLite runtime version that first ran (op, version); `None` if not listed.
pub(crate) fn min_runtime(code: B, version: i32) -> Option<&'static str> {
    let table = FAMILIES.iter().flat_map(|f| f.codes().iter()).find(|(c, _)| *c == code).map_or(&[][..], |(_, t)| t);
    usize::try_from(version).ok().and_then(|v| v.checked_sub(1)).and_then(|i| table.get(i)).copied()
}

// ---------------------------------------------------------------- helpers shared by families

/// Integer values of a constant int32/int64 tensor.
pub(crate) fn const_ints(g: &Graph, t: Option<TensorId>, what: &str) -> Result<Vec<i64>, String> {
    let t = t.and_then(|t| g.tensor(t)).ok_or_else(|| format!("{what} input is missing"))?;
    let data = t.data.as_ref().ok_or_else(|| format!("{what} must be a constant tensor"))?;
    match t.dtype {
        DType::I32 if data.len() % 4 == 0 => Ok(qlite_ir::tensor::read_i32s(data).into_iter().map(i64::from).collect()),
        DType::I64 if data.len() % 8 == 0 => Ok(qlite_ir::tensor::read_i64s(data)),
        d => Err(format!("{what} must be int32 or int64, got {d} with {} bytes", data.len())),
    }
}

/// A constant `[rank, 2]` paddings tensor (PAD, MIRROR_PAD).
pub(crate) fn paddings(g: &Graph, t: Option<TensorId>, rank: usize) -> Result<Vec<[usize; 2]>, String> {
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

pub(crate) fn positive(v: i32, what: &str) -> Result<usize, String> {
    if v < 1 {
        return Err(format!("{what} must be >= 1, got {v}"));
    }
    Ok(v as usize)
}

pub(crate) fn act(a: fb::ActivationFunctionType) -> Result<Activation, String> {
    codes::from_activation(a).ok_or_else(|| {
        format!("unsupported fused activation {}", a.variant_name().map_or_else(|| a.0.to_string(), str::to_string))
    })
}

pub(crate) fn pad_of(p: fb::Padding) -> Result<qlite_ir::Padding, String> {
    codes::from_padding(p).ok_or_else(|| format!("unknown padding {}", p.0))
}

pub(crate) fn rank_of(g: &Graph, t: Option<TensorId>) -> Result<usize, String> {
    t.and_then(|t| g.tensor(t)).map(|t| t.shape.rank()).ok_or_else(|| "input 0 is missing".to_string())
}

pub(crate) fn norm_axis(a: i64, rank: usize, what: &str) -> Result<usize, String> {
    let r = rank as i64;
    if a < -r || a >= r.max(1) {
        return Err(format!("{what} {a} is outside rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

pub(crate) fn missing(what: &str) -> String {
    format!("missing {what}")
}

/// The fused activation of a node, as the options tables store it.
pub(crate) fn fused(n: &Node) -> fb::ActivationFunctionType {
    codes::activation(n.op.fused_activation().unwrap_or_default())
}

/// An int32 attribute value, or the writer's error naming the node.
pub(crate) fn to_i32(n: &Node, v: i64) -> Result<i32, WriteError> {
    i32::try_from(v).map_err(|_| WriteError::Unsupported {
        node: n.name.clone(),
        message: format!("attribute value {v} does not fit int32"),
    })
}

/// One constant int32 vector aux tensor named `{base}/{what}`.
pub(crate) fn aux_vector(n: &Node, base: &str, what: &str, values: &[i64]) -> Result<Aux, WriteError> {
    let data = values.iter().map(|&v| to_i32(n, v)).collect::<Result<Vec<_>, _>>()?;
    Ok(Aux {
        tensors: vec![AuxTensor { name: format!("{base}/{what}"), shape: vec![data.len() as i32], data: Some(data) }],
        ops: Vec::new(),
    })
}

/// A `[rank, 2]` paddings aux tensor.
pub(crate) fn aux_paddings(n: &Node, base: &str, paddings: &[[usize; 2]]) -> Result<Aux, WriteError> {
    let mut data = Vec::with_capacity(paddings.len() * 2);
    for pr in paddings {
        data.push(to_i32(n, pr[0] as i64)?);
        data.push(to_i32(n, pr[1] as i64)?);
    }
    Ok(Aux {
        tensors: vec![AuxTensor {
            name: format!("{base}/paddings"),
            shape: vec![paddings.len() as i32, 2],
            data: Some(data),
        }],
        ops: Vec::new(),
    })
}

/// An options table with no fields.
macro_rules! empty_options {
    ($fbb:expr, $table:ident, $args:ident) => {
        (fb::BuiltinOptions::$table, Some(fb::$table::create($fbb, &fb::$args {}).as_union_value()))
    };
}
pub(crate) use empty_options;
