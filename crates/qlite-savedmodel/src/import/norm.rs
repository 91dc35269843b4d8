//! SavedModel → IR: Softmax and LogSoftmax.

use super::*;

impl Im<'_> {
    /// The norm family's ops; `Ok(None)` with `unknown_op` set: not one of them.
    pub(super) fn norm_op(
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
            "LogSoftmax" => {
                let x = self.materialize(&format!("{name}/x"), &get(0)?)?;
                one(Val::T(self.push(name, Op::LogSoftmax, vec![Some(x)])?))
            }
            "Softmax" => {
                let x = self.materialize(&format!("{name}/x"), &get(0)?)?;
                one(Val::T(self.push(name, Op::Softmax(Softmax { beta: 1.0 }), vec![Some(x)])?))
            }
            _ => {
                self.unknown_op = true;
                Ok(None)
            }
        }
    }
}
