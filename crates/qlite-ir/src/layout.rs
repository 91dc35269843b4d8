//! Global layout assignment: which rank-4 activations are stored channels-last.
//!
//! An NCHW model (ONNX) reaches the IR with every convolution and pool wrapped in Transposes
//! (NCHW → NHWC before, back after), because the IR's convolutions are NHWC and everything else
//! keeps the file's NCHW meaning. A local peephole cannot remove those Transposes where a tensor
//! fans out (a residual skip feeds the next block and the ADD) or where layout-sensitive ops
//! (concat axes, pads, means) sit between them. This pass decides the storage layout of whole
//! regions at once:
//!
//! * Tensors joined by ops that work in any layout once their attributes are permuted
//!   (elementwise, binary with broadcast, PRelu, concatenation, pads, means and sums, strided
//!   slices without shrink, tiles, quantize/dequantize) form one *region*; Transposes are the
//!   edges between regions; every other op, and the graph's inputs and outputs, *fix* the
//!   logical layout of the tensors they touch.
//! * Each region is stored either as it is or channels-last (`perm [0,2,3,1]`), whichever leaves
//!   fewer Transposes: a Transpose whose two sides' layouts cancel it disappears, a fixed use of
//!   a channels-last region costs one. Regions are revisited until no choice changes.
//! * The rewrite permutes the region's shapes and attributes (axes, paddings, multiples, slice
//!   dims), the constants its binary ops read (each use gets its own permuted copy), changes the
//!   perm of each edge Transpose (identities are then removed by `sink-transposes`) and puts one
//!   Transpose at each fixed use of a channels-last region.
//!
//! A flatten into a fully-connected layer costs nothing either: the FC's weight columns are
//! permuted at conversion time instead.

use crate::edit::{Editor, Patch};
use crate::graph::{Graph, Node, TensorId};
use crate::op::{Concatenation, Mean, MirrorPad, Op, Pad, StridedSlice, Tile, Transpose};
use crate::pass::{Pass, PassError};
use crate::passes::transpose_bytes;
use crate::shape::{Dim, Shape};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Channels-last storage of a logical NCHW tensor: stored axis `i` is logical axis `P[i]`.
const P: [usize; 4] = [0, 2, 3, 1];
/// Where logical axis `a` is stored: `P_INV[a]`.
const P_INV: [usize; 4] = [0, 3, 1, 2];
const ID: [usize; 4] = [0, 1, 2, 3];

/// Stores rank-4 regions channels-last where that removes Transposes (see the module docs).
#[derive(Debug, Default)]
pub struct AssignLayout;

/// `compose(a, b)[i] = a[b[i]]`: transposing by `a`, then by `b`.
fn compose(a: &[usize], b: &[usize]) -> Vec<usize> {
    b.iter().map(|&i| a[i]).collect()
}

fn perm_of(p: bool) -> &'static [usize] {
    if p { &P } else { &ID }
}

fn inv_of(p: bool) -> &'static [usize] {
    if p { &P_INV } else { &ID }
}

struct Dsu(Vec<usize>);

impl Dsu {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut c = x;
        while self.0[c] != r {
            let next = self.0[c];
            self.0[c] = r;
            c = next;
        }
        r
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra.max(rb)] = ra.min(rb);
        }
    }
}

/// How a node relates to the layout of the rank-4 tensors it touches.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// Works in either layout with permuted attributes: its candidate tensors share a region.
    Agnostic,
    /// A rank-4 Transpose between two regions.
    Edge,
    /// Needs the logical layout of every candidate tensor it reads or writes.
    Fixed,
}

/// Does the order of the non-unit logical axes in `kept` survive channels-last storage?
fn keeps_order(shape: &Shape, kept: &[usize]) -> bool {
    let non_unit: Vec<usize> = kept.iter().copied().filter(|&a| shape.dim(a) != Some(Dim::Fixed(1))).collect();
    non_unit.windows(2).all(|w| P_INV[w[0]] < P_INV[w[1]])
}

