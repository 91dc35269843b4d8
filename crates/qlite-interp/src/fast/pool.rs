//! Pooling and reductions: spatial MEAN, MAX_POOL_2D and AVERAGE_POOL_2D.

use super::*;

/// An int8 MEAN over the spatial axes of an NHWC tensor (global average pooling): per image,
/// channel sums over the pixels (i32 lanes), then the reference's QuantizedMeanOrSum output.
#[derive(Debug, Clone)]
pub struct PackedMean {
    pub(crate) keep_dims: bool,
    pub(crate) s_in: f32,
    pub(crate) z_in: i32,
    pub(crate) out: OutQ,
}

impl PackedMean {
    pub(crate) fn new(g: &Graph, n: &Node, op: &qlite_ir::op::Mean) -> Option<Self> {
        let x = n.input(0).and_then(|t| g.tensor(t))?;
        let out = n.outputs.first().and_then(|o| g.tensor(*o))?;
        let mut axes = op.axes.clone();
        axes.sort_unstable();
        if x.shape.rank() != 4 || axes != [1, 2] {
            return None;
        }
        if x.dtype == DType::F32 && out.dtype == DType::F32 {
            let out = OutQ { dtype: DType::F32, scale: 1.0, zp: 0 };
            return Some(PackedMean { keep_dims: op.keep_dims, s_in: 1.0, z_in: 0, out });
        }
        if x.dtype != DType::I8 || out.dtype != DType::I8 {
            return None;
        }
        let (s_in, z_in) = per_tensor(x.quant.as_ref(), "input").ok()?;
        let (scale, zp) = per_tensor(out.quant.as_ref(), "output").ok()?;
        Some(PackedMean { keep_dims: op.keep_dims, s_in, z_in, out: OutQ { dtype: DType::I8, scale, zp } })
    }

    /// Float spatial MEAN: per image, the channel sums over the pixels in memory order (the
    /// reference adds the elements in that order too), each divided by the pixel count.
    pub(crate) fn run_f32(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>) -> Option<()> {
        let &[n, h, w, c] = xs else { return None };
        let pixels = h.checked_mul(w)?;
        if n.checked_mul(pixels)?.checked_mul(c)? != xv.len() || pixels == 0 || c == 0 {
            return None;
        }
        let y = if self.keep_dims { Array::reuse_f32(out, &[n, 1, 1, c])? } else { Array::reuse_f32(out, &[n, c])? };
        let count = pixels as f32;
        for (img, yb) in xv.chunks_exact(pixels * c).zip(y.chunks_exact_mut(c)) {
            yb.fill(0.0);
            for px in img.chunks_exact(c) {
                yb.iter_mut().zip(px).for_each(|(s, &v)| *s += v);
            }
            yb.iter_mut().for_each(|s| *s /= count);
        }
        Some(())
    }

    /// The channel sums of each image split by pixels over the pool (each part sums its own
    /// range into its own row of `s.acc`; the rows are then added: i32 addition, so the sums
    /// do not depend on the split), then the reference's output.
    pub(crate) fn run(
        &self,
        xs: &[usize],
        xv: &[i8],
        out: &mut Option<Array>,
        s: &mut Scratch,
        par: Parallel,
    ) -> Option<()> {
        let &[n, h, w, c] = xs else { return None };
        let pixels = h.checked_mul(w)?;
        if n.checked_mul(pixels)?.checked_mul(c)? != xv.len() || pixels == 0 || c == 0 {
            return None;
        }
        let count = pixels as i64;
        let mult = crate::kernels::mean_multiplier(count, self.s_in, self.out.scale);
        let (lo, hi) = self.out.range(qlite_ir::op::Activation::None);
        let y = if self.keep_dims { Array::reuse_i8(out, &[n, 1, 1, c])? } else { Array::reuse_i8(out, &[n, c])? };
        // A part per thread once there are enough additions for each.
        let parts = par.parts(pixels * c, pixels);
        let per = pixels.div_ceil(parts);
        let sums = &mut s.acc;
        sums.resize(parts * c, 0);
        for (img, yb) in xv.chunks_exact(pixels * c).zip(y.chunks_exact_mut(c)) {
            par.chunks(&mut sums[..parts * c], c, parts, |_, p, part| {
                part.fill(0);
                let (a, b) = ((p * per).min(pixels), ((p + 1) * per).min(pixels));
                for px in img[a * c..b * c].chunks_exact(c) {
                    for (s, &v) in part.iter_mut().zip(px) {
                        *s = s.wrapping_add(v as i32);
                    }
                }
            });
            let (total, rest) = sums.split_at_mut(c);
            for part in rest.chunks_exact(c).take(parts - 1) {
                total.iter_mut().zip(part).for_each(|(t, &v)| *t = t.wrapping_add(v));
            }
            for (o, &s) in yb.iter_mut().zip(total.iter()) {
                *o = crate::kernels::mean_output(s, self.z_in, count, mult, self.out.zp, lo, hi) as i8;
            }
        }
        Some(())
    }
}

