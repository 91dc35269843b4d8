//! Generic cleanup passes and the IR's pass table.
//!
//! Every pass works through the [`Editor`](crate::edit::Editor): local rewrites are a function
//! from a node to the [`Patch`] that rewrites it, run by the editor's worklist
//! ([`Editor::rewrite_each`]); node keys stay valid across inserts, and readers and producers
//! are O(1) to find.

use crate::edit::{Editor, NodeKey, Patch};
use crate::graph::{Graph, Node, TensorId};
use crate::op::{Activation, Op, UnaryKind};
use crate::pass::{Pass, PassError, PassInfo, PassManager};
use crate::shape::checked_product;
use crate::tensor::{Tensor, f32_bytes};
use bytes::Bytes;

/// A patch removing one node.
fn remove(k: NodeKey) -> Patch {
    let mut p = Patch::new();
    p.remove(k);
    p
}

/// Removes nodes whose outputs nobody reads, then tensors nobody references.
#[derive(Debug, Default)]
pub struct DeadCodeElimination;

impl Pass for DeadCodeElimination {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        let mut live = vec![false; ed.tensor_count()];
        for &o in ed.outputs() {
            if let Some(l) = live.get_mut(o.index()) {
                *l = true;
            }
        }
        for k in ed.keys().into_iter().rev() {
            let Some(node) = ed.node(k) else { continue };
            // An opaque op may have effects qlite cannot see (a variable assignment has no
            // output): it stays. A dead node the budget does not let go stays live too.
            let used = matches!(node.op, Op::Opaque(_))
                || node.outputs.iter().any(|o| live.get(o.index()).copied().unwrap_or(false));
            if used || ed.apply(remove(k)).is_none() {
                for t in ed.node(k).map(|n| n.input_ids().collect::<Vec<_>>()).unwrap_or_default() {
                    if let Some(l) = live.get_mut(t.index()) {
                        *l = true;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Folds shape-only ops (Reshape, Transpose, Concatenation) whose inputs are all constants
/// into new constants. Reshape shares the input bytes; nothing else is computed.
#[derive(Debug, Default)]
pub struct FoldConstants;

fn fold_node(ed: &Editor<'_>, k: NodeKey) -> Option<Bytes> {
    let node = ed.node(k)?;
    let ins: Vec<&crate::tensor::Tensor> =
        node.inputs.iter().map(|i| i.and_then(|t| ed.tensor(t))).collect::<Option<Vec<_>>>()?;
    if ins.iter().any(|t| !t.is_const()) || node.outputs.len() != 1 {
        return None;
    }
    let out = ed.tensor(*node.outputs.first()?)?;
    if ed.is_output(*node.outputs.first()?) {
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

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold-constants"
    }

    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        ed.rewrite_each(|ed, k| {
            let data = fold_node(ed, k)?;
            let out = *ed.node(k)?.outputs.first()?;
            let mut t = ed.tensor(out)?.clone();
            t.data = Some(data);
            let mut p = Patch::new();
            p.remove(k).set_tensor(out, t);
            Some(p)
        })
    }
}

/// Permute a row-major array of `elem`-byte elements.
///
/// Axes that stay next to each other are merged first. When the innermost axis stays
/// innermost, whole rows are copied; otherwise the innermost input axis and the innermost
/// output axis are transposed in 32×32 tiles, so both sides are read and written a cache line
/// at a time (a flatten's weight permutation of VGG-19, 411 MB, was an element-by-element
/// gather).
pub fn transpose_bytes(data: &[u8], dims: &[usize], perm: &[usize], elem: usize) -> Option<Vec<u8>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    transpose_blocked(data, dims, perm, elem, RELEASE_BLOCK, threads)
}

/// [`transpose_bytes`] on the calling thread only (for callers that spread many transposes
/// over the cores themselves).
pub fn transpose_bytes_serial(data: &[u8], dims: &[usize], perm: &[usize], elem: usize) -> Option<Vec<u8>> {
    transpose_blocked(data, dims, perm, elem, RELEASE_BLOCK, 1)
}

/// [`transpose_bytes`], handing the input to the release hook every `block` bytes read when
/// it is read row by row.
fn transpose_blocked(
    data: &[u8],
    dims: &[usize],
    perm: &[usize],
    elem: usize,
    block: usize,
    threads: usize,
) -> Option<Vec<u8>> {
    let rank = dims.len();
    if perm.len() != rank || elem == 0 {
        return None;
    }
    let mut seen = vec![false; rank];
    for &p in perm {
        if p >= rank || std::mem::replace(&mut seen[p], true) {
            return None;
        }
    }
    let n = checked_product(dims)?;
    if data.len() != n.checked_mul(elem)? {
        return None;
    }
    let mut out = vec![0u8; data.len()];
    if n == 0 {
        return Some(out);
    }
    // Merge input axes i, i+1 that stay adjacent (in that order) in the output.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &p in perm {
        match groups.last_mut() {
            Some(g) if *g.last().unwrap_or(&usize::MAX) + 1 == p => g.push(p),
            _ => groups.push(vec![p]),
        }
    }
    // The merged input axes, in input order, with their sizes.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| groups[g][0]);
    let size = |g: usize| groups[g].iter().map(|&a| dims[a]).product::<usize>();
    let in_dims: Vec<usize> = order.iter().map(|&g| size(g)).collect();
    // perm over the merged axes: output axis k reads merged input axis mperm[k].
    let mut pos_in = vec![0; groups.len()];
    for (i, &g) in order.iter().enumerate() {
        pos_in[g] = i;
    }
    let mperm: Vec<usize> = (0..groups.len()).map(|g| pos_in[g]).collect();
    let r = in_dims.len();
    let mut in_strides = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * in_dims[i + 1];
    }
    let out_dims: Vec<usize> = mperm.iter().map(|&p| in_dims[p]).collect();
    if mperm[r - 1] == r - 1 {
        // The innermost axis stays innermost: copy whole rows.
        let row = in_dims[r - 1] * elem;
        let mut idx = vec![0usize; r - 1];
        for chunk in out.chunks_exact_mut(row) {
            let src: usize = (0..r - 1).map(|k| idx[k] * in_strides[mperm[k]]).sum::<usize>() * elem;
            chunk.copy_from_slice(&data[src..src + row]);
            for k in (0..r - 1).rev() {
                idx[k] += 1;
                if idx[k] < out_dims[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        return Some(out);
    }
    // Tiles over (output axis q, which reads the innermost input axis) × (the innermost output
    // axis, which reads input axis p); an odometer over the other output axes.
    let q = mperm.iter().position(|&a| a == r - 1)?;
    let p = mperm[r - 1];
    let (nq, nl, sp) = (out_dims[q], out_dims[r - 1], in_strides[p]);
    let mut out_strides = vec![1usize; r];
    for i in (0..r - 1).rev() {
        out_strides[i] = out_strides[i + 1] * out_dims[i + 1];
    }
    let sq = out_strides[q];
    let others: Vec<usize> = (0..r - 1).filter(|&k| k != q).collect();
    // The tiles of output axis-0 indices `lo..hi` into `part`, which holds exactly those rows:
    // axis 0 is either one of `others` (its range narrows the odometer) or the tiles' own axis
    // `q` (its range narrows every tile).
    let run = |part: &mut [u8], lo: usize, hi: usize| {
        let outer0 = others.first() == Some(&0);
        let base = if outer0 { lo * out_strides[0] } else { 0 };
        let (tile_lo, tile_n) = if q == 0 { (lo, hi - lo) } else { (0, nq) };
        let mut idx = vec![0usize; others.len()];
        let mut count: usize = others.iter().map(|&k| out_dims[k]).product();
        if outer0 {
            idx[0] = lo;
            count = count / out_dims[0].max(1) * (hi - lo);
        }
        for _ in 0..count {
            let src0: usize = others.iter().zip(&idx).map(|(&k, &i)| i * in_strides[mperm[k]]).sum();
            let dst0: usize = others.iter().zip(&idx).map(|(&k, &i)| i * out_strides[k]).sum::<usize>() - base;
            let tile = Tile { nq: tile_n, nl, sp, sq, src0: src0 + tile_lo, dst0 };
            match elem {
                1 => tile.copy::<1>(data, part),
                2 => tile.copy::<2>(data, part),
                4 => tile.copy::<4>(data, part),
                8 => tile.copy::<8>(data, part),
                _ => tile.copy_any(data, part, elem),
            }
            for (j, &k) in others.iter().enumerate().rev() {
                idx[j] += 1;
                if idx[j] < out_dims[k] {
                    break;
                }
                idx[j] = 0;
            }
        }
    };
    // Large transposes (a VGG classifier's flatten permutation: 411 MB; a SavedModel's HWIO
    // convolution weights) split their output's leading axis over the cores; each part writes
    // its own rows.
    let splittable = others.first() == Some(&0) || q == 0;
    let d0 = out_dims[0];
    let row = out_strides[0] * elem;
    let rows = |out: &mut [u8], lo: usize, hi: usize| {
        if splittable && threads > 1 && out.len() >= 2 << 20 && hi - lo >= threads {
            let per = (hi - lo).div_ceil(threads);
            std::thread::scope(|sc| {
                for (t, part) in out.chunks_mut(per * row).enumerate() {
                    let run = &run;
                    let a = lo + t * per;
                    sc.spawn(move || run(part, a, (a + per).min(hi)));
                }
            });
        } else {
            run(out, lo, hi);
        }
    };
    // When output row i reads input row i only (a flatten's permutation of an FC weight),
    // rows go in blocks and each block's input is handed to the release hook once read: the
    // pages of a memory-mapped weight leave memory as its permuted copy fills, instead of
    // both being resident at once (VGG-19's 411 MB weight).
    if mperm[0] == 0 && others.first() == Some(&0) && data.len() >= block * 4 {
        let per = (block / row).max(1);
        for (b, block) in out.chunks_mut(per * row).enumerate() {
            let (lo, hi) = (b * per, (b * per + per).min(d0));
            rows(block, lo, hi);
            crate::hint::constant_consumed(&data[lo * row..hi * row]);
        }
    } else {
        rows(&mut out, 0, d0);
    }
    Some(out)
}

/// The input a large row-by-row transpose reads before handing it to the release hook.
const RELEASE_BLOCK: usize = 16 << 20;

/// One 2-D transpose of [`transpose_bytes`]: `nq × nl` output elements, the innermost input
/// axis along `q` (output stride `sq`), input stride `sp` along the innermost output axis; done
/// in 32×32 tiles.
struct Tile {
    nq: usize,
    nl: usize,
    sp: usize,
    sq: usize,
    src0: usize,
    dst0: usize,
}

impl Tile {
    const T: usize = 32;

    /// Elements of `N` bytes, moved as `[u8; N]`: 16×16 blocks read as 16 source runs of 16
    /// elements and written as 16 output runs (one bounds check per run, not per element; a
    /// run of 4-byte elements is a whole cache line); the tile's ragged edges one element at a
    /// time. Measured on ResNet-50's HWIO → OHWI weights: 8×8 blocks halved the per-element
    /// loop's time, 16×16 took another quarter off.
    fn copy<const N: usize>(&self, data: &[u8], out: &mut [u8]) {
        const B: usize = 16;
        let one = |out: &mut [u8], a: usize, l: usize| {
            let s = (self.src0 + l * self.sp + a) * N;
            let d = (self.dst0 + a * self.sq + l) * N;
            out[d..d + N].copy_from_slice(&data[s..s + N]);
        };
        for a0 in (0..self.nq).step_by(Self::T) {
            let ae = (a0 + Self::T).min(self.nq);
            for l0 in (0..self.nl).step_by(Self::T) {
                let le = (l0 + Self::T).min(self.nl);
                let mut a = a0;
                while a + B <= ae {
                    let mut l = l0;
                    while l + B <= le {
                        // blk[j][i]: output row a + i, column l + j.
                        let mut blk = [[[0u8; N]; B]; B];
                        for (j, b) in blk.iter_mut().enumerate() {
                            let s = (self.src0 + (l + j) * self.sp + a) * N;
                            let run = &data[s..s + B * N];
                            for (i, e) in b.iter_mut().enumerate() {
                                e.copy_from_slice(&run[i * N..i * N + N]);
                            }
                        }
                        for i in 0..B {
                            let d = (self.dst0 + (a + i) * self.sq + l) * N;
                            let run = &mut out[d..d + B * N];
                            for (j, b) in blk.iter().enumerate() {
                                run[j * N..j * N + N].copy_from_slice(&b[i]);
                            }
                        }
                        l += B;
                    }
                    for ai in a..a + B {
                        for li in l..le {
                            one(out, ai, li);
                        }
                    }
                    a += B;
                }
                for ai in a..ae {
                    for li in l0..le {
                        one(out, ai, li);
                    }
                }
            }
        }
    }

    fn copy_any(&self, data: &[u8], out: &mut [u8], elem: usize) {
        for a0 in (0..self.nq).step_by(Self::T) {
            for l0 in (0..self.nl).step_by(Self::T) {
                for a in a0..(a0 + Self::T).min(self.nq) {
                    for l in l0..(l0 + Self::T).min(self.nl) {
                        let s = (self.src0 + l * self.sp + a) * elem;
                        let d = (self.dst0 + a * self.sq + l) * elem;
                        out[d..d + elem].copy_from_slice(&data[s..s + elem]);
                    }
                }
            }
        }
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

    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        ed.rewrite_each(|ed, k| {
            let node = ed.node(k)?;
            let act = match &node.op {
                Op::Unary(u) if u.kind == UnaryKind::Relu => Activation::Relu,
                Op::Unary(u) if u.kind == UnaryKind::Relu6 => Activation::Relu6,
                _ => return None,
            };
            let (x, &y) = (node.input(0)?, node.outputs.first()?);
            let p = ed.producer(x)?;
            let pn = ed.node(p)?;
            // Concatenation is left out: not every runtime kernel honours its activation.
            let fusable = !matches!(pn.op, Op::Concatenation(_))
                && pn.op.fused_activation() == Some(Activation::None)
                && pn.outputs.len() == 1
                && ed.single_use(x);
            if !fusable {
                return None;
            }
            let mut fused = pn.clone();
            fused.op.set_fused_activation(act);
            fused.outputs[0] = y;
            let mut patch = Patch::new();
            patch.remove(k).set(p, fused);
            Some(patch)
        })
    }
}

/// Folds a per-channel scale and shift after a convolution or fully-connected layer into its
/// weights and bias: `conv → MUL s → ADD t` (an inference BatchNorm as SavedModels and
/// TF-converted files spell it), `conv → MUL s` or `conv → ADD t`. `s` and `t` are float
/// constants varying along the last axis only (or scalars); the layer's float weights become
/// `w · s` per output channel and its bias `b · s + t`. TF's converter folds the same way.
#[derive(Debug, Default)]
pub struct FoldScaleShift;

/// A per-channel constant of `channels` values (a scalar is broadcast): the values, if `t` is
/// one.
fn per_channel_const(ed: &Editor<'_>, t: TensorId, channels: usize) -> Option<Vec<f32>> {
    let c = ed.tensor(t)?;
    if c.dtype != crate::DType::F32 || c.quant.is_some() {
        return None;
    }
    let dims = c.shape.to_fixed()?;
    let v = crate::tensor::read_f32s(c.data.as_ref()?);
    match (dims.split_last(), v.len()) {
        (_, 1) => Some(vec![v[0]; channels]),
        (Some((&last, lead)), n) if last == channels && n == channels && lead.iter().all(|&d| d == 1) => Some(v),
        _ => None,
    }
}

impl FoldScaleShift {
    /// The fold at layer `k`, if one applies.
    fn step(ed: &mut Editor<'_>, k: NodeKey) -> Option<Patch> {
        let n = ed.node(k)?;
        let channel_axis_last = match &n.op {
            Op::Conv2d(o) if o.activation == Activation::None => false,
            Op::FullyConnected(o) if o.activation == Activation::None && !o.asymmetric_inputs => false,
            Op::DepthwiseConv2d(o) if o.activation == Activation::None => true,
            _ => return None,
        };
        let (w, &y) = (n.input(1)?, n.outputs.first()?);
        let wt = ed.tensor(w).filter(|t| t.dtype == crate::DType::F32 && t.quant.is_none())?.clone();
        let (wdims, wdata) = (wt.shape.to_fixed()?, wt.data.clone()?);
        let channels = if channel_axis_last { *wdims.last().unwrap_or(&0) } else { *wdims.first()? };
        let bias = match n.input(2) {
            Some(b) => per_channel_const(ed, b, channels)?,
            None => vec![0.0; channels],
        };
        // The chain: up to a MUL then an ADD, each the only reader of what it reads.
        let mut scale = vec![1f32; channels];
        let mut shift = vec![0f32; channels];
        let mut last = y;
        let mut removed = Vec::new();
        let mut act = Activation::None;
        for kind in [crate::op::BinaryKind::Mul, crate::op::BinaryKind::Add] {
            if !ed.single_use(last) || act != Activation::None {
                break;
            }
            let (c, slot) = ed.consumers(last)[0];
            let Some(cn) = ed.node(c) else { break };
            let Op::Binary(b) = &cn.op else { break };
            if b.kind != kind {
                // No scale: the shift may still follow directly.
                if kind == crate::op::BinaryKind::Mul {
                    continue;
                }
                break;
            }
            let Some(other) = cn.input(1 - slot) else { break };
            let Some(v) = per_channel_const(ed, other, channels) else { break };
            let Some(&out) = cn.outputs.first() else { break };
            // The output keeps the layer's shape (no broadcast up).
            if ed.tensor(out).map(|t| &t.shape) != ed.tensor(y).map(|t| &t.shape) {
                break;
            }
            if kind == crate::op::BinaryKind::Mul {
                scale = v;
            } else {
                shift = v;
            }
            act = b.activation;
            removed.push(c);
            last = out;
        }
        if removed.is_empty() {
            return None;
        }
        if !scale_fits(&wdata, &scale) {
            return None;
        }
        let nb: Vec<f32> = (0..channels).map(|c| bias[c] * scale[c] + shift[c]).collect();
        let mut node = n.clone();
        let name = format!("{}/folded", wt.name);
        let mut patch = Patch::new();
        // Weights read by this layer alone are scaled where they are (in place when nothing
        // else holds their bytes); shared ones get a folded copy.
        let new_w = if ed.consumers(w).len() == 1 {
            drop((wt, wdata));
            patch.scale_channels(w, name, channel_axis_last, scale);
            w
        } else {
            let scaled = scale_channels_of(wdata, channel_axis_last, &scale);
            ed.add_tensor(crate::Tensor::constant(name, crate::DType::F32, wt.shape.clone(), scaled))
        };
        let new_b = ed.add_tensor(crate::Tensor::constant(
            format!("{}/bias_folded", node.name),
            crate::DType::F32,
            crate::Shape::fixed(&[channels]),
            f32_bytes(&nb),
        ));
        node.inputs[1] = Some(new_w);
        if node.inputs.len() < 3 {
            node.inputs.resize(3, None);
        }
        node.inputs[2] = Some(new_b);
        node.outputs[0] = last;
        node.op.set_fused_activation(act);
        for c in removed {
            patch.remove(c);
        }
        patch.set(k, node);
        Some(patch)
    }
}

/// Whether `scale` fits little-endian f32 `data` with channels last or first.
fn scale_fits(data: &[u8], scale: &[f32]) -> bool {
    let channels = scale.len();
    channels > 0 && data.len().is_multiple_of(4) && (data.len() / 4).is_multiple_of(channels)
}

/// Little-endian f32 weights with every value multiplied by its channel's scale: channels last
/// (`[.., C]`, depthwise) or first (`[O, ..]`). Scaled in place when `data` is the only
/// reference to a buffer of its own (a weight an importer reordered), else in a copy (the
/// mapped original is then released). Data the scale does not fit is returned unchanged.
pub(crate) fn scale_channels_of(data: Bytes, last: bool, scale: &[f32]) -> Bytes {
    if !scale_fits(&data, scale) {
        return data;
    }
    match data.try_into_mut() {
        Ok(mut m) => {
            scale_in_place(&mut m, last, scale);
            m.freeze()
        }
        Err(data) => {
            let mut out = data.to_vec();
            crate::hint::constant_consumed(&data);
            scale_in_place(&mut out, last, scale);
            Bytes::from(out)
        }
    }
}

fn scale_in_place(out: &mut [u8], last: bool, scale: &[f32]) {
    let channels = scale.len();
    let scale_run = |run: &mut [u8], s: f32| {
        for d in run.chunks_exact_mut(4) {
            let v = f32::from_le_bytes([d[0], d[1], d[2], d[3]]) * s;
            d.copy_from_slice(&v.to_le_bytes());
        }
    };
    // Whole units (a row of channels, or one channel's weights) per part.
    let unit = if last { channels * 4 } else { out.len() / channels };
    split_units(out, unit, &|part, first| {
        if last {
            for row in part.chunks_exact_mut(unit) {
                for (d, &s) in row.chunks_exact_mut(4).zip(scale) {
                    scale_run(d, s);
                }
            }
        } else {
            for (run, &s) in part.chunks_exact_mut(unit).zip(&scale[first..]) {
                scale_run(run, s);
            }
        }
    });
}

/// Run `f(part, first)` over `out` cut into parts of whole `unit`-byte units, `first` the index
/// of a part's first unit: one part per core for 2 MiB and more (weights folded or reordered
/// at conversion), else one.
fn split_units(out: &mut [u8], unit: usize, f: &(dyn Fn(&mut [u8], usize) + Sync)) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let units = out.len().checked_div(unit).unwrap_or(0);
    if threads < 2 || out.len() < 2 << 20 || units < threads {
        f(out, 0);
        return;
    }
    let per = units.div_ceil(threads);
    std::thread::scope(|sc| {
        for (t, part) in out.chunks_mut(per * unit).enumerate() {
            sc.spawn(move || f(part, t * per));
        }
    });
}

impl Pass for FoldScaleShift {
    fn name(&self) -> &'static str {
        "fold-scale-shift"
    }

    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        ed.rewrite_each(Self::step)
    }
}

/// Folds a zero PAD of height and width (float 0.0, or an int8 PAD of the zero point that keeps
/// its input's parameters) into the VALID convolution (or depthwise convolution) reading it,
/// when the pad is exactly what SAME padding adds: Keras's
/// `ZeroPadding2D(((0, 1), (0, 1)))` before a stride-2 VALID convolution (MobileNets) is a SAME
/// convolution. Pads SAME would split differently (ResNet's 3/3 before a 7×7 stride 2) stay.
#[derive(Debug, Default)]
pub struct FoldPad;

impl FoldPad {
    fn step(ed: &mut Editor<'_>, k: NodeKey) -> Option<Patch> {
        let pn = ed.node(k)?;
        let Op::Pad(p) = &pn.op else { return None };
        let (x, &y) = (pn.input(0)?, pn.outputs.first()?);
        let (xt, yt) = (ed.tensor(x)?, ed.tensor(y)?);
        // What the convolution's own SAME padding adds: a real zero — 0.0 in float, the zero
        // point in int8 (its kernels skip the taps outside the image, which is the same as
        // reading the zero point). An int8 PAD must keep its input's parameters.
        let pads_zero = match (xt.dtype, pn.input(1)) {
            (crate::DType::F32, None) => true,
            (crate::DType::F32, Some(v)) => ed
                .tensor(v)
                .and_then(|t| t.data.as_ref().map(|d| (t.dtype, d.clone())))
                .is_some_and(|(dt, d)| dt == crate::DType::F32 && crate::tensor::read_f32s(&d) == [0.0]),
            (crate::DType::I8, value) => {
                let q = xt.quant.as_ref().filter(|q| q.axis().is_none() && yt.quant.as_ref() == Some(*q));
                match (q, value) {
                    (Some(_), None) => true,
                    (Some(q), Some(v)) => ed
                        .tensor(v)
                        .and_then(|t| t.data.as_ref().map(|d| (t.dtype, d.clone())))
                        .is_some_and(|(dt, d)| dt == crate::DType::I8 && d[..] == [q.zero_point() as i8 as u8]),
                    _ => false,
                }
            }
            _ => false,
        };
        if !pads_zero
            || xt.shape.rank() != 4
            || p.paddings.len() != 4
            || p.paddings[0] != [0, 0]
            || p.paddings[3] != [0, 0]
        {
            return None;
        }
        let [(ci, 0)] = ed.consumers(y)[..] else { return None };
        if ed.is_output(y) {
            return None;
        }
        let cn = ed.node(ci)?;
        let (stride, dilation) = match &cn.op {
            Op::Conv2d(c) if c.padding == crate::op::Padding::Valid => (c.stride, c.dilation),
            Op::DepthwiseConv2d(c) if c.padding == crate::op::Padding::Valid => (c.stride, c.dilation),
            _ => return None,
        };
        // OHWI / 1HWC weights: the window is axes 1 and 2 either way.
        let w = cn.input(1).and_then(|w| ed.tensor(w)).and_then(|t| t.shape.to_fixed())?;
        let (kh, kw) = (*w.get(1)?, *w.get(2)?);
        let xs = &ed.tensor(x)?.shape;
        let same = |axis: usize, k: usize, s: usize, d: usize| -> Option<[usize; 2]> {
            crate::op::Padding::same_pads(xs.dim(axis)?, k, s, d)
        };
        if same(1, kh, stride[0], dilation[0]) != Some(p.paddings[1])
            || same(2, kw, stride[1], dilation[1]) != Some(p.paddings[2])
        {
            return None;
        }
        let mut conv = cn.clone();
        conv.inputs[0] = Some(x);
        match &mut conv.op {
            Op::Conv2d(o) => o.padding = crate::op::Padding::Same,
            Op::DepthwiseConv2d(o) => o.padding = crate::op::Padding::Same,
            _ => {}
        }
        let mut patch = Patch::new();
        patch.remove(k).set(ci, conv);
        Some(patch)
    }
}

impl Pass for FoldPad {
    fn name(&self) -> &'static str {
        "fold-pad"
    }

    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        ed.rewrite_each(Self::step)
    }
}

