//! SavedModel → IR: Placeholders, constants, identities, variables, function calls, casts, and
//! shape arithmetic (Shape, GatherV2, Prod, Pack over symbolic dims).

use super::*;

impl Im<'_> {
    /// The graph family's ops; `Ok(None)` with `unknown_op` set: not one of them.
    pub(super) fn graph_op(
        &mut self,
        _fr: &mut Frame<'_>,
        n: &NodeDef,
        ins: &[Val],
        depth: usize,
        _name: &str,
    ) -> R<Option<Vec<Val>>> {
        let one = |v: Val| Ok(Some(vec![v]));
        let get = |i: usize| ins.get(i).cloned().ok_or_else(|| format!("input {i} is missing"));
        match n.op.as_str() {
            "Placeholder" => Err("an input that the signature does not feed".into()),
            "Const" => match attr(n, "value") {
                Some(attr_value::Value::Tensor(t)) => one(Val::C(tensor_const(t)?)),
                _ => Err("Const without a tensor value".into()),
            },
            "Identity" | "StopGradient" | "Snapshot" | "PreventGradient" => one(get(0)?),
            "IdentityN" => Ok(Some(ins.to_vec())),
            "NoOp" => one(Val::Nothing),
            "ReadVariableOp" => match get(0)? {
                Val::Res(key) => one(Val::C(self.variable(&key, n)?)),
                other => Err(format!("reads {} instead of a bound variable", describe(&other))),
            },
            "VarHandleOp" => Err(format!(
                "resource variable {:?} is not bound to a checkpoint value (only variables captured by the signature's function are)",
                attr_s(n, "shared_name").unwrap_or_default()
            )),
            op if CALLS.contains(&op) => {
                let f = attr_func(n, "f").ok_or("call without a function")?;
                Ok(Some(self.call(&f, ins.to_vec(), depth)?))
            }
            "Shape" => match get(0)? {
                Val::T(t) => one(Val::Sym(self.shape(t).dims().iter().map(|d| d.fixed().map(|v| v as i64)).collect())),
                Val::C(c) => {
                    one(Val::C(Const::i64(vec![c.dims.len()], &c.dims.iter().map(|&d| d as i64).collect::<Vec<_>>())))
                }
                Val::Sym(s) => one(Val::C(Const::i64(vec![1], &[s.len() as i64]))),
                other => Err(format!("Shape of {}", describe(&other))),
            },
            // Shape arithmetic of Tensordot (a Dense on 3-D input): through qlite_ir::sym.
            "GatherV2" => {
                let (Some(v), Val::C(idx), Val::C(axis)) = (shape_vector(&get(0)?), get(1)?, get(2)?) else {
                    return Ok(None);
                };
                if axis.ints().is_none_or(|a| a.first().copied().unwrap_or(0) != 0) {
                    return Ok(None);
                }
                let ix = idx.ints().ok_or("GatherV2 indices must be integers")?;
                let r = sym::gather(&v, &ix, idx.dims.is_empty()).map_err(|e| e.to_string())?;
                one(from_sym(r))
            }
            "Prod" => {
                let (Some(v), Val::C(axes)) = (shape_vector(&get(0)?), get(1)?) else { return Ok(None) };
                if !axes.ints().is_some_and(|a| a.iter().all(|&x| x == 0 || x == -1)) {
                    return Ok(None);
                }
                let p = sym::product(&v).map_err(|e| e.to_string())?;
                let keep = attr_b(n, "keep_dims").unwrap_or(false);
                one(from_sym(if keep { SymVal::Vector(vec![p]) } else { SymVal::Scalar(p) }))
            }
            "Pack" => {
                if attr_i(n, "axis").unwrap_or(0) != 0 {
                    return Ok(None);
                }
                let mut v = Vec::new();
                for p in ins {
                    match p {
                        Val::SymScalar(s) => v.push(*s),
                        Val::C(c) if c.dims.is_empty() && c.ints().is_some() => {
                            v.push(c.ints().and_then(|x| x.first().copied()))
                        }
                        Val::C(c) if c.dims.is_empty() && c.f32s().is_some() => {
                            // A float vector of scalars: fold to a constant.
                            let all: Option<Vec<f32>> = ins
                                .iter()
                                .map(|p| match p {
                                    Val::C(c) if c.dims.is_empty() => c.f32s().and_then(|x| x.first().copied()),
                                    _ => None,
                                })
                                .collect();
                            let all = all.ok_or("Pack of mixed values")?;
                            return one(Val::C(Const::f32(vec![all.len()], &all)));
                        }
                        _ => return Ok(None), // packing runtime tensors
                    }
                }
                if v.iter().all(Option::is_some) {
                    let c: Vec<i64> = v.iter().flatten().copied().collect();
                    return one(Val::C(Const::i64(vec![c.len()], &c)));
                }
                one(Val::Sym(v))
            }
            "Cast" => {
                let to = match attr(n, "DstT") {
                    Some(attr_value::Value::Type(t)) => *t,
                    _ => return Err("Cast without DstT".into()),
                };
                match get(0)? {
                    v @ (Val::Sym(_) | Val::SymScalar(_)) => one(v),
                    Val::C(c) => {
                        if let (Some(i), true) = (c.ints(), to == DataType::DtFloat as i32) {
                            return one(Val::C(Const::f32(
                                c.dims.clone(),
                                &i.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                            )));
                        }
                        if let (Some(f), true) =
                            (c.f32s(), to == DataType::DtInt32 as i32 || to == DataType::DtInt64 as i32)
                        {
                            return one(Val::C(Const::i64(
                                c.dims.clone(),
                                &f.iter().map(|&v| v as i64).collect::<Vec<_>>(),
                            )));
                        }
                        if ir_dtype(to) == Some(c.dtype)
                            || (c.ints().is_some()
                                && (to == DataType::DtInt32 as i32 || to == DataType::DtInt64 as i32))
                        {
                            return one(Val::C(c));
                        }
                        Ok(None)
                    }
                    Val::T(t) if self.g.tensor(t).map(|t| t.dtype) == ir_dtype(to) => one(Val::T(t)),
                    _ => Ok(None),
                }
            }
            _ => {
                self.unknown_op = true;
                Ok(None)
            }
        }
    }
}
