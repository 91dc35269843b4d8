//! The closed set of operators. Layout is NHWC; convolution weights are OHWI, depthwise
//! weights 1HW(C·M), fully connected weights [units, in_depth].
//!
//! Adding an op means adding a variant here; the compiler then points at every `match` that
//! must handle it (inference here, kernels, writer, reader).

use crate::dtype::DType;
use crate::shape::{Dim, Shape, checked_product};
use std::fmt;

/// An activation fused into the op that produces a tensor (TFLite `fused_activation_function`).
/// Only the clamping activations: TFLite's kernels ignore a fused TANH or SIGN_BIT, so the
/// reader refuses them rather than guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    #[default]
    None,
    Relu,
    Relu6,
    ReluN1To1,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::ReluN1To1 => "relu_n1_to_1",
        }
    }

    /// Apply in float.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::ReluN1To1 => x.clamp(-1.0, 1.0),
        }
    }
}

/// Spatial padding scheme (TFLite's SAME / VALID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Padding {
    Same,
    Valid,
}

impl Padding {
    pub fn name(self) -> &'static str {
        match self {
            Padding::Same => "same",
            Padding::Valid => "valid",
        }
    }

    /// Output size and padding before, for one spatial axis (TFLite padding.h rules):
    /// SAME: `out = ceil(in/stride)`, the odd pixel goes after; VALID: no padding.
    pub fn compute(self, input: usize, kernel: usize, stride: usize, dilation: usize) -> Option<(usize, usize)> {
        if stride == 0 || dilation == 0 || kernel == 0 {
            return None;
        }
        let eff = kernel.checked_sub(1)?.checked_mul(dilation)?.checked_add(1)?;
        match self {
            Padding::Same => {
                let out = input.div_ceil(stride);
                let needed = out.saturating_sub(1).checked_mul(stride)?.checked_add(eff)?;
                let total = needed.saturating_sub(input);
                Some((out, total / 2))
            }
            Padding::Valid => {
                if input < eff {
                    return None;
                }
                Some(((input - eff) / stride + 1, 0))
            }
        }
    }
    /// The (before, after) padding SAME gives along one axis of size `input`; for a size known
    /// only at run time, only where it is the same for every size (stride 1: the window's
    /// reach minus one, the odd pixel after), else `None`.
    pub fn same_pads(input: crate::shape::Dim, kernel: usize, stride: usize, dilation: usize) -> Option<[usize; 2]> {
        let eff = kernel.checked_sub(1)?.checked_mul(dilation)?.checked_add(1)?;
        let total = match input {
            crate::shape::Dim::Fixed(n) => {
                let (out, _) = Padding::Same.compute(n, kernel, stride, dilation)?;
                (out.checked_sub(1)?.checked_mul(stride)?.checked_add(eff)?).saturating_sub(n)
            }
            crate::shape::Dim::Dynamic if stride == 1 => eff - 1,
            crate::shape::Dim::Dynamic => return None,
        };
        Some([total / 2, total - total / 2])
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FullyConnected {
    pub activation: Activation,
    /// Keep the input's leading dimensions instead of flattening them into one batch axis.
    pub keep_num_dims: bool,
    /// Hybrid (float input, int8 weights) execution quantizes each input row asymmetrically.
    pub asymmetric_inputs: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    pub padding: Padding,
    /// [height, width]
    pub stride: [usize; 2],
    /// [height, width]
    pub dilation: [usize; 2],
    pub activation: Activation,
}

/// BATCH_MATMUL: `a · b` over the last two axes (`adj_x` / `adj_y` transpose them first), the
/// leading (batch) axes broadcast.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMatMul {
    pub adj_x: bool,
    pub adj_y: bool,
}

/// TRANSPOSE_CONV (a convolution's gradient, "deconvolution"): inputs x (NHWC), weights
/// (OHWI) and an optional bias; the output's height and width are given, as TFLite gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct TransposeConv2d {
    pub padding: Padding,
    /// [height, width]
    pub stride: [usize; 2],
    /// Output [height, width].
    pub output: [usize; 2],
    pub activation: Activation,
}

impl TransposeConv2d {
    /// The padding before each spatial axis, as LiteRT computes it: that of a convolution
    /// whose input is this op's output (`ComputePaddingHeightWidth`, half the total).
    pub fn pad_before(&self, kernel: [usize; 2]) -> [usize; 2] {
        [0, 1].map(|i| {
            let (size, k, s) = (self.output[i] as i64, kernel[i] as i64, self.stride[i] as i64);
            let conv_out = match self.padding {
                Padding::Same => (size + s - 1) / s,
                Padding::Valid => (size - k + s) / s,
            };
            (((conv_out - 1) * s + k - size).max(0) / 2) as usize
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DepthwiseConv2d {
    pub padding: Padding,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub depth_multiplier: usize,
    pub activation: Activation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    /// Elementwise max (MAXIMUM; no fused activation).
    Maximum,
    /// Elementwise min (MINIMUM; no fused activation).
    Minimum,
    /// Elementwise division (DIV; fused activation).
    Div,
    /// `(a − b)²` (SQUARED_DIFFERENCE; no fused activation).
    SquaredDifference,
}

impl BinaryKind {
    /// Does the TFLite op carry a fused activation?
    pub fn has_activation(self) -> bool {
        matches!(self, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul | BinaryKind::Div)
    }
}

/// Elementwise binary op with numpy broadcasting.
#[derive(Debug, Clone, PartialEq)]
pub struct Binary {
    pub kind: BinaryKind,
    pub activation: Activation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    Average,
}

/// MaxPool2d / AveragePool2d over NHWC input.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool2d {
    pub kind: PoolKind,
    /// [height, width]
    pub filter: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
    pub activation: Activation,
}

/// Mean over `axes` (sorted, unique, each < rank).
#[derive(Debug, Clone, PartialEq)]
pub struct Mean {
    pub axes: Vec<usize>,
    pub keep_dims: bool,
}

/// Reshape to `shape`; one entry may be -1 (inferred).
#[derive(Debug, Clone, PartialEq)]
pub struct Reshape {
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Concatenation {
    pub axis: usize,
    pub activation: Activation,
}

/// Constant padding with the zero value (the zero point for quantized tensors).
#[derive(Debug, Clone, PartialEq)]
pub struct Pad {
    /// [before, after] per dimension.
    pub paddings: Vec<[usize; 2]>,
}

/// Softmax over the last axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Softmax {
    pub beta: f32,
}

/// Local response normalization across the last (channel) axis of a 4-D tensor, TFLite's
/// LOCAL_RESPONSE_NORMALIZATION: `y = x / (bias + alpha · Σ x²)^beta`, the sum over the
/// channels `[c - radius, c + radius]` clipped to the tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResponseNorm {
    pub radius: usize,
    pub bias: f32,
    pub alpha: f32,
    pub beta: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryKind {
    Relu,
    Relu6,
    Logistic,
    Tanh,
    Exp,
    Sqrt,
    Neg,
    Abs,
    /// Clamp to [-1, 1] (RELU_N1_TO_1).
    ReluN1To1,
    /// `x · relu6(x + 3) / 6` (HARD_SWISH).
    HardSwish,
    /// `x` for x >= 0, else `exp(x) − 1` (ELU).
    Elu,
    /// `x · Φ(x)`, exact: `0.5 · x · erfc(−x / √2)` (GELU).
    Gelu,
    /// GELU's tanh approximation, `0.5 · x · (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    GeluTanh,
    /// `1 / √x` (RSQRT).
    Rsqrt,
    /// The error function. No TFLite builtin: the `fuse-gelu` pass turns
    /// `x · 0.5 · (1 + erf(x / √2))` into GELU; an Erf left over cannot be written.
    Erf,
    /// `1 − erf(x)`; no TFLite builtin either: `0.5·x·erfc(−x/√2)` (TF's exact gelu) fuses into
    /// GELU.
    Erfc,
}

/// Elementwise activation as a standalone op.
#[derive(Debug, Clone, PartialEq)]
pub struct Unary {
    pub kind: UnaryKind,
}

/// An operator the IR does not model. Importers keep it so that every unsupported op is
/// reported at once, and, with a [`OpaqueSource`], so that the file can be inspected, re-written
/// and converted unchanged: only execution and quantization refuse it.
#[derive(Debug, Clone, PartialEq)]
pub struct Opaque {
    /// e.g. "onnx:Gather", "tflite:GATHER_ND" or "tflite:CUSTOM(TFLite_Detection_PostProcess)"
    pub op_type: String,
    /// Opset or operator version in the source format.
    pub version: i64,
    /// What the source format needs to write the op back as it was read; `None` when the
    /// importer cannot keep it (the graph then cannot be exported).
    pub source: Option<OpaqueSource>,
}

/// An opaque operator as its source format stores it. The IR never looks inside; the format's
/// writer puts it back. Tables of options are kept field by field (a flatbuffer table's fields
/// by their ids), so they survive being moved into a new file.
#[derive(Debug, Clone, PartialEq)]
pub struct OpaqueSource {
    /// The format that can write it back (e.g. "tflite").
    pub format: String,
    /// The format's operator code (TFLite's `BuiltinOperator`).
    pub code: i64,
    /// A custom operator's name.
    pub custom_code: Option<String>,
    /// Options tables: (which slot of the operator, union type id, fields).
    pub options: Vec<OpaqueOptions>,
    /// Bytes the operator's kernel parses itself (TFLite's `custom_options`).
    pub custom_options: Vec<u8>,
    /// How `custom_options` is encoded (TFLite: 0 = FlexBuffers).
    pub custom_options_format: i64,
}

/// One options table of an [`OpaqueSource`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpaqueOptions {
    /// Which of the operator's options slots holds it (TFLite: 1 = `builtin_options`,
    /// 2 = `builtin_options_2`).
    pub slot: u8,
    /// The union's type id.
    pub type_id: u8,
    pub fields: Vec<OpaqueField>,
}

/// One present field of an options table.
#[derive(Debug, Clone, PartialEq)]
pub struct OpaqueField {
    /// The field's id (its index in the table's vtable).
    pub id: u16,
    pub value: OpaqueValue,
}

/// A field's value, as raw little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum OpaqueValue {
    /// An inline scalar: `bytes.len()` is 1, 2, 4 or 8 (it may include the field's padding; a
    /// reader reads the field's own size from the start).
    Scalar(Vec<u8>),
    /// A vector of scalars of `elem_size` bytes each.
    Vector {
        elem_size: u8,
        bytes: Vec<u8>,
    },
    String(String),
}

/// One axis of a [`StridedSlice`], in TensorFlow's terms (STRIDED_SLICE, ONNX Slice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceDim {
    /// `None`: from the first element (the last for a negative stride), as `begin_mask`.
    /// Negative values count from the end.
    pub begin: Option<i64>,
    /// `None`: through the last element (the first for a negative stride), as `end_mask`.
    pub end: Option<i64>,
    /// Non-zero.
    pub stride: i64,
    /// Take the element at `begin` and drop the axis (`shrink_axis_mask`).
    pub shrink: bool,
}

