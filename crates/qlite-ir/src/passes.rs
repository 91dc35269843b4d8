//! Generic cleanup passes and the IR's pass table.

use crate::graph::{Graph, TensorId};
use crate::op::{Activation, Op, UnaryKind};
use crate::pass::{Pass, PassCx, PassError, PassInfo, PassManager};
use crate::shape::checked_product;
use bytes::Bytes;

/// Removes nodes whose outputs nobody reads, then tensors nobody references.
#[derive(Debug, Default)]
pub struct DeadCodeElimination;

impl Pass for DeadCodeElimination {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<bool, PassError> {
        let n = g.tensors().len();
        let mut live = vec![false; n];
        for &o in g.outputs() {
            if let Some(l) = live.get_mut(o.index()) {
                *l = true;
            }
        }
        let mut keep = vec![true; g.nodes().len()];
        for (i, node) in g.nodes().iter().enumerate().rev() {
            let used = node.outputs.iter().any(|o| live.get(o.index()).copied().unwrap_or(false));
            if used || !cx.allow_rewrite_if(!used) {
                for t in node.input_ids() {
                    if let Some(l) = live.get_mut(t.index()) {
                        *l = true;
                    }
                }
            } else {
                keep[i] = false;
            }
        }
        let removed_nodes = keep.iter().filter(|k| !**k).count();
        if removed_nodes > 0 {
            let mut it = keep.into_iter();
            g.retain_nodes(|_| it.next().unwrap_or(true));
        }
        let removed_tensors = g.compact_tensors();
        Ok(removed_nodes > 0 || removed_tensors > 0)
    }
}

impl PassCx {
    /// `allow_rewrite` only when `want` is true (helper for passes that decide per item).
    pub fn allow_rewrite_if(&mut self, want: bool) -> bool {
        want && self.allow_rewrite()
    }
}

/// Folds shape-only ops (Reshape, Transpose, Concatenation) whose inputs are all constants
/// into new constants. Reshape shares the input bytes; nothing else is computed.
#[derive(Debug, Default)]
pub struct FoldConstants;

fn fold_node(g: &Graph, ni: usize) -> Option<Bytes> {
    let node = g.nodes().get(ni)?;
    let ins: Vec<&crate::tensor::Tensor> =
        node.inputs.iter().map(|i| i.and_then(|t| g.tensor(t))).collect::<Option<Vec<_>>>()?;
    if ins.iter().any(|t| !t.is_const()) || node.outputs.len() != 1 {
        return None;
    }
    let out = g.tensor(*node.outputs.first()?)?;
    if g.outputs().contains(node.outputs.first()?) {
        return None;
    }
    match &node.op {
        Op::Reshape(_) => ins.first()?.data.clone(),
        Op::Transpose(t) => {
            let x = ins.first()?;
            let dims = x.shape.to_fixed()?;
            let data = x.data.as_ref()?;
            Some(Bytes::from(transpose_bytes(data, &dims, &t.perm, x.dtype.size())?))
        }
        Op::Concatenation(c) if c.activation == Activation::None => {
            let out_dims = out.shape.to_fixed()?;
            let outer = checked_product(out_dims.get(..c.axis)?)?;
            let mut parts = Vec::new();
            for t in &ins {
                let d = t.shape.to_fixed()?;
                let inner = checked_product(d.get(c.axis..)?)?.checked_mul(t.dtype.size())?;
                parts.push((t.data.as_ref()?, inner));
            }
            let mut buf = Vec::with_capacity(out.shape.num_bytes(out.dtype.size())?);
            for o in 0..outer {
                for (data, inner) in &parts {
                    buf.extend_from_slice(data.get(o * inner..(o + 1) * inner)?);
                }
            }
            Some(Bytes::from(buf))
        }
        _ => None,
    }
}

