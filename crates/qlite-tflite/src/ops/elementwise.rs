//! Elementwise ops: the binary ops (ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE),
//! the unary activations and maths, and PRELU.

use super::*;
use qlite_ir::op::{Binary, BinaryKind, Unary, UnaryKind};

pub(crate) struct Elementwise;

/// The unary builtins, each with its IR kind (GELU's kind depends on its options).
const UNARY: [(B, UnaryKind); 12] = [
    (B::RELU, UnaryKind::Relu),
    (B::RELU6, UnaryKind::Relu6),
    (B::LOGISTIC, UnaryKind::Logistic),
    (B::TANH, UnaryKind::Tanh),
    (B::HARD_SWISH, UnaryKind::HardSwish),
    (B::EXP, UnaryKind::Exp),
    (B::SQRT, UnaryKind::Sqrt),
    (B::NEG, UnaryKind::Neg),
    (B::ABS, UnaryKind::Abs),
    (B::RELU_N1_TO_1, UnaryKind::ReluN1To1),
    (B::ELU, UnaryKind::Elu),
    (B::RSQRT, UnaryKind::Rsqrt),
];

/// The binary builtins, each with its IR kind.
const BINARY: [(B, BinaryKind); 7] = [
    (B::ADD, BinaryKind::Add),
    (B::SUB, BinaryKind::Sub),
    (B::MUL, BinaryKind::Mul),
    (B::DIV, BinaryKind::Div),
    (B::MAXIMUM, BinaryKind::Maximum),
    (B::MINIMUM, BinaryKind::Minimum),
    (B::SQUARED_DIFFERENCE, BinaryKind::SquaredDifference),
];

impl Family for Elementwise {
    fn codes(&self) -> Codes {
        &[
            (B::ADD, &["1.5.0", "1.14.0", "2.4.0", "2.6.0", "2.13.0", "2.23.0"]),
            (B::SUB, &["1.6.0", "1.14.0", "2.3.0", "2.4.0", "2.4.0"]),
            (B::MUL, &["1.5.0", "1.14.0", "1.15.0", "2.3.0", "2.6.0", "2.11.0", "2.13.0", "2.23.0"]),
            (B::DIV, &[]),
            (B::MAXIMUM, &[]),
            (B::MINIMUM, &[]),
            (B::SQUARED_DIFFERENCE, &["1.13.1", "2.5.0"]),
            (B::RELU, &["1.5.0", "2.1.0", "2.5.0"]),
            (B::RELU6, &["1.5.0", "1.14.0", "2.5.0"]),
            (B::LOGISTIC, &["1.14.0", "1.14.0", "2.3.0"]),
            (B::TANH, &["1.14.0", "1.14.0", "2.3.0"]),
            (B::HARD_SWISH, &["1.15.0"]),
            (B::EXP, &["1.7.0", "2.12.0"]),
            (B::SQRT, &["1.10.0", "2.21.0"]),
            (B::NEG, &[]),
            (B::ABS, &["1.13.0", "2.4.0", "2.5.0", "2.6.0", "2.12.0"]),
            (B::RELU_N1_TO_1, &["1.5.0"]),
            (B::ELU, &["1.14.0"]),
            (B::RSQRT, &["1.10.0", "2.5.0"]),
            (B::GELU, &["2.9.0", "2.9.0"]),
            (B::PRELU, &["1.8.0"]),
        ]
    }

    fn read(&self, cx: &mut ReadCx<'_, '_>) -> Result<Option<Op>, String> {
        let (op, code) = (cx.op, cx.code);
        if let Some(&(_, kind)) = BINARY.iter().find(|(c, _)| *c == code) {
            // Only ADD, SUB, MUL and DIV have a fused activation; a missing table means none.
            let fused = match code {
                B::ADD => op.builtin_options_as_add_options().map(|o| o.fused_activation_function()),
                B::SUB => op.builtin_options_as_sub_options().map(|o| o.fused_activation_function()),
                B::MUL => op.builtin_options_as_mul_options().map(|o| o.fused_activation_function()),
                B::DIV => op.builtin_options_as_div_options().map(|o| o.fused_activation_function()),
                _ => None,
            };
            let activation = act(fused.unwrap_or(fb::ActivationFunctionType::NONE))?;
            return Ok(Some(Op::Binary(Binary { kind, activation })));
        }
        if let Some(&(_, kind)) = UNARY.iter().find(|(c, _)| *c == code) {
            return Ok(Some(Op::Unary(Unary { kind })));
        }
        Ok(Some(match code {
            B::GELU => Op::Unary(Unary {
                kind: if op.builtin_options_as_gelu_options().is_some_and(|o| o.approximate()) {
                    UnaryKind::GeluTanh
                } else {
                    UnaryKind::Gelu
                },
            }),
            _ => Op::Prelu,
        }))
    }