/// Fuses the exact GELU as exporters spell it out, `x · 0.5 · (1 + erf(x / √2))` (PyTorch's
/// ONNX export before opset 20) or `0.5·x · erfc(−x/√2)` (TF's `gelu`), into one GELU: TFLite has no ERF, and one
/// GELU is what TF's converter writes. Accepted forms: the division by √2 or a multiplication
/// by 1/√2; the 0.5 applied last, or to `x` first. Every intermediate must have one reader.
#[derive(Debug, Default)]
pub struct FuseGelu;

/// The scalar value of a constant tensor (any shape with one element).
fn scalar_const(g: &Editor<'_>, t: TensorId) -> Option<f32> {
    let t = g.tensor(t)?;
    let d = t.data.as_ref()?;
    (t.dtype == crate::DType::F32 && d.len() == 4).then(|| f32::from_le_bytes([d[0], d[1], d[2], d[3]]))
}

fn near(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-4 * b.abs()
}

impl FuseGelu {
    /// The operands of a binary `kind` node producing `t`, when it is one.
    fn binary(g: &Editor<'_>, t: TensorId, kind: crate::BinaryKind) -> Option<(NodeKey, TensorId, TensorId)> {
        let p = g.producer(t)?;
        let n = g.node(p)?;
        match &n.op {
            Op::Binary(b) if b.kind == kind && b.activation == Activation::None => Some((p, n.input(0)?, n.input(1)?)),
            _ => None,
        }
    }

