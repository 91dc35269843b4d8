//! Mappings between IR values and TFLite enum codes, operator versions (op_version.cc) and
//! the minimum runtime version table (runtime_version.cc).

use crate::fb;
use qlite_ir::op::{Activation, BinaryKind, Padding, PoolKind, UnaryKind};
use qlite_ir::{DType, Graph, Node, Op};

pub fn tensor_type(d: DType) -> fb::TensorType {
    match d {
        DType::F32 => fb::TensorType::FLOAT32,
        DType::F16 => fb::TensorType::FLOAT16,
        DType::BF16 => fb::TensorType::BFLOAT16,
        DType::I8 => fb::TensorType::INT8,
        DType::U8 => fb::TensorType::UINT8,
        DType::I16 => fb::TensorType::INT16,
        DType::I32 => fb::TensorType::INT32,
        DType::I64 => fb::TensorType::INT64,
        DType::Bool => fb::TensorType::BOOL,
        DType::String => fb::TensorType::STRING,
        DType::F64 => fb::TensorType::FLOAT64,
        DType::U16 => fb::TensorType::UINT16,
        DType::U32 => fb::TensorType::UINT32,
        DType::U64 => fb::TensorType::UINT64,
        DType::C64 => fb::TensorType::COMPLEX64,
        DType::C128 => fb::TensorType::COMPLEX128,
        DType::I4 => fb::TensorType::INT4,
        DType::U4 => fb::TensorType::UINT4,
        DType::I2 => fb::TensorType::INT2,
        DType::F8E4M3 => fb::TensorType::FLOAT8_E4M3FN,
        DType::F8E5M2 => fb::TensorType::FLOAT8_E5M2,
        DType::Resource => fb::TensorType::RESOURCE,
        DType::Variant => fb::TensorType::VARIANT,
    }
}

pub fn dtype(t: fb::TensorType) -> Option<DType> {
    Some(match t {
        fb::TensorType::FLOAT32 => DType::F32,
        fb::TensorType::FLOAT16 => DType::F16,
        fb::TensorType::BFLOAT16 => DType::BF16,
        fb::TensorType::INT8 => DType::I8,
        fb::TensorType::UINT8 => DType::U8,
        fb::TensorType::INT16 => DType::I16,
        fb::TensorType::INT32 => DType::I32,
        fb::TensorType::INT64 => DType::I64,
        fb::TensorType::BOOL => DType::Bool,
        fb::TensorType::STRING => DType::String,
        fb::TensorType::FLOAT64 => DType::F64,
        fb::TensorType::UINT16 => DType::U16,
        fb::TensorType::UINT32 => DType::U32,
        fb::TensorType::UINT64 => DType::U64,
        fb::TensorType::COMPLEX64 => DType::C64,
        fb::TensorType::COMPLEX128 => DType::C128,
        fb::TensorType::INT4 => DType::I4,
        fb::TensorType::UINT4 => DType::U4,
        fb::TensorType::INT2 => DType::I2,
        fb::TensorType::FLOAT8_E4M3FN => DType::F8E4M3,
        fb::TensorType::FLOAT8_E5M2 => DType::F8E5M2,
        fb::TensorType::RESOURCE => DType::Resource,
        fb::TensorType::VARIANT => DType::Variant,
        _ => return None,
    })
}

pub fn activation(a: Activation) -> fb::ActivationFunctionType {
    match a {
        Activation::None => fb::ActivationFunctionType::NONE,
        Activation::Relu => fb::ActivationFunctionType::RELU,
        Activation::Relu6 => fb::ActivationFunctionType::RELU6,
        Activation::ReluN1To1 => fb::ActivationFunctionType::RELU_N1_TO_1,
    }
}

pub fn from_activation(a: fb::ActivationFunctionType) -> Option<Activation> {
    Some(match a {
        fb::ActivationFunctionType::NONE => Activation::None,
        fb::ActivationFunctionType::RELU => Activation::Relu,
        fb::ActivationFunctionType::RELU6 => Activation::Relu6,
        fb::ActivationFunctionType::RELU_N1_TO_1 => Activation::ReluN1To1,
        _ => return None,
    })
}

pub fn padding(p: Padding) -> fb::Padding {
    match p {
        Padding::Same => fb::Padding::SAME,
        Padding::Valid => fb::Padding::VALID,
    }
}

