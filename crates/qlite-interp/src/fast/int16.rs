//! 16x8 kernels (int16 activations with zero point 0, int8 weights, int64 or no bias) for
//! CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, byte-equal to the reference kernels.
//!
//! The reference sums `x · w` in int64. Each product is below 2^22 in magnitude (|x| ≤ 2^15,
//! |w| ≤ 127), so up to [`CHUNK`] = 512 of them fit an int32: the dot products run in int32
//! over chunks of 512 (which the compiler turns into `vpmaddwd`, weights widened to int16 at
//! load) and the chunks are added in int64 — integer sums, so the result is the reference's
//! exactly. Then the reference's own requantization ([`Acc::requantize`], or FC's float
//! scale). LiteRT itself has no optimized kernel for 16x8 with int64 biases: it runs these on
//! its reference kernels.

use super::{Array, Data, Scratch};
use crate::kernels::{Acc, OutQ, per_channel_multipliers, per_tensor};
use qlite_ir::op::{Conv2d, DepthwiseConv2d, FullyConnected};
use qlite_ir::{DType, Graph, Node, Op};
use std::sync::Arc;

/// Products per int32 partial sum: 512 · 32768 · 127 < 2^31.
const CHUNK: usize = 512;

/// Which 16x8 layer, with its geometry.
#[derive(Debug, Clone)]
enum Kind {
    Conv(Conv2d),
    Depthwise(DepthwiseConv2d),
    Fc(FullyConnected),
}

/// A 16x8 layer prepared once: weights widened to int16 (conv and FC `[O][K]` with K in
/// (ky, kx, c) order; depthwise `[kh·kw][C]`), the int64 bias, the per-channel multipliers.
#[derive(Debug, Clone)]
pub struct PackedInt16 {
    kind: Kind,
    w: Vec<i16>,
    ws: Vec<usize>,
    bias: Option<Vec<i64>>,
    acc: Acc,
    out: OutQ,
    /// Conv / depthwise: the fixed-point multipliers; FC: the float scales per channel.
    mults: Vec<(i32, i32)>,
    fc_scales: Vec<f64>,
}

impl PackedInt16 {
    pub(crate) fn new(g: &Graph, n: &Node, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let t = |i: usize| n.input(i).and_then(|t| g.tensor(t));
        let (x, w, out) = (t(0)?, t(1)?, g.tensor(*n.outputs.first()?)?);
        if x.dtype != DType::I16 || out.dtype != DType::I16 || w.dtype != DType::I8 {
            return None;
        }
        let (s_in, z_in) = per_tensor(x.quant.as_ref(), "input").ok()?;
        let (s_out, z_out) = per_tensor(out.quant.as_ref(), "output").ok()?;
        let wq = w.quant.as_ref()?;
        if z_in != 0 || z_out != 0 || wq.zero_points().iter().any(|&z| z != 0) {
            return None;
        }
        let c = |i: usize| n.input(i).and_then(|t| consts.get(t.index())).and_then(|a| a.as_deref());
        let wa = c(1)?;
        let Data::I8(wv) = wa.data() else { return None };
        let ws = wa.shape().to_vec();
        let (bias, acc) = match n.input(2) {
            None => (None, Acc::I64),
            Some(_) => match c(2)?.data() {
                Data::I64(b) => (Some(b.clone()), Acc::I64),
                Data::I32(b) => (Some(b.iter().map(|&v| v as i64).collect()), Acc::I32),
                _ => return None,
            },
        };
        let outq = OutQ { dtype: DType::I16, scale: s_out, zp: 0 };
        let kind = match &n.op {
            Op::Conv2d(o) if ws.len() == 4 && x.shape.rank() == 4 => Kind::Conv(o.clone()),
            Op::DepthwiseConv2d(o) if ws.len() == 4 && x.shape.rank() == 4 => Kind::Depthwise(o.clone()),
            Op::FullyConnected(o) if ws.len() == 2 => Kind::Fc(o.clone()),
            _ => return None,
        };
        let channels = match kind {
            Kind::Depthwise(_) => ws[3],
            _ => ws[0],
        };
        if bias.as_ref().is_some_and(|b| b.len() != channels) {
            return None;
        }
        let (mults, fc_scales) = match kind {
            Kind::Fc(_) => {
                let s = (0..channels)
                    .map(|o| {
                        let s_w = if wq.scales().len() == 1 { wq.scale() } else { *wq.scales().get(o)? };
                        Some(s_in as f64 * s_w as f64 / s_out as f64)
                    })
                    .collect::<Option<Vec<f64>>>()?;
                (Vec::new(), s)
            }
            _ => (per_channel_multipliers(s_in, wq, s_out, channels), Vec::new()),
        };
        // Widened as stored: conv [O, kh, kw, I] and FC [units, K] are (channel, K) rows,
        // depthwise [1, kh, kw, C] tap-major rows of C.
        let w: Vec<i16> = wv.iter().map(|&v| v as i16).collect();
        Some(PackedInt16 { kind, w, ws, bias, acc, out: outq, mults, fc_scales })
    }