impl SliceDim {
    /// The whole axis.
    pub const ALL: SliceDim = SliceDim { begin: None, end: None, stride: 1, shrink: false };

    /// The first index and the element count of this axis over a dimension of `n` elements
    /// (begin and end clamped into range as TensorFlow does); `None` when the stride is 0 or a
    /// shrunk axis's index is outside the dimension.
    pub fn resolve(&self, n: usize) -> Option<(i64, usize)> {
        let len = i64::try_from(n).ok()?;
        let norm = |x: i64| if x < 0 { x.saturating_add(len) } else { x };
        if self.shrink {
            let i = norm(self.begin.unwrap_or(0));
            return (0..len).contains(&i).then_some((i, 1));
        }
        let st = self.stride;
        if st == 0 {
            return None;
        }
        let (lo, hi) = if st > 0 { (0, len) } else { (-1, len - 1) };
        let start = self.begin.map_or(if st > 0 { 0 } else { len - 1 }, |b| norm(b).clamp(lo, hi));
        let stop = self.end.map_or(if st > 0 { len } else { -1 }, |e| norm(e).clamp(lo, hi));
        let span = if st > 0 { stop - start } else { start - stop };
        let step = st.unsigned_abs() as i64;
        let count = if span <= 0 { 0 } else { (span + step - 1) / step };
        Some((start, count as usize))
    }
}

/// STRIDED_SLICE: a strided window of each axis; shrunk axes are dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct StridedSlice {
    /// One per input axis.
    pub axes: Vec<SliceDim>,
}

/// TensorFlow's STRIDED_SLICE masks (bit `i` is axis `i`), as TFLite and SavedModels hold them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TfSliceMasks {
    pub begin: i64,
    pub end: i64,
    pub shrink: i64,
    pub ellipsis: i64,
    pub new_axis: i64,
    /// `end` is an offset from `begin` (TFLite's `offset` option).
    pub offset: bool,
}

impl StridedSlice {
    /// From TensorFlow's operands and masks over an input of `rank` axes; axes past the given
    /// values are taken whole. Ellipsis and new-axis masks are not supported.
    pub fn from_tf(rank: usize, begin: &[i64], end: &[i64], strides: &[i64], m: TfSliceMasks) -> Result<Self, String> {
        if m.ellipsis != 0 || m.new_axis != 0 {
            return Err("STRIDED_SLICE with an ellipsis or new-axis mask is not supported".into());
        }
        if begin.len() > rank || end.len() != begin.len() || strides.len() != begin.len() {
            return Err(format!(
                "begin, end and strides have {}, {} and {} values for rank {rank}",
                begin.len(),
                end.len(),
                strides.len()
            ));
        }
        let bit = |mask: i64, i: usize| i < 63 && mask & (1 << i) != 0;
        let axes: Vec<SliceDim> = (0..rank)
            .map(|i| {
                if i >= begin.len() {
                    return SliceDim::ALL;
                }
                let shrink = bit(m.shrink, i);
                let stop = if m.offset { begin[i].saturating_add(end[i]) } else { end[i] };
                SliceDim {
                    begin: (shrink || !bit(m.begin, i)).then_some(begin[i]),
                    end: (!shrink && !bit(m.end, i)).then_some(stop),
                    stride: strides[i],
                    shrink,
                }
            })
            .collect();
        if axes.iter().any(|a| a.stride == 0 && !a.shrink) {
            return Err("a stride is 0".into());
        }
        Ok(StridedSlice { axes })
    }
}

/// How a [`Resize`] samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    /// RESIZE_NEAREST_NEIGHBOR.
    NearestNeighbor,
    /// RESIZE_BILINEAR.
    Bilinear,
}

/// GATHER along `axis` with the indices of input 1 (int32 or int64; TFLite's `batch_dims` 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Gather {
    pub axis: usize,
}

/// TILE: dimension `d` repeated `multiples[d]` times.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    pub multiples: Vec<usize>,
}

/// DEPTH_TO_SPACE / SPACE_TO_DEPTH on NHWC tensors, TensorFlow's channel order (the block's
/// row, then column, then the channel).
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceDepth {
    pub block: usize,
}

/// How MIRROR_PAD mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorMode {
    /// Without the edge element (`[1 2 3]` padded by 2: `3 2 | 1 2 3 | 2 1`).
    Reflect,
    /// With the edge element (`2 1 | 1 2 3 | 3 2`).
    Symmetric,
}