    /// `x` when `t = x / √2` or `x · (1/√2)`.
    fn scaled_input(g: &Editor<'_>, t: TensorId) -> Option<TensorId> {
        if let Some((_, a, b)) = Self::binary(g, t, crate::BinaryKind::Div) {
            return scalar_const(g, b).filter(|&c| near(c, std::f32::consts::SQRT_2)).map(|_| a);
        }
        let (_, a, b) = Self::binary(g, t, crate::BinaryKind::Mul)?;
        let (x, c) = if scalar_const(g, b).is_some() { (a, b) } else { (b, a) };
        scalar_const(g, c).filter(|&c| near(c, std::f32::consts::FRAC_1_SQRT_2)).map(|_| x)
    }

    /// `x` when `t = −x/√2`: `neg(x) · (1/√2)`, `neg(x) / √2` or `x · (−1/√2)`.
    fn neg_scaled_input(g: &Editor<'_>, t: TensorId) -> Option<TensorId> {
        let neg_of = |t: TensorId| {
            let n = g.node(g.producer(t)?)?;
            match &n.op {
                Op::Unary(u) if u.kind == UnaryKind::Neg && g.consumers(t).len() == 1 => n.input(0),
                _ => None,
            }
        };
        if let Some(y) = Self::scaled_input(g, t) {
            return neg_of(y);
        }
        let (_, a, b) = Self::binary(g, t, crate::BinaryKind::Mul)?;
        let (x, c) = if scalar_const(g, b).is_some() { (a, b) } else { (b, a) };
        scalar_const(g, c).filter(|&c| near(c, -std::f32::consts::FRAC_1_SQRT_2)).map(|_| x)
    }