pub fn from_padding(p: fb::Padding) -> Option<Padding> {
    Some(match p {
        fb::Padding::SAME => Padding::Same,
        fb::Padding::VALID => Padding::Valid,
        _ => return None,
    })
}

/// The builtin operator code of an IR op.
pub fn builtin(op: &Op) -> Option<fb::BuiltinOperator> {
    use fb::BuiltinOperator as B;
    Some(match op {
        Op::FullyConnected(_) => B::FULLY_CONNECTED,
        Op::Conv2d(_) => B::CONV_2D,
        Op::DepthwiseConv2d(_) => B::DEPTHWISE_CONV_2D,
        Op::TransposeConv2d(_) => B::TRANSPOSE_CONV,
        Op::BatchMatMul(_) => B::BATCH_MATMUL,
        Op::Binary(b) => match b.kind {
            BinaryKind::Add => B::ADD,
            BinaryKind::Sub => B::SUB,
            BinaryKind::Mul => B::MUL,
            BinaryKind::Maximum => B::MAXIMUM,
            BinaryKind::Minimum => B::MINIMUM,
            BinaryKind::Div => B::DIV,
            BinaryKind::SquaredDifference => B::SQUARED_DIFFERENCE,
        },
        Op::Pool2d(p) => match p.kind {
            PoolKind::Max => B::MAX_POOL_2D,
            PoolKind::Average => B::AVERAGE_POOL_2D,
        },
        Op::Mean(_) => B::MEAN,
        Op::Sum(_) => B::SUM,
        Op::Reshape(_) => B::RESHAPE,
        Op::Transpose(_) => B::TRANSPOSE,
        Op::Concatenation(_) => B::CONCATENATION,
        Op::Pad(_) => B::PAD,
        Op::StridedSlice(_) => B::STRIDED_SLICE,
        Op::Resize(r) => match r.mode {
            qlite_ir::op::ResizeMode::NearestNeighbor => B::RESIZE_NEAREST_NEIGHBOR,
            qlite_ir::op::ResizeMode::Bilinear => B::RESIZE_BILINEAR,
        },
        Op::Gather(_) => B::GATHER,
        Op::Tile(_) => B::TILE,
        Op::DepthToSpace(_) => B::DEPTH_TO_SPACE,
        Op::SpaceToDepth(_) => B::SPACE_TO_DEPTH,
        Op::MirrorPad(_) => B::MIRROR_PAD,
        Op::Prelu => B::PRELU,
        Op::Softmax(_) => B::SOFTMAX,
        Op::LocalResponseNorm(_) => B::LOCAL_RESPONSE_NORMALIZATION,
        Op::Unary(u) => match u.kind {
            UnaryKind::Relu => B::RELU,
            UnaryKind::Relu6 => B::RELU6,
            UnaryKind::Logistic => B::LOGISTIC,
            UnaryKind::Tanh => B::TANH,
            UnaryKind::HardSwish => B::HARD_SWISH,
            UnaryKind::Exp => B::EXP,
            UnaryKind::Sqrt => B::SQRT,
            UnaryKind::Neg => B::NEG,
            UnaryKind::Abs => B::ABS,
            UnaryKind::ReluN1To1 => B::RELU_N1_TO_1,
            UnaryKind::Elu => B::ELU,
            UnaryKind::Gelu | UnaryKind::GeluTanh => B::GELU,
            UnaryKind::Rsqrt => B::RSQRT,
            UnaryKind::Erf | UnaryKind::Erfc => return None,
        },
        Op::LogSoftmax => B::LOG_SOFTMAX,
        Op::Quantize => B::QUANTIZE,
        Op::Dequantize => B::DEQUANTIZE,
        Op::Densify => B::DENSIFY,
        Op::Opaque(_) => return None,
    })
}

