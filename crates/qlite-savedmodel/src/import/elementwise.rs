//! SavedModel → IR: Elementwise ops: the binary ops (with their folding over constants and symbolic
//! shapes), BiasAdd, SquaredDifference, the activations and maths.

use super::*;

impl Im<'_> {
    /// The elementwise family's ops; `Ok(None)` with `unknown_op` set: not one of them.
    pub(super) fn elementwise_op(
        &mut self,
        fr: &mut Frame<'_>,
        n: &NodeDef,
        ins: &[Val],
        _depth: usize,
        name: &str,
    ) -> R<Option<Vec<Val>>> {
        let one = |v: Val| Ok(Some(vec![v]));
        let get = |i: usize| ins.get(i).cloned().ok_or_else(|| format!("input {i} is missing"));
        match n.op.as_str() {
            "AddV2" | "Add" | "Sub" | "Mul" | "RealDiv" | "Maximum" | "Minimum" | "FloorDiv" => {
                let (a, b) = (get(0)?, get(1)?);
                if matches!(a, Val::Sym(_) | Val::SymScalar(_)) || matches!(b, Val::Sym(_) | Val::SymScalar(_)) {
                    // Shape arithmetic (Keras 3's UpSampling2D: `shape[1] * 2`): folded.
                    let (Some(x), Some(y)) = (sym_of(&a), sym_of(&b)) else {
                        return Err(format!(
                            "{} of a shape value and {}",
                            n.op,
                            describe(if sym_of(&a).is_none() { &a } else { &b })
                        ));
                    };
                    let op = match n.op.as_str() {
                        "Sub" => SymOp::Sub,
                        "Mul" => SymOp::Mul,
                        "FloorDiv" => SymOp::FloorDiv,
                        "Maximum" => SymOp::Max,
                        "Minimum" => SymOp::Min,
                        "RealDiv" => return Err("RealDiv of a shape value".into()),
                        _ => SymOp::Add,
                    };
                    return one(from_sym(sym::binary(op, &x, &y).map_err(|e| e.to_string())?));
                }
                if let (Val::C(x), Val::C(y)) = (&a, &b) {
                    return one(Val::C(fold_binary(&n.op, x, y)?));
                }
                if n.op == "FloorDiv" {
                    return Ok(None); // on run-time tensors: no kernel
                }
                let kind = match n.op.as_str() {
                    "Sub" => BinaryKind::Sub,
                    "Mul" => BinaryKind::Mul,
                    "Maximum" => BinaryKind::Maximum,
                    "Minimum" => BinaryKind::Minimum,
                    "RealDiv" => {
                        if let Val::C(c) = &b {
                            let inv: Vec<f32> =
                                c.f32s().ok_or("division by a non-float")?.iter().map(|v| 1.0 / v).collect();
                            let r = Val::C(Const::f32(c.dims.clone(), &inv));
                            let (x, y) = (
                                self.materialize(&format!("{name}/x"), &a)?,
                                self.materialize(&format!("{name}/reciprocal"), &r)?,
                            );
                            let op = Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::None });
                            return one(Val::T(self.push(name, op, vec![Some(x), Some(y)])?));
                        }
                        BinaryKind::Div
                    }
                    _ => BinaryKind::Add,
                };
                // `matmul(x, w) + b` / `conv(x, k) + b`: the constant becomes the op's bias.
                if matches!(n.op.as_str(), "AddV2" | "Add") {
                    for (slot, (v, c)) in [(0usize, (&a, &b)), (1, (&b, &a))] {
                        if let (Val::T(t), Val::C(bias)) = (v, c)
                            && bias.dims.len() == 1
                            && let Some(t) = self.fold_bias(fr, n, slot, *t, bias, name)?
                        {
                            return one(Val::T(t));
                        }
                    }
                }
                let x = self.materialize(&format!("{name}/x"), &a)?;
                let y = self.materialize(&format!("{name}/y"), &b)?;
                for t in [x, y] {
                    if self.g.tensor(t).map(|t| t.dtype) != Some(DType::F32) {
                        return Ok(None); // integer arithmetic on runtime tensors: no kernel
                    }
                }
                let op = Op::Binary(Binary { kind, activation: Activation::None });
                one(Val::T(self.push(name, op, vec![Some(x), Some(y)])?))
            }
            "BiasAdd" => {
                let (a, b) = (get(0)?, get(1)?);
                let Val::C(bias) = b else { return Err("the bias must be a constant".into()) };
                if let Val::C(x) = &a {
                    return one(Val::C(fold_binary("AddV2", x, &bias)?));
                }
                let x = self.materialize(&format!("{name}/x"), &a)?;
                if let Some(t) = self.fold_bias(fr, n, 0, x, &bias, name)? {
                    return one(Val::T(t));
                }
                let y = self.materialize(&format!("{name}/bias"), &Val::C(bias))?;
                let op = Op::Binary(Binary { kind: BinaryKind::Add, activation: Activation::None });
                one(Val::T(self.push(name, op, vec![Some(x), Some(y)])?))
            }
            "SquaredDifference" => {
                let a = self.materialize(&format!("{name}/a"), &get(0)?)?;
                let b = self.materialize(&format!("{name}/b"), &get(1)?)?;
                let op = Op::Binary(Binary { kind: BinaryKind::SquaredDifference, activation: Activation::None });
                one(Val::T(self.push(name, op, vec![Some(a), Some(b)])?))
            }
            "Relu" | "Relu6" | "Sigmoid" | "Tanh" | "Exp" | "Sqrt" | "Neg" | "Abs" | "Rsqrt" | "Elu" | "Erf"
            | "Erfc" => {
                let a = get(0)?;
                if let Val::C(c) = &a {
                    let v = c.f32s().ok_or("float constant expected")?;
                    let f: fn(f32) -> f32 = match n.op.as_str() {
                        "Relu" => |x| x.max(0.0),
                        "Relu6" => |x| x.clamp(0.0, 6.0),
                        "Sigmoid" => |x| 1.0 / (1.0 + (-x).exp()),
                        "Tanh" => f32::tanh,
                        "Exp" => f32::exp,
                        "Sqrt" => f32::sqrt,
                        "Neg" => |x| -x,
                        "Abs" => f32::abs,
                        "Elu" => |x| if x < 0.0 { x.exp_m1() } else { x },
                        "Erf" => libm::erff,
                        "Erfc" => libm::erfcf,
                        _ => |x| 1.0 / x.sqrt(),
                    };
                    return one(Val::C(Const::f32(c.dims.clone(), &v.iter().map(|&x| f(x)).collect::<Vec<_>>())));
                }
                let kind = match n.op.as_str() {
                    "Relu" => UnaryKind::Relu,
                    "Relu6" => UnaryKind::Relu6,
                    "Sigmoid" => UnaryKind::Logistic,
                    "Tanh" => UnaryKind::Tanh,
                    "Exp" => UnaryKind::Exp,
                    "Sqrt" => UnaryKind::Sqrt,
                    "Neg" => UnaryKind::Neg,
                    "Abs" => UnaryKind::Abs,
                    "Rsqrt" => UnaryKind::Rsqrt,
                    "Elu" => UnaryKind::Elu,
                    "Erf" => UnaryKind::Erf,
                    "Erfc" => UnaryKind::Erfc,
                    _ => return Ok(None),
                };
                let x = self.materialize(&format!("{name}/x"), &a)?;
                one(Val::T(self.push(name, Op::Unary(Unary { kind }), vec![Some(x)])?))
            }
            "LeakyRelu" => {
                // max(x, αx) for 0 ≤ α ≤ 1.
                let alpha = attr_f(n, "alpha").unwrap_or(0.2);
                if !(0.0..=1.0).contains(&alpha) {
                    return Ok(None);
                }
                let x = self.materialize(&format!("{name}/x"), &get(0)?)?;
                let a = self.g.add_tensor(Tensor::constant(
                    format!("{name}/alpha"),
                    DType::F32,
                    Shape::fixed(&[]),
                    f32_bytes(&[alpha]),
                ));
                let scaled = self.push(
                    &format!("{name}/scaled"),
                    Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::None }),
                    vec![Some(x), Some(a)],
                )?;
                let op = Op::Binary(Binary { kind: BinaryKind::Maximum, activation: Activation::None });
                one(Val::T(self.push(name, op, vec![Some(x), Some(scaled)])?))
            }
            _ => {
                self.unknown_op = true;
                Ok(None)
            }
        }
    }
}