    fn builtin(&self, n: &Node) -> Option<B> {
        match &n.op {
            Op::Binary(b) => BINARY.iter().find(|(_, k)| *k == b.kind).map(|(c, _)| *c),
            Op::Unary(u) => match u.kind {
                UnaryKind::Gelu | UnaryKind::GeluTanh => Some(B::GELU),
                // ERF and ERFC have no TFLite form.
                UnaryKind::Erf | UnaryKind::Erfc => None,
                k => UNARY.iter().find(|(_, u)| *u == k).map(|(c, _)| *c),
            },
            Op::Prelu => Some(B::PRELU),
            _ => None,
        }
    }

    fn version(&self, v: &VersionCx<'_>) -> i32 {
        use DType::*;
        let x = v.dtype(0);
        match &v.n.op {
            Op::Binary(b) => match b.kind {
                BinaryKind::Maximum | BinaryKind::Minimum | BinaryKind::SquaredDifference => match x {
                    Some(I8) => 2,
                    _ => 1,
                },
                BinaryKind::Div => match x {
                    Some(U8) => 2,
                    _ => 1,
                },
                BinaryKind::Add => match x {
                    Some(I64) => 4,
                    Some(I16) => 3,
                    Some(I8) => 2,
                    _ => 1,
                },
                BinaryKind::Sub => {
                    let shape = |i: usize| v.n.input(i).and_then(|t| v.g.tensor(t)).map(|t| &t.shape);
                    let broadcast_5d = v.rank(0).max(v.rank(1)) > 4 && x.is_some() && shape(0) != shape(1);
                    match x {
                        // Our int16 SUB writes pot_scale_int16 = false.
                        Some(I16) => 5,
                        Some(I64) => 4,
                        _ if broadcast_5d => 3,
                        Some(I8) => 2,
                        _ => 1,
                    }
                }
                BinaryKind::Mul => {
                    let scale = |t: Option<TensorId>| {
                        t.and_then(|t| v.g.tensor(t)).and_then(|t| t.quant.as_ref()).map(|q| q.scale() as f64)
                    };
                    let rescale = match (scale(v.n.input(0)), scale(v.n.input(1)), scale(v.n.outputs.first().copied()))
                    {
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
            _ => 1,
        }
    }

    fn options(&self, fbb: &mut FlatBufferBuilder<'_>, n: &Node, g: &qlite_ir::Graph) -> Options {
        use fb::BuiltinOptions as O;
        let f = fused(n);
        // qlite's int16 ADD / SUB are the general-scale kernels: `pot_scale_int16` false (the
        // schema's default, true, would select LiteRT's power-of-two-only path).
        let pot_scale_int16 = n.input(0).and_then(|t| g.tensor(t)).is_none_or(|t| t.dtype != DType::I16);
        match &n.op {
            Op::Binary(b) => match b.kind {
                BinaryKind::Add => {
                    let args = fb::AddOptionsArgs { fused_activation_function: f, pot_scale_int16 };
                    (O::AddOptions, Some(fb::AddOptions::create(fbb, &args).as_union_value()))
                }
                BinaryKind::Sub => {
                    let args = fb::SubOptionsArgs { fused_activation_function: f, pot_scale_int16 };
                    (O::SubOptions, Some(fb::SubOptions::create(fbb, &args).as_union_value()))
                }
                BinaryKind::Mul => {
                    let args = fb::MulOptionsArgs { fused_activation_function: f };
                    (O::MulOptions, Some(fb::MulOptions::create(fbb, &args).as_union_value()))
                }
                BinaryKind::Div => {
                    let args = fb::DivOptionsArgs { fused_activation_function: f };
                    (O::DivOptions, Some(fb::DivOptions::create(fbb, &args).as_union_value()))
                }
                // MAXIMUM / MINIMUM read no options.
                BinaryKind::Maximum | BinaryKind::Minimum => (O::NONE, None),
                BinaryKind::SquaredDifference => {
                    empty_options!(fbb, SquaredDifferenceOptions, SquaredDifferenceOptionsArgs)
                }
            },
            Op::Unary(u) if matches!(u.kind, UnaryKind::Gelu | UnaryKind::GeluTanh) => {
                let args = fb::GeluOptionsArgs { approximate: u.kind == UnaryKind::GeluTanh };
                (O::GeluOptions, Some(fb::GeluOptions::create(fbb, &args).as_union_value()))
            }
            _ => (O::NONE, None),
        }
    }
}
