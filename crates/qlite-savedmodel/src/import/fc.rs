//! SavedModel → IR: MatMul and BatchMatMul: FULLY_CONNECTED with constant weights, BATCH_MATMUL
//! with two run-time operands.

use super::*;

impl Im<'_> {
    /// The fc family's ops; `Ok(None)` with `unknown_op` set: not one of them.
    pub(super) fn fc_op(
        &mut self,
        _fr: &mut Frame<'_>,
        n: &NodeDef,
        ins: &[Val],
        _depth: usize,
        name: &str,
    ) -> R<Option<Vec<Val>>> {
        let one = |v: Val| Ok(Some(vec![v]));
        let get = |i: usize| ins.get(i).cloned().ok_or_else(|| format!("input {i} is missing"));
        match n.op.as_str() {
            // Both operands at run time (attention): BATCH_MATMUL.
            "MatMul" | "BatchMatMul" | "BatchMatMulV2" | "BatchMatMulV3"
                if n.op != "MatMul" || !matches!(ins.get(1), Some(Val::C(_))) =>
            {
                let (ta, tb) = if n.op == "MatMul" { ("transpose_a", "transpose_b") } else { ("adj_x", "adj_y") };
                let a = self.materialize(&format!("{name}/a"), &get(0)?)?;
                let b = self.materialize(&format!("{name}/b"), &get(1)?)?;
                let op = Op::BatchMatMul(BatchMatMul {
                    adj_x: attr_b(n, ta).unwrap_or(false),
                    adj_y: attr_b(n, tb).unwrap_or(false),
                });
                one(Val::T(self.push(name, op, vec![Some(a), Some(b)])?))
            }
            "MatMul" => {
                let (a, b) = (get(0)?, get(1)?);
                let Val::C(w) = b else { return Ok(None) };
                if attr_b(n, "transpose_a") == Some(true) || w.dims.len() != 2 {
                    return Ok(None);
                }
                if w.dtype != DType::F32 {
                    return Err("MatMul weights must be float32".into());
                }
                let x = self.materialize(&format!("{name}/x"), &a)?;
                let wt = if attr_b(n, "transpose_b") == Some(true) {
                    self.g.add_tensor(Tensor::constant(
                        format!("{name}/weights"),
                        DType::F32,
                        Shape::fixed(&w.dims),
                        w.data.clone(),
                    ))
                } else {
                    // [in, out] → FULLY_CONNECTED's [out, in].
                    self.reordered(format!("{name}/weights"), &w, &[1, 0], "MatMul weights do not match their shape")?
                };
                let op = Op::FullyConnected(FullyConnected {
                    activation: Activation::None,
                    keep_num_dims: false,
                    asymmetric_inputs: false,
                });
                one(Val::T(self.push(name, op, vec![Some(x), Some(wt), None])?))
            }
            _ => {
                self.unknown_op = true;
                Ok(None)
            }
        }
    }
}
