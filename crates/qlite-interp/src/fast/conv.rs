//! CONV_2D: int8 (im2col + the GEMM) and float32.

use super::*;

/// An int8 CONV_2D (one group) with constant per-channel weights.
#[derive(Debug, Clone)]
pub struct PackedConv {
    pub(crate) op: Conv2d,
    pub(crate) m: Matrix,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) ic: usize,
    pub(crate) z_in: i32,
    /// `bias[o] − z_in · Σ w[o]`.
    pub(crate) row_const: Vec<i32>,
    /// `row_const[o] − 128 · Σ w[o]`: the bias of the VNNI path, whose products take `x + 128`.
    pub(crate) vnni_bias: AlignedI32,
    pub(crate) out: ChannelOut,
}

impl PackedConv {
    pub(crate) fn new(op: &Conv2d, c: Common) -> Option<Self> {
        let &[oc, kh, kw, ic] = c.w_shape else { return None };
        if c.bias.is_some_and(|b| b.len() != oc) {
            return None;
        }
        let m = Matrix::new(c.w, oc, kh.checked_mul(kw)?.checked_mul(ic)?)?;
        let row_const: Vec<i32> =
            (0..oc).map(|o| c.bias.map_or(0, |b| b[o]).wrapping_sub(c.z_in.wrapping_mul(m.sum_w[o]))).collect();
        let vnni_bias = row_const.iter().zip(&m.sum_w).map(|(&r, &s)| r.wrapping_sub(s.wrapping_mul(128))).collect();
        Some(PackedConv {
            op: op.clone(),
            m,
            kh,
            kw,
            ic,
            z_in: c.z_in,
            row_const,
            vnni_bias,
            out: ChannelOut::new(&c, op.activation, oc, false),
        })
    }

    pub(crate) fn run(
        &self,
        xs: &[usize],
        xv: &[i8],
        out: &mut Option<Array>,
        s: &mut Scratch,
        par: Parallel,
    ) -> Option<()> {
        let &[n, ih, iw, ic] = xs else { return None };
        if ic != self.ic || n.checked_mul(ih)?.checked_mul(iw)?.checked_mul(ic)? != xv.len() {
            return None; // grouped: the reference kernel
        }
        let op = &self.op;
        let (oh, pad_h) = axis(op.padding, ih, self.kh, op.stride[0], op.dilation[0])?;
        let (ow, pad_w) = axis(op.padding, iw, self.kw, op.stride[1], op.dilation[1])?;
        let oc = self.m.units;
        let y = Array::reuse_i8(out, &[n, oh, ow, oc])?;
        let g = ConvGeom { n, ih, iw, ic, oh, ow, pad_h, pad_w };
        let rows = n * oh;
        let row_len = (ow * oc).max(1);
        // Output rows are independent: large convolutions split them over the pool (the
        // bytes are the same however they are split).
        let macs = y.len().saturating_mul(self.m.depth);
        let parts = par.parts(macs, rows);
        let mut tiles = std::mem::take(&mut s.tiles);
        if tiles.len() < parts {
            tiles.resize_with(parts, TileBufs::default);
        }
        if let Some(p) = &self.m.vnni {
            // The VNNI path reads `x + 128` as unsigned bytes: converted once for the whole
            // input, with slack so a pointwise row may read its last group of 4 whole.
            super::gemm::flip_into_split(xv, &mut s.xu, par);
            // Padding made explicit: every window's rows are then whole runs of bytes.
            let span = [(self.kh - 1) * op.dilation[0], (self.kw - 1) * op.dilation[1]];
            let zu = (self.z_in.clamp(-128, 127) as i8 as u8) ^ 0x80;
            let (g, xu) = match g.pad_into(&s.xu, span, op.stride, zu, &mut s.pad_u8) {
                Some(padded) => (padded, &mut s.pad_u8),
                None => (g, &mut s.xu),
            };
            let len = xu.len();
            xu.resize(len + p.groups * 4 + 16, 0);
            let xu = &*xu;
            let ok = std::sync::atomic::AtomicBool::new(true);
            par.chunks_with(y, row_len, parts, &mut tiles, |_, first, chunk, tile| {
                if !self.conv_rows_vnni(&g, p, xu, first, chunk, tile) {
                    ok.store(false, std::sync::atomic::Ordering::Relaxed);
                }
            });
            s.tiles = tiles;
            return ok.into_inner().then_some(());
        }
        let mut accs = std::mem::take(&mut s.acc);
        accs.clear();
        accs.resize(y.len(), 0);
        par.chunks_with(&mut accs, row_len, parts, &mut tiles, |_, first, chunk, tile| {
            self.conv_rows(&g, xv, first, chunk, tile)
        });
        self.out.apply(&accs, Some(&self.row_const), y);
        s.acc = accs;
        s.tiles = tiles;
        Some(())
    }