/// A flatten of `[N, C, H, W]` into `[N, C·H·W]` read only by fully-connected layers with
/// constant `[units, C·H·W]` weights: those consumers' node indices and (C, H, W). Stored
/// channels-last, the flatten reads (h, w, c) order, which the weights' columns then follow.
fn flatten_into_fc(g: &Graph, n: &Node) -> Option<(Vec<usize>, [usize; 3])> {
    let (Op::Reshape(_), Some(x), Some(&y)) = (&n.op, n.input(0), n.outputs.first()) else { return None };
    let xs = &g.tensor(x)?.shape;
    // Only unit axes move: the flatten reads the same order, the weights stay.
    if keeps_order(xs, &ID) {
        return None;
    }
    let (c, h, w) = (xs.dim(1)?.fixed()?, xs.dim(2)?.fixed()?, xs.dim(3)?.fixed()?);
    let ys = &g.tensor(y)?.shape;
    if ys.rank() != 2 || ys.dim(1)?.fixed()? != c * h * w || ys.dim(0)? != xs.dim(0)? || g.outputs().contains(&y) {
        return None;
    }
    let mut fcs = Vec::new();
    for (i, m) in g.nodes().iter().enumerate() {
        if !m.input_ids().any(|t| t == y) {
            continue;
        }
        let Op::FullyConnected(_) = &m.op else { return None };
        let wt = g.tensor(m.input(1)?)?;
        let ok = m.input(0) == Some(y)
            && m.inputs.iter().skip(1).all(|&t| t != Some(y))
            && wt.is_const()
            && wt.shape.to_fixed().is_some_and(|d| d.len() == 2 && d[1] == c * h * w);
        if !ok {
            return None;
        }
        fcs.push(i);
    }
    (!fcs.is_empty()).then_some((fcs, [c, h, w]))
}

/// The weights of a fully-connected layer after a channels-last flatten: columns reordered from
/// (c, h, w) to (h, w, c).
fn permuted_fc_weights(g: &mut Graph, t: TensorId, [c, h, w]: [usize; 3]) -> Option<TensorId> {
    let wt = g.tensor(t)?.clone();
    let dims = wt.shape.to_fixed()?;
    let moved = transpose_bytes(wt.data.as_ref()?, &[dims[0], c, h, w], &[0, 2, 3, 1], wt.dtype.size())?;
    crate::hint::constant_consumed(wt.data.as_ref()?);
    let mut nt = Tensor::constant(format!("{}/hwc", wt.name), wt.dtype, wt.shape.clone(), moved.into());
    nt.quant = wt.quant.clone();
    Some(g.add_tensor(nt))
}

/// A channel shuffle as ONNX spells it: Reshape `[N, C, H, W]` → `[N, g, C/g, H, W]`,
/// Transpose `[0, 2, 1, 3, 4]`, Reshape back to `[N, C, H, W]`. Stored channels-last it is
/// `[N, H, W, g, C/g]`, Transpose `[0, 1, 2, 4, 3]`, `[N, H, W, C]`: one Transpose either way.
/// Returns the three node indices, from the first Reshape's index.
fn channel_shuffle(g: &Graph, i: usize) -> Option<[usize; 3]> {
    let nodes = g.nodes();
    let r1 = &nodes[i];
    let (Op::Reshape(_), Some(x), Some(&a)) = (&r1.op, r1.input(0), r1.outputs.first()) else { return None };
    let only_reader = |t: TensorId| -> Option<usize> {
        let readers: Vec<usize> =
            nodes.iter().enumerate().filter(|(_, n)| n.input_ids().any(|u| u == t)).map(|(k, _)| k).collect();
        (readers.len() == 1 && !g.outputs().contains(&t)).then(|| readers[0])
    };
    let ti = only_reader(a)?;
    let (Op::Transpose(tp), Some(&b)) = (&nodes[ti].op, nodes[ti].outputs.first()) else { return None };
    if tp.perm != [0, 2, 1, 3, 4] {
        return None;
    }
    let r2i = only_reader(b)?;
    let (Op::Reshape(_), Some(&y)) = (&nodes[r2i].op, nodes[r2i].outputs.first()) else { return None };
    let (xs, as_, ys) = (&g.tensor(x)?.shape, &g.tensor(a)?.shape, &g.tensor(y)?.shape);
    let dims = |s: &Shape| s.dims().to_vec();
    let (xd, ad, yd) = (dims(xs), dims(as_), dims(ys));
    let ok = xd.len() == 4
        && ad.len() == 5
        && xd == yd
        && ad[0] == xd[0]
        && ad[3] == xd[2]
        && ad[4] == xd[3]
        && matches!((ad[1], ad[2], xd[1]), (Dim::Fixed(gr), Dim::Fixed(cg), Dim::Fixed(c)) if gr * cg == c);
    ok.then_some([i, ti, r2i])
}

