//! SavedModel → IR: ResizeNearestNeighbor and ResizeBilinear.

use super::*;

impl Im<'_> {
    /// The resize family's ops; `Ok(None)` with `unknown_op` set: not one of them.
    pub(super) fn resize_op(
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
            "ResizeNearestNeighbor" | "ResizeBilinear" => {
                let sz: Vec<i64> = match get(1)? {
                    Val::C(c) => c.ints().ok_or("size must be integers")?,
                    Val::Sym(v) if v.iter().all(Option::is_some) => v.iter().flatten().copied().collect(),
                    _ => return Ok(None),
                };
                let pos = |v: i64| {
                    usize::try_from(v)
                        .ok()
                        .filter(|&v| (1..=1 << 20).contains(&v))
                        .ok_or("resize sizes must be positive")
                };
                let &[h, w] = sz.as_slice() else { return Err(format!("size {sz:?}")) };
                let x = self.materialize(&format!("{name}/x"), &get(0)?)?;
                let op = Op::Resize(Resize {
                    mode: if n.op == "ResizeBilinear" { ResizeMode::Bilinear } else { ResizeMode::NearestNeighbor },
                    size: [pos(h)?, pos(w)?],
                    align_corners: attr_b(n, "align_corners").unwrap_or(false),
                    half_pixel_centers: attr_b(n, "half_pixel_centers").unwrap_or(false),
                });
                one(Val::T(self.push(name, op, vec![Some(x)])?))
            }
            _ => {
                self.unknown_op = true;
                Ok(None)
            }
        }
    }
}