    pub(crate) fn run(&self, xs: &[usize], xv: &[i16], out: &mut Option<Array>, scratch: &mut Scratch) -> Option<()> {
        match &self.kind {
            Kind::Conv(op) => self.conv(op, xs, xv, out, scratch),
            Kind::Depthwise(op) => self.depthwise(op, xs, xv, out, scratch),
            Kind::Fc(op) => self.fc(op, xs, xv, out),
        }
    }

    fn conv(
        &self,
        op: &Conv2d,
        xs: &[usize],
        xv: &[i16],
        out: &mut Option<Array>,
        scratch: &mut Scratch,
    ) -> Option<()> {
        let &[n, ih, iw, ic] = xs else { return None };
        let [oc, kh, kw, wc] = self.ws[..] else { return None };
        if wc != ic || n * ih * iw * ic != xv.len() {
            return None;
        }
        let (oh, pad_h) = op.padding.compute(ih, kh, op.stride[0], op.dilation[0])?;
        let (ow, pad_w) = op.padding.compute(iw, kw, op.stride[1], op.dilation[1])?;
        let k = kh * kw * ic;
        let y = Array::reuse_i16(out, &[n, oh, ow, oc])?;
        let (lo, hi) = self.out.range(op.activation);
        let row = &mut scratch.i16_row;
        row.clear();
        row.resize(k, 0);
        let mut p = 0;
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    // The patch, padding taps 0 (the zero point: they add nothing, as the
                    // reference's skipped taps).
                    for ky in 0..kh {
                        let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - pad_h as isize;
                        for kx in 0..kw {
                            let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize - pad_w as isize;
                            let dst = &mut row[(ky * kw + kx) * ic..(ky * kw + kx + 1) * ic];
                            if iy < 0 || iy >= ih as isize || ix < 0 || ix >= iw as isize {
                                dst.fill(0);
                            } else {
                                let at = ((b * ih + iy as usize) * iw + ix as usize) * ic;
                                dst.copy_from_slice(&xv[at..at + ic]);
                            }
                        }
                    }
                    let yo = &mut y[p * oc..(p + 1) * oc];
                    dots(row, &self.w, k, yo, |o, acc| {
                        let (m, sh) = self.mults[o];
                        let bias = self.bias.as_ref().map_or(0, |b| b[o]);
                        self.acc.requantize(acc, bias, m, sh).clamp(lo, hi) as i16
                    });
                    p += 1;
                }
            }
        }
        Some(())
    }

    fn depthwise(
        &self,
        op: &DepthwiseConv2d,
        xs: &[usize],
        xv: &[i16],
        out: &mut Option<Array>,
        scratch: &mut Scratch,
    ) -> Option<()> {
        let &[n, ih, iw, ic] = xs else { return None };
        let [_, kh, kw, oc] = self.ws[..] else { return None };
        let m = op.depth_multiplier.max(1);
        if oc != ic * m || n * ih * iw * ic != xv.len() || kh * kw > CHUNK {
            return None;
        }
        let (oh, pad_h) = op.padding.compute(ih, kh, op.stride[0], op.dilation[0])?;
        let (ow, pad_w) = op.padding.compute(iw, kw, op.stride[1], op.dilation[1])?;
        let y = Array::reuse_i16(out, &[n, oh, ow, oc])?;
        let (lo, hi) = self.out.range(op.activation);
        let acc = &mut scratch.acc;
        acc.resize(oc, 0);
        let mut p = 0;
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    acc.fill(0);
                    for ky in 0..kh {
                        let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - pad_h as isize;
                        if iy < 0 || iy >= ih as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize - pad_w as isize;
                            if ix < 0 || ix >= iw as isize {
                                continue;
                            }
                            let at = ((b * ih + iy as usize) * iw + ix as usize) * ic;
                            let wr = &self.w[(ky * kw + kx) * oc..(ky * kw + kx + 1) * oc];
                            if m == 1 {
                                dw_taps(acc, &xv[at..at + ic], wr);
                            } else {
                                for (o, a) in acc.iter_mut().enumerate() {
                                    *a += xv[at + o / m] as i32 * wr[o] as i32;
                                }
                            }
                        }
                    }
                    let yo = &mut y[p * oc..(p + 1) * oc];
                    for (o, (dst, &a)) in yo.iter_mut().zip(acc.iter()).enumerate() {
                        let (mm, sh) = self.mults[o];
                        let bias = self.bias.as_ref().map_or(0, |b| b[o]);
                        *dst = self.acc.requantize(a as i64, bias, mm, sh).clamp(lo, hi) as i16;
                    }
                    p += 1;
                }
            }
        }
        Some(())
    }

    fn fc(&self, op: &FullyConnected, xs: &[usize], xv: &[i16], out: &mut Option<Array>) -> Option<()> {
        let [units, depth] = self.ws[..] else { return None };
        if depth == 0 || !xv.len().is_multiple_of(depth) {
            return None;
        }
        let batches = xv.len() / depth;
        // The output shape without allocating (a run allocates nothing).
        let mut shape = [0usize; qlite_ir::MAX_RANK];
        let rank = if op.keep_num_dims {
            shape.get_mut(..xs.len())?.copy_from_slice(xs);
            *shape.get_mut(xs.len().checked_sub(1)?)? = units;
            xs.len()
        } else {
            shape[..2].copy_from_slice(&[batches, units]);
            2
        };
        let y = Array::reuse_i16(out, &shape[..rank])?;
        let (lo, hi) = self.out.range(op.activation);
        for (row, yo) in xv.chunks_exact(depth).zip(y.chunks_exact_mut(units)) {
            dots(row, &self.w, depth, yo, |o, acc| {
                let acc = acc + self.bias.as_ref().map_or(0, |b| b[o]);
                // The accumulator is the bias type: int32 wraps, int64 does not.
                let acc = if self.acc == Acc::I32 { acc as i32 as f64 } else { acc as f64 };
                ((acc * self.fc_scales[o]).round() as i32).clamp(lo, hi) as i16
            });
        }
        Some(())
    }
}