/// MIRROR_PAD: [before, after] per dimension, mirrored.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorPad {
    pub paddings: Vec<[usize; 2]>,
    pub mode: MirrorMode,
}

/// RESIZE_*: an NHWC tensor resampled to `size` (height, width).
#[derive(Debug, Clone, PartialEq)]
pub struct Resize {
    pub mode: ResizeMode,
    /// [height, width], each >= 1.
    pub size: [usize; 2],
    pub align_corners: bool,
    pub half_pixel_centers: bool,
}

impl Resize {
    /// The input index output index `out` reads along an axis of `input` elements resized to
    /// `output` (`reference_ops::GetNearestNeighbor`, float arithmetic as the kernel's).
    pub fn nearest(&self, out: usize, input: usize, output: usize) -> usize {
        let scale = if self.align_corners && output > 1 {
            (input as f32 - 1.0) / (output as f32 - 1.0)
        } else {
            input as f32 / output as f32
        };
        let offset = if self.half_pixel_centers { 0.5f32 } else { 0.0 };
        let v = (out as f32 + offset) * scale;
        let i = if self.align_corners { v.round() as i64 } else { v.floor() as i64 };
        let i = i.min(input as i64 - 1);
        let i = if self.half_pixel_centers { i.max(0) } else { i };
        i.max(0) as usize
    }
}

/// The closed operator enum.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    FullyConnected(FullyConnected),
    Conv2d(Conv2d),
    DepthwiseConv2d(DepthwiseConv2d),
    TransposeConv2d(TransposeConv2d),
    BatchMatMul(BatchMatMul),
    Binary(Binary),
    Pool2d(Pool2d),
    Mean(Mean),
    /// Sum over `axes` (SUM / ReduceSum / tf.Sum): the same attributes as [`Mean`].
    Sum(Mean),
    Reshape(Reshape),
    Transpose(Transpose),
    Concatenation(Concatenation),
    Pad(Pad),
    StridedSlice(StridedSlice),
    Resize(Resize),
    Gather(Gather),
    Tile(Tile),
    DepthToSpace(SpaceDepth),
    SpaceToDepth(SpaceDepth),
    MirrorPad(MirrorPad),
    /// PRELU: `x` where `x >= 0`, else `x · alpha` (alpha, input 1, broadcast against x).
    Prelu,
    Softmax(Softmax),
    /// LOG_SOFTMAX over the last axis.
    LogSoftmax,
    LocalResponseNorm(LocalResponseNorm),
    Unary(Unary),
    /// float → integer with the output tensor's quantization (or integer → integer requantize).
    Quantize,
    /// integer or f16 → f32.
    Dequantize,
    /// A sparse constant made dense (TFLite's DENSIFY): its input's data is already dense in
    /// the IR (`Tensor::sparse` keeps the stored form), so this is a copy.
    Densify,
    Opaque(Opaque),
}

/// How many inputs and outputs an op takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arity {
    pub min_inputs: usize,
    /// `usize::MAX` for variadic ops.
    pub max_inputs: usize,
    pub outputs: usize,
}

/// Inference result for one output: dtype (`None` means "as declared on the tensor") and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    pub dtype: Option<DType>,
    pub shape: Shape,
}

/// A shape or dtype rule of an op was broken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InferError(pub String);

fn bad<T>(msg: impl Into<String>) -> Result<T, InferError> {
    Err(InferError(msg.into()))
}

/// Input metadata seen by inference.
pub type InferInput<'a> = Option<(DType, &'a Shape)>;

/// Define [`OpKind`] and its list from one list of names.
macro_rules! op_kinds {
    ($($kind:ident),* $(,)?) => {
        /// Every op of the IR by name, each binary, unary and pool kind on its own. [`Op::kind`]
        /// maps every op here (its match has no wildcard), and [`OpKind::ALL`] is generated from
        /// this enum: the list the test harness requires conformance coverage for cannot fall
        /// behind the IR.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum OpKind {
            $($kind),*
        }

        impl OpKind {
            pub const ALL: &'static [OpKind] = &[$(OpKind::$kind),*];

            /// The stable name ([`Op::name`]).
            pub fn name(self) -> &'static str {
                match self {
                    $(OpKind::$kind => stringify!($kind)),*
                }
            }
        }
    };
}

op_kinds!(
    FullyConnected,
    Conv2d,
    DepthwiseConv2d,
    TransposeConv2d,
    BatchMatMul,
    Add,
    Sub,
    Mul,
    Maximum,
    Minimum,
    Div,
    SquaredDifference,
    MaxPool2d,
    AveragePool2d,
    Mean,
    Sum,
    Reshape,
    Transpose,
    Concatenation,
    Pad,
    StridedSlice,
    ResizeNearestNeighbor,
    ResizeBilinear,
    Gather,
    Tile,
    DepthToSpace,
    SpaceToDepth,
    MirrorPad,
    Prelu,
    Softmax,
    LogSoftmax,
    LocalResponseNorm,
    Relu,
    Relu6,
    Logistic,
    Tanh,
    Exp,
    Sqrt,
    Neg,
    Abs,
    ReluN1To1,
    HardSwish,
    Elu,
    Gelu,
    GeluTanh,
    Rsqrt,
    Erf,
    Erfc,
    Quantize,
    Dequantize,
    Densify,
    Opaque,
);

impl Op {
    /// Stable op name used by the printer, errors and the CLI.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Which of the IR's ops this is (binary, unary and pool kinds apart).
    pub fn kind(&self) -> OpKind {
        match self {
            Op::FullyConnected(_) => OpKind::FullyConnected,
            Op::Conv2d(_) => OpKind::Conv2d,
            Op::DepthwiseConv2d(_) => OpKind::DepthwiseConv2d,
            Op::TransposeConv2d(_) => OpKind::TransposeConv2d,
            Op::BatchMatMul(_) => OpKind::BatchMatMul,
            Op::Binary(b) => match b.kind {
                BinaryKind::Add => OpKind::Add,
                BinaryKind::Sub => OpKind::Sub,
                BinaryKind::Mul => OpKind::Mul,
                BinaryKind::Maximum => OpKind::Maximum,
                BinaryKind::Minimum => OpKind::Minimum,
                BinaryKind::Div => OpKind::Div,
                BinaryKind::SquaredDifference => OpKind::SquaredDifference,
            },
            Op::Pool2d(p) => match p.kind {
                PoolKind::Max => OpKind::MaxPool2d,
                PoolKind::Average => OpKind::AveragePool2d,
            },
            Op::Mean(_) => OpKind::Mean,
            Op::Sum(_) => OpKind::Sum,
            Op::Reshape(_) => OpKind::Reshape,
            Op::Transpose(_) => OpKind::Transpose,
            Op::Concatenation(_) => OpKind::Concatenation,
            Op::Pad(_) => OpKind::Pad,
            Op::StridedSlice(_) => OpKind::StridedSlice,
            Op::Resize(r) => match r.mode {
                ResizeMode::NearestNeighbor => OpKind::ResizeNearestNeighbor,
                ResizeMode::Bilinear => OpKind::ResizeBilinear,
            },
            Op::Softmax(_) => OpKind::Softmax,
            Op::LogSoftmax => OpKind::LogSoftmax,
            Op::LocalResponseNorm(_) => OpKind::LocalResponseNorm,
            Op::Unary(u) => match u.kind {
                UnaryKind::Relu => OpKind::Relu,
                UnaryKind::Relu6 => OpKind::Relu6,
                UnaryKind::Logistic => OpKind::Logistic,
                UnaryKind::Tanh => OpKind::Tanh,
                UnaryKind::Exp => OpKind::Exp,
                UnaryKind::Sqrt => OpKind::Sqrt,
                UnaryKind::Neg => OpKind::Neg,
                UnaryKind::Abs => OpKind::Abs,
                UnaryKind::ReluN1To1 => OpKind::ReluN1To1,
                UnaryKind::HardSwish => OpKind::HardSwish,
                UnaryKind::Elu => OpKind::Elu,
                UnaryKind::Gelu => OpKind::Gelu,
                UnaryKind::GeluTanh => OpKind::GeluTanh,
                UnaryKind::Rsqrt => OpKind::Rsqrt,
                UnaryKind::Erf => OpKind::Erf,
                UnaryKind::Erfc => OpKind::Erfc,
            },
            Op::Quantize => OpKind::Quantize,
            Op::Dequantize => OpKind::Dequantize,
            Op::Densify => OpKind::Densify,
            Op::Gather(_) => OpKind::Gather,
            Op::Tile(_) => OpKind::Tile,
            Op::DepthToSpace(_) => OpKind::DepthToSpace,
            Op::SpaceToDepth(_) => OpKind::SpaceToDepth,
            Op::MirrorPad(_) => OpKind::MirrorPad,
            Op::Prelu => OpKind::Prelu,
            Op::Opaque(_) => OpKind::Opaque,
        }
    }