    /// TF's exact gelu, `(0.5·x) · erfc(−x/√2)` (either operand order): the input `x`.
    fn matches_erfc(g: &Editor<'_>, p: TensorId, q: TensorId) -> Option<TensorId> {
        let single = |t: TensorId| g.single_use(t);
        [(p, q), (q, p)].into_iter().find_map(|(hx, e)| {
            let en = g.node(g.producer(e)?)?;
            let Op::Unary(u) = &en.op else { return None };
            if u.kind != UnaryKind::Erfc || !single(e) || !single(hx) {
                return None;
            }
            let s = en.input(0)?;
            single(s).then_some(())?;
            let x = Self::neg_scaled_input(g, s)?;
            let (_, a, b) = Self::binary(g, hx, crate::BinaryKind::Mul)?;
            let ok = (a == x && scalar_const(g, b).is_some_and(|h| near(h, 0.5)))
                || (b == x && scalar_const(g, a).is_some_and(|h| near(h, 0.5)));
            ok.then_some(x)
        })
    }

    /// For the GELU ending at node `k` (a Mul), the input `x`.
    fn matches(g: &Editor<'_>, k: NodeKey) -> Option<TensorId> {
        let out = *g.node(k)?.outputs.first()?;
        let single = |t: TensorId| g.single_use(t);
        let (_, p, q) = Self::binary(g, out, crate::BinaryKind::Mul)?;
        if let Some(x) = Self::matches_erfc(g, p, q) {
            return Some(x);
        }
        // (x · (1 + erf)) · 0.5, or (0.5 · x) · (1 + erf) (either operand order).
        let (inner, half_last) = match (scalar_const(g, p), scalar_const(g, q)) {
            (Some(h), None) if near(h, 0.5) => (q, true),
            (None, Some(h)) if near(h, 0.5) => (p, true),
            (None, None) => (p, false),
            _ => return None,
        };
        let one_plus_erf = |t: TensorId| -> Option<TensorId> {
            let (_, a, b) = Self::binary(g, t, crate::BinaryKind::Add)?;
            let (e, one) = if scalar_const(g, b).is_some() { (a, b) } else { (b, a) };
            if !near(scalar_const(g, one)?, 1.0) || !single(t) || !single(e) {
                return None;
            }
            let en = g.node(g.producer(e)?)?;
            match &en.op {
                Op::Unary(u) if u.kind == UnaryKind::Erf => {
                    let s = en.input(0)?;
                    single(s).then_some(())?;
                    Self::scaled_input(g, s)
                }
                _ => None,
            }
        };
        if half_last {
            // inner = x · (1 + erf(x/√2))
            if !single(inner) {
                return None;
            }
            let (_, a, b) = Self::binary(g, inner, crate::BinaryKind::Mul)?;
            [(a, b), (b, a)].into_iter().find_map(|(x, s)| one_plus_erf(s).filter(|&xi| xi == x))
        } else {
            // One side is 0.5 · x, the other 1 + erf(x/√2).
            [(p, q), (q, p)].into_iter().find_map(|(hx, s)| {
                let x = one_plus_erf(s)?;
                single(hx).then_some(())?;
                let (_, a, b) = Self::binary(g, hx, crate::BinaryKind::Mul)?;
                let ok = (a == x && scalar_const(g, b).is_some_and(|h| near(h, 0.5)))
                    || (b == x && scalar_const(g, a).is_some_and(|h| near(h, 0.5)));
                ok.then_some(x)
            })
        }
    }
}

