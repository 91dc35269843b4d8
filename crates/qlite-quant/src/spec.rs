//! The declarative per-op quantization spec: one `match`, the single place that says how each
//! op is quantized (the converter's traits / ONNX Runtime's quantizer registry).

use qlite_ir::Op;
use qlite_ir::op::{BinaryKind, UnaryKind};

/// How an op's output parameters are chosen in int8 mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutputRule {
    /// From the calibrated range of the output tensor.
    Calibrated,
    /// Fixed (scale, zero point), whatever the range (SOFTMAX, LOGISTIC, TANH).
    Fixed(f32, i64),
    /// The same parameters as input 0 (data movement and pooling).
    SameAsInput,
}

/// How an op is quantized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpSpec {
    /// Input index of the weights and the per-channel axis of the weights.
    pub weights: Option<(usize, usize)>,
    /// Input index of a bias quantized to int32 with scale `s_in · s_w`.
    pub bias: Option<usize>,
    pub output: OutputRule,
    /// All activation inputs must share the output's parameters (requantized if not).
    pub inputs_like_output: bool,
    /// The op has an int8 kernel at all.
    pub quantizable: bool,
}

impl OpSpec {
    const fn plain(output: OutputRule) -> Self {
        OpSpec { weights: None, bias: None, output, inputs_like_output: false, quantizable: true }
    }
}

/// The spec of every op of the IR.
pub fn op_spec(op: &Op) -> OpSpec {
    match op {
        Op::FullyConnected(_) | Op::Conv2d(_) | Op::TransposeConv2d(_) => {
            OpSpec { weights: Some((1, 0)), bias: Some(2), ..OpSpec::plain(OutputRule::Calibrated) }
        }
        Op::DepthwiseConv2d(_) => {
            OpSpec { weights: Some((1, 3)), bias: Some(2), ..OpSpec::plain(OutputRule::Calibrated) }
        }
        // MAXIMUM / MINIMUM compare raw int8 values: inputs share the output's parameters.
        Op::Binary(b) if matches!(b.kind, BinaryKind::Maximum | BinaryKind::Minimum) => {
            OpSpec { inputs_like_output: true, ..OpSpec::plain(OutputRule::Calibrated) }
        }
        // LiteRT has no int8 DIV: it stays float.
        Op::Binary(b) if b.kind == BinaryKind::Div => {
            OpSpec { quantizable: false, ..OpSpec::plain(OutputRule::Calibrated) }
        }
        Op::Binary(_) | Op::Mean(_) | Op::Sum(_) => OpSpec::plain(OutputRule::Calibrated),
        Op::Unary(u) => match u.kind {
            UnaryKind::Logistic => OpSpec::plain(OutputRule::Fixed(1.0 / 256.0, -128)),
            UnaryKind::Tanh => OpSpec::plain(OutputRule::Fixed(1.0 / 128.0, 0)),
            UnaryKind::Relu
            | UnaryKind::Relu6
            | UnaryKind::HardSwish
            | UnaryKind::Elu
            | UnaryKind::Gelu
            | UnaryKind::GeluTanh
            | UnaryKind::Exp
            | UnaryKind::Sqrt
            | UnaryKind::Rsqrt
            | UnaryKind::Abs
            | UnaryKind::ReluN1To1 => OpSpec::plain(OutputRule::Calibrated),
            // No TFLite op: Erf/Erfc cannot be written, quantized or not.
            UnaryKind::Erf | UnaryKind::Erfc => OpSpec { quantizable: false, ..OpSpec::plain(OutputRule::Calibrated) },
            // LiteRT's int8 NEG negates raw values, right only when the output zero point is
            // minus the input's (and wrong at −128): NEG stays float between DEQUANTIZE/QUANTIZE.
            UnaryKind::Neg => OpSpec { quantizable: false, ..OpSpec::plain(OutputRule::Calibrated) },
        },
        Op::Softmax(_) => OpSpec::plain(OutputRule::Fixed(1.0 / 256.0, -128)),
        // LiteRT requires (16/256, 127): outputs in [-255/16, 0].
        Op::LogSoftmax => OpSpec::plain(OutputRule::Fixed(16.0 / 256.0, 127)),
        // LiteRT's LOCAL_RESPONSE_NORMALIZATION is float-only.
        Op::LocalResponseNorm(_) => OpSpec { quantizable: false, ..OpSpec::plain(OutputRule::Calibrated) },
        // A PADV2 value takes the input's parameters (LiteRT requires them equal).
        Op::Pad(_) => OpSpec { inputs_like_output: true, ..OpSpec::plain(OutputRule::SameAsInput) },
        Op::Pool2d(_)
        | Op::Reshape(_)
        | Op::Transpose(_)
        | Op::StridedSlice(_)
        | Op::Resize(_)
        | Op::Gather(_)
        | Op::Tile(_)
        | Op::DepthToSpace(_)
        | Op::SpaceToDepth(_)
        | Op::MirrorPad(_) => OpSpec::plain(OutputRule::SameAsInput),
        // The slope is quantized from its own range (asymmetric, per tensor), as TF's converter does.
        Op::Prelu | Op::BatchMatMul(_) => OpSpec::plain(OutputRule::Calibrated),
        Op::Concatenation(_) => OpSpec { inputs_like_output: true, ..OpSpec::plain(OutputRule::Calibrated) },
        // Folded into its constant before quantizing (`qlite_ir::passes::fold_densify`).
        Op::Quantize | Op::Dequantize | Op::Densify | Op::Opaque(_) => {
            OpSpec { quantizable: false, ..OpSpec::plain(OutputRule::Calibrated) }
        }
    }
}

/// Whether LiteRT runs the op on int16 activations with int8 weights (16x8): the builtin
/// kernels that accept int16 inputs, as their `Prepare` / `Eval` type switches say. Every
/// other op stays float in int16x8 mode, between DEQUANTIZE and QUANTIZE, as TF's converter
/// does when float fallback is allowed.
pub fn has_int16_kernel(op: &Op) -> bool {
    match op {
        Op::FullyConnected(_)
        | Op::Conv2d(_)
        | Op::DepthwiseConv2d(_)
        | Op::TransposeConv2d(_)
        | Op::Pool2d(_)
        | Op::Mean(_)
        | Op::Softmax(_)
        | Op::Concatenation(_)
        | Op::Reshape(_)
        | Op::Transpose(_)
        | Op::StridedSlice(_)
        | Op::Pad(_)
        | Op::Resize(_)
        | Op::Gather(_) => true,
        Op::Binary(b) => matches!(
            b.kind,
            BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul | BinaryKind::Maximum | BinaryKind::Minimum
        ),
        Op::Unary(u) => matches!(u.kind, UnaryKind::Logistic | UnaryKind::Tanh | UnaryKind::Relu | UnaryKind::Relu6),
        _ => false,
    }
}

/// The fixed output parameters of SOFTMAX / LOGISTIC / TANH on int16: (2^-15, 0), as LiteRT
/// requires.
pub const INT16_UNIT_OUTPUT: (f32, i64) = (1.0 / 32768.0, 0);