/// Permute a row-major array of `elem`-byte elements.
pub fn transpose_bytes(data: &[u8], dims: &[usize], perm: &[usize], elem: usize) -> Option<Vec<u8>> {
    let rank = dims.len();
    if perm.len() != rank {
        return None;
    }
    let n = checked_product(dims)?;
    if data.len() != n.checked_mul(elem)? {
        return None;
    }
    let mut in_strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * dims[i + 1];
    }
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims.get(p).copied()).collect::<Option<_>>()?;
    let mut out = vec![0u8; data.len()];
    let mut idx = vec![0usize; rank];
    for o in 0..n {
        let mut src = 0;
        for k in 0..rank {
            src += idx[k] * in_strides[perm[k]];
        }
        out[o * elem..(o + 1) * elem].copy_from_slice(&data[src * elem..(src + 1) * elem]);
        for k in (0..rank).rev() {
            idx[k] += 1;
            if idx[k] < out_dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Some(out)
}

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<bool, PassError> {
        let mut changed = false;
        let mut i = 0;
        while i < g.nodes().len() {
            if let Some(data) = fold_node(g, i)
                && cx.allow_rewrite()
            {
                let out: TensorId = g.nodes()[i].outputs[0];
                if let Some(t) = g.tensor_mut(out) {
                    t.data = Some(data);
                }
                let mut k = 0;
                g.retain_nodes(|_| {
                    k += 1;
                    k - 1 != i
                });
                changed = true;
                continue;
            }
            i += 1;
        }
        if changed {
            g.compact_tensors();
        }
        Ok(changed)
    }
}

/// Folds a standalone Relu / Relu6 into the fused activation of the op that produces its
/// input, when that op has no activation yet and nothing else reads the intermediate tensor.
#[derive(Debug, Default)]
pub struct FuseActivations;

impl Pass for FuseActivations {
    fn name(&self) -> &'static str {
        "fuse-activations"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<bool, PassError> {
        let mut changed = false;
        let mut i = 0;
        while i < g.nodes().len() {
            let node = &g.nodes()[i];
            let act = match &node.op {
                Op::Unary(u) if u.kind == UnaryKind::Relu => Activation::Relu,
                Op::Unary(u) if u.kind == UnaryKind::Relu6 => Activation::Relu6,
                _ => {
                    i += 1;
                    continue;
                }
            };
            let (Some(x), Some(&y)) = (node.input(0), node.outputs.first()) else {
                i += 1;
                continue;
            };
            let fusable = g.producer(x).filter(|p| {
                let pn = &g.nodes()[p.index()];
                // Concatenation is left out: not every runtime kernel honours its activation.
                !matches!(pn.op, Op::Concatenation(_))
                    && pn.op.fused_activation() == Some(Activation::None)
                    && pn.outputs.len() == 1
                    && g.consumers(x).len() == 1
                    && !g.outputs().contains(&x)
            });
            if let Some(p) = fusable
                && cx.allow_rewrite()
            {
                if let Some(pn) = g.node_mut(p) {
                    pn.op.set_fused_activation(act);
                    pn.outputs[0] = y;
                }
                let mut k = 0;
                g.retain_nodes(|_| {
                    k += 1;
                    k - 1 != i
                });
                changed = true;
                continue;
            }
            i += 1;
        }
        if changed {
            g.compact_tensors();
        }
        Ok(changed)
    }
}

/// The IR's generic passes, by name.
pub const PASSES: &[PassInfo] = &[
    PassInfo {
        name: "dce",
        description: "remove nodes and tensors nothing reads",
        make: || Box::new(DeadCodeElimination),
    },
    PassInfo {
        name: "fold-constants",
        description: "fold Reshape / Transpose / Concatenation of constants",
        make: || Box::new(FoldConstants),
    },
    PassInfo {
        name: "fuse-activations",
        description: "fold Relu / Relu6 into the producing op's fused activation",
        make: || Box::new(FuseActivations),
    },
];

/// Cleanup run after import: fold, fuse, then remove what is left over.
pub fn cleanup_pipeline() -> PassManager {
    PassManager::new().with(FoldConstants).with(FuseActivations).with(DeadCodeElimination)
}