/// An int8 MAX_POOL_2D / AVERAGE_POOL_2D (NHWC; input and output quantized alike): each
/// output pixel reduces its window's pixels channel-wise (vectorizable), then the
/// reference's clamp (max) or rounded division by the number of taps inside the image
/// (average).
#[derive(Debug, Clone)]
pub struct PackedPool {
    pub(crate) op: qlite_ir::op::Pool2d,
    pub(crate) lo: i32,
    pub(crate) hi: i32,
}

impl PackedPool {
    pub(crate) fn new(g: &Graph, n: &Node, op: &qlite_ir::op::Pool2d) -> Option<Self> {
        let x = n.input(0).and_then(|t| g.tensor(t))?;
        let out = n.outputs.first().and_then(|o| g.tensor(*o))?;
        if x.dtype == DType::F32 && out.dtype == DType::F32 && x.shape.rank() == 4 {
            return Some(PackedPool { op: op.clone(), lo: 0, hi: 0 });
        }
        if !matches!(x.dtype, DType::I8 | DType::I16) || out.dtype != x.dtype || x.shape.rank() != 4 {
            return None;
        }
        let q_in = per_tensor(x.quant.as_ref(), "input").ok()?;
        let (scale, zp) = per_tensor(out.quant.as_ref(), "output").ok()?;
        if q_in != (scale, zp) {
            return None; // the reference kernel reports it
        }
        let (lo, hi) = OutQ { dtype: x.dtype, scale, zp }.range(op.activation);
        Some(PackedPool { op: op.clone(), lo, hi })
    }