    pub fn arity(&self) -> Arity {
        let a = |min_inputs, max_inputs| Arity { min_inputs, max_inputs, outputs: 1 };
        match self {
            Op::FullyConnected(_) | Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::TransposeConv2d(_) => a(2, 3),
            Op::Binary(_) | Op::Gather(_) | Op::Prelu | Op::BatchMatMul(_) => a(2, 2),
            // PAD, or PADV2 with the value as input 1.
            Op::Pad(_) => a(1, 2),
            Op::Concatenation(_) => a(1, usize::MAX),
            Op::Opaque(_) => Arity { min_inputs: 0, max_inputs: usize::MAX, outputs: usize::MAX },
            Op::Pool2d(_)
            | Op::Mean(_)
            | Op::Sum(_)
            | Op::Reshape(_)
            | Op::Transpose(_)
            | Op::StridedSlice(_)
            | Op::Resize(_)
            | Op::Softmax(_)
            | Op::LogSoftmax
            | Op::LocalResponseNorm(_)
            | Op::Unary(_)
            | Op::Quantize
            | Op::Dequantize
            | Op::Densify
            | Op::Tile(_)
            | Op::DepthToSpace(_)
            | Op::SpaceToDepth(_)
            | Op::MirrorPad(_) => a(1, 1),
        }
    }

    /// The fused activation, for ops that have one.
    pub fn fused_activation(&self) -> Option<Activation> {
        match self {
            Op::FullyConnected(o) => Some(o.activation),
            Op::Conv2d(o) => Some(o.activation),
            Op::DepthwiseConv2d(o) => Some(o.activation),
            Op::TransposeConv2d(o) => Some(o.activation),
            Op::Binary(o) if o.kind.has_activation() => Some(o.activation),
            Op::Pool2d(o) => Some(o.activation),
            Op::Concatenation(o) => Some(o.activation),
            _ => None,
        }
    }

    /// Set the fused activation; returns false when the op has none.
    pub fn set_fused_activation(&mut self, act: Activation) -> bool {
        let slot = match self {
            Op::FullyConnected(o) => &mut o.activation,
            Op::Conv2d(o) => &mut o.activation,
            Op::DepthwiseConv2d(o) => &mut o.activation,
            Op::TransposeConv2d(o) => &mut o.activation,
            Op::Binary(o) if o.kind.has_activation() => &mut o.activation,
            Op::Pool2d(o) => &mut o.activation,
            Op::Concatenation(o) => &mut o.activation,
            _ => return false,
        };
        *slot = act;
        true
    }

    /// Attributes as `key=value` pairs, in a fixed order, for the printer.
    pub fn attrs(&self) -> Vec<(&'static str, String)> {
        fn pair(v: [usize; 2]) -> String {
            format!("{}x{}", v[0], v[1])
        }
        fn list<T: fmt::Display>(v: &[T]) -> String {
            let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            format!("[{}]", items.join(","))
        }
        let mut out = Vec::new();
        match self {
            Op::FullyConnected(o) => {
                out.push(("keep_num_dims", o.keep_num_dims.to_string()));
                if o.asymmetric_inputs {
                    out.push(("asymmetric_inputs", "true".to_string()));
                }
            }
            Op::Conv2d(o) => {
                out.push(("padding", o.padding.name().to_string()));
                out.push(("stride", pair(o.stride)));
                out.push(("dilation", pair(o.dilation)));
            }
            Op::BatchMatMul(o) => {
                out.push(("adj_x", o.adj_x.to_string()));
                out.push(("adj_y", o.adj_y.to_string()));
            }
            Op::TransposeConv2d(o) => {
                out.push(("padding", o.padding.name().to_string()));
                out.push(("stride", pair(o.stride)));
                out.push(("output", pair(o.output)));
            }
            Op::DepthwiseConv2d(o) => {
                out.push(("padding", o.padding.name().to_string()));
                out.push(("stride", pair(o.stride)));
                out.push(("dilation", pair(o.dilation)));
                out.push(("depth_multiplier", o.depth_multiplier.to_string()));
            }
            Op::Pool2d(o) => {
                out.push(("filter", pair(o.filter)));
                out.push(("stride", pair(o.stride)));
                out.push(("padding", o.padding.name().to_string()));
            }
            Op::Mean(o) | Op::Sum(o) => {
                out.push(("axes", list(&o.axes)));
                out.push(("keep_dims", o.keep_dims.to_string()));
            }
            Op::Reshape(o) => out.push(("shape", list(&o.shape))),
            Op::Transpose(o) => out.push(("perm", list(&o.perm))),
            Op::Concatenation(o) => out.push(("axis", o.axis.to_string())),
            Op::Pad(o) => {
                let v: Vec<String> = o.paddings.iter().map(|p| format!("{}:{}", p[0], p[1])).collect();
                out.push(("paddings", format!("[{}]", v.join(","))));
            }
            Op::StridedSlice(o) => {
                let v: Vec<String> = o
                    .axes
                    .iter()
                    .map(|a| {
                        let b = a.begin.map_or("_".into(), |b| b.to_string());
                        if a.shrink {
                            format!("{b}!")
                        } else {
                            format!("{b}:{}:{}", a.end.map_or("_".into(), |e| e.to_string()), a.stride)
                        }
                    })
                    .collect();
                out.push(("axes", format!("[{}]", v.join(","))));
            }
            Op::Resize(o) => {
                out.push(("size", format!("{}x{}", o.size[0], o.size[1])));
                out.push(("align_corners", o.align_corners.to_string()));
                out.push(("half_pixel_centers", o.half_pixel_centers.to_string()));
            }
            Op::Softmax(o) => out.push(("beta", format!("{:?}", o.beta))),
            Op::LocalResponseNorm(o) => {
                out.push(("radius", o.radius.to_string()));
                out.push(("bias", format!("{:?}", o.bias)));
                out.push(("alpha", format!("{:?}", o.alpha)));
                out.push(("beta", format!("{:?}", o.beta)));
            }
            Op::Opaque(o) => {
                out.push(("op_type", o.op_type.clone()));
                out.push(("version", o.version.to_string()));
                if let Some(src) = &o.source {
                    let fields: usize = src.options.iter().map(|t| t.fields.len()).sum();
                    if fields > 0 {
                        out.push(("option_fields", fields.to_string()));
                    }
                    if !src.custom_options.is_empty() {
                        out.push(("custom_options", format!("{} B", src.custom_options.len())));
                    }
                }
            }
            Op::Gather(o) => out.push(("axis", o.axis.to_string())),
            Op::Tile(o) => {
                let v: Vec<String> = o.multiples.iter().map(|m| m.to_string()).collect();
                out.push(("multiples", format!("[{}]", v.join(","))));
            }
            Op::DepthToSpace(o) | Op::SpaceToDepth(o) => out.push(("block", o.block.to_string())),
            Op::MirrorPad(o) => {
                let v: Vec<String> = o.paddings.iter().map(|p| format!("{}:{}", p[0], p[1])).collect();
                out.push(("paddings", format!("[{}]", v.join(","))));
                out.push(("mode", format!("{:?}", o.mode).to_lowercase()));
            }
            Op::Binary(_) | Op::Unary(_) | Op::Quantize | Op::Dequantize | Op::Densify | Op::Prelu | Op::LogSoftmax => {
            }
        }
        if let Some(act) = self.fused_activation()
            && act != Activation::None
        {
            out.push(("activation", act.name().to_string()));
        }
        out
    }

