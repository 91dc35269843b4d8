//! Generic cleanup passes and the IR's pass table.

use crate::graph::{Graph, TensorId};
use crate::op::{Activation, Op, UnaryKind};
use crate::pass::{Pass, PassCx, PassError, PassInfo, PassManager};
use crate::shape::checked_product;
use crate::tensor::f32_bytes;
use bytes::Bytes;

/// Remove the nodes at `indices` (positions in the node list); the others keep their order.
fn remove_nodes(g: &mut Graph, indices: &[usize]) {
    let mut k = 0;
    g.retain_nodes(|_| {
        k += 1;
        !indices.contains(&(k - 1))
    });
}

/// Apply `step` (one rewrite, or none) until nothing changes or the rewrite budget is spent,
/// then drop the tensors nothing references; whether anything changed.
fn rewrite_to_fixed_point(g: &mut Graph, cx: &mut PassCx, step: fn(&mut Graph) -> bool) -> bool {
    let mut changed = false;
    for _ in 0..=g.nodes().len() {
        if !cx.allow_rewrite() || !step(g) {
            break;
        }
        changed = true;
    }
    if changed {
        g.compact_tensors();
    }
    changed
}

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
            // An opaque op may have effects qlite cannot see (a variable assignment has no
            // output): it stays.
            let used = matches!(node.op, Op::Opaque(_))
                || node.outputs.iter().any(|o| live.get(o.index()).copied().unwrap_or(false));
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
///
/// Axes that stay next to each other are merged first. When the innermost axis stays
/// innermost, whole rows are copied; otherwise the innermost input axis and the innermost
/// output axis are transposed in 32×32 tiles, so both sides are read and written a cache line
/// at a time (a flatten's weight permutation of VGG-19, 411 MB, was an element-by-element
/// gather).
pub fn transpose_bytes(data: &[u8], dims: &[usize], perm: &[usize], elem: usize) -> Option<Vec<u8>> {
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
    let mut idx = vec![0usize; others.len()];
    let outer: usize = others.iter().map(|&k| out_dims[k]).product();
    for _ in 0..outer {
        let src0: usize = others.iter().zip(&idx).map(|(&k, &i)| i * in_strides[mperm[k]]).sum();
        let dst0: usize = others.iter().zip(&idx).map(|(&k, &i)| i * out_strides[k]).sum();
        let tile = Tile { nq, nl, sp, sq, src0, dst0 };
        match elem {
            1 => tile.copy::<1>(data, &mut out),
            2 => tile.copy::<2>(data, &mut out),
            4 => tile.copy::<4>(data, &mut out),
            8 => tile.copy::<8>(data, &mut out),
            _ => tile.copy_any(data, &mut out, elem),
        }
        for (j, &k) in others.iter().enumerate().rev() {
            idx[j] += 1;
            if idx[j] < out_dims[k] {
                break;
            }
            idx[j] = 0;
        }
    }
    Some(out)
}

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

    /// Elements of `N` bytes, moved as `[u8; N]`.
    fn copy<const N: usize>(&self, data: &[u8], out: &mut [u8]) {
        for a0 in (0..self.nq).step_by(Self::T) {
            for l0 in (0..self.nl).step_by(Self::T) {
                for a in a0..(a0 + Self::T).min(self.nq) {
                    let d0 = (self.dst0 + a * self.sq) * N;
                    for l in l0..(l0 + Self::T).min(self.nl) {
                        let s = (self.src0 + l * self.sp + a) * N;
                        let v: [u8; N] = data[s..s + N].try_into().unwrap_or([0; N]);
                        out[d0 + l * N..d0 + (l + 1) * N].copy_from_slice(&v);
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
                remove_nodes(g, &[i]);
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
                remove_nodes(g, &[i]);
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

/// Folds a per-channel scale and shift after a convolution or fully-connected layer into its
/// weights and bias: `conv → MUL s → ADD t` (an inference BatchNorm as SavedModels and
/// TF-converted files spell it), `conv → MUL s` or `conv → ADD t`. `s` and `t` are float
/// constants varying along the last axis only (or scalars); the layer's float weights become
/// `w · s` per output channel and its bias `b · s + t`. TF's converter folds the same way.
#[derive(Debug, Default)]
pub struct FoldScaleShift;

/// A per-channel constant of `channels` values (a scalar is broadcast): the values, if `t` is
/// one.
fn per_channel_const(g: &Graph, t: TensorId, channels: usize) -> Option<Vec<f32>> {
    let c = g.tensor(t)?;
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
    /// One fold, if any applies.
    fn step(g: &mut Graph) -> bool {
        for i in 0..g.nodes().len() {
            let n = &g.nodes()[i];
            let channel_axis_last = match &n.op {
                Op::Conv2d(o) if o.activation == Activation::None => false,
                Op::FullyConnected(o) if o.activation == Activation::None && !o.asymmetric_inputs => false,
                Op::DepthwiseConv2d(o) if o.activation == Activation::None => true,
                _ => continue,
            };
            let (Some(w), Some(&y)) = (n.input(1), n.outputs.first()) else { continue };
            let Some(wt) = g.tensor(w).filter(|t| t.dtype == crate::DType::F32 && t.quant.is_none()).cloned() else {
                continue;
            };
            let (Some(wdims), Some(wdata)) = (wt.shape.to_fixed(), wt.data.clone()) else { continue };
            let channels = if channel_axis_last { *wdims.last().unwrap_or(&0) } else { wdims[0] };
            let bias = match n.input(2) {
                Some(b) => match per_channel_const(g, b, channels) {
                    Some(v) => v,
                    None => continue,
                },
                None => vec![0.0; channels],
            };
            // The chain: up to a MUL then an ADD, each the only reader of what it reads.
            let mut scale = vec![1f32; channels];
            let mut shift = vec![0f32; channels];
            let mut last = y;
            let mut removed = Vec::new();
            let mut act = Activation::None;
            for kind in [crate::op::BinaryKind::Mul, crate::op::BinaryKind::Add] {
                let readers = g.consumers(last);
                if readers.len() != 1 || g.outputs().contains(&last) {
                    break;
                }
                let (c, slot) = readers[0];
                let cn = &g.nodes()[c.index()];
                let Op::Binary(b) = &cn.op else { break };
                if act != Activation::None {
                    break;
                }
                if b.kind != kind {
                    // No scale: the shift may still follow directly.
                    if kind == crate::op::BinaryKind::Mul {
                        continue;
                    }
                    break;
                }
                let Some(other) = cn.input(1 - slot) else { break };
                let Some(v) = per_channel_const(g, other, channels) else { break };
                let Some(&out) = cn.outputs.first() else { break };
                // The output keeps the layer's shape (no broadcast up).
                if g.tensor(out).map(|t| &t.shape) != g.tensor(y).map(|t| &t.shape) {
                    break;
                }
                if kind == crate::op::BinaryKind::Mul {
                    scale = v;
                } else {
                    shift = v;
                }
                act = b.activation;
                removed.push(c.index());
                last = out;
            }
            if removed.is_empty() {
                continue;
            }
            let mut wv = crate::tensor::read_f32s(&wdata);
            // Weights per output channel of OHWI / [O, I] weights.
            let per_channel = wdims.iter().skip(1).product::<usize>().max(1);
            for (k, x) in wv.iter_mut().enumerate() {
                let ch = if channel_axis_last { k % channels } else { k / per_channel };
                *x *= scale[ch];
            }
            let nb: Vec<f32> = (0..channels).map(|c| bias[c] * scale[c] + shift[c]).collect();
            let wname = format!("{}/folded", wt.name);
            let new_w =
                g.add_tensor(crate::Tensor::constant(wname, crate::DType::F32, wt.shape.clone(), f32_bytes(&wv)));
            let bname = format!("{}/bias_folded", g.nodes()[i].name);
            let new_b = g.add_tensor(crate::Tensor::constant(
                bname,
                crate::DType::F32,
                crate::Shape::fixed(&[channels]),
                f32_bytes(&nb),
            ));
            if let Some(node) = g.node_mut(crate::NodeId::from_index(i)) {
                node.inputs[1] = Some(new_w);
                if node.inputs.len() < 3 {
                    node.inputs.resize(3, None);
                }
                node.inputs[2] = Some(new_b);
                node.outputs[0] = last;
                node.op.set_fused_activation(act);
            }
            remove_nodes(g, &removed);
            return true;
        }
        false
    }
}

/// Folds a float zero PAD of height and width into the VALID convolution (or depthwise
/// convolution) reading it, when the pad is exactly what SAME padding adds: Keras's
/// `ZeroPadding2D(((0, 1), (0, 1)))` before a stride-2 VALID convolution (MobileNets) is a SAME
/// convolution. Pads SAME would split differently (ResNet's 3/3 before a 7×7 stride 2) stay.
#[derive(Debug, Default)]
pub struct FoldPad;

impl FoldPad {
    fn step(g: &mut Graph) -> bool {
        for pi in 0..g.nodes().len() {
            let pn = &g.nodes()[pi];
            let Op::Pad(p) = &pn.op else { continue };
            let (Some(x), Some(&y)) = (pn.input(0), pn.outputs.first()) else { continue };
            let zero_value = match pn.input(1) {
                None => true,
                Some(v) => g
                    .tensor(v)
                    .and_then(|t| t.data.as_ref().map(|d| (t.dtype, d.clone())))
                    .is_some_and(|(dt, d)| dt == crate::DType::F32 && crate::tensor::read_f32s(&d) == [0.0]),
            };
            let float = g.tensor(x).is_some_and(|t| t.dtype == crate::DType::F32 && t.shape.rank() == 4);
            if !zero_value || !float || p.paddings.len() != 4 || p.paddings[0] != [0, 0] || p.paddings[3] != [0, 0] {
                continue;
            }
            let readers = g.consumers(y);
            let [(ci, 0)] = readers[..] else { continue };
            if g.outputs().contains(&y) {
                continue;
            }
            let cn = &g.nodes()[ci.index()];
            let (stride, dilation) = match &cn.op {
                Op::Conv2d(c) if c.padding == crate::op::Padding::Valid => (c.stride, c.dilation),
                Op::DepthwiseConv2d(c) if c.padding == crate::op::Padding::Valid => (c.stride, c.dilation),
                _ => continue,
            };
            // OHWI / 1HWC weights: the window is axes 1 and 2 either way.
            let Some(w) = cn.input(1).and_then(|w| g.tensor(w)).and_then(|t| t.shape.to_fixed()) else { continue };
            let (kh, kw) = (w[1], w[2]);
            let Some(xs) = g.tensor(x).map(|t| t.shape.clone()) else { continue };
            let same = |axis: usize, k: usize, s: usize, d: usize| -> Option<[usize; 2]> {
                crate::op::Padding::same_pads(xs.dim(axis)?, k, s, d)
            };
            if same(1, kh, stride[0], dilation[0]) != Some(p.paddings[1])
                || same(2, kw, stride[1], dilation[1]) != Some(p.paddings[2])
            {
                continue;
            }
            if let Some(c) = g.node_mut(ci) {
                c.inputs[0] = Some(x);
                match &mut c.op {
                    Op::Conv2d(o) => o.padding = crate::op::Padding::Same,
                    Op::DepthwiseConv2d(o) => o.padding = crate::op::Padding::Same,
                    _ => {}
                }
            }
            remove_nodes(g, &[pi]);
            return true;
        }
        false
    }
}

impl Pass for FoldPad {
    fn name(&self) -> &'static str {
        "fold-pad"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<bool, PassError> {
        Ok(rewrite_to_fixed_point(g, cx, Self::step))
    }
}

impl Pass for FoldScaleShift {
    fn name(&self) -> &'static str {
        "fold-scale-shift"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<bool, PassError> {
        Ok(rewrite_to_fixed_point(g, cx, Self::step))
    }
}

/// Fuses the exact GELU as exporters spell it out, `x · 0.5 · (1 + erf(x / √2))` (PyTorch's
/// ONNX export before opset 20) or `0.5·x · erfc(−x/√2)` (TF's `gelu`), into one GELU: TFLite has no ERF, and one
/// GELU is what TF's converter writes. Accepted forms: the division by √2 or a multiplication
/// by 1/√2; the 0.5 applied last, or to `x` first. Every intermediate must have one reader.
#[derive(Debug, Default)]
pub struct FuseGelu;

/// The scalar value of a constant tensor (any shape with one element).
fn scalar_const(g: &Graph, t: TensorId) -> Option<f32> {
    let t = g.tensor(t)?;
    let d = t.data.as_ref()?;
    (t.dtype == crate::DType::F32 && d.len() == 4).then(|| f32::from_le_bytes([d[0], d[1], d[2], d[3]]))
}

fn near(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-4 * b.abs()
}

impl FuseGelu {
    /// The operands of a binary `kind` node producing `t`, when it is one.
    fn binary(g: &Graph, t: TensorId, kind: crate::BinaryKind) -> Option<(crate::NodeId, TensorId, TensorId)> {
        let p = g.producer(t)?;
        let n = &g.nodes()[p.index()];
        match &n.op {
            Op::Binary(b) if b.kind == kind && b.activation == Activation::None => Some((p, n.input(0)?, n.input(1)?)),
            _ => None,
        }
    }

    /// `x` when `t = x / √2` or `x · (1/√2)`.
    fn scaled_input(g: &Graph, t: TensorId) -> Option<TensorId> {
        if let Some((_, a, b)) = Self::binary(g, t, crate::BinaryKind::Div) {
            return scalar_const(g, b).filter(|&c| near(c, std::f32::consts::SQRT_2)).map(|_| a);
        }
        let (_, a, b) = Self::binary(g, t, crate::BinaryKind::Mul)?;
        let (x, c) = if scalar_const(g, b).is_some() { (a, b) } else { (b, a) };
        scalar_const(g, c).filter(|&c| near(c, std::f32::consts::FRAC_1_SQRT_2)).map(|_| x)
    }

    /// `x` when `t = −x/√2`: `neg(x) · (1/√2)`, `neg(x) / √2` or `x · (−1/√2)`.
    fn neg_scaled_input(g: &Graph, t: TensorId) -> Option<TensorId> {
        let neg_of = |t: TensorId| {
            let n = &g.nodes()[g.producer(t)?.index()];
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
    fn matches_erfc(g: &Graph, p: TensorId, q: TensorId) -> Option<TensorId> {
        let single = |t: TensorId| g.consumers(t).len() == 1 && !g.outputs().contains(&t);
        [(p, q), (q, p)].into_iter().find_map(|(hx, e)| {
            let en = &g.nodes()[g.producer(e)?.index()];
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

    /// For the GELU ending at node `ni` (a Mul), the input `x`.
    fn matches(g: &Graph, ni: usize) -> Option<TensorId> {
        let out = *g.nodes()[ni].outputs.first()?;
        let single = |t: TensorId| g.consumers(t).len() == 1 && !g.outputs().contains(&t);
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
            let en = &g.nodes()[g.producer(e)?.index()];
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

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<bool, PassError> {
        let mut changed = false;
        for ni in 0..g.nodes().len() {
            let Some(x) = Self::matches(g, ni) else { continue };
            if !cx.allow_rewrite() {
                break;
            }
            if let Some(n) = g.node_mut(crate::NodeId::from_index(ni)) {
                n.op = Op::Unary(crate::op::Unary { kind: UnaryKind::Gelu });
                n.inputs = vec![Some(x)];
            }
            changed = true;
        }
        // The Div / Erf / Add / Mul left unread are for dead code elimination.
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
    PassInfo {
        name: "fuse-gelu",
        description: "turn x · 0.5 · (1 + erf(x / √2)) into one GELU",
        make: || Box::new(FuseGelu),
    },
    PassInfo {
        name: "fold-pad",
        description: "fold a float zero PAD into the VALID convolution reading it where it is exactly SAME padding",
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
    /// One rewrite, if any applies. Returns true when the graph changed.
    fn step(&self, g: &mut Graph) -> bool {
        // A chain of Transposes and Reshapes that leaves every element where it was (NHWC
        // [1,1,W,C] → NCHW → flatten → transpose back, as attention blocks spell it) is one
        // Reshape: checked on an index array, exactly.
        for ti in 0..g.nodes().len() {
            if !matches!(g.nodes()[ti].op, Op::Transpose(_)) {
                continue;
            }
            if let Some((last, target, mut chain)) = identity_chain(g, ti) {
                let x = g.nodes()[ti].input(0);
                let same_shape = x
                    .and_then(|x| g.tensor(x))
                    .and_then(|t| t.shape.to_fixed())
                    .is_some_and(|d| d.iter().map(|&v| v as i64).collect::<Vec<_>>() == target);
                if let (true, Some(x), false) = (same_shape, x, g.outputs().contains(&last)) {
                    // Nothing moves and nothing changes shape: the chain goes.
                    g.replace_uses(last, x);
                    chain.push(ti);
                } else if let Some(n) = g.node_mut(crate::NodeId::from_index(ti)) {
                    n.op = Op::Reshape(crate::op::Reshape { shape: target });
                    n.outputs = vec![last];
                }
                remove_nodes(g, &chain);
                return true;
            }
        }
        for ti in 0..g.nodes().len() {
            let Op::Transpose(t) = &g.nodes()[ti].op else { continue };
            let perm = t.perm.clone();
            let (Some(x), Some(&y)) = (g.nodes()[ti].input(0), g.nodes()[ti].outputs.first()) else { continue };
            if is_identity(&perm) && !g.outputs().contains(&y) {
                g.replace_uses(y, x);
                g.retain_nodes(|n| !n.outputs.contains(&y));
                return true;
            }
            // An identity Transpose writing a graph output: its producer writes the output
            // itself, when nothing else reads the input.
            if is_identity(&perm)
                && let Some(p) = g.producer(x)
                && g.consumers(x).len() == 1
                && !g.outputs().contains(&x)
                && !g.inputs().contains(&x)
            {
                if let Some(pn) = g.node_mut(p) {
                    for o in pn.outputs.iter_mut().filter(|o| **o == x) {
                        *o = y;
                    }
                }
                g.retain_nodes(|n| {
                    !(matches!(n.op, Op::Transpose(_)) && n.outputs.contains(&y) && n.input(0) == Some(x))
                });
                return true;
            }
            let Some(xs) = g.tensor(x).map(|t| t.shape.clone()) else { continue };
            // Moving only unit axes is a Reshape (a graph output keeps its tensor).
            if only_moves_unit_dims(&xs, &perm) {
                let target: Vec<i64> =
                    perm.iter().map(|&src| xs.dim(src).and_then(|d| d.fixed()).map_or(-1, |v| v as i64)).collect();
                if let Some(n) = g.node_mut(crate::NodeId::from_index(ti)) {
                    n.op = Op::Reshape(crate::op::Reshape { shape: target });
                }
                return true;
            }
            let consumers = g.consumers(y);
            if g.outputs().contains(&y) {
                continue;
            }
            // Fan-out into elementwise ops only (LeakyRelu's relu(x) and neg(x), Softsign's
            // x / (1 + |x|)): give each reader its own copy, which then sinks on its own path
            // and cancels where the paths meet again.
            if consumers.len() > 1
                && consumers.iter().all(|(c, slot)| {
                    matches!(g.nodes()[c.index()].op, Op::Unary(_) | Op::Binary(_))
                        || (*slot == 0 && matches!(g.nodes()[c.index()].op, Op::Prelu))
                })
            {
                let name = g.nodes()[ti].name.clone();
                let Some(yt) = g.tensor(y).cloned() else { continue };
                // Rewire every reader first: inserting a node shifts the ids of the nodes after
                // it, so consumer ids are only valid before the first insertion.
                let mut copies = Vec::new();
                for (k, &(c, slot)) in consumers.iter().enumerate().skip(1) {
                    let yk = g.add_tensor(crate::Tensor { name: format!("{}/{k}", yt.name), ..yt.clone() });
                    if let Some(n) = g.node_mut(c) {
                        n.inputs[slot] = Some(yk);
                    }
                    copies.push((k, yk));
                }
                for (k, yk) in copies.into_iter().rev() {
                    let op = Op::Transpose(crate::op::Transpose { perm: perm.clone() });
                    g.insert_node(ti + 1, crate::Node::new(format!("{name}/{k}"), op, vec![Some(x)], vec![yk]));
                }
                return true;
            }
            if consumers.len() != 1 {
                continue;
            }
            let (ci, slot) = (consumers[0].0.index(), consumers[0].1);
            if self.sink_into(g, ti, ci, slot, x, y, &perm) {
                return true;
            }
        }
        // Reshape of a Reshape → one Reshape.
        for ri in 0..g.nodes().len() {
            let Op::Reshape(_) = &g.nodes()[ri].op else { continue };
            let (Some(x), Some(&y)) = (g.nodes()[ri].input(0), g.nodes()[ri].outputs.first()) else { continue };
            let Some(pi) = g.producer(x) else { continue };
            if !matches!(g.nodes()[pi.index()].op, Op::Reshape(_))
                || g.consumers(x).len() != 1
                || g.outputs().contains(&x)
            {
                continue;
            }
            let Some(src) = g.nodes()[pi.index()].input(0) else { continue };
            let _ = y;
            if let Some(n) = g.node_mut(crate::NodeId::from_index(ri)) {
                n.inputs[0] = Some(src);
            }
            return true;
        }
        false
    }

    /// Move Transpose `ti` (x → y, perm) below its only consumer `ci`.
    #[allow(clippy::too_many_arguments)]
    fn sink_into(
        &self,
        g: &mut Graph,
        ti: usize,
        ci: usize,
        slot: usize,
        x: TensorId,
        y: TensorId,
        perm: &[usize],
    ) -> bool {
        let c = g.nodes()[ci].clone();
        let Some(&out) = c.outputs.first() else { return false };
        let rank = perm.len();
        let inv = inverse(perm);
        // Transpose after transpose: compose.
        if let Op::Transpose(t2) = &c.op {
            let composed: Vec<usize> = t2.perm.iter().map(|&i| perm[i]).collect();
            if let Some(n) = g.node_mut(crate::NodeId::from_index(ci)) {
                n.inputs[0] = Some(x);
                n.op = Op::Transpose(crate::op::Transpose { perm: composed });
            }
            g.retain_nodes(|n| !n.outputs.contains(&y));
            return true;
        }
        let mut new_inputs = c.inputs.clone();
        let new_op = match &c.op {
            Op::Unary(_) => {
                new_inputs[slot] = Some(x);
                c.op.clone()
            }
            Op::Binary(_) | Op::Prelu if !(matches!(c.op, Op::Prelu) && slot != 0) => {
                let other_slot = 1 - slot;
                let Some(other) = c.input(other_slot) else { return false };
                let Some(ot) = g.tensor(other).cloned() else { return false };
                if let Some(data) = &ot.data {
                    // Bring the constant to full rank, then into the source layout.
                    let Some(od) = ot.shape.to_fixed() else { return false };
                    if od.len() > rank {
                        return false;
                    }
                    let mut full = vec![1usize; rank - od.len()];
                    full.extend_from_slice(&od);
                    let Some(moved) = transpose_bytes(data, &full, &inv, ot.dtype.size()) else { return false };
                    let new_dims: Vec<usize> = inv.iter().map(|&i| full[i]).collect();
                    let id = g.add_tensor(crate::Tensor::constant(
                        format!("{}/nhwc", ot.name),
                        ot.dtype,
                        crate::Shape::fixed(&new_dims),
                        moved.into(),
                    ));
                    new_inputs[other_slot] = Some(id);
                } else {
                    // The other operand must come from the same transpose pattern.
                    let Some(op_i) = g.producer(other) else { return false };
                    let on = &g.nodes()[op_i.index()];
                    match &on.op {
                        Op::Transpose(t2)
                            if t2.perm == perm && g.consumers(other).len() == 1 && !g.outputs().contains(&other) =>
                        {
                            let Some(src) = on.input(0) else { return false };
                            new_inputs[other_slot] = Some(src);
                        }
                        _ => return false,
                    }
                }
                new_inputs[slot] = Some(x);
                c.op.clone()
            }
            Op::Concatenation(cat) => {
                for (k, inp) in c.inputs.iter().enumerate() {
                    let Some(inp) = *inp else { return false };
                    if k == slot {
                        new_inputs[k] = Some(x);
                        continue;
                    }
                    let Some(pi) = g.producer(inp) else { return false };
                    let pn = &g.nodes()[pi.index()];
                    match &pn.op {
                        Op::Transpose(t2)
                            if t2.perm == perm && g.consumers(inp).len() == 1 && !g.outputs().contains(&inp) =>
                        {
                            new_inputs[k] = pn.input(0);
                        }
                        _ => return false,
                    }
                }
                Op::Concatenation(crate::op::Concatenation { axis: perm[cat.axis], activation: cat.activation })
            }
            Op::Pad(p) => {
                let mut paddings = vec![[0usize; 2]; rank];
                for (i, &src) in perm.iter().enumerate() {
                    paddings[src] = p.paddings[i];
                }
                new_inputs[slot] = Some(x);
                Op::Pad(crate::op::Pad { paddings })
            }
            Op::MirrorPad(p) => {
                let mut paddings = vec![[0usize; 2]; rank];
                for (i, &src) in perm.iter().enumerate() {
                    paddings[src] = p.paddings[i];
                }
                new_inputs[slot] = Some(x);
                Op::MirrorPad(crate::op::MirrorPad { paddings, mode: p.mode })
            }
            Op::Mean(m) if m.keep_dims => {
                let mut axes: Vec<usize> = m.axes.iter().map(|&a| perm[a]).collect();
                axes.sort_unstable();
                new_inputs[slot] = Some(x);
                Op::Mean(crate::op::Mean { axes, keep_dims: true })
            }
            _ => return false,
        };
        // The consumer now works in the source layout; a Transpose after it restores the
        // layout its readers expect.
        let Some(out_t) = g.tensor(out).cloned() else { return false };
        let Some(src_shape) = unpermute(&out_t.shape, perm) else { return false };
        let mid = g.add_tensor(crate::Tensor {
            name: format!("{}/nhwc", out_t.name),
            shape: src_shape,
            quant: out_t.quant.clone(),
            data: None,
            dtype: out_t.dtype,
            sparse: None,
        });
        if let Some(n) = g.node_mut(crate::NodeId::from_index(ci)) {
            n.op = new_op;
            n.inputs = new_inputs;
            n.outputs = vec![mid];
        }
        g.insert_node(
            ci + 1,
            crate::Node::new(
                format!("{}/transpose", c.name),
                Op::Transpose(crate::op::Transpose { perm: perm.to_vec() }),
                vec![Some(mid)],
                vec![out],
            ),
        );
        // The old transpose (and any other now-unread ones) go with dead code elimination.
        let _ = ti;
        g.retain_nodes(|n| !(matches!(n.op, Op::Transpose(_)) && n.outputs.iter().all(|&o| o == y)));
        true
    }
}

/// From Transpose `ti`, the longest run of single-reader Transposes and Reshapes whose overall
/// effect keeps every element in place: (the run's output, its shape as a Reshape target, the
/// indices of the nodes after `ti`). Static shapes of at most 2^18 elements only.
fn identity_chain(g: &Graph, ti: usize) -> Option<(TensorId, Vec<i64>, Vec<usize>)> {
    let x = g.nodes()[ti].input(0)?;
    // Only where a Transpose or Reshape reads the Transpose (cheap to rule out first).
    let y = *g.nodes()[ti].outputs.first()?;
    let [(next, 0)] = g.consumers(y)[..] else { return None };
    if !matches!(g.nodes()[next.index()].op, Op::Transpose(_) | Op::Reshape(_)) {
        return None;
    }
    let dims = g.tensor(x)?.shape.to_fixed()?;
    let n = checked_product(&dims)?;
    if n > 1 << 18 || n == 0 {
        return None;
    }
    let iota: Vec<u8> = (0..n as u32).flat_map(|v| v.to_le_bytes()).collect();
    let mut data = iota.clone();
    let mut cur_dims = dims;
    let mut node = ti;
    let mut chain = Vec::new();
    let mut best = None;
    loop {
        let nd = &g.nodes()[node];
        let out = *nd.outputs.first()?;
        let out_dims = g.tensor(out)?.shape.to_fixed()?;
        match &nd.op {
            Op::Transpose(t) => {
                data = transpose_bytes(&data, &cur_dims, &t.perm, 4)?;
            }
            Op::Reshape(_) => {}
            _ => break,
        }
        cur_dims = out_dims;
        if node != ti {
            chain.push(node);
            if data == iota {
                best = Some((out, cur_dims.iter().map(|&d| d as i64).collect::<Vec<_>>(), chain.clone()));
            }
        }
        if g.outputs().contains(&out) {
            break;
        }
        let readers = g.consumers(out);
        let [(next, 0)] = readers[..] else { break };
        if !matches!(g.nodes()[next.index()].op, Op::Transpose(_) | Op::Reshape(_)) {
            break;
        }
        node = next.index();
    }
    best
}

impl Pass for SinkTransposes {
    fn name(&self) -> &'static str {
        "sink-transposes"
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<bool, PassError> {
        let mut changed = false;
        // Each step removes or moves one Transpose downwards; bound the loop generously.
        let limit = 16 * (g.nodes().len() + 1);
        for _ in 0..limit {
            if !cx.allow_rewrite() {
                break;
            }
            if !self.step(g) {
                break;
            }
            changed = true;
        }
        if changed {
            // Drop transposes nobody reads any more.
            DeadCodeElimination.run(g, &mut PassCx::new(None))?;
        }
        Ok(changed)
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
}