impl AssignLayout {
    fn candidate(g: &Graph, t: TensorId) -> bool {
        g.tensor(t).is_some_and(|t| t.shape.rank() == 4 && !t.is_const())
    }

    fn role(g: &Graph, n: &Node) -> Role {
        if flatten_into_fc(g, n).is_some() && n.input(0).is_some_and(|x| Self::candidate(g, x)) {
            return Role::Agnostic;
        }
        let cand = |t: TensorId| Self::candidate(g, t);
        let rank = |t: TensorId| g.tensor(t).map_or(0, |t| t.shape.rank());
        let is_const = |t: TensorId| g.tensor(t).is_some_and(|t| t.is_const());
        let Some(&out) = n.outputs.first() else { return Role::Fixed };
        let x = n.input(0);
        let all_rank4_or_const =
            |ins: &[Option<TensorId>]| ins.iter().flatten().all(|&t| is_const(t) && rank(t) <= 4 || cand(t));
        match &n.op {
            Op::Transpose(_) if x.is_some_and(cand) && cand(out) => Role::Edge,
            Op::Unary(_) | Op::Quantize | Op::Dequantize if x.is_some_and(cand) && cand(out) => Role::Agnostic,
            Op::Binary(_) | Op::Concatenation(_) if cand(out) && all_rank4_or_const(&n.inputs) => Role::Agnostic,
            Op::Prelu if x.is_some_and(cand) && cand(out) && n.input(1).is_some_and(is_const) => Role::Agnostic,
            Op::Pad(_) | Op::MirrorPad(_) | Op::Tile(_) if x.is_some_and(cand) && cand(out) => Role::Agnostic,
            Op::StridedSlice(s) if x.is_some_and(cand) && cand(out) && s.axes.iter().all(|a| !a.shrink) => {
                Role::Agnostic
            }
            Op::Mean(m) | Op::Sum(m) if x.is_some_and(cand) => {
                if m.keep_dims && cand(out) {
                    return Role::Agnostic;
                }
                let Some(xs) = x.and_then(|x| g.tensor(x)).map(|t| &t.shape) else { return Role::Fixed };
                let kept: Vec<usize> = (0..4).filter(|a| !m.axes.contains(a)).collect();
                if !m.keep_dims && keeps_order(xs, &kept) { Role::Agnostic } else { Role::Fixed }
            }
            // A reshape out of rank 4 that only drops unit axes (global pooling's [N,C,1,1]
            // → [N,C]) reads the same elements in either layout.
            Op::Reshape(_) if x.is_some_and(cand) && rank(out) != 4 => {
                let Some(xs) = x.and_then(|x| g.tensor(x)).map(|t| &t.shape) else { return Role::Fixed };
                if keeps_order(xs, &ID) { Role::Agnostic } else { Role::Fixed }
            }
            _ => Role::Fixed,
        }
    }
}