    pub(crate) fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>, s: &mut Scratch) -> Option<()> {
        let y = Array::reuse_i8(out, &self.out_shape(xs, xv.len())?)?;
        self.run_int(xs, xv, y, s)
    }

    /// int16 (16x8): the same arithmetic as int8 (the reference's integer pooling is one
    /// template), without the AVX-512 max kernel.
    pub(crate) fn run_i16(&self, xs: &[usize], xv: &[i16], out: &mut Option<Array>, s: &mut Scratch) -> Option<()> {
        let y = Array::reuse_i16(out, &self.out_shape(xs, xv.len())?)?;
        self.run_int(xs, xv, y, s)
    }

    fn out_shape(&self, xs: &[usize], len: usize) -> Option<[usize; 4]> {
        let op = &self.op;
        let &[n, ih, iw, c] = xs else { return None };
        if n.checked_mul(ih)?.checked_mul(iw)?.checked_mul(c)? != len || c == 0 {
            return None;
        }
        let (oh, _) = op.padding.compute(ih, op.filter[0], op.stride[0], 1)?;
        let (ow, _) = op.padding.compute(iw, op.filter[1], op.stride[1], 1)?;
        Some([n, oh, ow, c])
    }

    fn run_int<T: PoolInt>(&self, xs: &[usize], xv: &[T], y: &mut [T], s: &mut Scratch) -> Option<()> {
        let op = &self.op;
        let &[n, ih, iw, c] = xs else { return None };
        let (oh, pad_h) = op.padding.compute(ih, op.filter[0], op.stride[0], 1)?;
        let (ow, pad_w) = op.padding.compute(iw, op.filter[1], op.stride[1], 1)?;
        if y.len() != n * oh * ow * c {
            return None;
        }
        let max = op.kind == qlite_ir::op::PoolKind::Max;
        #[cfg(target_arch = "x86_64")]
        let max_avx512 = max && crate::isa::current().has_avx512();
        let acc = &mut s.acc;
        acc.resize(c, 0);
        let mut pixels = y.chunks_exact_mut(c);
        for b in 0..n {
            let img = &xv[b * ih * iw * c..(b + 1) * ih * iw * c];
            for (rows, cols) in windows(op, [ih, iw], [oh, ow], [pad_h, pad_w]) {
                let px = pixels.next()?;
                #[cfg(target_arch = "x86_64")]
                if max_avx512 && let (Some(img), Some(px)) = (T::as_i8(img), T::as_i8_mut(px)) {
                    // SAFETY: the CPU has AVX-512 F/BW (checked); the window's pixels
                    // are inside the image.
                    #[allow(unsafe_code)]
                    unsafe {
                        max_pixel_avx512(img, iw, c, rows.clone(), cols.clone(), self.lo, self.hi, px)
                    };
                    continue;
                }
                if max {
                    // `lo` is the reference's starting value: it also applies the clamp below.
                    px.fill(T::from_i32(self.lo));
                    for iy in rows.clone() {
                        for ix in cols.clone() {
                            let at = (iy * iw + ix) * c;
                            for (o, &v) in px.iter_mut().zip(&img[at..at + c]) {
                                *o = (*o).max(v);
                            }
                        }
                    }
                    for o in px.iter_mut() {
                        *o = (*o).min(T::from_i32(self.hi));
                    }
                } else {
                    acc.fill(0);
                    for iy in rows.clone() {
                        for ix in cols.clone() {
                            let at = (iy * iw + ix) * c;
                            for (a, &v) in acc.iter_mut().zip(&img[at..at + c]) {
                                *a += v.into();
                            }
                        }
                    }
                    let count = (rows.len() * cols.len()) as i32;
                    for (o, &a) in px.iter_mut().zip(acc.iter()) {
                        let v = if count == 0 {
                            a
                        } else if a > 0 {
                            (a + count / 2) / count
                        } else {
                            (a - count / 2) / count
                        };
                        *o = T::from_i32(v.clamp(self.lo, self.hi));
                    }
                }
            }
        }
        Some(())
    }
}

/// The element types of the integer pools.
trait PoolInt: Copy + Ord + Into<i32> {
    /// `v`, known to be in range (a clamped result).
    fn from_i32(v: i32) -> Self;
    /// The slice as int8, for the AVX-512 max kernel (int8 only).
    fn as_i8(v: &[Self]) -> Option<&[i8]>;
    fn as_i8_mut(v: &mut [Self]) -> Option<&mut [i8]>;
}

impl PoolInt for i8 {
    fn from_i32(v: i32) -> Self {
        v as i8
    }
    fn as_i8(v: &[i8]) -> Option<&[i8]> {
        Some(v)
    }
    fn as_i8_mut(v: &mut [i8]) -> Option<&mut [i8]> {
        Some(v)
    }
}

impl PoolInt for i16 {
    fn from_i32(v: i32) -> Self {
        v as i16
    }
    fn as_i8(_: &[i16]) -> Option<&[i8]> {
        None
    }
    fn as_i8_mut(_: &mut [i16]) -> Option<&mut [i8]> {
        None
    }
}

