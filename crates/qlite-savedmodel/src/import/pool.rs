//! SavedModel → IR: MaxPool, AvgPool, Mean and Sum.

use super::*;

impl Im<'_> {
    /// The pool family's ops; `Ok(None)` with `unknown_op` set: not one of them.
    pub(super) fn pool_op(
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
            "MaxPool" | "AvgPool" => {
                let x = self.materialize(&format!("{name}/x"), &get(0)?)?;
                let (Some(k), Some(s)) = (attr_ints(n, "ksize"), attr_ints(n, "strides")) else {
                    return Err("pool without ksize / strides".into());
                };
                if k.len() != 4 || s.len() != 4 || k[0] != 1 || k[3] != 1 || s[0] != 1 || s[3] != 1 {
                    return Ok(None);
                }
                let padding = padding(n)?.ok_or("explicit padding on a pool")?;
                let pos = |v: i64| usize::try_from(v).ok().filter(|&v| v > 0).ok_or("pool sizes must be positive");
                let op = Op::Pool2d(Pool2d {
                    kind: if n.op == "MaxPool" { PoolKind::Max } else { PoolKind::Average },
                    filter: [pos(k[1])?, pos(k[2])?],
                    stride: [pos(s[1])?, pos(s[2])?],
                    padding,
                    activation: Activation::None,
                });
                one(Val::T(self.push(name, op, vec![Some(x)])?))
            }
            "Mean" | "Sum" => {
                let x = self.materialize(&format!("{name}/x"), &get(0)?)?;
                let Val::C(a) = get(1)? else { return Err(format!("{} axes must be a constant", n.op)) };
                let rank = self.shape(x).rank() as i64;
                let mut axes: Vec<usize> =
                    a.ints().ok_or("axes must be integers")?.iter().map(|&v| norm_axis(v, rank)).collect::<R<_>>()?;
                axes.sort_unstable();
                axes.dedup();
                let keep_dims = attr_b(n, "keep_dims").unwrap_or(false);
                let attrs = Mean { axes, keep_dims };
                let op = if n.op == "Sum" { Op::Sum(attrs) } else { Op::Mean(attrs) };
                one(Val::T(self.push(name, op, vec![Some(x)])?))
            }
            _ => {
                self.unknown_op = true;
                Ok(None)
            }
        }
    }
}