    /// The output rows `first..` that `y` covers (whole rows of ow × oc), on the VNNI pack:
    /// pixels in batches, each batch's input rows (pointwise: read in place; otherwise
    /// gathered, padding taps holding the input zero point) multiplied by the weights in
    /// register tiles, then requantized while the batch's accumulators are in cache. `xu` is
    /// the whole input as `x + 128`. False if a row would fall outside the input (nothing is
    /// then trusted).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn conv_rows_vnni(
        &self,
        g: &ConvGeom,
        p: &VnniPack,
        xu: &[u8],
        first: usize,
        y: &mut [i8],
        bufs: &mut TileBufs,
    ) -> bool {
        const BATCH: usize = 32;
        let op = &self.op;
        let (ih, iw, ic, oh, ow) = (g.ih, g.iw, g.ic, g.oh, g.ow);
        let (kh, kw) = (self.kh, self.kw);
        let oc = self.m.units;
        if oc == 0 || ow == 0 || oh == 0 {
            return true;
        }
        let k4 = p.groups * 4;
        let zu = (self.z_in.clamp(-128, 127) as i8 as u8) ^ 0x80;
        let pointwise = kh == 1 && kw == 1 && g.pad_h == 0 && g.pad_w == 0;
        // A kernel row's taps are adjacent in the input when the dilation is 1.
        let row_bytes = kw * ic;
        let contiguous = op.dilation[1] == 1;
        let pixels = y.len() / oc;
        // Whole blocks of 16 channels: the output stage runs on the register tiles
        // (`gemm_vnni_requant`); otherwise through the accumulator buffer (the requantization
        // then streams whole vectors across pixels for 24, 40 … channels).
        let fused = fused_requant_fits(&self.out, oc);
        let TileBufs { col, offs, acc, .. } = bufs;
        if !pointwise {
            col.resize(BATCH * k4 + 64, 0);
        }
        acc.resize(BATCH * oc, 0);
        // The output pixel (image, row, column) walked incrementally.
        let (mut b, mut oy, mut ox) = (first / oh, first % oh, 0usize);
        // The common case gets a lean gather: every window inside the (explicitly padded)
        // input, kernel rows contiguous (dilation 1 across) and at most 64 bytes, so each is
        // one move of 16, 32 or 64 bytes (a call to memmove per kernel row cost ResNet-50's
        // 7×7 stem, 21-byte rows, as much as its dot products). The largest offset read and
        // written is checked once, up front.
        let row_offsets: [usize; 8] = std::array::from_fn(|ky| ky * op.dilation[0] * iw * ic);
        let width = if row_bytes <= 16 {
            16
        } else if row_bytes <= 32 {
            32
        } else {
            64
        };
        let lean = !pointwise
            && contiguous
            && row_bytes <= 64
            && kh <= 8
            && g.pad_h == 0
            && g.pad_w == 0
            && (oh - 1) * op.stride[0] + (kh - 1) * op.dilation[0] < ih
            && (ow - 1) * op.stride[1] + kw - 1 < iw
            && col.len() >= BATCH * k4 + width
            && {
                let last_image = (first + pixels.div_ceil(ow)).div_ceil(oh).max(1) - 1;
                let last = last_image * ih * iw * ic
                    + ((oh - 1) * op.stride[0] * iw + (ow - 1) * op.stride[1]) * ic
                    + row_offsets[kh - 1];
                last + width <= xu.len()
            };
        for start in (0..pixels).step_by(BATCH) {
            let count = (pixels - start).min(BATCH);
            offs.clear();
            for i in 0..count {
                let img = b * ih * iw * ic;
                if lean {
                    let src = img + (oy * op.stride[0] * iw + ox * op.stride[1]) * ic;
                    for (ky, &off) in row_offsets.iter().enumerate().take(kh) {
                        // SAFETY: `lean` checked that the farthest row start plus `width`
                        // bytes is inside `xu` (offsets grow with the pixel and the row) and
                        // that `col` holds BATCH·k4 + width bytes, past i·k4 + (kh − 1)·row_bytes
                        // + width. Each move writes past its row; the next row, the next
                        // pixel or the slack is written after it (the bytes past kh·row_bytes
                        // meet zero weights).
                        #[allow(unsafe_code)]
                        unsafe {
                            let (from, to) =
                                (xu.as_ptr().add(src + off), col.as_mut_ptr().add(i * k4 + ky * row_bytes));
                            match width {
                                16 => std::ptr::copy_nonoverlapping(from, to, 16),
                                32 => std::ptr::copy_nonoverlapping(from, to, 32),
                                _ => std::ptr::copy_nonoverlapping(from, to, 64),
                            }
                        }
                    }
                    offs.push(i * k4);
                } else if pointwise {
                    offs.push(img + ((oy * op.stride[0]) * iw + ox * op.stride[1]) * ic);
                } else {
                    // This pixel's row and everything after it (later rows and the slack).
                    let row_ext = &mut col[i * k4..];
                    let x0 = (ox * op.stride[1]) as isize - g.pad_w as isize;
                    let cols_inside = x0 >= 0 && x0 as usize + (kw - 1) * op.dilation[1] < iw;
                    for ky in 0..kh {
                        let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - g.pad_h as isize;
                        if iy < 0 || iy as usize >= ih {
                            row_ext[ky * row_bytes..(ky + 1) * row_bytes].fill(zu);
                            continue;
                        }
                        let line = img + iy as usize * iw * ic;
                        if cols_inside && contiguous {
                            let at = line + x0 as usize * ic;
                            if row_bytes <= 16 {
                                // A fixed 16-byte copy (one vector move, no call): the bytes
                                // past the kernel row land where the next row, the zero-weight
                                // padding or the next pixel is written later, or in the slack.
                                let start = ky * row_bytes;
                                let (Some(dst), Some(src)) = (row_ext.get_mut(start..start + 16), xu.get(at..at + 16))
                                else {
                                    return false;
                                };
                                dst.copy_from_slice(src);
                                continue;
                            }
                            let Some(src) = xu.get(at..at + row_bytes) else { return false };
                            row_ext[ky * row_bytes..(ky + 1) * row_bytes].copy_from_slice(src);
                            continue;
                        }
                        let dst_row = &mut row_ext[ky * row_bytes..(ky + 1) * row_bytes];
                        for (kx, dst) in dst_row.chunks_exact_mut(ic.max(1)).enumerate() {
                            let ix = x0 + (kx * op.dilation[1]) as isize;
                            if ix >= 0 && (ix as usize) < iw {
                                let at = line + ix as usize * ic;
                                let Some(src) = xu.get(at..at + ic) else { return false };
                                dst.copy_from_slice(src);
                            } else {
                                dst.fill(zu);
                            }
                        }
                    }
                    offs.push(i * k4);
                }
                ox += 1;
                if ox == ow {
                    ox = 0;
                    oy += 1;
                    if oy == oh {
                        oy = 0;
                        b += 1;
                    }
                }
            }
            let src: &[u8] = if pointwise { xu } else { col };
            let y = &mut y[start * oc..(start + count) * oc];
            if fused {
                // SAFETY: a VNNI pack exists only when the tier (never above the host's) has
                // AVX-512 F/BW/DQ/VL/VNNI.
                #[allow(unsafe_code)]
                let ok = unsafe { gemm_vnni_requant(p, oc, src, offs, y, &self.vnni_bias, &self.out) };
                if !ok {
                    return false;
                }
                continue;
            }
            // SAFETY: as above.
            #[allow(unsafe_code)]
            let ok = unsafe { gemm_vnni(p, oc, src, offs, acc, oc, &self.vnni_bias) };
            if !ok {
                return false;
            }
            self.out.apply(&acc[..count * oc], None, y);
        }
        true
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(crate) fn conv_rows_vnni(
        &self,
        _: &ConvGeom,
        _: &VnniPack,
        _: &[u8],
        _: usize,
        _: &mut [i8],
        _: &mut TileBufs,
    ) -> bool {
        false
    }

    /// Accumulators of the output rows `first..` that `accs` covers (whole rows of ow × oc).
    pub(crate) fn conv_rows(&self, g: &ConvGeom, xv: &[i8], first: usize, accs: &mut [i32], bufs: &mut TileBufs) {
        let op = &self.op;
        let (ih, iw, ic, oh, ow) = (g.ih, g.iw, g.ic, g.oh, g.ow);
        let oc = self.m.units;
        let z = self.z_in.clamp(-128, 127) as i8;
        let pointwise = self.kh == 1 && self.kw == 1 && g.pad_h == 0 && g.pad_w == 0;
        let TileBufs { acc, col: xu, patch: col, .. } = bufs;
        col.clear();
        col.resize(self.m.depth, z);
        for (r, out_row) in accs.chunks_mut((ow * oc).max(1)).enumerate() {
            let (b, oy) = ((first + r) / oh.max(1), (first + r) % oh.max(1));
            let Some(img) = xv.get(b * ih * iw * ic..(b + 1) * ih * iw * ic) else { return };
            for (ox, out_px) in out_row.chunks_mut(oc.max(1)).enumerate() {
                let patch: &[i8] = if pointwise {
                    let (iy, ix) = (oy * op.stride[0], ox * op.stride[1]);
                    &img[(iy * iw + ix) * ic..(iy * iw + ix + 1) * ic]
                } else {
                    for ky in 0..self.kh {
                        let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - g.pad_h as isize;
                        for kx in 0..self.kw {
                            let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize - g.pad_w as isize;
                            let dst = &mut col[(ky * self.kw + kx) * ic..(ky * self.kw + kx + 1) * ic];
                            if iy >= 0 && (iy as usize) < ih && ix >= 0 && (ix as usize) < iw {
                                let at = (iy as usize * iw + ix as usize) * ic;
                                if ic < 16 {
                                    // A call to memcpy costs more than a few bytes.
                                    for (d, &v) in dst.iter_mut().zip(&img[at..at + ic]) {
                                        *d = v;
                                    }
                                } else {
                                    dst.copy_from_slice(&img[at..at + ic]);
                                }
                            } else {
                                dst.fill(z);
                            }
                        }
                    }
                    col
                };
                self.m.dots(patch, xu, acc);
                out_px.copy_from_slice(&acc[..oc]);
            }
        }
    }
}