impl PackedPool {
    /// Float MAX_POOL_2D / AVERAGE_POOL_2D: the reference kernel's arithmetic (per channel, the
    /// window's taps inside the image in row order, `max` from −∞ or a sum divided by the
    /// count, then the activation), with the channels as the inner loop.
    pub(crate) fn run_f32(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>) -> Option<()> {
        let op = &self.op;
        let &[n, ih, iw, c] = xs else { return None };
        if n.checked_mul(ih)?.checked_mul(iw)?.checked_mul(c)? != xv.len() || c == 0 {
            return None;
        }
        let (oh, pad_h) = op.padding.compute(ih, op.filter[0], op.stride[0], 1)?;
        let (ow, pad_w) = op.padding.compute(iw, op.filter[1], op.stride[1], 1)?;
        let y = Array::reuse_f32(out, &[n, oh, ow, c])?;
        let max = op.kind == qlite_ir::op::PoolKind::Max;
        let mut pixels = y.chunks_exact_mut(c);
        for b in 0..n {
            let img = &xv[b * ih * iw * c..(b + 1) * ih * iw * c];
            for (rows, cols) in windows(op, [ih, iw], [oh, ow], [pad_h, pad_w]) {
                let px = pixels.next()?;
                px.fill(if max { f32::NEG_INFINITY } else { 0.0 });
                for iy in rows.clone() {
                    for ix in cols.clone() {
                        let at = (iy * iw + ix) * c;
                        let src = &img[at..at + c];
                        if max {
                            px.iter_mut().zip(src).for_each(|(o, &v)| *o = o.max(v));
                        } else {
                            px.iter_mut().zip(src).for_each(|(o, &v)| *o += v);
                        }
                    }
                }
                let count = rows.len() * cols.len();
                if !max {
                    if count == 0 {
                        px.fill(0.0);
                    } else {
                        let d = count as f32;
                        px.iter_mut().for_each(|o| *o /= d);
                    }
                }
                if op.activation != qlite_ir::Activation::None {
                    px.iter_mut().for_each(|o| *o = op.activation.apply(*o));
                }
            }
        }
        Some(())
    }
}

/// One max-pooled pixel: per 64 channels, the maximum over the window's pixels (`rows` ×
/// `cols` of `img`, `c` channels each) from `lo` (the reference's starting value, which also
/// applies the activation's lower clamp), then clamped to `hi`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[allow(unsafe_code, clippy::too_many_arguments)]
pub(crate) fn max_pixel_avx512(
    img: &[i8],
    iw: usize,
    c: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    lo: i32,
    hi: i32,
    px: &mut [i8],
) {
    use std::arch::x86_64::*;
    let (vlo, vhi) = (_mm512_set1_epi8(lo.clamp(-128, 127) as i8), _mm512_set1_epi8(hi.clamp(-128, 127) as i8));
    let c = c.min(px.len());
    for start in (0..c).step_by(64) {
        let n = (c - start).min(64);
        let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let mut m = vlo;
        for iy in rows.clone() {
            for ix in cols.clone() {
                let at = (iy * iw + ix) * c + start;
                if let Some(src) = img.get(at..at + n) {
                    // SAFETY: the mask selects n bytes, all in `src`.
                    m = _mm512_max_epi8(m, unsafe { _mm512_maskz_loadu_epi8(mask, src.as_ptr() as *const _) });
                }
            }
        }
        // SAFETY: the mask selects n bytes at `start`, inside `px` (start + n <= c <= px.len()).
        unsafe { _mm512_mask_storeu_epi8(px.as_mut_ptr().add(start) as *mut _, mask, _mm512_min_epi8(m, vhi)) };
    }
}

/// Each output pixel's window, in output order: the input rows and columns it covers inside
/// the image (clipped at the borders, as the reference kernels clip them).
fn windows(
    op: &qlite_ir::op::Pool2d,
    [ih, iw]: [usize; 2],
    [oh, ow]: [usize; 2],
    [pad_h, pad_w]: [usize; 2],
) -> impl Iterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)> + '_ {
    let clip = |o: usize, stride: usize, pad: usize, filter: usize, size: usize| {
        let start = (o * stride) as isize - pad as isize;
        start.max(0) as usize..(start + filter as isize).clamp(0, size as isize) as usize
    };
    (0..oh).flat_map(move |oy| {
        let rows = clip(oy, op.stride[0], pad_h, op.filter[0], ih);
        (0..ow).map(move |ox| (rows.clone(), clip(ox, op.stride[1], pad_w, op.filter[1], iw)))
    })
}
