//! Mappings between IR values and TFLite enum codes (tensor types, activations, padding).
//! Operators, their versions and runtime versions are in [`crate::ops`], by family.

use crate::fb;
use qlite_ir::DType;
use qlite_ir::op::{Activation, Padding};

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

/// Compare dotted versions numerically ("1.14.0" > "1.5.0").
pub fn version_lt(a: &str, b: &str) -> bool {
    let parse = |s: &str| s.split('.').map(|p| p.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    parse(a) < parse(b)
}

/// Name of a builtin code for messages ("CONV_2D", or the number when unknown to qlite).
pub fn builtin_name(code: i32) -> String {
    fb::BuiltinOperator(code).variant_name().map_or_else(|| format!("builtin operator {code}"), str::to_string)
}