/// A constant read by an op of a channels-last region: brought to rank 4 (leading unit axes,
/// as broadcasting aligns them) and permuted; `None` if it cannot be.
fn permuted_const(g: &mut Graph, t: TensorId) -> Option<TensorId> {
    let c = g.tensor(t)?.clone();
    let data = c.data.as_ref()?;
    let dims = c.shape.to_fixed()?;
    if dims.len() > 4 {
        return None;
    }
    let mut full = vec![1usize; 4 - dims.len()];
    full.extend_from_slice(&dims);
    let moved = transpose_bytes(data, &full, &P, c.dtype.size())?;
    let new_dims: Vec<usize> = P.iter().map(|&i| full[i]).collect();
    let mut nt = Tensor::constant(format!("{}/nhwc", c.name), c.dtype, Shape::fixed(&new_dims), moved.into());
    nt.quant = c.quant.clone();
    if nt.quant.as_ref().is_some_and(|q| q.axis().is_some()) {
        return None;
    }
    Some(g.add_tensor(nt))
}

/// The op of an agnostic node of a channels-last region, its attributes permuted; its constant
/// inputs are replaced by permuted copies in `inputs`. `None` if it cannot be rewritten.
fn permuted_op(g: &mut Graph, n: &Node, inputs: &mut [Option<TensorId>]) -> Option<Op> {
    let stored_pairs = |p: &[[usize; 2]]| -> Vec<[usize; 2]> { P.iter().map(|&a| p[a]).collect() };
    Some(match &n.op {
        Op::Unary(_) | Op::Quantize | Op::Dequantize | Op::Reshape(_) => n.op.clone(),
        Op::Binary(_) | Op::Prelu | Op::Concatenation(_) => {
            for slot in inputs.iter_mut() {
                if let Some(t) = *slot
                    && g.tensor(t).is_some_and(|t| t.is_const())
                {
                    *slot = Some(permuted_const(g, t)?);
                }
            }
            match &n.op {
                Op::Concatenation(c) => {
                    Op::Concatenation(Concatenation { axis: P_INV[c.axis], activation: c.activation })
                }
                other => other.clone(),
            }
        }
        Op::Pad(p) => Op::Pad(Pad { paddings: stored_pairs(&p.paddings) }),
        Op::MirrorPad(p) => Op::MirrorPad(MirrorPad { paddings: stored_pairs(&p.paddings), mode: p.mode }),
        Op::Tile(t) => Op::Tile(Tile { multiples: P.iter().map(|&a| t.multiples[a]).collect() }),
        Op::StridedSlice(s) => Op::StridedSlice(StridedSlice { axes: P.iter().map(|&a| s.axes[a]).collect() }),
        Op::Mean(m) | Op::Sum(m) => {
            let mut axes: Vec<usize> = m.axes.iter().map(|&a| P_INV[a]).collect();
            axes.sort_unstable();
            let attrs = Mean { axes, keep_dims: m.keep_dims };
            if matches!(n.op, Op::Sum(_)) { Op::Sum(attrs) } else { Op::Mean(attrs) }
        }
        _ => return None,
    })
}

impl Pass for AssignLayout {
    fn name(&self) -> &'static str {
        "assign-layout"
    }

    /// One global decision, applied as one patch.
    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        if !ed.budget_left() {
            return Ok(());
        }
        let mut g = ed.snapshot();
        if Self::rewrite(&mut g)? {
            let _ = ed.apply(Patch::replace_graph(g));
        }
        Ok(())
    }
}