/// `y[o] = finish(o, Σ_k row[k] · w[o·k_len + k])` for every output channel `o`, the sums
/// exact (int32 per chunk, int64 across chunks).
#[inline]
fn dots(row: &[i16], w: &[i16], k_len: usize, y: &mut [i16], finish: impl Fn(usize, i64) -> i16) {
    #[cfg(target_arch = "x86_64")]
    {
        let isa = crate::isa::current();
        #[allow(unsafe_code)]
        if isa.has_avx512() {
            for (o, dst) in y.iter_mut().enumerate() {
                // SAFETY: the tier says AVX-512 (F, BW) is available.
                *dst = finish(o, unsafe { dot_avx512(row, &w[o * k_len..(o + 1) * k_len]) });
            }
            return;
        } else if isa.has_avx2() {
            for (o, dst) in y.iter_mut().enumerate() {
                // SAFETY: the tier says AVX2 is available.
                *dst = finish(o, unsafe { dot_avx2(row, &w[o * k_len..(o + 1) * k_len]) });
            }
            return;
        }
    }
    for (o, dst) in y.iter_mut().enumerate() {
        *dst = finish(o, dot(row, &w[o * k_len..(o + 1) * k_len]));
    }
}

/// The exact dot product of int16 vectors: int32 partial sums of [`CHUNK`] products.
#[inline(always)]
fn dot(a: &[i16], b: &[i16]) -> i64 {
    let mut total = 0i64;
    for (ca, cb) in a.chunks(CHUNK).zip(b.chunks(CHUNK)) {
        let mut s = 0i32;
        for (&x, &y) in ca.iter().zip(cb) {
            s += x as i32 * y as i32;
        }
        total += s as i64;
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn dot_avx512(a: &[i16], b: &[i16]) -> i64 {
    dot(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2(a: &[i16], b: &[i16]) -> i64 {
    dot(a, b)
}

/// One depthwise tap over every channel: `acc[c] += x[c] · w[c]` (at most [`CHUNK`] taps per
/// pixel, so int32 holds the sum).
#[inline]
fn dw_taps(acc: &mut [i32], x: &[i16], w: &[i16]) {
    #[inline(always)]
    fn each(acc: &mut [i32], x: &[i16], w: &[i16]) {
        for ((a, &xv), &wv) in acc.iter_mut().zip(x).zip(w) {
            *a += xv as i32 * wv as i32;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw")]
        fn v512(acc: &mut [i32], x: &[i16], w: &[i16]) {
            each(acc, x, w)
        }
        #[target_feature(enable = "avx2")]
        fn v256(acc: &mut [i32], x: &[i16], w: &[i16]) {
            each(acc, x, w)
        }
        let isa = crate::isa::current();
        #[allow(unsafe_code)]
        if isa.has_avx512() {
            // SAFETY: the tier says AVX-512 (F, BW) is available.
            return unsafe { v512(acc, x, w) };
        } else if isa.has_avx2() {
            // SAFETY: the tier says AVX2 is available.
            return unsafe { v256(acc, x, w) };
        }
    }
    each(acc, x, w)
}