/// The geometry of one convolution or depthwise run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvGeom {
    pub(crate) n: usize,
    pub(crate) ih: usize,
    pub(crate) iw: usize,
    pub(crate) ic: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) pad_h: usize,
    pub(crate) pad_w: usize,
}

impl ConvGeom {
    /// Copy the input into `out` with its padding made explicit — `fill` (the input zero
    /// point, in whatever form the kernel reads it) around each image, as far as the windows
    /// reach — and return the geometry of the padded input (no implicit padding left): every
    /// window then lies inside the image. `None` (out untouched) if every window already does.
    pub(crate) fn pad_into<T: Copy>(
        &self,
        x: &[T],
        span: [usize; 2],
        stride: [usize; 2],
        fill: T,
        out: &mut Vec<T>,
    ) -> Option<Self> {
        // Rows and columns the windows reach, from the padded image's top-left corner.
        let reach_h = (self.oh.max(1) - 1) * stride[0] + span[0] + 1;
        let reach_w = (self.ow.max(1) - 1) * stride[1] + span[1] + 1;
        if self.pad_h == 0 && self.pad_w == 0 && reach_h <= self.ih && reach_w <= self.iw {
            return None;
        }
        let ph = reach_h.max(self.pad_h + self.ih);
        let pw = reach_w.max(self.pad_w + self.iw);
        let c = self.ic;
        out.clear();
        out.resize(self.n * ph * pw * c, fill);
        for b in 0..self.n {
            for y in 0..self.ih {
                let src = &x[((b * self.ih + y) * self.iw) * c..((b * self.ih + y + 1) * self.iw) * c];
                let at = ((b * ph + y + self.pad_h) * pw + self.pad_w) * c;
                out[at..at + self.iw * c].copy_from_slice(src);
            }
        }
        Some(ConvGeom { ih: ph, iw: pw, pad_h: 0, pad_w: 0, ..*self })
    }
}