/// Operator kernel version, following TensorFlow's op_version.cc for the forms qlite writes.
pub fn op_version(g: &Graph, n: &Node) -> i32 {
    let dt = |i: usize| n.input(i).and_then(|t| g.tensor(t)).map(|t| t.dtype);
    let per_channel = |i: usize| {
        n.input(i).and_then(|t| g.tensor(t)).and_then(|t| t.quant.as_ref()).is_some_and(|q| q.scales().len() > 1)
    };
    let out = n.outputs.first().and_then(|t| g.tensor(*t)).map(|t| t.dtype);
    let (x, w) = (dt(0), dt(1));
    let rank0 = n.input(0).and_then(|t| g.tensor(t)).map_or(0, |t| t.shape.rank());
    use DType::*;
    match &n.op {
        Op::Conv2d(_) => {
            let grouped = match (n.input(0).and_then(|t| g.tensor(t)), n.input(1).and_then(|t| g.tensor(t))) {
                (Some(a), Some(b)) => a.shape.dim(3) != b.shape.dim(3),
                _ => false,
            };
            if grouped {
                6
            } else if x == Some(I16) && w == Some(I8) {
                4
            } else if x == Some(I8) && w == Some(I8) {
                3
            } else if x == Some(F32) && w == Some(I8) {
                if per_channel(1) { 5 } else { 2 }
            } else {
                1
            }
        }
        Op::BatchMatMul(_) => match x {
            Some(I16) => 3,
            Some(I8) => 2,
            _ => 1,
        },
        Op::TransposeConv2d(o) => {
            if o.activation != qlite_ir::Activation::None {
                4
            } else if n.input(2).is_some() {
                3
            } else if w == Some(I8) {
                2
            } else {
                1
            }
        }
        Op::DepthwiseConv2d(o) => {
            if x == Some(I16) {
                5
            } else if x == Some(F32) && w == Some(I8) {
                if per_channel(1) { 6 } else { 4 }
            } else if x == Some(I8) && w == Some(I8) {
                3
            } else if o.dilation != [1, 1] {
                2
            } else {
                1
            }
        }
        Op::FullyConnected(o) => {
            if x == Some(F32) && w == Some(I8) && out == Some(F32) && per_channel(1) {
                12
            } else if x == Some(I16) && w == Some(I16) {
                7
            } else if n.input(2).is_none() {
                6
            } else if o.keep_num_dims {
                5
            } else if x == Some(I8) && w == Some(I8) {
                4
            } else if x == Some(F32) && w == Some(I8) {
                if o.asymmetric_inputs { 9 } else { 3 }
            } else {
                1
            }
        }
        Op::Binary(b) => match b.kind {
            BinaryKind::Maximum | BinaryKind::Minimum => match x {
                Some(I8) => 2,
                _ => 1,
            },
            BinaryKind::Div => match x {
                Some(U8) => 2,
                _ => 1,
            },
            BinaryKind::SquaredDifference => match x {
                Some(I8) => 2,
                _ => 1,
            },
            BinaryKind::Add => match x {
                Some(I64) => 4,
                Some(I16) => 3,
                Some(I8) => 2,
                _ => 1,
            },
            BinaryKind::Sub => {
                let broadcast_5d = rank0.max(n.input(1).and_then(|t| g.tensor(t)).map_or(0, |t| t.shape.rank())) > 4
                    && dt(0).is_some()
                    && n.input(0).and_then(|t| g.tensor(t)).map(|t| &t.shape)
                        != n.input(1).and_then(|t| g.tensor(t)).map(|t| &t.shape);
                match x {
                    Some(I64) => 4,
                    _ if broadcast_5d => 3,
                    Some(I8) => 2,
                    _ => 1,
                }
            }
            BinaryKind::Mul => {
                let scale = |t: Option<qlite_ir::TensorId>| {
                    t.and_then(|t| g.tensor(t)).and_then(|t| t.quant.as_ref()).map(|q| q.scale() as f64)
                };
                let rescale = match (scale(n.input(0)), scale(n.input(1)), scale(n.outputs.first().copied())) {
                    (Some(a), Some(b), Some(o)) => a * b / o >= 1.0,
                    _ => false,
                };
                match x {
                    Some(I64) => 5,
                    Some(I16) => 4,
                    _ if rescale => 3,
                    Some(I8) => 2,
                    _ => 1,
                }
            }
        },
        Op::Pool2d(_) => match x {
            Some(I16) => 3,
            Some(I8) => 2,
            _ => 1,
        },
        Op::Transpose(_) => {
            if rank0 > 6 {
                8
            } else if rank0 > 5 {
                6
            } else if x == Some(I16) {
                5
            } else if rank0 > 4 {
                4
            } else if x == Some(Bool) {
                3
            } else if x == Some(I8) {
                2
            } else {
                1
            }
        }
        // op_version.cc: ellipsis / new-axis masks 6 (never written), string 5, rank > 4 4,
        // bool 3, int8 2.
        Op::StridedSlice(_) => {
            if rank0 > 4 {
                4
            } else if x == Some(Bool) {
                3
            } else if x == Some(I8) {
                2
            } else {
                1
            }
        }
        // op_version.cc: int16 4; align_corners or half_pixel_centers 3; int8 2.
        Op::Resize(r) if r.mode == qlite_ir::op::ResizeMode::Bilinear => {
            if x == Some(I16) {
                4
            } else if r.half_pixel_centers {
                3
            } else if x == Some(I8) {
                2
            } else {
                1
            }
        }
        Op::Resize(r) => {
            if x == Some(I16) {
                4
            } else if r.align_corners || r.half_pixel_centers {
                3
            } else if x == Some(I8) {
                2
            } else {
                1
            }
        }
        Op::Pad(_) => {
            if x == Some(Bool) {
                5
            } else if rank0 > 4 {
                4
            } else if x == Some(I16) {
                3
            } else if x == Some(I8) {
                2
            } else {
                1
            }
        }
        Op::Sum(_) => match x {
            Some(I8) => 2,
            _ => 1,
        },
        Op::Concatenation(_) | Op::Softmax(_) | Op::Mean(_) => match x {
            Some(I16) => 3,
            Some(I8) => 2,
            _ => 1,
        },
        Op::Unary(u) => match (u.kind, x) {
            // Not versioned by dtype in op_version.cc: one version for every dtype.
            (UnaryKind::HardSwish | UnaryKind::Elu | UnaryKind::Neg | UnaryKind::ReluN1To1, _) => 1,
            (UnaryKind::Exp | UnaryKind::Sqrt, Some(I8 | I16)) => 2,
            (UnaryKind::Gelu | UnaryKind::GeluTanh, Some(I8 | U8)) => 2,
            (UnaryKind::Gelu | UnaryKind::GeluTanh, _) => 1,
            (_, Some(I16)) => 3,
            (_, Some(I8)) => 2,
            (UnaryKind::Relu, Some(U8)) => 2,
            _ => 1,
        },
        Op::Reshape(_) | Op::LocalResponseNorm(_) | Op::Densify | Op::Prelu => 1,
        Op::LogSoftmax => match x {
            Some(I8) => 2,
            _ => 1,
        },
        Op::Gather(_) => match x {
            Some(I16) => 4,
            Some(Bool) => 3,
            Some(I8) => 2,
            _ => 1,
        },
        Op::Tile(_) => {
            if x == Some(I8) {
                3
            } else {
                1
            }
        }
        Op::DepthToSpace(_) | Op::SpaceToDepth(_) => {
            if x == Some(I8) {
                2
            } else {
                1
            }
        }
        Op::MirrorPad(_) => match x {
            Some(I16) => 3,
            Some(I8) => 2,
            _ => 1,
        },
        Op::Quantize => {
            if n.outputs
                .first()
                .and_then(|t| g.tensor(*t))
                .and_then(|t| t.quant.as_ref())
                .is_some_and(|q| q.scales().len() > 1)
            {
                3
            } else if out == Some(I16) {
                2
            } else {
                1
            }
        }
        Op::Dequantize => match x {
            Some(I16) | Some(F16) => 3,
            Some(I8) if per_channel(0) => 5,
            Some(I8) => 2,
            _ => 1,
        },
        Op::Opaque(_) => 1,
    }
}