impl Pass for FuseGelu {
    fn name(&self) -> &'static str {
        "fuse-gelu"
    }

    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        // The Div / Erf / Add / Mul left unread are for dead code elimination.
        ed.rewrite_each(|ed, k| {
            let x = Self::matches(ed, k)?;
            let mut n = ed.node(k)?.clone();
            n.op = Op::Unary(crate::op::Unary { kind: UnaryKind::Gelu });
            n.inputs = vec![Some(x)];
            let mut p = Patch::new();
            p.set(k, n);
            Some(p)
        })
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
    PassInfo {
        name: "fuse-gelu",
        description: "turn x · 0.5 · (1 + erf(x / √2)) into one GELU",
        make: || Box::new(FuseGelu),
    },
    PassInfo {
        name: "fold-pad",
        description: "fold a zero PAD (float 0, or the int8 zero point) into the VALID convolution reading it where it is exactly SAME padding",
        make: || Box::new(FoldPad),
    },
    PassInfo {
        name: "fold-scale-shift",
        description: "fold a per-channel MUL / ADD after a conv or FC (an inference BatchNorm) into its weights and bias",
        make: || Box::new(FoldScaleShift),
    },
    PassInfo {
        name: "assign-layout",
        description: "store rank-4 regions channels-last where that removes Transposes (one global choice per region)",
        make: || Box::new(crate::layout::AssignLayout),
    },
    PassInfo {
        name: "sink-transposes",
        description: "push layout Transposes down, cancel inverse pairs, turn unit-dim ones into Reshapes",
        make: || Box::new(SinkTransposes),
    },
    PassInfo {
        name: "cross-layer-equalization",
        description: "balance the per-channel weight ranges of consecutive conv / depthwise / FC layers joined by a ReLU or nothing (same float function; for quantization)",
        make: || Box::new(CrossLayerEqualization),
    },
];

/// Cleanup run after import: fold, fuse, then remove what is left over.
pub fn cleanup_pipeline() -> PassManager {
    PassManager::new()
        .with(FoldConstants)
        .with(crate::layout::AssignLayout)
        .with(SinkTransposes)
        .with(FoldScaleShift)
        .with(FoldPad)
        .with(FuseGelu)
        .with(FuseActivations)
        .with(DeadCodeElimination)
}

/// Layout cleanup after importing an NCHW model: Transposes are pushed down through ops that
/// do not care about the layout (elementwise ops, binary ops with a constant or an equally
/// transposed operand, concatenation, pad, mean with kept dims), fused with the next
/// Transpose (cancelling when they are inverses), turned into Reshapes when they only move
/// size-1 dimensions, and consecutive Reshapes are merged. A CNN imported from ONNX keeps
/// Transposes only at its inputs and outputs.
#[derive(Debug, Default)]
pub struct SinkTransposes;

fn inverse(p: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; p.len()];
    for (i, &x) in p.iter().enumerate() {
        if let Some(slot) = inv.get_mut(x) {
            *slot = i;
        }
    }
    inv
}

fn is_identity(p: &[usize]) -> bool {
    p.iter().enumerate().all(|(i, &x)| i == x)
}

/// The shape in "source" layout of a tensor of shape `s` that is `transpose(src, p)`.
fn unpermute(s: &crate::Shape, p: &[usize]) -> Option<crate::Shape> {
    let mut dims = vec![crate::Dim::Fixed(1); p.len()];
    for (i, &src) in p.iter().enumerate() {
        *dims.get_mut(src)? = s.dim(i)?;
    }
    Some(crate::Shape::new(dims))
}

/// Does `transpose(shape, p)` keep the order of all non-1 dimensions (so it is a reshape)?
/// A dynamic dimension counts as non-unit; at most one may be dynamic (it becomes -1).
fn only_moves_unit_dims(s: &crate::Shape, p: &[usize]) -> bool {
    let non_unit: Vec<usize> = p.iter().copied().filter(|&src| s.dim(src) != Some(crate::Dim::Fixed(1))).collect();
    let dynamic = s.dims().iter().filter(|d| d.fixed().is_none()).count();
    non_unit.windows(2).all(|w| w[0] < w[1]) && dynamic <= 1
}

impl SinkTransposes {
    /// The rewrite at node `k`, if one applies.
    fn step(ed: &mut Editor<'_>, k: NodeKey) -> Option<Patch> {
        match &ed.node(k)?.op {
            Op::Transpose(_) => Self::transpose(ed, k),
            Op::Reshape(_) => Self::reshape_of_reshape(ed, k),
            _ => None,
        }
    }

    /// Reshape of a Reshape read by nothing else → one Reshape.
    fn reshape_of_reshape(ed: &mut Editor<'_>, k: NodeKey) -> Option<Patch> {
        let n = ed.node(k)?;
        let x = n.input(0)?;
        let pi = ed.producer(x)?;
        let pn = ed.node(pi)?;
        if !matches!(pn.op, Op::Reshape(_)) || !ed.single_use(x) {
            return None;
        }
        let mut merged = n.clone();
        merged.inputs[0] = Some(pn.input(0)?);
        let mut p = Patch::new();
        p.remove(pi).set(k, merged);
        Some(p)
    }

    fn transpose(ed: &mut Editor<'_>, k: NodeKey) -> Option<Patch> {
        let n = ed.node(k)?;
        let Op::Transpose(t) = &n.op else { return None };
        let perm = t.perm.clone();
        let (x, y) = (n.input(0)?, *n.outputs.first()?);
        // A chain of Transposes and Reshapes that leaves every element where it was (NHWC
        // [1,1,W,C] → NCHW → flatten → transpose back, as attention blocks spell it) is one
        // Reshape: checked on an index array, exactly.
        if let Some((last, target, chain)) = identity_chain(ed, k) {
            let same_shape = ed
                .tensor(x)
                .and_then(|t| t.shape.to_fixed())
                .is_some_and(|d| d.iter().map(|&v| v as i64).collect::<Vec<_>>() == target);
            let mut p = Patch::new();
            for c in chain {
                p.remove(c);
            }
            if same_shape && !ed.is_output(last) {
                // Nothing moves and nothing changes shape: the chain goes.
                p.remove(k).replace_uses(last, x);
            } else {
                let mut r = n.clone();
                r.op = Op::Reshape(crate::op::Reshape { shape: target });
                r.outputs = vec![last];
                p.set(k, r);
            }
            return Some(p);
        }
        if is_identity(&perm) && !ed.is_output(y) {
            let mut p = Patch::new();
            p.remove(k).replace_uses(y, x);
            return Some(p);
        }
        // An identity Transpose writing a graph output: its producer writes the output
        // itself, when nothing else reads the input.
        if is_identity(&perm)
            && let Some(pk) = ed.producer(x)
            && ed.single_use(x)
            && !ed.is_input(x)
        {
            let mut pn = ed.node(pk)?.clone();
            for o in pn.outputs.iter_mut().filter(|o| **o == x) {
                *o = y;
            }
            let mut p = Patch::new();
            p.remove(k).set(pk, pn);
            return Some(p);
        }
        let xs = ed.tensor(x)?.shape.clone();
        // Moving only unit axes is a Reshape (a graph output keeps its tensor).
        if only_moves_unit_dims(&xs, &perm) {
            let target: Vec<i64> =
                perm.iter().map(|&src| xs.dim(src).and_then(|d| d.fixed()).map_or(-1, |v| v as i64)).collect();
            let mut r = n.clone();
            r.op = Op::Reshape(crate::op::Reshape { shape: target });
            let mut p = Patch::new();
            p.set(k, r);
            return Some(p);
        }
        if ed.is_output(y) {
            return None;
        }
        let mut consumers = ed.consumers(y).to_vec();
        consumers.sort_unstable();
        // Fan-out into elementwise ops only (LeakyRelu's relu(x) and neg(x), Softsign's
        // x / (1 + |x|)): give each reader its own copy, which then sinks on its own path
        // and cancels where the paths meet again — when they do: copies that would stay apart
        // only add Transposes (a layout the assignment pass chose for the whole region).
        let elementwise = |c: NodeKey, slot: usize| {
            ed.node(c).is_some_and(|cn| {
                matches!(cn.op, Op::Unary(_) | Op::Binary(_)) || (slot == 0 && matches!(cn.op, Op::Prelu))
            })
        };
        if consumers.len() > 1
            && consumers.iter().all(|&(c, slot)| elementwise(c, slot))
            && copies_left(ed, &consumers) <= 1
        {
            let name = n.name.clone();
            let yt = ed.tensor(y)?.clone();
            let mut readers: Vec<(NodeKey, Node)> = Vec::new();
            let mut copies = Vec::new();
            for (i, &(c, slot)) in consumers.iter().enumerate().skip(1) {
                let yi = ed.add_tensor(crate::Tensor { name: format!("{}/{i}", yt.name), ..yt.clone() });
                if readers.last().is_none_or(|r| r.0 != c) {
                    readers.push((c, ed.node(c)?.clone()));
                }
                if let Some((_, rn)) = readers.last_mut() {
                    rn.inputs[slot] = Some(yi);
                }
                let op = Op::Transpose(crate::op::Transpose { perm: perm.clone() });
                copies.push(Node::new(format!("{name}/{i}"), op, vec![Some(x)], vec![yi]));
            }
            let mut p = Patch::new();
            // Each inserted right after the original: the last first, so they end up in order.
            for copy in copies.into_iter().rev() {
                p.insert_after(k, copy);
            }
            for (c, rn) in readers {
                p.set(c, rn);
            }
            return Some(p);
        }
        let [(ci, slot)] = consumers[..] else { return None };
        Self::sink_into(ed, k, ci, slot, x, y, &perm)
    }