/// Float CONV_2D (one group) as im2col + the packed GEMM over the OHWI weights, bias and
/// activation fused: each output summed over k in order (the reference's order; with FMA at
/// the AVX tiers, within the stated bound, `tests/it/random_ops.rs`).
#[derive(Debug, Clone)]
pub struct PackedFloatConv {
    pub(crate) op: qlite_ir::op::Conv2d,
    /// The OHWI weights packed for the GEMM (bias and activation fused).
    pub(crate) packed: super::gemm_f32::PackedW,
    pub(crate) ws: Vec<usize>,
    pub(crate) bias: Option<Vec<f32>>,
}

impl PackedFloatConv {
    pub(crate) fn new(g: &Graph, n: &Node, op: &qlite_ir::op::Conv2d, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let x = g.tensor(n.input(0)?)?;
        let out = g.tensor(*n.outputs.first()?)?;
        if x.dtype != DType::F32 || out.dtype != DType::F32 {
            return None;
        }
        let (w, ws, bias) = float_params(n, consts)?;
        if ws.len() != 4 || x.shape.dim(3).and_then(|d| d.fixed()) != Some(ws[3]) {
            return None; // grouped convolutions stay on the reference kernel
        }
        let k = ws[1].checked_mul(ws[2])?.checked_mul(ws[3])?;
        let packed = super::gemm_f32::PackedW::new(w, ws[0], k)?;
        Some(PackedFloatConv { op: op.clone(), packed, ws, bias })
    }

