//! ONNX → IR: Elementwise ops: activations (Relu, Clip, Sigmoid, Tanh, Elu, Gelu, Erf, HardSwish,
//! HardSigmoid, LeakyRelu, PRelu), maths (Exp, Sqrt, Neg, Abs, Pow) and the binary ops (Add, Sub,
//! Mul, Div, Sum, Max, Min), with their folding over constants and symbolic shapes.

use super::*;

impl Importer {
    /// The elementwise family's ops; `Ok(None)`: `op_type` is not one of them.
    pub(super) fn elementwise_op(&mut self, n: &NodeProto, op_type: &str, name: &str) -> R<Option<bool>> {
        let first = n.input.first().cloned().unwrap_or_default();
        match op_type {
            "Elu" if attr_f(n, "alpha", 1.0) != 1.0 => {
                // TFLite's ELU has α = 1: α·elu(x) + (1 − α)·relu(x) (one of the two is x).
                let alpha = attr_f(n, "alpha", 1.0);
                if !alpha.is_finite() {
                    return Err(format!("Elu alpha {alpha} is not finite"));
                }
                let x = self.input(n, 0)?;
                let bin = |kind| Op::Binary(Binary { kind, activation: Activation::None });
                let e = self.push(&format!("{name}/elu"), Op::Unary(Unary { kind: UnaryKind::Elu }), vec![Some(x)])?;
                let r =
                    self.push(&format!("{name}/relu"), Op::Unary(Unary { kind: UnaryKind::Relu }), vec![Some(x)])?;
                let a = self.new_const(&format!("{name}/alpha"), DType::F32, &[], f32_bytes(&[alpha]));
                let b = self.new_const(&format!("{name}/one_minus_alpha"), DType::F32, &[], f32_bytes(&[1.0 - alpha]));
                let ea = self.push(&format!("{name}/scaled_elu"), bin(BinaryKind::Mul), vec![Some(e), Some(a)])?;
                let rb = self.push(&format!("{name}/scaled_relu"), bin(BinaryKind::Mul), vec![Some(r), Some(b)])?;
                let y = self.push(name, bin(BinaryKind::Add), vec![Some(ea), Some(rb)])?;
                self.output(n, y);
            }
            "Gelu" if !matches!(attr_s(n, "approximate").as_deref(), None | Some("none") | Some("tanh")) => {
                return Ok(Some(false));
            }
            "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Sqrt" | "Neg" | "Abs" | "Elu" | "Gelu" | "Erf" => {
                let x = self.input(n, 0)?;
                let kind = match op_type {
                    "Erf" => UnaryKind::Erf,
                    "Elu" => UnaryKind::Elu,
                    "Gelu" if attr_s(n, "approximate").as_deref() == Some("tanh") => UnaryKind::GeluTanh,
                    "Gelu" => UnaryKind::Gelu,
                    "Relu" => UnaryKind::Relu,
                    "Sigmoid" => UnaryKind::Logistic,
                    "Exp" => UnaryKind::Exp,
                    "Sqrt" => UnaryKind::Sqrt,
                    "Neg" => UnaryKind::Neg,
                    "Abs" => UnaryKind::Abs,
                    _ => UnaryKind::Tanh,
                };
                let y = self.push(name, Op::Unary(Unary { kind }), vec![Some(x)])?;
                if kind == UnaryKind::Relu {
                    self.nonneg.insert(y);
                }
                self.output(n, y);
            }
            "Clip" => {
                let (lo, hi) = if self.opset < 11 {
                    (attr_f(n, "min", f32::MIN), attr_f(n, "max", f32::MAX))
                } else {
                    let get = |i: usize, d: f32| -> R<f32> {
                        match n.input.get(i).filter(|s| !s.is_empty()) {
                            None => Ok(d),
                            Some(s) => self
                                .constant(s)
                                .and_then(|c| c.f32s())
                                .and_then(|v| v.first().copied())
                                .ok_or_else(|| "Clip bounds must be constants".to_string()),
                        }
                    };
                    (get(1, f32::MIN)?, get(2, f32::MAX)?)
                };
                let kind = if lo == 0.0 && hi == 6.0 {
                    UnaryKind::Relu6
                } else if lo == -1.0 && hi == 1.0 {
                    UnaryKind::ReluN1To1
                } else if lo == 0.0 && hi >= f32::MAX {
                    UnaryKind::Relu
                } else {
                    // General bounds: MINIMUM then MAXIMUM with scalar constants.
                    let mut y = self.input(n, 0)?;
                    if hi < f32::MAX {
                        y = self.scalar_binary(&format!("{name}/upper"), BinaryKind::Minimum, y, hi)?;
                    }
                    if lo > f32::MIN {
                        y = self.scalar_binary(&format!("{name}/lower"), BinaryKind::Maximum, y, lo)?;
                    }
                    self.output(n, y);
                    return Ok(Some(true));
                };
                let x = self.input(n, 0)?;
                let y = self.push(name, Op::Unary(Unary { kind }), vec![Some(x)])?;
                if kind != UnaryKind::ReluN1To1 {
                    self.nonneg.insert(y);
                }
                self.output(n, y);
            }
            "LeakyRelu" | "PRelu" => {
                let x = self.input(n, 0)?;
                let slope = if op_type == "LeakyRelu" {
                    self.new_const(&format!("{name}/alpha"), DType::F32, &[], f32_bytes(&[attr_f(n, "alpha", 0.01)]))
                } else {
                    let sname = n.input.get(1).cloned().unwrap_or_default();
                    let c = self.constant(&sname).ok_or("PRelu slope must be a constant")?;
                    let v = c.f32s().ok_or("PRelu slope must be float")?;
                    // Before opset 7 (no broadcasting) a 1-D slope is per channel (axis 1).
                    let rank = self.shape_of(x).rank();
                    let dims = if c.dims.len() == 1 && rank > 2 && v.len() > 1 {
                        let mut d = vec![v.len()];
                        d.extend(std::iter::repeat_n(1, rank - 2));
                        d
                    } else {
                        c.dims.clone()
                    };
                    self.new_const(&sname, DType::F32, &dims, f32_bytes(&v))
                };
                // One PRELU (x where x >= 0, else x · slope): LiteRT's op, int8 included.
                let y = self.push(name, Op::Prelu, vec![Some(x), Some(slope)])?;
                self.output(n, y);
            }
            "HardSwish" => {
                // x · max(0, min(1, x/6 + 1/2)) = x · relu6(x + 3) / 6: TFLite's HARD_SWISH.
                let x = self.input(n, 0)?;
                let y = self.push(name, Op::Unary(Unary { kind: UnaryKind::HardSwish }), vec![Some(x)])?;
                self.output(n, y);
            }
            "HardSigmoid" => {
                // max(0, min(1, alpha·x + beta)).
                let (alpha, beta) = (attr_f(n, "alpha", 0.2), attr_f(n, "beta", 0.5));
                let x = self.input(n, 0)?;
                let t = self.scalar_binary(&format!("{name}/scale"), BinaryKind::Mul, x, alpha)?;
                let t = self.scalar_binary(&format!("{name}/shift"), BinaryKind::Add, t, beta)?;
                let t = self.scalar_binary(&format!("{name}/upper"), BinaryKind::Minimum, t, 1.0)?;
                let y = self.push(name, Op::Unary(Unary { kind: UnaryKind::Relu }), vec![Some(t)])?;
                self.output(n, y);
            }
            "Max" | "Min" => {
                let kind = if op_type == "Max" { BinaryKind::Maximum } else { BinaryKind::Minimum };
                self.fold_binary(n, name, kind)?;
            }
            "Pow" => {
                let e = n.input.get(1).and_then(|s| self.constant(s)).and_then(|c| c.f32s());
                let Some(&[e]) = e.as_deref() else { return Ok(Some(false)) };
                let x = self.input(n, 0)?;
                let y = if e == 1.0 {
                    self.alias(n, Val::Tensor(x));
                    return Ok(Some(true));
                } else if e == 2.0 {
                    let op = Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::None });
                    self.push(name, op, vec![Some(x), Some(x)])?
                } else if e == 0.5 {
                    self.push(name, Op::Unary(Unary { kind: UnaryKind::Sqrt }), vec![Some(x)])?
                } else {
                    return Ok(Some(false));
                };
                self.output(n, y);
            }
            "Add" | "Sub" | "Mul" | "Div"
                if n.input.len() == 2 && n.input.iter().any(|i| matches!(self.vals.get(i), Some(Val::Sym(_)))) =>
            {
                // Shape arithmetic (PyTorch's `x.view(b, c * h * w)`): folded, never a tensor.
                let (Some(a), Some(b)) = (self.shape_value(&n.input[0]), self.shape_value(&n.input[1])) else {
                    return Err(format!("{op_type} of a shape value and a tensor that is not one"));
                };
                let op = match op_type {
                    "Add" => SymOp::Add,
                    "Sub" => SymOp::Sub,
                    "Mul" => SymOp::Mul,
                    _ => SymOp::TruncDiv,
                };
                self.alias(n, Val::Sym(sym::binary(op, &a, &b).map_err(|e| e.to_string())?));
            }
            "Add" | "Sub" | "Mul" | "Div" | "Sum" => {
                if op_type == "Sum" && n.input.len() == 1 {
                    let v = self.vals.get(&first).cloned().ok_or("Sum input missing")?;
                    self.alias(n, v);
                    return Ok(Some(true));
                }
                if op_type == "Div" {
                    // x / c → x · (1/c) for a constant divisor.
                    let c = n.input.get(1).and_then(|s| self.constant(s)).and_then(|c| c.f32s().map(|v| (v, c.dims)));
                    let Some((v, dims)) = c else {
                        // A runtime divisor: DIV (float only).
                        for i in 0..2 {
                            let t = self.input(n, i)?;
                            if self.g.tensors()[t.index()].dtype != DType::F32 {
                                return Ok(Some(false));
                            }
                        }
                        self.fold_binary(n, name, BinaryKind::Div)?;
                        return Ok(Some(true));
                    };
                    let inv: Vec<f32> = v.iter().map(|x| 1.0 / x).collect();
                    let x = self.input(n, 0)?;
                    let r = self.new_const(&format!("{name}/reciprocal"), DType::F32, &dims, f32_bytes(&inv));
                    let y = self.push(
                        name,
                        Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::None }),
                        vec![Some(x), Some(r)],
                    )?;
                    self.output(n, y);
                    return Ok(Some(true));
                }
                for i in n.input.iter().filter(|i| self.constant(i).is_none()) {
                    if let Some(Val::Tensor(t)) = self.vals.get(i)
                        && self.g.tensors()[t.index()].dtype != DType::F32
                    {
                        return Ok(Some(false)); // integer arithmetic on runtime tensors: no kernel yet
                    }
                }
                let kind = match op_type {
                    "Sub" => BinaryKind::Sub,
                    "Mul" => BinaryKind::Mul,
                    _ => BinaryKind::Add,
                };
                self.fold_binary(n, name, kind)?;
            }
            _ => return Ok(None),
        }
        Ok(Some(true))
    }

    /// A variadic elementwise node (Sum, Max, Min, or a plain Add/Sub/Mul) as a chain of
    /// binary ops from left to right.
    pub(super) fn fold_binary(&mut self, n: &NodeProto, name: &str, kind: BinaryKind) -> R<()> {
        let mut acc = self.input(n, 0)?;
        for i in 1..n.input.len() {
            let b = self.input(n, i)?;
            let nm = if i + 1 == n.input.len() { name.to_string() } else { format!("{name}/{i}") };
            acc =
                self.push(&nm, Op::Binary(Binary { kind, activation: Activation::None }), vec![Some(acc), Some(b)])?;
        }
        self.output(n, acc);
        Ok(())
    }

    /// `x (op) c` for a float scalar constant `c`.
    pub(super) fn scalar_binary(&mut self, name: &str, kind: BinaryKind, x: TensorId, c: f32) -> R<TensorId> {
        let k = self.new_const(&format!("{name}/value"), DType::F32, &[], f32_bytes(&[c]));
        self.push(name, Op::Binary(Binary { kind, activation: Activation::None }), vec![Some(x), Some(k)])
    }
}