    /// Move Transpose `k` (x → y, perm) below its only consumer `ci`.
    fn sink_into(
        ed: &mut Editor<'_>,
        k: NodeKey,
        ci: NodeKey,
        slot: usize,
        x: TensorId,
        y: TensorId,
        perm: &[usize],
    ) -> Option<Patch> {
        let c = ed.node(ci)?.clone();
        let out = *c.outputs.first()?;
        let rank = perm.len();
        let inv = inverse(perm);
        let mut p = Patch::new();
        p.remove(k);
        // Transpose after transpose: compose.
        if let Op::Transpose(t2) = &c.op {
            let composed: Vec<usize> = t2.perm.iter().map(|&i| perm[i]).collect();
            let mut n = c.clone();
            n.inputs[0] = Some(x);
            n.op = Op::Transpose(crate::op::Transpose { perm: composed });
            p.set(ci, n);
            return Some(p);
        }
        // The producer of `t` when it is a Transpose by `perm` read only here: its input.
        let same_transpose = |ed: &Editor<'_>, t: TensorId| -> Option<(NodeKey, TensorId)> {
            let pk = ed.producer(t)?;
            let pn = ed.node(pk)?;
            match &pn.op {
                Op::Transpose(t2) if t2.perm == perm && ed.single_use(t) => Some((pk, pn.input(0)?)),
                _ => None,
            }
        };
        let mut new_inputs = c.inputs.clone();
        let new_op = match &c.op {
            Op::Unary(_) => {
                new_inputs[slot] = Some(x);
                c.op.clone()
            }
            Op::Binary(_) | Op::Prelu if !(matches!(c.op, Op::Prelu) && slot != 0) => {
                let other_slot = 1 - slot;
                let other = c.input(other_slot)?;
                let ot = ed.tensor(other)?.clone();
                if let Some(data) = &ot.data {
                    // Bring the constant to full rank, then into the source layout.
                    let od = ot.shape.to_fixed()?;
                    if od.len() > rank {
                        return None;
                    }
                    let mut full = vec![1usize; rank - od.len()];
                    full.extend_from_slice(&od);
                    let moved = transpose_bytes(data, &full, &inv, ot.dtype.size())?;
                    let new_dims: Vec<usize> = inv.iter().map(|&i| full[i]).collect();
                    let id = ed.add_tensor(crate::Tensor::constant(
                        format!("{}/nhwc", ot.name),
                        ot.dtype,
                        crate::Shape::fixed(&new_dims),
                        moved.into(),
                    ));
                    new_inputs[other_slot] = Some(id);
                } else {
                    // The other operand must come from the same transpose pattern.
                    let (pk, src) = same_transpose(ed, other)?;
                    new_inputs[other_slot] = Some(src);
                    p.remove(pk);
                }
                new_inputs[slot] = Some(x);
                c.op.clone()
            }
            Op::Concatenation(cat) => {
                for (i, inp) in c.inputs.iter().enumerate() {
                    let inp = (*inp)?;
                    if i == slot {
                        new_inputs[i] = Some(x);
                        continue;
                    }
                    let (pk, src) = same_transpose(ed, inp)?;
                    new_inputs[i] = Some(src);
                    p.remove(pk);
                }
                Op::Concatenation(crate::op::Concatenation { axis: perm[cat.axis], activation: cat.activation })
            }
            Op::Pad(pad) => {
                let mut paddings = vec![[0usize; 2]; rank];
                for (i, &src) in perm.iter().enumerate() {
                    paddings[src] = pad.paddings[i];
                }
                new_inputs[slot] = Some(x);
                Op::Pad(crate::op::Pad { paddings })
            }
            Op::MirrorPad(pad) => {
                let mut paddings = vec![[0usize; 2]; rank];
                for (i, &src) in perm.iter().enumerate() {
                    paddings[src] = pad.paddings[i];
                }
                new_inputs[slot] = Some(x);
                Op::MirrorPad(crate::op::MirrorPad { paddings, mode: pad.mode })
            }
            Op::Mean(m) if m.keep_dims => {
                let mut axes: Vec<usize> = m.axes.iter().map(|&a| perm[a]).collect();
                axes.sort_unstable();
                new_inputs[slot] = Some(x);
                Op::Mean(crate::op::Mean { axes, keep_dims: true })
            }
            _ => return None,
        };
        // The consumer now works in the source layout; a Transpose after it restores the
        // layout its readers expect.
        let out_t = ed.tensor(out)?.clone();
        let src_shape = unpermute(&out_t.shape, perm)?;
        let mid = ed.add_tensor(crate::Tensor {
            name: format!("{}/nhwc", out_t.name),
            shape: src_shape,
            quant: out_t.quant.clone(),
            data: None,
            dtype: out_t.dtype,
            sparse: None,
        });
        let mut n = c.clone();
        n.op = new_op;
        n.inputs = new_inputs;
        n.outputs = vec![mid];
        p.set(ci, n).insert_after(
            ci,
            Node::new(
                format!("{}/transpose", c.name),
                Op::Transpose(crate::op::Transpose { perm: perm.to_vec() }),
                vec![Some(mid)],
                vec![out],
            ),
        );
        let _ = y;
        Some(p)
    }
}

/// How many Transposes would be left if a Transpose read at `readers` (node, slot) gave each
/// reader its own copy and every copy sank as far as it can: copies move down single-reader
/// elementwise chains (binary ops with a constant operand, pads, kept-dims means), two copies
/// meeting at a binary op become one, and a copy reaching another Transpose is absorbed into it.
/// A simulation on the graph as it is; nothing changes.
fn copies_left(ed: &Editor<'_>, readers: &[(NodeKey, usize)]) -> usize {
    let mut at: Vec<(NodeKey, usize)> = readers.to_vec();
    let mut stuck: Vec<(NodeKey, usize)> = Vec::new();
    // Where a copy at the output of `k` goes next: the single reader of that output.
    let next = |k: NodeKey| -> Option<(NodeKey, usize)> {
        let out = *ed.node(k)?.outputs.first()?;
        if !ed.single_use(out) {
            return None;
        }
        ed.consumers(out).first().copied()
    };
    for _ in 0..4 * (ed.node_count() + 1) {
        let Some((k, slot)) = at.pop() else { break };
        let Some(n) = ed.node(k) else { continue };
        let is_const = |t: Option<TensorId>| t.and_then(|t| ed.tensor(t)).is_some_and(|t| t.is_const());
        match &n.op {
            // An identity is on its way out: the copy goes through it.
            Op::Transpose(t) if is_identity(&t.perm) => stuck_or(next(k), (k, slot), &mut at, &mut stuck),
            Op::Transpose(_) => {}
            Op::Unary(_) | Op::Pad(_) | Op::MirrorPad(_) => stuck_or(next(k), (k, slot), &mut at, &mut stuck),
            Op::Mean(m) if m.keep_dims => stuck_or(next(k), (k, slot), &mut at, &mut stuck),
            Op::Prelu if slot == 0 => stuck_or(next(k), (k, slot), &mut at, &mut stuck),
            Op::Binary(_) if is_const(n.input(1 - slot.min(1))) => stuck_or(next(k), (k, slot), &mut at, &mut stuck),
            Op::Binary(_) => {
                // The other operand's copy, if one is waiting here or arrives later.
                if let Some(i) = at.iter().position(|&(k2, s2)| k2 == k && s2 != slot) {
                    at.swap_remove(i);
                    stuck_or(next(k), (k, slot), &mut at, &mut stuck);
                } else if let Some(i) = stuck.iter().position(|&(k2, s2)| k2 == k && s2 != slot) {
                    stuck.swap_remove(i);
                    stuck_or(next(k), (k, slot), &mut at, &mut stuck);
                } else {
                    stuck.push((k, slot));
                }
            }
            _ => stuck.push((k, slot)),
        }
    }
    stuck.len() + at.len()
}