impl AssignLayout {
    /// The rewrite on a copy of the graph; whether it changed anything.
    fn rewrite(g: &mut Graph) -> Result<bool, PassError> {
        let nt = g.tensors().len();
        let mut roles: Vec<Role> = g.nodes().iter().map(|n| Self::role(g, n)).collect();
        let shuffles: Vec<[usize; 3]> = (0..g.nodes().len()).filter_map(|i| channel_shuffle(g, i)).collect();
        for grp in &shuffles {
            for &k in grp {
                roles[k] = Role::Agnostic;
            }
        }
        if !roles.contains(&Role::Edge) {
            return Ok(false);
        }
        let cand: Vec<bool> = (0..nt).map(|i| Self::candidate(g, TensorId::from_index(i))).collect();
        let is_cand = |t: TensorId| cand.get(t.index()).copied().unwrap_or(false);
        let mut dsu = Dsu((0..nt).collect());
        for (n, role) in g.nodes().iter().zip(&roles) {
            if *role == Role::Agnostic {
                let ts: Vec<TensorId> =
                    n.input_ids().chain(n.outputs.iter().copied()).filter(|&t| is_cand(t)).collect();
                for w in ts.windows(2) {
                    dsu.union(w[0].index(), w[1].index());
                }
            }
        }
        // A shuffle's input and output share a region.
        for &[r1, _, r2] in &shuffles {
            if let (Some(x), Some(&y)) = (g.nodes()[r1].input(0), g.nodes()[r2].outputs.first())
                && is_cand(x)
                && is_cand(y)
            {
                dsu.union(x.index(), y.index());
            }
        }
        // Per region: fixed uses (a Transpose each when channels-last), whether it may change
        // at all, and its edges.
        let mut fixed: HashMap<usize, usize> = HashMap::new();
        let mut pinned: HashMap<usize, bool> = HashMap::new();
        for i in 0..nt {
            let t = TensorId::from_index(i);
            if is_cand(t) && g.tensor(t).and_then(|t| t.quant.as_ref()).is_some_and(|q| q.axis().is_some()) {
                pinned.insert(dsu.find(i), true);
            }
        }
        let mut fixed_producer = vec![false; nt];
        let mut fixed_consumer = vec![false; nt];
        for (n, role) in g.nodes().iter().zip(&roles) {
            if *role != Role::Fixed {
                continue;
            }
            for t in n.input_ids().filter(|&t| is_cand(t)) {
                fixed_consumer[t.index()] = true;
            }
            for &t in n.outputs.iter().filter(|&&t| is_cand(t)) {
                fixed_producer[t.index()] = true;
            }
        }
        for &t in g.inputs() {
            if is_cand(t) {
                fixed_producer[t.index()] = true;
            }
        }
        for &t in g.outputs() {
            if is_cand(t) {
                fixed_consumer[t.index()] = true;
            }
        }
        for i in 0..nt {
            let uses = usize::from(fixed_producer[i]) + usize::from(fixed_consumer[i]);
            if uses > 0 {
                *fixed.entry(dsu.find(i)).or_default() += uses;
            }
        }
        // Edges: (input region, output region, perm).
        let mut edges: Vec<(Option<usize>, Option<usize>, Vec<usize>)> = Vec::new();
        for (n, role) in g.nodes().iter().zip(&roles) {
            if let (Role::Edge, Op::Transpose(t), Some(x)) = (role, &n.op, n.input(0)) {
                let y = n.outputs[0];
                let rx = is_cand(x).then(|| dsu.find(x.index()));
                let ry = is_cand(y).then(|| dsu.find(y.index()));
                edges.push((rx, ry, t.perm.clone()));
            }
        }
        let mut region_edges: HashMap<usize, Vec<usize>> = HashMap::new();
        for (k, (a, b, _)) in edges.iter().enumerate() {
            for r in [a, b].into_iter().flatten() {
                region_edges.entry(*r).or_default().push(k);
            }
        }
        let mut last: HashMap<usize, bool> = HashMap::new();
        let layout = |last: &HashMap<usize, bool>, r: Option<usize>| r.is_some_and(|r| last.get(&r) == Some(&true));
        let stays = |last: &HashMap<usize, bool>, k: usize| {
            let (a, b, p) = &edges[k];
            let q = compose(&compose(inv_of(layout(last, *a)), p), perm_of(layout(last, *b)));
            q != ID
        };
        let mut regions: Vec<usize> = region_edges.keys().copied().collect();
        regions.sort_unstable();
        for _round in 0..8 {
            let mut changed = false;
            for &r in &regions {
                if pinned.get(&r) == Some(&true) {
                    continue;
                }
                let mut cost = [0usize; 2];
                for (choice, c) in cost.iter_mut().enumerate() {
                    let mut trial = last.clone();
                    trial.insert(r, choice == 1);
                    *c = region_edges[&r].iter().filter(|&&k| stays(&trial, k)).count()
                        + if choice == 1 { fixed.get(&r).copied().unwrap_or(0) } else { 0 };
                }
                let want = cost[1] < cost[0];
                if layout(&last, Some(r)) != want {
                    last.insert(r, want);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let nhwc = |dsu: &mut Dsu, t: TensorId| is_cand(t) && last.get(&dsu.find(t.index())) == Some(&true);
        if !(0..nt).any(|i| nhwc(&mut dsu, TensorId::from_index(i))) {
            return Ok(false);
        }

        // The rewrite. Channels-last tensors written by an agnostic op or an edge are stored
        // permuted; one written by a fixed op (or a graph input) keeps its logical layout and
        // gets a permuted twin for the region's readers.
        let old_nodes: Vec<Node> = g.nodes().to_vec();
        let mut twin: HashMap<TensorId, TensorId> = HashMap::new();
        let mut logical: HashMap<TensorId, TensorId> = HashMap::new();
        let permute = |s: &Shape| Shape::new(P.iter().map(|&a| s.dims()[a]).collect());
        let mut new_nodes: Vec<Node> = Vec::new();
        let transpose_node = |name: String, perm: &[usize], x: TensorId, y: TensorId| {
            Node::new(name, Op::Transpose(Transpose { perm: perm.to_vec() }), vec![Some(x)], vec![y])
        };
        // Fully-connected layers fed by a channels-last flatten: their permuted weights.
        let mut fc_weights: HashMap<usize, [usize; 3]> = HashMap::new();
        // (Read before any shape is permuted.)
        for n in &old_nodes {
            if n.input(0).is_some_and(|x| nhwc(&mut dsu, x))
                && let Some((fcs, chw)) = flatten_into_fc(g, n)
            {
                for i in fcs {
                    fc_weights.insert(i, chw);
                }
            }
        }
        // Twins of the tensors written by fixed ops and of graph inputs.
        for (i, &fp) in fixed_producer.iter().enumerate() {
            let t = TensorId::from_index(i);
            if fp && nhwc(&mut dsu, t) {
                let Some(src) = g.tensor(t).cloned() else { continue };
                let id = g.add_tensor(Tensor { name: format!("{}/nhwc", src.name), shape: permute(&src.shape), ..src });
                twin.insert(t, id);
            }
        }
        for &t in g.inputs().to_vec().iter() {
            if let Some(&tw) = twin.get(&t) {
                let name = g.tensor(t).map_or(String::new(), |x| x.name.clone());
                new_nodes.push(transpose_node(format!("{name}/to_nhwc"), &P, t, tw));
            }
        }
        // Stored tensors: permute in place; their logical copies for fixed readers.
        for i in 0..nt {
            let t = TensorId::from_index(i);
            if nhwc(&mut dsu, t) && !fixed_producer[i] {
                if let Some(x) = g.tensor_mut(t) {
                    x.shape = permute(&x.shape);
                }
                if fixed_consumer[i] {
                    let Some(src) = g.tensor(t).cloned() else { continue };
                    let logical_shape = Shape::new(P_INV.iter().map(|&a| src.shape.dims()[a]).collect());
                    let id = g.add_tensor(Tensor { name: format!("{}/nchw", src.name), shape: logical_shape, ..src });
                    logical.insert(t, id);
                }
            }
        }
        // Channel shuffles of channels-last regions: [N, H, W, g, C/g], swap the last two.
        let mut shuffle_ops: HashMap<usize, Op> = HashMap::new();
        for &[r1, t, r2] in &shuffles {
            let Some(x) = old_nodes[r1].input(0) else { continue };
            if !nhwc(&mut dsu, x) {
                continue;
            }
            let (Op::Reshape(a), Op::Reshape(b)) = (&old_nodes[r1].op, &old_nodes[r2].op) else { continue };
            if a.shape.len() != 5 || b.shape.len() != 4 {
                return Err(PassError::Failed(format!("channel shuffle {:?}: unexpected reshape", old_nodes[r1].name)));
            }
            let sa = &a.shape;
            shuffle_ops.insert(r1, Op::Reshape(crate::op::Reshape { shape: vec![sa[0], sa[3], sa[4], sa[1], sa[2]] }));
            shuffle_ops.insert(t, Op::Transpose(Transpose { perm: vec![0, 1, 2, 4, 3] }));
            let sb = &b.shape;
            shuffle_ops.insert(r2, Op::Reshape(crate::op::Reshape { shape: vec![sb[0], sb[2], sb[3], sb[1]] }));
            for k in [r1, t] {
                let perm = [0usize, 3, 4, 1, 2];
                let mid = old_nodes[k].outputs[0];
                if let Some(m) = g.tensor_mut(mid) {
                    let d = m.shape.dims().to_vec();
                    m.shape = Shape::new(perm.iter().map(|&i| d[i]).collect());
                }
            }
        }
        for (ni, (n, role)) in old_nodes.iter().zip(&roles).enumerate() {
            let mut node = n.clone();

            if let (Some(&chw), Some(wt)) = (fc_weights.get(&ni), n.input(1)) {
                let Some(pw) = permuted_fc_weights(g, wt, chw) else {
                    return Err(PassError::Failed(format!("node {:?}: cannot reorder its weights", n.name)));
                };
                node.inputs[1] = Some(pw);
            }
            let region_nhwc = match role {
                Role::Fixed => false,
                _ => n.input_ids().chain(n.outputs.iter().copied()).any(|t| nhwc(&mut dsu, t)),
            };
            for slot in node.inputs.iter_mut() {
                let Some(t) = *slot else { continue };
                match role {
                    Role::Fixed => {
                        if let Some(&l) = logical.get(&t) {
                            *slot = Some(l);
                        }
                    }
                    _ => {
                        if let Some(&tw) = twin.get(&t) {
                            *slot = Some(tw);
                        }
                    }
                }
            }
            match role {
                _ if shuffle_ops.contains_key(&ni) => node.op = shuffle_ops[&ni].clone(),
                Role::Edge => {
                    let Op::Transpose(tp) = &n.op else { unreachable!("an edge is a Transpose") };
                    let (x, y) = (n.input(0).unwrap_or(n.outputs[0]), n.outputs[0]);
                    let a = nhwc(&mut dsu, x);
                    let b = nhwc(&mut dsu, y);
                    node.op = Op::Transpose(Transpose { perm: compose(&compose(inv_of(a), &tp.perm), perm_of(b)) });
                }
                Role::Agnostic if region_nhwc => {
                    let mut inputs = node.inputs.clone();
                    match permuted_op(g, &node, &mut inputs) {
                        Some(op) => {
                            node.op = op;
                            node.inputs = inputs;
                        }
                        None => {
                            return Err(PassError::Failed(format!(
                                "node {:?} ({}) cannot be stored channels-last",
                                n.name,
                                n.op.name()
                            )));
                        }
                    }
                }
                _ => {}
            }
            new_nodes.push(node);
            for &y in &n.outputs {
                if let Some(&tw) = twin.get(&y) {
                    new_nodes.push(transpose_node(format!("{}/to_nhwc", n.name), &P, y, tw));
                }
                if let Some(&l) = logical.get(&y) {
                    new_nodes.push(transpose_node(format!("{}/to_nchw", n.name), &P_INV, y, l));
                }
            }
        }
        // Graph outputs read the logical copy, which takes the output's name.
        let mut outs = g.outputs().to_vec();
        for o in outs.iter_mut() {
            if let Some(&l) = logical.get(o) {
                let name = g.tensor(*o).map_or(String::new(), |t| t.name.clone());
                if let Some(t) = g.tensor_mut(*o) {
                    t.name = format!("{name}/nhwc");
                }
                if let Some(t) = g.tensor_mut(l) {
                    t.name = name;
                }
                *o = l;
            }
        }
        g.set_outputs(outs);
        g.set_nodes(new_nodes);
        Ok(true)
    }
}