    pub(crate) fn run(
        &self,
        xs: &[usize],
        xv: &[f32],
        out: &mut Option<Array>,
        s: &mut Scratch,
        par: Parallel,
    ) -> Option<()> {
        let &[n, ih, iw, ic] = xs else { return None };
        let [oc, kh, kw, wc] = self.ws[..] else { return None };
        if wc != ic || checked_len(xs)? != xv.len() {
            return None;
        }
        let op = &self.op;
        let (oh, pad_h) = op.padding.compute(ih, kh, op.stride[0], op.dilation[0])?;
        let (ow, pad_w) = op.padding.compute(iw, kw, op.stride[1], op.dilation[1])?;
        let k = kh.checked_mul(kw)?.checked_mul(ic)?;
        let pixels = oh.checked_mul(ow)?;
        if checked_len(&[n, oh, ow, oc])? > MAX_FAST_ELEMENTS || pixels.checked_mul(k)? > MAX_FAST_ELEMENTS {
            return None;
        }
        let y = Array::reuse_f32(out, &[n, oh, ow, oc])?;
        let direct = kh == 1 && kw == 1 && op.stride == [1, 1] && pad_h == 0 && pad_w == 0;
        // Output pixels are independent: a large convolution splits them over the pool, each
        // part gathering its own windows (the same values however it is split).
        let parts = par.parts(pixels.saturating_mul(k).saturating_mul(oc), pixels);
        let ok = std::sync::atomic::AtomicBool::new(true);
        let fail = || ok.store(false, std::sync::atomic::Ordering::Relaxed);
        let geom = ConvGeom { n: 1, ih, iw, ic, oh, ow, pad_h, pad_w };
        for b in 0..n {
            let img = &xv[b * ih * iw * ic..(b + 1) * ih * iw * ic];
            let yb = &mut y[b * pixels * oc..(b + 1) * pixels * oc];
            if direct {
                par.chunks(yb, oc, parts, |_, first, yr| {
                    if self.gemm(yr.len() / oc.max(1), k, oc, &img[first * k..], yr).is_none() {
                        fail();
                    }
                });
            } else {
                // Every element is written by the gather (zeros in the padding): the buffer only
                // grows, and is not cleared first.
                let need = pixels.checked_mul(k)?;
                if s.col_f32.len() < need {
                    s.col_f32.resize(need, 0.0);
                }
                let col = &mut s.col_f32[..need];
                par.chunks2(col, k, yb, oc, parts, |_, first, colr, yr| {
                    let count = colr.len() / k.max(1);
                    self.im2col(&geom, img, first, colr);
                    if self.gemm(count, k, oc, colr, yr).is_none() {
                        fail();
                    }
                });
            }
        }
        ok.into_inner().then_some(())
    }