    /// Output dtypes and shapes from input dtypes and shapes. `inputs[i]` is `None` for an
    /// omitted optional input.
    pub fn infer(&self, inputs: &[InferInput<'_>]) -> Result<Vec<Inferred>, InferError> {
        let ar = self.arity();
        if inputs.len() < ar.min_inputs || inputs.len() > ar.max_inputs {
            return bad(format!(
                "{} takes {}..{} inputs, got {}",
                self.name(),
                ar.min_inputs,
                if ar.max_inputs == usize::MAX { "n".to_string() } else { ar.max_inputs.to_string() },
                inputs.len()
            ));
        }
        let get = |i: usize| -> Result<(DType, &Shape), InferError> {
            match inputs.get(i) {
                Some(Some(x)) => Ok(*x),
                _ => bad(format!("{} input {i} is required", self.name())),
            }
        };
        let one = |dtype: Option<DType>, shape: Shape| Ok(vec![Inferred { dtype, shape }]);
        match self {
            Op::FullyConnected(o) => {
                let (dt, x) = get(0)?;
                let (_, w) = get(1)?;
                if w.rank() != 2 {
                    return bad(format!("FullyConnected weights must be rank 2, got {w}"));
                }
                let units = w.dim(0).and_then(Dim::fixed);
                let depth = match w.dim(1) {
                    Some(Dim::Fixed(d)) if d > 0 => d,
                    _ => return bad(format!("FullyConnected weights {w} need a known, non-zero input depth")),
                };
                if let Some(Some((_, b))) = inputs.get(2)
                    && (b.rank() != 1 || (units.is_some() && b.dim(0) != units.map(Dim::Fixed)))
                {
                    return bad(format!("FullyConnected bias {b} does not match weights {w}"));
                }
                if x.rank() == 0 {
                    return bad("FullyConnected input must have rank >= 1");
                }
                let units_dim = units.map_or(Dim::Dynamic, Dim::Fixed);
                if o.keep_num_dims {
                    let last = x.dims()[x.rank() - 1];
                    if last != Dim::Fixed(depth) && last != Dim::Dynamic {
                        return bad(format!("FullyConnected keep_num_dims input {x} must end in {depth}"));
                    }
                    let mut dims = x.dims()[..x.rank() - 1].to_vec();
                    dims.push(units_dim);
                    return one(Some(dt), Shape::new(dims));
                }
                let batch = match x.num_elements() {
                    Some(n) => {
                        if n % depth != 0 {
                            return bad(format!("FullyConnected input {x} is not a multiple of input depth {depth}"));
                        }
                        Dim::Fixed(n / depth)
                    }
                    None => Dim::Dynamic,
                };
                one(Some(dt), Shape::new(vec![batch, units_dim]))
            }
            Op::BatchMatMul(o) => {
                let (dt, a) = get(0)?;
                let (_, b) = get(1)?;
                if a.rank() < 2 || b.rank() < 2 {
                    return bad(format!("BatchMatMul needs rank >= 2 operands, got {a} and {b}"));
                }
                let (ad, bd) = (a.dims(), b.dims());
                let (m, ka) =
                    if o.adj_x { (ad[ad.len() - 1], ad[ad.len() - 2]) } else { (ad[ad.len() - 2], ad[ad.len() - 1]) };
                let (kb, n) =
                    if o.adj_y { (bd[bd.len() - 1], bd[bd.len() - 2]) } else { (bd[bd.len() - 2], bd[bd.len() - 1]) };
                if let (Dim::Fixed(x), Dim::Fixed(y)) = (ka, kb)
                    && x != y
                {
                    return bad(format!("BatchMatMul contracts {x} against {y} ({a} · {b})"));
                }
                let batch =
                    broadcast(&Shape::new(ad[..ad.len() - 2].to_vec()), &Shape::new(bd[..bd.len() - 2].to_vec()))
                        .ok_or_else(|| {
                            InferError(format!("BatchMatMul cannot broadcast the batch axes of {a} and {b}"))
                        })?;
                let mut dims = batch.dims().to_vec();
                dims.push(m);
                dims.push(n);
                one(Some(dt), Shape::new(dims))
            }
            Op::TransposeConv2d(o) => {
                let (dt, x) = get(0)?;
                let (_, w) = get(1)?;
                check_rank(x, 4, "TransposeConv2d input")?;
                check_rank(w, 4, "TransposeConv2d weights")?;
                if let (Dim::Fixed(c), Dim::Fixed(ic)) = (x.dims()[3], w.dims()[3])
                    && c != ic
                {
                    return bad(format!("TransposeConv2d input {x} and weights {w} disagree on input channels"));
                }
                if o.stride.contains(&0) || o.output.contains(&0) {
                    return bad("TransposeConv2d strides and output size must be >= 1");
                }
                // As LiteRT's prepare: the output, convolved back, must give the input's size.
                for i in 0..2 {
                    if let (Dim::Fixed(n), Dim::Fixed(k)) = (x.dims()[i + 1], w.dims()[i + 1]) {
                        let (size, s) = (o.output[i] as i64, o.stride[i] as i64);
                        let back = match o.padding {
                            Padding::Same => (size + s - 1) / s,
                            Padding::Valid => (size - k as i64 + s) / s,
                        };
                        if back != n as i64 {
                            return bad(format!(
                                "TransposeConv2d output {:?} with kernel {k} and stride {s} ({}) convolves back to {back}, not the input's {n}",
                                o.output,
                                o.padding.name()
                            ));
                        }
                    }
                }
                one(
                    Some(dt),
                    Shape::new(vec![x.dims()[0], Dim::Fixed(o.output[0]), Dim::Fixed(o.output[1]), w.dims()[0]]),
                )
            }
            Op::Conv2d(o) => {
                let (dt, x) = get(0)?;
                let (_, w) = get(1)?;
                check_rank(x, 4, "Conv2d input")?;
                check_rank(w, 4, "Conv2d weights")?;
                let (oc, kh, kw, ic) = (w.dims()[0], w.dims()[1], w.dims()[2], w.dims()[3]);
                let (Dim::Fixed(kh), Dim::Fixed(kw), Dim::Fixed(ic)) = (kh, kw, ic) else {
                    return bad(format!("Conv2d weights {w} need known kernel size and input channels"));
                };
                if ic == 0 {
                    return bad("Conv2d weights have zero input channels");
                }
                if let (Dim::Fixed(c), Dim::Fixed(o_c)) = (x.dims()[3], oc) {
                    if c % ic != 0 {
                        return bad(format!(
                            "Conv2d input channels {c} are not a multiple of weight input channels {ic}"
                        ));
                    }
                    let groups = c / ic;
                    if groups == 0 || o_c % groups != 0 {
                        return bad(format!("Conv2d output channels {o_c} are not a multiple of the {groups} groups"));
                    }
                }
                check_bias(inputs, oc, "Conv2d")?;
                let (h, wd) = spatial(x, [kh, kw], o.stride, o.dilation, o.padding, "Conv2d")?;
                one(Some(dt), Shape::new(vec![x.dims()[0], h, wd, oc]))
            }
            Op::DepthwiseConv2d(o) => {
                let (dt, x) = get(0)?;
                let (_, w) = get(1)?;
                check_rank(x, 4, "DepthwiseConv2d input")?;
                check_rank(w, 4, "DepthwiseConv2d weights")?;
                let (Dim::Fixed(1), Dim::Fixed(kh), Dim::Fixed(kw), oc) =
                    (w.dims()[0], w.dims()[1], w.dims()[2], w.dims()[3])
                else {
                    return bad(format!("DepthwiseConv2d weights {w} must be [1,H,W,C*M] with known kernel size"));
                };
                if o.depth_multiplier == 0 {
                    return bad("DepthwiseConv2d depth_multiplier must be >= 1");
                }
                if let (Dim::Fixed(c), Dim::Fixed(oc)) = (x.dims()[3], oc)
                    && c.checked_mul(o.depth_multiplier) != Some(oc)
                {
                    return bad(format!(
                        "DepthwiseConv2d weights have {oc} channels, input {c} x depth_multiplier {}",
                        o.depth_multiplier
                    ));
                }
                check_bias(inputs, oc, "DepthwiseConv2d")?;
                let (h, wd) = spatial(x, [kh, kw], o.stride, o.dilation, o.padding, "DepthwiseConv2d")?;
                one(Some(dt), Shape::new(vec![x.dims()[0], h, wd, oc]))
            }
            Op::Binary(_) => {
                let (da, a) = get(0)?;
                let (db, b) = get(1)?;
                if da != db {
                    return bad(format!("{} inputs have different dtypes {da} and {db}", self.name()));
                }
                one(
                    Some(da),
                    broadcast(a, b)
                        .ok_or_else(|| InferError(format!("{} cannot broadcast {a} with {b}", self.name())))?,
                )
            }
            Op::Pool2d(o) => {
                let (dt, x) = get(0)?;
                check_rank(x, 4, self.name())?;
                let (h, w) = spatial(x, o.filter, o.stride, [1, 1], o.padding, self.name())?;
                one(Some(dt), Shape::new(vec![x.dims()[0], h, w, x.dims()[3]]))
            }
            Op::Mean(o) | Op::Sum(o) => {
                let (dt, x) = get(0)?;
                let mut seen = vec![false; x.rank()];
                for &a in &o.axes {
                    match seen.get_mut(a) {
                        Some(s) if !*s => *s = true,
                        Some(_) => return bad(format!("{} axis {a} repeated", self.name())),
                        None => return bad(format!("{} axis {a} is outside rank {}", self.name(), x.rank())),
                    }
                }
                let mut dims = Vec::new();
                for (i, d) in x.dims().iter().enumerate() {
                    if seen[i] {
                        if o.keep_dims {
                            dims.push(Dim::Fixed(1));
                        }
                    } else {
                        dims.push(*d);
                    }
                }
                one(Some(dt), Shape::new(dims))
            }
            Op::Reshape(o) => {
                let (dt, x) = get(0)?;
                one(Some(dt), reshape_shape(x, &o.shape)?)
            }
            Op::Transpose(o) => {
                let (dt, x) = get(0)?;
                if o.perm.len() != x.rank() {
                    return bad(format!("Transpose perm {:?} does not match rank {}", o.perm, x.rank()));
                }
                let mut seen = vec![false; x.rank()];
                let mut dims = Vec::with_capacity(x.rank());
                for &p in &o.perm {
                    match seen.get_mut(p) {
                        Some(s) if !*s => *s = true,
                        _ => return bad(format!("Transpose perm {:?} is not a permutation", o.perm)),
                    }
                    dims.push(x.dims()[p]);
                }
                one(Some(dt), Shape::new(dims))
            }
            Op::Concatenation(o) => {
                let (dt, first) = get(0)?;
                if o.axis >= first.rank() {
                    return bad(format!("Concatenation axis {} is outside rank {}", o.axis, first.rank()));
                }
                let mut dims = first.dims().to_vec();
                for i in 1..inputs.len() {
                    let (d2, s) = get(i)?;
                    if d2 != dt {
                        return bad(format!("Concatenation inputs have different dtypes {dt} and {d2}"));
                    }
                    if s.rank() != first.rank() {
                        return bad(format!(
                            "Concatenation input {i} has rank {}, expected {}",
                            s.rank(),
                            first.rank()
                        ));
                    }
                    for (k, (acc, d)) in dims.iter_mut().zip(s.dims()).enumerate() {
                        if k == o.axis {
                            *acc = match (*acc, *d) {
                                (Dim::Fixed(a), Dim::Fixed(b)) => Dim::Fixed(
                                    a.checked_add(b)
                                        .ok_or_else(|| InferError("Concatenation size overflows".into()))?,
                                ),
                                _ => Dim::Dynamic,
                            };
                        } else {
                            *acc = merge_dim(*acc, *d).ok_or_else(|| {
                                InferError(format!("Concatenation input {i} has shape {s}, incompatible with {first}"))
                            })?;
                        }
                    }
                }
                one(Some(dt), Shape::new(dims))
            }
            Op::Pad(o) => {
                let (dt, x) = get(0)?;
                if o.paddings.len() != x.rank() {
                    return bad(format!("Pad has {} paddings for rank {}", o.paddings.len(), x.rank()));
                }
                // PADV2: the value to pad with, one element of the input's type.
                if inputs.len() > 1 {
                    let (vt, v) = get(1)?;
                    if vt != dt || v.num_elements() != Some(1) {
                        return bad(format!("Pad value must be one {dt}, got {vt}{v}"));
                    }
                }
                let mut dims = Vec::with_capacity(x.rank());
                for (d, p) in x.dims().iter().zip(&o.paddings) {
                    dims.push(match d {
                        Dim::Fixed(n) => Dim::Fixed(
                            n.checked_add(p[0])
                                .and_then(|v| v.checked_add(p[1]))
                                .ok_or_else(|| InferError("Pad size overflows".into()))?,
                        ),
                        Dim::Dynamic => Dim::Dynamic,
                    });
                }
                one(Some(dt), Shape::new(dims))
            }
            Op::StridedSlice(o) => {
                let (dt, x) = get(0)?;
                if o.axes.len() != x.rank() {
                    return bad(format!("StridedSlice has {} axes for rank {}", o.axes.len(), x.rank()));
                }
                let mut dims = Vec::with_capacity(x.rank());
                for (i, (d, a)) in x.dims().iter().zip(&o.axes).enumerate() {
                    if a.stride == 0 && !a.shrink {
                        return bad(format!("StridedSlice axis {i} has stride 0"));
                    }
                    match d {
                        Dim::Fixed(n) => {
                            let (_, count) = a.resolve(*n).ok_or_else(|| {
                                InferError(format!("StridedSlice axis {i}: index {:?} is outside {n}", a.begin))
                            })?;
                            if !a.shrink {
                                dims.push(Dim::Fixed(count));
                            }
                        }
                        Dim::Dynamic if a.shrink => {}
                        Dim::Dynamic => dims.push(Dim::Dynamic),
                    }
                }
                one(Some(dt), Shape::new(dims))
            }
            Op::Resize(o) => {
                let (dt, x) = get(0)?;
                if x.rank() != 4 {
                    return bad(format!("Resize needs an NHWC input of rank 4, got {x}"));
                }
                if o.size[0] == 0 || o.size[1] == 0 {
                    return bad(format!("Resize to {}x{}: sizes must be >= 1", o.size[0], o.size[1]));
                }
                if o.align_corners && o.half_pixel_centers {
                    return bad("Resize with both align_corners and half_pixel_centers");
                }
                let d = x.dims();
                one(Some(dt), Shape::new(vec![d[0], Dim::Fixed(o.size[0]), Dim::Fixed(o.size[1]), d[3]]))
            }
            Op::Softmax(_) => {
                let (dt, x) = get(0)?;
                if x.rank() == 0 {
                    return bad("Softmax input must have rank >= 1");
                }
                one(Some(dt), x.clone())
            }
            Op::LogSoftmax => {
                let (dt, x) = get(0)?;
                if x.rank() == 0 {
                    return bad("LogSoftmax input must have rank >= 1");
                }
                one(Some(dt), x.clone())
            }
            Op::LocalResponseNorm(_) => {
                let (dt, x) = get(0)?;
                if x.rank() != 4 {
                    return bad(format!("LocalResponseNorm input must be 4-D, got {x}"));
                }
                one(Some(dt), x.clone())
            }
            Op::Unary(_) => {
                let (dt, x) = get(0)?;
                one(Some(dt), x.clone())
            }
            Op::Quantize => {
                let (_, x) = get(0)?;
                one(None, x.clone())
            }
            Op::Dequantize => {
                let (_, x) = get(0)?;
                one(Some(DType::F32), x.clone())
            }
            Op::Densify => {
                let (dt, x) = get(0)?;
                one(Some(dt), x.clone())
            }
            Op::Gather(o) => {
                let (dt, x) = get(0)?;
                let (it, idx) = get(1)?;
                if !matches!(it, DType::I32 | DType::I64) {
                    return bad(format!("Gather indices must be int32 or int64, got {it}"));
                }
                if o.axis >= x.rank() {
                    return bad(format!("Gather axis {} is outside rank {}", o.axis, x.rank()));
                }
                let d = x.dims();
                let mut dims = d[..o.axis].to_vec();
                dims.extend_from_slice(idx.dims());
                dims.extend_from_slice(&d[o.axis + 1..]);
                if dims.len() > crate::MAX_RANK {
                    return bad(format!("Gather output has rank {} (max {})", dims.len(), crate::MAX_RANK));
                }
                one(Some(dt), Shape::new(dims))
            }
            Op::Tile(o) => {
                let (dt, x) = get(0)?;
                if o.multiples.len() != x.rank() {
                    return bad(format!("Tile has {} multiples for rank {}", o.multiples.len(), x.rank()));
                }
                let mut dims = Vec::with_capacity(x.rank());
                for (d, &m) in x.dims().iter().zip(&o.multiples) {
                    dims.push(match d {
                        Dim::Fixed(n) => {
                            Dim::Fixed(n.checked_mul(m).ok_or_else(|| InferError("Tile size overflows".into()))?)
                        }
                        Dim::Dynamic => Dim::Dynamic,
                    });
                }
                one(Some(dt), Shape::new(dims))
            }
            Op::DepthToSpace(o) | Op::SpaceToDepth(o) => {
                let (dt, x) = get(0)?;
                let to_space = matches!(self, Op::DepthToSpace(_));
                let name = if to_space { "DepthToSpace" } else { "SpaceToDepth" };
                if x.rank() != 4 || o.block < 1 {
                    return bad(format!("{name} needs an NHWC input and a block >= 1, got {x} and {}", o.block));
                }
                let b = o.block;
                let bb = b.checked_mul(b).ok_or_else(|| InferError("block size overflows".into()))?;
                let d = x.dims();
                let fixed = |i: usize| d[i].fixed();
                let (h, w, c) = (fixed(1), fixed(2), fixed(3));
                let ok = |v: Option<usize>, k: usize| v.is_none_or(|v| v % k == 0);
                let map = |v: Option<usize>, f: &dyn Fn(usize) -> Option<usize>| match v {
                    Some(v) => f(v).map(Dim::Fixed).ok_or_else(|| InferError(format!("{name} size overflows"))),
                    None => Ok(Dim::Dynamic),
                };
                let dims = if to_space {
                    if !ok(c, bb) {
                        return bad(format!("DepthToSpace: {x} has channels not divisible by {bb}"));
                    }
                    vec![
                        d[0],
                        map(h, &|v| v.checked_mul(b))?,
                        map(w, &|v| v.checked_mul(b))?,
                        map(c, &|v| Some(v / bb))?,
                    ]
                } else {
                    if !ok(h, b) || !ok(w, b) {
                        return bad(format!("SpaceToDepth: {x} has a height or width not divisible by {b}"));
                    }
                    vec![d[0], map(h, &|v| Some(v / b))?, map(w, &|v| Some(v / b))?, map(c, &|v| v.checked_mul(bb))?]
                };
                one(Some(dt), Shape::new(dims))
            }
            Op::MirrorPad(o) => {
                let (dt, x) = get(0)?;
                if o.paddings.len() != x.rank() {
                    return bad(format!("MirrorPad has {} paddings for rank {}", o.paddings.len(), x.rank()));
                }
                let mut dims = Vec::with_capacity(x.rank());
                for (d, p) in x.dims().iter().zip(&o.paddings) {
                    dims.push(match d {
                        Dim::Fixed(n) => {
                            // A mirror holds at most the dimension (without its edge: one less).
                            let most = if o.mode == MirrorMode::Reflect { n.saturating_sub(1) } else { *n };
                            if p[0] > most || p[1] > most {
                                return bad(format!(
                                    "MirrorPad of [{}, {}] on a dimension of {n}: at most {most} in {:?} mode",
                                    p[0], p[1], o.mode
                                ));
                            }
                            Dim::Fixed(n + p[0] + p[1])
                        }
                        Dim::Dynamic => Dim::Dynamic,
                    });
                }
                one(Some(dt), Shape::new(dims))
            }
            Op::Prelu => {
                let (dt, x) = get(0)?;
                let (_, alpha) = get(1)?;
                let s =
                    broadcast(x, alpha).ok_or_else(|| InferError(format!("Prelu cannot broadcast {x} and {alpha}")))?;
                one(Some(dt), s)
            }
            Op::Opaque(o) => {
                bad(format!("unsupported op {} (version {}) has no shape inference", o.op_type, o.version))
            }
        }
    }
}

fn check_rank(s: &Shape, rank: usize, what: &str) -> Result<(), InferError> {
    if s.rank() != rank {
        return bad(format!("{what} must be rank {rank}, got {s}"));
    }
    Ok(())
}

fn check_bias(inputs: &[InferInput<'_>], oc: Dim, op: &str) -> Result<(), InferError> {
    if let Some(Some((_, b))) = inputs.get(2)
        && (b.rank() != 1 || merge_dim(b.dims()[0], oc).is_none())
    {
        return bad(format!("{op} bias {b} does not match {oc} output channels"));
    }
    Ok(())
}

fn spatial(
    x: &Shape,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: Padding,
    op: &str,
) -> Result<(Dim, Dim), InferError> {
    if stride.contains(&0) || dilation.contains(&0) || kernel.contains(&0) {
        return bad(format!("{op} kernel, strides and dilations must be >= 1"));
    }
    let mut out = [Dim::Dynamic; 2];
    for i in 0..2 {
        if let Dim::Fixed(n) = x.dims()[1 + i] {
            let (o, _) = padding.compute(n, kernel[i], stride[i], dilation[i]).ok_or_else(|| {
                InferError(format!(
                    "{op} kernel {}x{} (dilation {}x{}) does not fit input {x} with {} padding",
                    kernel[0],
                    kernel[1],
                    dilation[0],
                    dilation[1],
                    padding.name()
                ))
            })?;
            out[i] = Dim::Fixed(o);
        }
    }
    Ok((out[0], out[1]))
}

fn merge_dim(a: Dim, b: Dim) -> Option<Dim> {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) if x == y => Some(a),
        (Dim::Fixed(_), Dim::Fixed(_)) => None,
        (Dim::Fixed(_), Dim::Dynamic) => Some(a),
        (Dim::Dynamic, _) => Some(b),
    }
}