/// Move a copy on to `next`, or leave it stuck at `here`.
fn stuck_or(
    next: Option<(NodeKey, usize)>,
    here: (NodeKey, usize),
    at: &mut Vec<(NodeKey, usize)>,
    stuck: &mut Vec<(NodeKey, usize)>,
) {
    match next {
        Some(n) => at.push(n),
        None => stuck.push(here),
    }
}

/// From Transpose `k`, the longest run of single-reader Transposes and Reshapes whose overall
/// effect keeps every element in place: (the run's output, its shape as a Reshape target, the
/// nodes after `k`). Static shapes of at most 2^18 elements only.
fn identity_chain(ed: &Editor<'_>, k: NodeKey) -> Option<(TensorId, Vec<i64>, Vec<NodeKey>)> {
    let x = ed.node(k)?.input(0)?;
    // Only where a Transpose or Reshape reads the Transpose (cheap to rule out first).
    let y = *ed.node(k)?.outputs.first()?;
    let [(next, 0)] = ed.consumers(y)[..] else { return None };
    if !matches!(ed.node(next)?.op, Op::Transpose(_) | Op::Reshape(_)) {
        return None;
    }
    let dims = ed.tensor(x)?.shape.to_fixed()?;
    let n = checked_product(&dims)?;
    if n > 1 << 18 || n == 0 {
        return None;
    }
    let iota: Vec<u8> = (0..n as u32).flat_map(|v| v.to_le_bytes()).collect();
    let mut data = iota.clone();
    let mut cur_dims = dims;
    let mut node = k;
    let mut chain = Vec::new();
    let mut best = None;
    loop {
        let nd = ed.node(node)?;
        let out = *nd.outputs.first()?;
        let out_dims = ed.tensor(out)?.shape.to_fixed()?;
        match &nd.op {
            Op::Transpose(t) => {
                data = transpose_bytes(&data, &cur_dims, &t.perm, 4)?;
            }
            Op::Reshape(_) => {}
            _ => break,
        }
        cur_dims = out_dims;
        if node != k {
            chain.push(node);
            if data == iota {
                best = Some((out, cur_dims.iter().map(|&d| d as i64).collect::<Vec<_>>(), chain.clone()));
            }
        }
        if ed.is_output(out) {
            break;
        }
        let [(next, 0)] = ed.consumers(out)[..] else { break };
        if !matches!(ed.node(next)?.op, Op::Transpose(_) | Op::Reshape(_)) {
            break;
        }
        node = next;
    }
    best
}

impl Pass for SinkTransposes {
    fn name(&self) -> &'static str {
        "sink-transposes"
    }

    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        ed.rewrite_each(Self::step)?;
        if ed.applied() > 0 {
            // Drop what the rewrites left unread (the layout pass's unused copies too).
            DeadCodeElimination.run(ed)?;
        }
        Ok(())
    }
}

/// Replace every Densify of a constant by the constant it makes: the output tensor gets the
/// dense data (the IR's form of every constant) and no sparse form, and the node goes. The
/// quantizer calls this first: its weights must be constants, and the weights it writes are
/// new dense tensors. A Densify whose output is a graph output stays.
pub fn fold_densify(g: &mut Graph) -> usize {
    let mut folded = Vec::new();
    for (ni, n) in g.nodes().iter().enumerate() {
        if !matches!(n.op, Op::Densify) {
            continue;
        }
        let (Some(x), Some(&out)) = (n.input(0), n.outputs.first()) else { continue };
        let Some(data) = g.tensor(x).and_then(|t| t.data.clone()) else { continue };
        if g.outputs().contains(&out) {
            continue;
        }
        folded.push((ni, out, data));
    }
    let count = folded.len();
    let mut drop = vec![false; g.nodes().len()];
    for (ni, out, data) in folded {
        if let Some(t) = g.tensor_mut(out) {
            t.data = Some(data);
            t.sparse = None;
        }
        drop[ni] = true;
    }
    if count > 0 {
        let mut it = drop.into_iter();
        g.retain_nodes(|_| !it.next().unwrap_or(false));
        g.compact_tensors();
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element-by-element gather `transpose_bytes` replaced, as the oracle.
    fn naive(data: &[u8], dims: &[usize], perm: &[usize], elem: usize) -> Vec<u8> {
        let rank = dims.len();
        let mut in_strides = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            in_strides[i] = in_strides[i + 1] * dims[i + 1];
        }
        let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let n: usize = dims.iter().product();
        let mut out = vec![0u8; data.len()];
        let mut idx = vec![0usize; rank];
        for o in 0..n {
            let src: usize = (0..rank).map(|k| idx[k] * in_strides[perm[k]]).sum();
            out[o * elem..(o + 1) * elem].copy_from_slice(&data[src * elem..(src + 1) * elem]);
            for k in (0..rank).rev() {
                idx[k] += 1;
                if idx[k] < out_dims[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        out
    }

    #[test]
    fn transpose_bytes_equals_the_gather_on_random_shapes() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % m) as usize
        };
        for case in 0..400 {
            let rank = 1 + next(5);
            let dims: Vec<usize> = (0..rank).map(|_| if case % 17 == 0 { next(3) } else { 1 + next(40) }).collect();
            let mut perm: Vec<usize> = (0..rank).collect();
            for i in (1..rank).rev() {
                perm.swap(i, next(i as u64 + 1));
            }
            let elem = [1, 2, 4, 8, 3][next(5)];
            let n: usize = dims.iter().product();
            if n * elem > 1 << 20 {
                continue;
            }
            let data: Vec<u8> = (0..n * elem).map(|_| next(256) as u8).collect();
            let got = transpose_bytes(&data, &dims, &perm, elem).unwrap();
            assert_eq!(got, naive(&data, &dims, &perm, elem), "dims {dims:?} perm {perm:?} elem {elem}");
        }
        assert!(transpose_bytes(&[0; 8], &[2, 1], &[0, 0], 4).is_none(), "not a permutation");
        assert!(transpose_bytes(&[0; 8], &[2, 2], &[1, 0], 4).is_none(), "wrong length");
    }

    /// Transposes of 2 MiB and more split the output's leading axis over threads: the same
    /// bytes as the plain gather, for leading axes that do and do not divide evenly, that are
    /// an outer axis or the tiles' own (HWIO → OHWI).
    #[test]
    fn large_transposes_split_over_threads_equal_the_gather() {
        for (dims, perm, elem) in [
            (vec![300usize, 64, 7, 7, 3], vec![0usize, 2, 3, 4, 1], 4usize),
            (vec![301, 49, 150], vec![0, 2, 1], 4),
            (vec![5, 1024, 1100], vec![0, 2, 1], 2),
            (vec![3, 3, 256, 513], vec![3, 0, 1, 2], 4),
            (vec![1, 1, 2048, 1001], vec![3, 0, 1, 2], 4),
        ] {
            let n: usize = dims.iter().product();
            assert!(n * elem >= 2 << 20, "{dims:?} must take the split path");
            let data: Vec<u8> = (0..n * elem).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect();
            let got = transpose_bytes(&data, &dims, &perm, elem).unwrap();
            assert!(got == naive(&data, &dims, &perm, elem), "dims {dims:?} perm {perm:?}");
        }
    }

    /// Row-by-row transposes go in blocks of rows (each block's input then released): the same
    /// bytes for blocks of one row, of several, of a number of rows that does not divide the
    /// leading axis, and with blocks large enough to split over threads.
    #[test]
    fn blocked_transposes_equal_the_gather() {
        for (dims, perm, elem, block) in [
            (vec![37usize, 16, 3, 3], vec![0usize, 2, 3, 1], 4usize, 1usize),
            (vec![37, 16, 9], vec![0, 2, 1], 4, 16 * 9 * 4 * 5),
            (vec![41, 7, 5, 3], vec![0, 3, 1, 2], 2, 7 * 5 * 3 * 2 * 3 + 1),
            (vec![180, 512, 49], vec![0, 2, 1], 4, 4 << 20),
        ] {
            let n: usize = dims.iter().product();
            assert!(n * elem >= 4 * block, "{dims:?} must take the blocked path");
            let data: Vec<u8> = (0..n * elem).map(|i| (i.wrapping_mul(2654435761) >> 9) as u8).collect();
            for threads in [1, 3] {
                let got = transpose_blocked(&data, &dims, &perm, elem, block, threads).unwrap();
                assert!(got == naive(&data, &dims, &perm, elem), "dims {dims:?} perm {perm:?} block {block}");
            }
        }
    }
}

/// Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization
/// and Bias Correction", ICCV 2019): for two consecutive layers joined by a ReLU or by nothing,
/// output channel `i` of the first is divided by `s_i = sqrt(r1_i / r2_i)` (weights and bias)
/// and input channel `i` of the second multiplied by it, where `r1_i` / `r2_i` are the largest
/// weight magnitudes of those channels. ReLU commutes with a positive scale, so the float model
/// computes the same function (to rounding) while both layers' per-channel weight ranges become
/// `sqrt(r1_i · r2_i)`: a per-tensor or per-channel int8 grid then fits them better. A ReLU6 (a
/// clip the scale would move) or a fan-out stops it. Layers: CONV_2D (one group),
/// DEPTHWISE_CONV_2D (multiplier 1) and FULLY_CONNECTED, with float constant weights. The
/// pairs are swept until the scales settle (at most [`CLE_SWEEPS`] sweeps).
#[derive(Debug, Default)]
pub struct CrossLayerEqualization;

/// Sweeps of cross-layer equalization (chains of layers converge geometrically).
pub const CLE_SWEEPS: usize = 8;

/// Where a layer's weights keep a channel of its output (`out`) or its input: the axis in the
/// weight tensor, or None when the layer does not qualify.
fn cle_axes(ed: &Editor<'_>, n: &Node) -> Option<(usize, usize)> {
    let w = ed.tensor(n.input(1)?)?;
    let dims = w.shape.to_fixed()?;
    // The input's channel count (its batch may be dynamic).
    let x = &ed.tensor(n.input(0)?)?.shape;
    let rank = x.rank();
    let channels = match x.dim(rank.checked_sub(1)?) {
        Some(crate::shape::Dim::Fixed(c)) => c,
        _ => return None,
    };
    match &n.op {
        // [O, kh, kw, I], one group.
        Op::Conv2d(_) if dims.len() == 4 && channels == dims[3] => Some((0, 3)),
        // [1, kh, kw, C], multiplier 1: channel i in is channel i out.
        Op::DepthwiseConv2d(o) if o.depth_multiplier == 1 && dims.len() == 4 => Some((3, 3)),
        // [units, C] on a rank-2 input.
        Op::FullyConnected(o) if dims.len() == 2 && rank == 2 && !o.keep_num_dims => Some((0, 1)),
        _ => None,
    }
}

/// Per-channel largest magnitude of a float constant along `axis`.
fn channel_max(data: &[u8], dims: &[usize], axis: usize) -> Vec<f32> {
    let c = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let mut m = vec![0f32; c];
    for (i, x) in data.chunks_exact(4).enumerate() {
        let v = f32::from_le_bytes([x[0], x[1], x[2], x[3]]).abs();
        let ch = (i / inner.max(1)) % c.max(1);
        if v > m[ch] {
            m[ch] = v;
        }
    }
    m
}

/// Every value of a float constant multiplied by its channel's factor along `axis`.
fn scale_axis(data: &[u8], dims: &[usize], axis: usize, s: &[f32]) -> Bytes {
    let c = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(data.len());
    for (i, x) in data.chunks_exact(4).enumerate() {
        let v = f32::from_le_bytes([x[0], x[1], x[2], x[3]]) * s[(i / inner.max(1)) % c.max(1)];
        out.extend_from_slice(&v.to_le_bytes());
    }
    Bytes::from(out)
}

impl CrossLayerEqualization {
    fn step(ed: &mut Editor<'_>, k1: NodeKey) -> Option<Patch> {
        let n1 = ed.node(k1)?.clone();
        if !matches!(n1.op.fused_activation(), Some(Activation::None | Activation::Relu)) {
            return None;
        }
        let (out1, _) = cle_axes(ed, &n1)?;
        let y = *n1.outputs.first()?;
        if !ed.single_use(y) {
            return None;
        }
        let (k2, slot) = ed.consumers(y)[0];
        let n2 = ed.node(k2)?.clone();
        let (_, in2) = cle_axes(ed, &n2).filter(|_| slot == 0)?;
        let const_f32 = |t: TensorId| -> Option<(Tensor, Vec<usize>, Bytes)> {
            let c = ed.tensor(t)?;
            if c.dtype != crate::DType::F32 || c.quant.is_some() || ed.consumers(t).len() != 1 {
                return None;
            }
            Some((c.clone(), c.shape.to_fixed()?, c.data.clone()?))
        };
        let (w1, d1, b1) = const_f32(n1.input(1)?)?;
        let (w2, d2, b2) = const_f32(n2.input(1)?)?;
        let channels = d1[out1];
        if d2[in2] != channels {
            return None;
        }
        // A bias other layers share (TF's converter stores equal constants once: zero biases)
        // gets a scaled copy of its own.
        let bias = match n1.input(2) {
            Some(b) => {
                let c = ed.tensor(b)?;
                if c.dtype != crate::DType::F32 || c.quant.is_some() {
                    return None;
                }
                Some((b, (c.clone(), c.shape.to_fixed()?, c.data.clone()?), ed.consumers(b).len() == 1))
            }
            None => None,
        };
        let (r1, r2) = (channel_max(&b1, &d1, out1), channel_max(&b2, &d2, in2));
        let s: Vec<f32> = r1
            .iter()
            .zip(&r2)
            .map(|(&a, &b)| if a > 0.0 && b > 0.0 && (a / b).is_finite() { (a / b).sqrt() } else { 1.0 })
            .collect();
        // Settled: every scale within 1 % of 1.
        if s.iter().all(|&v| (v - 1.0).abs() < 0.01) {
            return None;
        }
        let inv: Vec<f32> = s.iter().map(|&v| 1.0 / v).collect();
        let mut patch = Patch::new();
        patch.set_tensor(n1.input(1)?, Tensor { data: Some(scale_axis(&b1, &d1, out1, &inv)), ..w1 });
        patch.set_tensor(n2.input(1)?, Tensor { data: Some(scale_axis(&b2, &d2, in2, &s)), ..w2 });
        if let Some((bt, (b, bd, bb), own)) = bias {
            let bd = if bd.len() == 1 && bd[0] == channels { bd } else { return None };
            let scaled = Tensor { data: Some(scale_axis(&bb, &bd, 0, &inv)), ..b };
            if own {
                patch.set_tensor(bt, scaled);
            } else {
                let name = format!("{}/equalized", scaled.name);
                let copy = ed.add_tensor(Tensor { name, ..scaled });
                let mut node = n1.clone();
                node.inputs[2] = Some(copy);
                patch.set(k1, node);
            }
        }
        Some(patch)
    }
}

impl Pass for CrossLayerEqualization {
    fn name(&self) -> &'static str {
        "cross-layer-equalization"
    }

    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        for _ in 0..CLE_SWEEPS {
            let mut changed = false;
            for k in ed.keys() {
                if let Some(p) = Self::step(ed, k) {
                    if ed.apply(p).is_none() {
                        return Ok(());
                    }
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        Ok(())
    }
}