    /// The windows of output pixels `first..` (as many as `col` holds rows of k values) of one
    /// image, zero where a tap falls in the padding.
    fn im2col(&self, g: &ConvGeom, img: &[f32], first: usize, col: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa::current().has_avx512() {
            // SAFETY: the tier says AVX-512F is available.
            #[allow(unsafe_code)]
            unsafe {
                self.im2col_avx512(g, img, first, col)
            };
            return;
        }
        self.im2col_as::<false>(g, img, first, col)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn im2col_avx512(&self, g: &ConvGeom, img: &[f32], first: usize, col: &mut [f32]) {
        self.im2col_as::<true>(g, img, first, col)
    }

    /// [`PackedFloatConv::im2col`]; `MASKED` (compiled into the AVX-512 entry point only):
    /// runs of up to 16 floats (a 3-channel stem's window row is 9) in one masked move each
    /// instead of a `memmove` call (MobileNetV2's stem 428 -> 376 µs).
    #[inline(always)]
    fn im2col_as<const MASKED: bool>(&self, g: &ConvGeom, img: &[f32], first: usize, col: &mut [f32]) {
        let op = &self.op;
        let [_, kh, kw, _] = self.ws[..] else { return };
        let ConvGeom { ih, iw, ic, ow, pad_h, pad_w, .. } = *g;
        let k = kh * kw * ic;
        let copy = |dst: &mut [f32], src: &[f32]| {
            #[cfg(target_arch = "x86_64")]
            if MASKED && dst.len() <= 16 && src.len() == dst.len() {
                // SAFETY: MASKED is only compiled into the AVX-512 entry point; the mask
                // covers exactly the run's elements, inside both slices.
                #[allow(unsafe_code)]
                unsafe {
                    copy16(dst, src)
                };
                return;
            }
            dst.copy_from_slice(src);
        };
        for (i, row) in col.chunks_exact_mut(k.max(1)).enumerate() {
            let (oy, ox) = ((first + i) / ow.max(1), (first + i) % ow.max(1));
            for ky in 0..kh {
                let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - pad_h as isize;
                // A window row inside the image with no dilation is one run of the input row:
                // one copy (a 3-channel stem copied 3 floats at a time).
                let ix0 = (ox * op.stride[1]) as isize - pad_w as isize;
                if op.dilation[1] == 1 && iy >= 0 && (iy as usize) < ih && ix0 >= 0 && ix0 as usize + kw <= iw {
                    let at = (iy as usize * iw + ix0 as usize) * ic;
                    copy(&mut row[ky * kw * ic..(ky + 1) * kw * ic], &img[at..at + kw * ic]);
                    continue;
                }
                for kx in 0..kw {
                    let dst = &mut row[(ky * kw + kx) * ic..(ky * kw + kx + 1) * ic];
                    let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize - pad_w as isize;
                    if iy < 0 || iy >= ih as isize || ix < 0 || ix >= iw as isize {
                        dst.fill(0.0);
                    } else {
                        let at = (iy as usize * iw + ix as usize) * ic;
                        copy(dst, &img[at..at + ic]);
                    }
                }
            }
        }
    }

    /// `y = act(a · Wᵀ + bias)` for `pixels` rows of `k` values: the packed AVX-512 kernel, or
    /// `matrixmultiply` and a bias pass.
    fn gemm(&self, pixels: usize, k: usize, oc: usize, a: &[f32], y: &mut [f32]) -> Option<()> {
        if y.len() < pixels.checked_mul(oc)? {
            return None;
        }
        super::gemm_f32::gemm_bias_act(pixels, a, k, &self.packed, self.bias.as_deref(), self.op.activation, y)
    }
}

/// Copy up to 16 floats with one masked load and store.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(unsafe_code)]
unsafe fn copy16(dst: &mut [f32], src: &[f32]) {
    use std::arch::x86_64::*;
    let n = dst.len().min(src.len()).min(16);
    let mask = ((1u32 << n) - 1) as __mmask16;
    // SAFETY: the mask selects n elements, inside both slices.
    unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), mask, _mm512_maskz_loadu_ps(mask, src.as_ptr())) };
}