/// Numpy-style broadcast of two shapes.
pub fn broadcast(a: &Shape, b: &Shape) -> Option<Shape> {
    let rank = a.rank().max(b.rank());
    let mut dims = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = if i + a.rank() >= rank { a.dims()[i + a.rank() - rank] } else { Dim::Fixed(1) };
        let db = if i + b.rank() >= rank { b.dims()[i + b.rank() - rank] } else { Dim::Fixed(1) };
        dims.push(match (da, db) {
            (Dim::Fixed(1), d) | (d, Dim::Fixed(1)) => d,
            (Dim::Fixed(x), Dim::Fixed(y)) if x == y => da,
            (Dim::Fixed(_), Dim::Fixed(_)) => return None,
            (Dim::Dynamic, d) | (d, Dim::Dynamic) => d,
        });
    }
    Some(Shape::new(dims))
}

fn reshape_shape(x: &Shape, target: &[i64]) -> Result<Shape, InferError> {
    let mut infer_at = None;
    let mut known: usize = 1;
    for (i, &d) in target.iter().enumerate() {
        if d == -1 {
            if infer_at.replace(i).is_some() {
                return bad(format!("Reshape shape {target:?} has more than one -1"));
            }
        } else if d < 0 {
            return bad(format!("Reshape shape {target:?} has a negative dimension"));
        } else {
            known = usize::try_from(d)
                .ok()
                .and_then(|d| known.checked_mul(d))
                .ok_or_else(|| InferError(format!("Reshape shape {target:?} overflows")))?;
        }
    }
    let mut dims: Vec<Dim> = target.iter().map(|&d| Dim::Fixed(d.max(0) as usize)).collect();
    match (x.num_elements(), infer_at) {
        (Some(n), Some(i)) => {
            if known == 0 || n % known != 0 {
                return bad(format!("Reshape cannot fit {n} elements of {x} into {target:?}"));
            }
            dims[i] = Dim::Fixed(n / known);
        }
        (Some(n), None) => {
            if n != known {
                return bad(format!("Reshape cannot turn {x} ({n} elements) into {target:?} ({known} elements)"));
            }
        }
        (None, Some(i)) => dims[i] = Dim::Dynamic,
        (None, None) => {}
    }
    Ok(Shape::new(dims))
}