/// The TFLite runtime version that first ran (op, version); `None` if not listed.
pub fn min_runtime(op: fb::BuiltinOperator, version: i32) -> Option<&'static str> {
    use fb::BuiltinOperator as B;
    let table: &[&str] = match op {
        B::AVERAGE_POOL_2D | B::MAX_POOL_2D => &["1.5.0", "1.14.0", "2.3.0"],
        B::CONV_2D => &["1.5.0", "1.14.0", "1.14.0", "2.3.0", "2.4.0", "2.9.0", "2.11.0", "2.15.0"],
        B::DEPTHWISE_CONV_2D => &["1.5.0", "1.12.0", "1.14.0", "2.2.0", "2.3.0", "2.3.0", "2.11.0"],
        B::ADD => &["1.5.0", "1.14.0", "2.4.0", "2.6.0", "2.13.0", "2.23.0"],
        B::SUB => &["1.6.0", "1.14.0", "2.3.0", "2.4.0", "2.4.0"],
        B::CONCATENATION => &["1.5.0", "1.14.0", "2.3.0", "2.14.0", "2.21.0", "2.23.0"],
        B::FULLY_CONNECTED => &[
            "1.5.0", "1.10.0", "1.14.0", "1.14.0", "2.0.0", "2.1.0", "2.3.0", "2.3.0", "2.3.0", "2.11.0", "2.15.0",
            "2.17.0", "2.18.0", "2.21.0",
        ],
        B::MUL => &["1.5.0", "1.14.0", "1.15.0", "2.3.0", "2.6.0", "2.11.0", "2.13.0", "2.23.0"],
        B::PAD => &["1.5.0", "1.14.0", "2.4.0", "2.6.0", "2.20.0"],
        B::HARD_SWISH => &["1.15.0"],
        B::RESIZE_NEAREST_NEIGHBOR => &["1.13.1", "1.14.0", "2.3.0", "2.4.0"],
        B::STRIDED_SLICE => &["1.6.0", "1.14.0", "2.1.0", "2.2.0", "2.5.0", "2.6.0"],
        B::RESHAPE => &["1.5.0"],
        B::SOFTMAX => &["1.5.0", "1.14.0", "2.3.0", "2.23.0"],
        B::TRANSPOSE => &["1.6.0", "1.14.0", "1.15.0", "2.3.0", "2.4.0", "2.12.0", "2.14.4", "2.22.0", "2.23.0"],
        B::MEAN => &["1.6.0", "1.14.0", "2.4.0"],
        B::SUM => &["1.10.0", "1.15.0"],
        B::EXP => &["1.7.0", "2.12.0"],
        B::SQRT => &["1.10.0", "2.21.0"],
        B::ABS => &["1.13.0", "2.4.0", "2.5.0", "2.6.0", "2.12.0"],
        B::RELU_N1_TO_1 => &["1.5.0"],
        B::RELU6 => &["1.5.0", "1.14.0", "2.5.0"],
        B::RELU => &["1.5.0", "2.1.0", "2.5.0"],
        B::TANH | B::LOGISTIC => &["1.14.0", "1.14.0", "2.3.0"],
        B::DENSIFY => &["2.2.0"],
        B::PADV2 => &["1.9.0", "1.14.0", "2.4.0", "2.6.0"],
        B::ELU => &["1.14.0"],
        B::GELU => &["2.9.0", "2.9.0"],
        B::RSQRT => &["1.10.0", "2.5.0"],
        B::LOG_SOFTMAX => &["1.14.0", "1.14.0"],
        B::SQUARED_DIFFERENCE => &["1.13.1", "2.5.0"],
        B::TRANSPOSE_CONV => &["1.9.0", "2.2.0", "2.3.0"],
        B::BATCH_MATMUL => &["2.3.0", "2.3.0", "2.4.0", "2.5.0"],
        B::RESIZE_BILINEAR => &["1.7.0", "1.14.0", "2.2.0", "2.5.0"],
        B::GATHER => &["1.6.0", "1.14.0", "1.15.0", "2.4.0", "2.5.0"],
        B::TILE => &["1.10.1", "2.2.0", "2.8.0"],
        B::DEPTH_TO_SPACE => &["2.1.0", "2.5.0"],
        B::SPACE_TO_DEPTH => &["1.5.0", "1.14.0"],
        B::MIRROR_PAD => &["1.13.1", "2.3.0"],
        B::PRELU => &["1.8.0"],
        B::DEQUANTIZE => &["1.13.1", "1.14.0", "1.15.0", "2.2.0", "2.7.0", "2.18.0", "2.21.0", "2.22.0"],
        B::QUANTIZE => &["1.14.0", "1.15.0", "2.7.0", "2.21.0", "2.21.0", "2.21.0"],
        _ => &[],
    };
    usize::try_from(version).ok().and_then(|v| v.checked_sub(1)).and_then(|i| table.get(i)).copied()
}

/// Compare dotted versions numerically ("1.14.0" > "1.5.0").
pub fn version_lt(a: &str, b: &str) -> bool {
    let parse = |s: &str| s.split('.').map(|p| p.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    parse(a) < parse(b)
}

/// Name of a builtin code for messages ("CONV_2D", or the number when unknown to qlite).
pub fn builtin_name(code: i32) -> String {
    fb::BuiltinOperator(code).variant_name().map_or_else(|| format!("builtin operator {code}"), str::to_string)
}