/// Element count helper re-exported for kernels.
pub fn numel(dims: &[usize]) -> Option<usize> {
    checked_product(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_slice_from_tensorflow_and_its_errors() {
        let m = TfSliceMasks { begin: 0b01, end: 0b01, shrink: 0b10, ..Default::default() };
        let s = StridedSlice::from_tf(3, &[5, 2], &[9, 3], &[1, 1], m).unwrap();
        assert_eq!(s.axes[0], SliceDim::ALL);
        assert_eq!(s.axes[1], SliceDim { begin: Some(2), end: None, stride: 1, shrink: true });
        assert_eq!(s.axes[2], SliceDim::ALL);
        let off = TfSliceMasks { offset: true, ..Default::default() };
        assert_eq!(StridedSlice::from_tf(1, &[1], &[2], &[1], off).unwrap().axes[0].end, Some(3));
        let err = |m: TfSliceMasks, b: &[i64], st: &[i64]| StridedSlice::from_tf(2, b, b, st, m).unwrap_err();
        assert!(err(TfSliceMasks { ellipsis: 1, ..Default::default() }, &[0], &[1]).contains("ellipsis"));
        assert!(err(TfSliceMasks { new_axis: 2, ..Default::default() }, &[0], &[1]).contains("new-axis"));
        assert!(err(TfSliceMasks::default(), &[0, 0, 0], &[1, 1, 1]).contains("for rank 2"));
        assert!(err(TfSliceMasks::default(), &[0], &[0]).contains("stride is 0"));
    }

    #[test]
    fn resize_sizes_and_modes_are_checked() {
        let x = Shape::fixed(&[1, 4, 4, 2]);
        let r = |size: [usize; 2], align_corners, half_pixel_centers| {
            Op::Resize(Resize { mode: ResizeMode::NearestNeighbor, size, align_corners, half_pixel_centers })
                .infer(&[Some((DType::F32, &x))])
        };
        assert_eq!(r([8, 2], false, true).unwrap()[0].shape, Shape::fixed(&[1, 8, 2, 2]));
        assert!(r([0, 2], false, false).unwrap_err().0.contains(">= 1"));
        assert!(r([2, 2], true, true).unwrap_err().0.contains("both"));
        // GetNearestNeighbor: 4 -> 8 half-pixel reads 0,0,1,1,2,2,3,3; 4 -> 3 aligned reads 0,2,3.
        let op =
            |a, h| Resize { mode: ResizeMode::NearestNeighbor, size: [1, 1], align_corners: a, half_pixel_centers: h };
        let idx = |o: &Resize, out: usize| (0..out).map(|i| o.nearest(i, 4, out)).collect::<Vec<_>>();
        assert_eq!(idx(&op(false, true), 8), vec![0, 0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(idx(&op(true, false), 3), vec![0, 2, 3]);
    }

    fn s(d: &[usize]) -> Shape {
        Shape::fixed(d)
    }

    #[test]
    fn same_padding_puts_odd_pixel_after() {
        assert_eq!(Padding::Same.compute(5, 2, 2, 1), Some((3, 0)));
        assert_eq!(Padding::Same.compute(4, 3, 1, 1), Some((4, 1)));
        assert_eq!(Padding::Same.compute(4, 4, 1, 1), Some((4, 1)));
        assert_eq!(Padding::Valid.compute(5, 3, 2, 1), Some((2, 0)));
        assert_eq!(Padding::Valid.compute(2, 3, 1, 1), None);
        assert_eq!(Padding::Valid.compute(7, 3, 1, 3), Some((1, 0)));
    }

    #[test]
    fn conv_inference() {
        let op = Op::Conv2d(Conv2d {
            padding: Padding::Same,
            stride: [2, 2],
            dilation: [1, 1],
            activation: Activation::Relu,
        });
        let x = s(&[1, 8, 8, 3]);
        let w = s(&[4, 3, 3, 3]);
        let out = op.infer(&[Some((DType::F32, &x)), Some((DType::F32, &w))]).unwrap();
        assert_eq!(out[0].shape, s(&[1, 4, 4, 4]));
        let w_bad = s(&[4, 3, 3, 2]);
        assert!(op.infer(&[Some((DType::F32, &x)), Some((DType::F32, &w_bad))]).is_err());
    }

    #[test]
    fn broadcasting_and_reshape() {
        assert_eq!(broadcast(&s(&[2, 1, 3]), &s(&[4, 1])), Some(s(&[2, 4, 3])));
        assert_eq!(broadcast(&s(&[2, 3]), &s(&[4])), None);
        let r = Op::Reshape(Reshape { shape: vec![-1, 6] });
        assert_eq!(r.infer(&[Some((DType::F32, &s(&[2, 3, 2])))]).unwrap()[0].shape, s(&[2, 6]));
        let r = Op::Reshape(Reshape { shape: vec![-1, 5] });
        assert!(r.infer(&[Some((DType::F32, &s(&[2, 3, 2])))]).is_err());
        let r = Op::Reshape(Reshape { shape: vec![i64::MAX, i64::MAX] });
        assert!(r.infer(&[Some((DType::F32, &s(&[2])))]).is_err());
    }

    #[test]
    fn fully_connected_flattens() {
        let op = Op::FullyConnected(FullyConnected {
            activation: Activation::None,
            keep_num_dims: false,
            asymmetric_inputs: false,
        });
        let out = op.infer(&[Some((DType::F32, &s(&[2, 3, 4]))), Some((DType::F32, &s(&[5, 4]))), None]).unwrap();
        assert_eq!(out[0].shape, s(&[6, 5]));
    }
}
