//! DEPTHWISE_CONV_2D: int8 across channels (AVX-512 VNNI, AVX-512, AVX2, portable) and float32.

use super::*;

/// An int8 DEPTHWISE_CONV_2D with constant per-channel weights.
#[derive(Debug, Clone)]
pub struct PackedDepthwise {
    pub(crate) op: DepthwiseConv2d,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) oc: usize,
    /// `[kh·kw][oc]` widened to i32 once.
    pub(crate) w: Vec<i32>,
    pub(crate) z_in: i32,
    pub(crate) bias: Vec<i32>,
    pub(crate) out: ChannelOut,
    /// The AVX-512 form (multiplier 1, CPU with AVX-512 F/BW/DQ/VL).
    pub(crate) wide: Option<Box<DwWide>>,
}

/// Depthwise parameters padded to whole vectors of 16 channels (zeros past `oc`).
#[derive(Debug, Clone)]
pub(crate) struct DwWide {
    /// Channels rounded up to a multiple of 16.
    pub(crate) ocp: usize,
    /// `[kh·kw][ocp]`.
    pub(crate) w: AlignedI32,
    pub(crate) bias: AlignedI32,
    /// `bias − z_in · Σ_taps w`: the bias of a pixel whose taps all lie inside the image,
    /// whose accumulator then needs no zero-point subtraction per tap.
    pub(crate) bias_inside: AlignedI32,
    pub(crate) mults: Multipliers,
    /// For `oc` < 16 channels dividing 16: weights `[kh·kw][16]`, `bias_inside` and the
    /// multipliers repeated over 16 lanes, so one vector covers 16/oc adjacent pixels.
    pub(crate) tiled: Option<(AlignedI32, AlignedI32, Multipliers)>,
    /// The `vpdpbusd` form (kernels at most 4 wide, CPU with AVX-512 VNNI and VBMI).
    pub(crate) vnni: Option<DwVnni>,
}

/// A depthwise kernel row as `vpdpbusd` operands: each channel's (up to 4) taps of one kernel
/// row are one i32 word of 4 bytes, multiplied with the 4 input bytes those taps read — which
/// [`dw_vnni`] lays out the same way, once per input row.
#[derive(Debug, Clone)]
pub(crate) struct DwVnni {
    /// `[kh][groups][ocp]` words: group g's bytes `w[ky][4g + t][c]` for 4g + t < kw, zero
    /// after (groups: 1 for kernels up to 4 wide, 2 up to 8).
    pub(crate) w: AlignedI32,
    /// `bias − (z_in + 128) · Σ_taps w`: the inputs enter as `x + 128` (unsigned).
    pub(crate) bias: AlignedI32,
}

impl PackedDepthwise {
    pub(crate) fn new(op: &DepthwiseConv2d, c: Common) -> Option<Self> {
        let &[1, kh, kw, oc] = c.w_shape else { return None };
        if c.bias.is_some_and(|b| b.len() != oc) || c.w.len() != kh * kw * oc {
            return None;
        }
        let w: Vec<i32> = c.w.iter().map(|&v| v as i32).collect();
        let bias = c.bias.map_or_else(|| vec![0; oc], |b| b.to_vec());
        let out = ChannelOut::new(&c, op.activation, oc, true);
        let wide = (op.depth_multiplier <= 1 && crate::isa::current().has_avx512()).then(|| {
            let ocp = oc.div_ceil(16) * 16;
            let pad = |v: &[i32]| {
                let mut p = v.to_vec();
                p.resize(ocp, 0);
                p
            };
            let mut wp = vec![0i32; kh * kw * ocp];
            for (dst, src) in wp.chunks_exact_mut(ocp).zip(w.chunks_exact(oc.max(1))) {
                dst[..oc].copy_from_slice(src);
            }
            let bias = pad(&bias);
            let bias_inside: AlignedI32 = (0..ocp)
                .map(|o| {
                    let sum = (0..kh * kw).fold(0i32, |a, t| a.wrapping_add(wp[t * ocp + o]));
                    bias[o].wrapping_sub(c.z_in.wrapping_mul(sum))
                })
                .collect();
            let mults = {
                let mut pairs = per_channel_multipliers(c.s_in, c.wq, c.out.scale, oc);
                pairs.resize(ocp, (0, 0));
                Multipliers::new(&pairs).with_zp(c.out.zp).bounded(acc_bound(c.w, c.bias, oc, true))
            };
            let tiled = (oc < 16 && 16 % oc == 0).then(|| {
                let w16: Vec<i32> = (0..kh * kw * 16).map(|i| wp[(i / 16) * ocp + (i % 16) % oc]).collect();
                let b16: Vec<i32> = (0..16).map(|i| bias_inside[i % oc]).collect();
                let pairs = per_channel_multipliers(c.s_in, c.wq, c.out.scale, oc);
                let m16: Vec<(i32, i32)> = (0..16).map(|i| pairs[i % oc]).collect();
                let bound = acc_bound(c.w, c.bias, oc, true);
                (AlignedI32::new(&w16), AlignedI32::new(&b16), Multipliers::new(&m16).with_zp(c.out.zp).bounded(bound))
            });
            let vnni = (kw <= 8 && crate::isa::current().has_vnni_vbmi()).then(|| {
                // Per kernel row, groups of 4 taps (kernels 5 to 8 wide: two).
                let groups = kw.div_ceil(4);
                let mut words = vec![0i32; kh * groups * ocp];
                for ky in 0..kh {
                    for g in 0..groups {
                        for o in 0..ocp {
                            let mut b = [0u8; 4];
                            for (t, kx) in (4 * g..kw.min(4 * g + 4)).enumerate() {
                                b[t] = wp[(ky * kw + kx) * ocp + o] as i8 as u8;
                            }
                            words[(ky * groups + g) * ocp + o] = i32::from_le_bytes(b);
                        }
                    }
                }
                let bias: AlignedI32 = (0..ocp)
                    .map(|o| {
                        let sum = (0..kh * kw).fold(0i32, |a, t| a.wrapping_add(wp[t * ocp + o]));
                        bias[o].wrapping_sub(c.z_in.wrapping_add(128).wrapping_mul(sum))
                    })
                    .collect();
                DwVnni { w: AlignedI32::new(&words), bias }
            });
            Box::new(DwWide {
                tiled,
                ocp,
                w: AlignedI32::new(&wp),
                bias: AlignedI32::new(&bias),
                bias_inside,
                mults,
                vnni,
            })
        });
        Some(PackedDepthwise { op: op.clone(), kh, kw, oc, w, z_in: c.z_in, bias, out, wide })
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
        let op = &self.op;
        let mult = op.depth_multiplier.max(1);
        if ic.checked_mul(mult)? != self.oc || n.checked_mul(ih)?.checked_mul(iw)?.checked_mul(ic)? != xv.len() {
            return None;
        }
        let (oh, pad_h) = axis(op.padding, ih, self.kh, op.stride[0], op.dilation[0])?;
        let (ow, pad_w) = axis(op.padding, iw, self.kw, op.stride[1], op.dilation[1])?;
        let oc = self.oc;
        let y = Array::reuse_i8(out, &[n, oh, ow, oc])?;
        let dims = ConvGeom { n, ih, iw, ic, oh, ow, pad_h, pad_w };
        #[cfg(target_arch = "x86_64")]
        // Fewer than 16 channels dividing 16 at stride 1 across: the tiled path below packs
        // 16/oc pixels per vector, where this one would use a vector per pixel.
        let tiled = self.wide.as_ref().is_some_and(|w| w.tiled.is_some()) && op.stride[1] == 1;
        // Output rows are independent: large layers split them over the pool, each part with
        // its own laid-out rows and tap offsets.
        let parts = par.parts(y.len().saturating_mul(self.kh * self.kw), n * oh);
        let mut states = std::mem::take(&mut s.dw_parts);
        if states.len() < parts {
            states.resize_with(parts, Default::default);
        }
        let ok = std::sync::atomic::AtomicBool::new(true);
        let fail = || ok.store(false, std::sync::atomic::Ordering::Relaxed);
        #[cfg(target_arch = "x86_64")]
        if let Some((wide, v)) = self.wide.as_ref().and_then(|w| Some((w, w.vnni.as_ref()?))).filter(|_| !tiled) {
            par.chunks_with(y, ow * oc, parts, &mut states, |_, first, y, st: &mut DwPart| {
                // SAFETY: a VNNI form exists only when the tier (never above the host's) has
                // AVX-512 F/BW/DQ/VL, VNNI and VBMI; the short form only when the multipliers
                // have it.
                #[allow(unsafe_code)]
                let done = unsafe {
                    if wide.mults.short {
                        dw_vnni::<true>(self, wide, v, &dims, xv, first, y, &mut st.rows)
                    } else {
                        dw_vnni::<false>(self, wide, v, &dims, xv, first, y, &mut st.rows)
                    }
                };
                if !done {
                    fail();
                }
            });
            if ok.load(std::sync::atomic::Ordering::Relaxed) {
                s.dw_parts = states;
                return Some(());
            }
            ok.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(wide) = &self.wide {
            // Padding made explicit (zero-point pixels) puts every window inside the image:
            // the kernel's fast path for every pixel.
            let span = [(self.kh - 1) * op.dilation[0], (self.kw - 1) * op.dilation[1]];
            let z = self.z_in.clamp(-128, 127) as i8;
            let mut padded = std::mem::take(&mut s.pad);
            let (geom, input) = match dims.pad_into(xv, span, op.stride, z, &mut padded) {
                Some(g) => (g, padded.as_slice()),
                None => (dims, xv),
            };
            par.chunks_with(y, ow * oc, parts, &mut states, |_, first, y, st: &mut DwPart| {
                // SAFETY: `wide` exists only when the tier (never above the host's) has AVX-512
                // F/BW/DQ/VL.
                #[allow(unsafe_code)]
                if !unsafe { dw_avx512(self, wide, &geom, input, first, y, &mut st.taps) } {
                    fail();
                }
            });
            s.pad = padded;
            if ok.load(std::sync::atomic::Ordering::Relaxed) {
                s.dw_parts = states;
                return Some(());
            }
        }
        s.dw_parts = states;
        let mut accs = std::mem::take(&mut s.acc);
        accs.clear();
        accs.resize(y.len(), 0);
        #[cfg(target_arch = "x86_64")]
        if crate::isa::current().has_avx2() {
            // SAFETY: the CPU supports AVX2, the only requirement of `dw_accumulate_avx2`.
            #[allow(unsafe_code)]
            unsafe {
                dw_accumulate_avx2(self, &dims, xv, &mut accs, &mut s.xi)
            };
            self.out.apply(&accs, Some(&self.bias), y);
            s.acc = accs;
            return Some(());
        }
        dw_accumulate(self, &dims, xv, &mut accs, &mut s.xi);
        self.out.apply(&accs, Some(&self.bias), y);
        s.acc = accs;
        Some(())
    }
}

/// Multiplier-1 depthwise on AVX-512, requantized in registers: for each output pixel and
/// each vector of 16 channels, `Σ_taps w · (x − z)` over the taps inside the image (input
/// bytes widened to i32 lanes, `vpmulld`), then bias and requantization, 16 bytes stored.
/// False (nothing trusted) if the sizes do not match.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(unsafe_code)]
pub(crate) fn dw_avx512(
    p: &PackedDepthwise,
    k: &DwWide,
    d: &ConvGeom,
    xv: &[i8],
    first: usize,
    y: &mut [i8],
    offsets: &mut Vec<usize>,
) -> bool {
    // SAFETY: the CPU has what this function enables; the short form only when every set of
    // multipliers used has it.
    unsafe {
        if k.mults.short && k.tiled.as_ref().is_none_or(|t| t.2.short) {
            dw_avx512_as::<true>(p, k, d, xv, first, y, offsets)
        } else {
            dw_avx512_as::<false>(p, k, d, xv, first, y, offsets)
        }
    }
}

/// [`dw_avx512`] with the form of [`OutVec::scale`] chosen.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/DQ/VL; with `SHORT`, `k.mults.short` and (if present) the
/// tiled multipliers' `short` must be true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(unsafe_code)]
pub(crate) unsafe fn dw_avx512_as<const SHORT: bool>(
    p: &PackedDepthwise,
    k: &DwWide,
    d: &ConvGeom,
    xv: &[i8],
    first: usize,
    y: &mut [i8],
    offsets: &mut Vec<usize>,
) -> bool {
    use std::arch::x86_64::*;
    let op = &p.op;
    let (ih, iw, ic, oc, ocp) = (d.ih, d.iw, d.ic, p.oc, k.ocp);
    let taps = p.kh * p.kw;
    let sizes_ok = ic == oc
        && oc > 0
        && ocp >= oc
        && ocp.is_multiple_of(16)
        && xv.len() == d.n * ih * iw * ic
        && out_rows(d, oc, first, y.len()).is_some()
        && k.w.len() == taps * ocp
        && k.bias.len() == ocp
        && k.bias_inside.len() == ocp
        && k.mults.vector_ready(ocp);
    if !sizes_ok {
        return false;
    }
    let count = out_rows(d, oc, first, y.len()).unwrap_or(0);
    let out = OutVec::new(p.out.lo, p.out.hi);
    let z = _mm512_set1_epi32(p.z_in);
    let blocks = ocp / 16;
    // Input offsets of the taps from a window's top-left corner, and the window's extent.
    let (span_h, span_w) = ((p.kh - 1) * op.dilation[0], (p.kw - 1) * op.dilation[1]);
    offsets.clear();
    offsets.extend(
        (0..p.kh).flat_map(|ky| (0..p.kw).map(move |kx| (ky * op.dilation[0] * iw + kx * op.dilation[1]) * ic)),
    );
    let tap_offsets: &[usize] = offsets;
    let all_inside = d.pad_h == 0
        && d.pad_w == 0
        && d.oh > 0
        && d.ow > 0
        && (d.oh - 1) * op.stride[0] + span_h < ih
        && (d.ow - 1) * op.stride[1] + span_w < iw;
    if let Some((w16, b16, m16)) = k.tiled.as_ref().filter(|_| all_inside && op.stride[1] == 1) {
        // Few channels, stride 1 across: a vector holds 16/oc adjacent output pixels, whose
        // taps' inputs are adjacent too (one load per tap).
        let per = 16 / oc;
        let ok = oc * per == 16 && w16.len() == tap_offsets.len() * 16 && b16.len() == 16 && m16.vector_ready(16);
        if !ok {
            return false;
        }
        let mut o = 0;
        for r in first..first + count {
            let (b, oy) = (r / d.oh, r % d.oh);
            {
                let row = (b * ih + oy * op.stride[0]) * iw;
                let mut ox = 0;
                while ox < d.ow {
                    let lanes = (d.ow - ox).min(per) * oc;
                    let mask = ((1u32 << lanes) - 1) as u16;
                    let corner = (row + ox) * ic;
                    // SAFETY: the windows of pixels ox..ox + lanes/oc lie inside the image, so
                    // the masked lanes of every tap's load are in `xv`; `w16` holds 16 weights
                    // per tap, `b16` and `m16` 16 lanes; the store writes lanes bytes at o,
                    // o + lanes <= y.len().
                    unsafe {
                        let mut acc = _mm512_loadu_si512(b16.as_ptr() as *const _);
                        for (t, &off) in tap_offsets.iter().enumerate() {
                            let xb = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(
                                mask,
                                xv.as_ptr().add(corner + off) as *const _,
                            ));
                            let wv = _mm512_loadu_si512(w16.as_ptr().add(t * 16) as *const _);
                            acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(xb, wv));
                        }
                        let q = requant16!(SHORT, &out, acc, m16, 0, mask);
                        _mm_mask_storeu_epi8(y.as_mut_ptr().add(o) as *mut _, mask, q);
                    }
                    o += lanes;
                    ox += per;
                }
            }
        }
        return o == y.len();
    }
    if all_inside && oc.is_multiple_of(16) {
        // Every window inside and whole vectors: the outputs are one run of vectors,
        // requantized and stored four at a time (64 bytes).
        let mut pending = [_mm512_setzero_si512(); 4];
        let (mut count, mut o) = (0, 0);
        for r in first..first + count {
            let (b, oy) = (r / d.oh, r % d.oh);
            {
                for ox in 0..d.ow {
                    let corner = ((b * ih + oy * op.stride[0]) * iw + ox * op.stride[1]) * ic;
                    for blk in 0..blocks {
                        let c = blk * 16;
                        // SAFETY: the window lies inside image b, so corner + tap offset + c..+16
                        // (c + 16 <= oc = ic) is in `xv`; tap t's weights hold ocp >= c + 16
                        // entries at t·ocp; the parameter vectors hold ocp; a store of 64 bytes
                        // at o writes outputs o..o + 64 <= y.len() (4 vectors computed).
                        unsafe {
                            let xp = xv.as_ptr().add(corner + c);
                            let wp = k.w.as_ptr().add(c);
                            let acc = _mm512_loadu_si512(k.bias_inside.as_ptr().add(c) as *const _);
                            let acc = match tap_offsets {
                                &[a, b, c, d, e, f, g, h, i] => {
                                    dw_taps(xp, wp, [a, b, c, d, e, f, g, h, i], ocp, u16::MAX, acc)
                                }
                                _ => dw_taps(xp, wp, tap_offsets, ocp, u16::MAX, acc),
                            };
                            pending[count] = scale16!(SHORT, acc, &k.mults, c, u16::MAX);
                            count += 1;
                            if count == 4 {
                                _mm512_storeu_si512(y.as_mut_ptr().add(o) as *mut _, out.finish4(pending));
                                o += 64;
                                count = 0;
                            }
                        }
                    }
                }
            }
        }
        // The last vectors (fewer than 4).
        for r in pending.iter().take(count) {
            // SAFETY: o + 16 <= y.len(): these outputs were computed and not yet stored.
            unsafe {
                let v = _mm512_min_epi32(_mm512_max_epi32(*r, out.lo), out.hi);
                _mm_storeu_si128(y.as_mut_ptr().add(o) as *mut _, _mm512_cvtepi32_epi8(v));
            }
            o += 16;
        }
        return o == y.len();
    }
    let mut o = 0;
    for r in first..first + count {
        let (b, oy) = (r / d.oh, r % d.oh);
        {
            let y0 = (oy * op.stride[0]) as isize - d.pad_h as isize;
            let rows_inside = y0 >= 0 && y0 as usize + span_h < ih;
            for ox in 0..d.ow {
                let x0 = (ox * op.stride[1]) as isize - d.pad_w as isize;
                if rows_inside && x0 >= 0 && x0 as usize + span_w < iw {
                    // Every tap inside: no bounds checks, the zero point folded in the bias.
                    let corner = ((b * ih + y0 as usize) * iw + x0 as usize) * ic;
                    for blk in 0..blocks {
                        let c = blk * 16;
                        let mask = ((1u32 << (oc - c).min(16)) - 1) as u16;
                        // SAFETY: corner + tap offset addresses a pixel of image b (the window
                        // lies inside it), whose channels c.. (masked to oc) are in `xv`; the
                        // weights of tap t hold ocp >= c + 16 entries at t·ocp; the parameter
                        // vectors hold ocp entries; the store writes the masked lanes of
                        // o + c .. o + oc, inside `y`.
                        unsafe {
                            let xp = xv.as_ptr().add(corner + c);
                            let wp = k.w.as_ptr().add(c);
                            let acc = _mm512_loadu_si512(k.bias_inside.as_ptr().add(c) as *const _);
                            let acc = match tap_offsets {
                                &[a, b, c, d, e, f, g, h, i] => {
                                    dw_taps(xp, wp, [a, b, c, d, e, f, g, h, i], ocp, mask, acc)
                                }
                                _ => dw_taps(xp, wp, tap_offsets, ocp, mask, acc),
                            };
                            let q = requant16!(SHORT, &out, acc, &k.mults, c, mask);
                            _mm_mask_storeu_epi8(y.as_mut_ptr().add(o + c) as *mut _, mask, q);
                        }
                    }
                    o += oc;
                    continue;
                }
                for blk in 0..blocks {
                    let c = blk * 16;
                    let mask = ((1u32 << (oc - c).min(16)) - 1) as u16;
                    let mut acc = _mm512_setzero_si512();
                    for ky in 0..p.kh {
                        let iy = y0 + (ky * op.dilation[0]) as isize;
                        if iy < 0 || iy as usize >= ih {
                            continue;
                        }
                        for kx in 0..p.kw {
                            let ix = x0 + (kx * op.dilation[1]) as isize;
                            if ix < 0 || ix as usize >= iw {
                                continue;
                            }
                            let at = ((b * ih + iy as usize) * iw + ix as usize) * ic + c;
                            // SAFETY: (iy, ix) is inside image b, so at + (lanes the mask
                            // selects, at most oc − c) <= xv.len(); the tap's weights hold
                            // ocp >= c + 16 entries.
                            unsafe {
                                let xb = _mm512_sub_epi32(
                                    _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, xv.as_ptr().add(at) as *const _)),
                                    z,
                                );
                                let wv = _mm512_loadu_si512(k.w.as_ptr().add((ky * p.kw + kx) * ocp + c) as *const _);
                                acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(xb, wv));
                            }
                        }
                    }
                    // SAFETY: the parameter vectors hold ocp >= c + 16 entries; the store
                    // writes the lanes the mask selects, o + c .. o + oc, inside `y`.
                    unsafe {
                        let acc = _mm512_add_epi32(acc, _mm512_loadu_si512(k.bias.as_ptr().add(c) as *const _));
                        let q = requant16!(SHORT, &out, acc, &k.mults, c, mask);
                        _mm_mask_storeu_epi8(y.as_mut_ptr().add(o + c) as *mut _, mask, q);
                    }
                }
                o += oc;
            }
        }
    }
    true
}

/// What a part of a split int8 depthwise keeps from run to run.
#[derive(Debug, Default)]
pub(crate) struct DwPart {
    /// Input rows laid out for `vpdpbusd` ([`dw_vnni`]).
    #[cfg(target_arch = "x86_64")]
    rows: Vec<Lane16>,
    /// Tap offsets ([`dw_avx512`]).
    taps: Vec<usize>,
}

impl DwPart {
    pub(crate) fn capacity_bytes(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        let rows = self.rows.capacity() * size_of::<Lane16>();
        #[cfg(not(target_arch = "x86_64"))]
        let rows = 0;
        rows + self.taps.capacity() * size_of::<usize>()
    }
}

/// How many whole output rows (of `ow · oc`) a part of `len` outputs starting at row `first`
/// covers, if they all lie inside the output.
pub(crate) fn out_rows(d: &ConvGeom, oc: usize, first: usize, len: usize) -> Option<usize> {
    let row = d.ow.checked_mul(oc)?;
    let count = len.checked_div(row).unwrap_or(0);
    (count.checked_mul(row)? == len && first.checked_add(count)? <= d.n.checked_mul(d.oh)?).then_some(count)
}

/// Most slots of input rows [`dw_vnni`] keeps laid out (the rows one output row reads).
pub(crate) const DW_SLOTS: usize = 16;

/// Depthwise (multiplier 1, kernel at most 4 wide) with `vpdpbusd`: each input row a window
/// row reads is laid out once — for every output column and channel, the 4 bytes `x + 128`
/// of the taps of one kernel row (the zero point where a tap falls in the padding), a word
/// per channel — and
/// kept while the output rows that read it are computed; an output vector of 16 channels is
/// then one `vpdpbusd` per kernel row (64 multiply-adds each) on the bias, requantized in
/// registers. False (nothing written) if the sizes do not fit this form.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, DQ, VL, VNNI and VBMI; with `SHORT`, `k.mults.short`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512vbmi")]
#[allow(unsafe_code, clippy::too_many_arguments)]
pub(crate) unsafe fn dw_vnni<const SHORT: bool>(
    p: &PackedDepthwise,
    k: &DwWide,
    v: &DwVnni,
    d: &ConvGeom,
    xv: &[i8],
    first: usize,
    y: &mut [i8],
    rows: &mut Vec<Lane16>,
) -> bool {
    use std::arch::x86_64::*;
    let op = &p.op;
    let (kh, kw, oc, ocp) = (p.kh, p.kw, p.oc, k.ocp);
    let ([sh, sw], [dh, dw]) = (op.stride, op.dilation);
    let (ih, iw, ic, oh, ow) = (d.ih, d.iw, d.ic, d.oh, d.ow);
    let slots = (kh.max(1) - 1) * dh + 1;
    let blocks = ocp / 16;
    // Kernels 5 to 8 wide: two groups of 4 taps per kernel row, the second read from the same
    // laid-out row `4·dw / sw` columns on (its taps past kw have zero weights).
    let groups = kw.div_ceil(4);
    let shift = if groups == 2 { 4 * dw / sw.max(1) } else { 0 };
    let lay_kw = if groups == 2 { 4 } else { kw };
    let ok = kh > 0
        && (1..=8).contains(&kw)
        && (groups == 1 || (4 * dw).is_multiple_of(sw.max(1)))
        && kh * groups <= DW_SLOTS
        && ic == oc
        && oc > 0
        && ocp.is_multiple_of(16)
        && ocp >= oc
        && slots <= DW_SLOTS
        && sh > 0
        && sw > 0
        && xv.len() == d.n * ih * iw * ic
        && out_rows(d, oc, first, y.len()).is_some()
        && v.w.len() == kh * groups * ocp
        && v.bias.len() == ocp
        && k.mults.vector_ready(ocp);
    if !ok {
        return false;
    }
    if y.is_empty() {
        return true;
    }
    let count = out_rows(d, oc, first, y.len()).unwrap_or(0);
    // Laid-out columns: the output's, and the second group's reach past them.
    let cols = ow + shift;
    let row_vecs = cols * blocks;
    // Every slot vector is written before it is read: no clearing.
    if rows.len() < slots * row_vecs {
        rows.resize(slots * row_vecs, Lane16::default());
    }
    let out = OutVec::new(p.out.lo, p.out.hi);
    let flip = _mm512_set1_epi8(-128);
    // The input zero point (what padding reads), and laid out (+ 128).
    let z = _mm512_set1_epi8(p.z_in.clamp(-128, 127) as i8);
    let z_laid = _mm512_xor_si512(z, flip);
    // Byte 4j + t of a laid-out vector is tap t's channel j: lane t of the gathered register.
    let order = _mm512_set_epi8(
        63, 47, 31, 15, 62, 46, 30, 14, 61, 45, 29, 13, 60, 44, 28, 12, 59, 43, 27, 11, 58, 42, 26, 10, 57, 41, 25, 9,
        56, 40, 24, 8, 55, 39, 23, 7, 54, 38, 22, 6, 53, 37, 21, 5, 52, 36, 20, 4, 51, 35, 19, 3, 50, 34, 18, 2, 49,
        33, 17, 1, 48, 32, 16, 0,
    );
    // Opaque to the compiler, which otherwise turns the one `vpermb` into ten byte and word
    // unpacks (measured: the layout then cost more than the multiply-adds).
    let order = std::hint::black_box(order);
    // Taps `dw·ic` bytes apart: one load gathers them when they are 16 bytes apart.
    let contiguous = dw * ic == 16;
    let tap_mask: u64 = if lay_kw == 4 { u64::MAX } else { (1u64 << (16 * lay_kw)) - 1 };
    // Rows of the padded image the windows reach (the slots' tags count them per image).
    let reach = (oh.max(1) - 1) * sh + (kh - 1) * dh + 1;
    let mut tags = [usize::MAX; DW_SLOTS];
    let mut o = 0usize;
    let base = rows.as_mut_ptr();
    for r in first..first + count {
        let (b, oy) = (r / oh, r % oh);
        {
            let mut src = [std::ptr::null::<Lane16>(); DW_SLOTS];
            for ky in 0..kh {
                let r = oy * sh + ky * dh;
                let slot = r % slots;
                let tag = b * reach + r;
                // SAFETY: slot < slots, so the slot's row_vecs vectors lie inside `rows`.
                let dst = unsafe { base.add(slot * row_vecs) };
                for g in 0..groups {
                    // SAFETY: g·shift < cols: inside the slot.
                    src[ky * groups + g] = unsafe { dst.add(g * shift * blocks) };
                }
                if tags[slot] == tag {
                    continue;
                }
                tags[slot] = tag;
                let iy = r as isize - d.pad_h as isize;
                if iy < 0 || iy as usize >= ih {
                    // A padding row: every tap reads the zero point.
                    for i in 0..row_vecs {
                        // SAFETY: i < row_vecs, inside the slot.
                        unsafe { _mm512_store_si512(dst.add(i) as *mut _, z_laid) };
                    }
                    continue;
                }
                let row = (b * ih + iy as usize) * iw * ic;
                // Laid-out columns whose taps all lie inside the row: lo..hi.
                let lo = d.pad_w.div_ceil(sw).min(cols);
                let last = (iw + d.pad_w).checked_sub(1 + (lay_kw - 1) * dw).map_or(0, |v| v / sw + 1);
                let hi = last.clamp(lo, cols);
                let lay = DwLay { xv, row, iw, ic, oc, kw: lay_kw, dw, blocks, z, order, flip };
                for ox in (0..lo).chain(hi..cols) {
                    let x0 = (ox * sw) as isize - d.pad_w as isize;
                    // SAFETY: vectors ox·blocks.. of the slot (ox < ow).
                    unsafe { lay.column(x0, dst.add(ox * blocks)) };
                }
                if lo < hi {
                    let first = row + (lo * sw - d.pad_w) * ic;
                    // SAFETY: columns lo..hi have every tap inside the row (so the gathers
                    // read inside `xv`; whole blocks when oc is a multiple of 16); vectors
                    // lo·blocks..hi·blocks of the slot.
                    unsafe {
                        let out = dst.add(lo * blocks);
                        let n = hi - lo;
                        if !oc.is_multiple_of(16) {
                            for i in 0..n {
                                lay.column(
                                    (first - row) as isize / ic as isize + (i * sw) as isize,
                                    out.add(i * blocks),
                                );
                            }
                        } else if contiguous {
                            lay.inside_contiguous(first, sw * ic, n, tap_mask, out);
                        } else {
                            match lay_kw {
                                1 => lay.inside::<1>(first, sw * ic, n, out),
                                2 => lay.inside::<2>(first, sw * ic, n, out),
                                3 => lay.inside::<3>(first, sw * ic, n, out),
                                _ => lay.inside::<4>(first, sw * ic, n, out),
                            }
                        }
                    }
                }
            }
            let row = DwRow { src: &src, w: &v.w, bias: &v.bias, mults: &k.mults, out: &out, oc, ocp, blocks, ow };
            // SAFETY: every src[i] (i < kh·groups) points at ow·blocks vectors of a slot (the
            // second group's start shift columns in, cols = ow + shift), the weights hold
            // kh·groups·ocp words, the bias and multipliers ocp; `o` is where this row's
            // outputs go — ow·oc of them, inside `y`.
            o = unsafe {
                match kh * groups {
                    1 => row.run::<1, SHORT>(y, o),
                    2 => row.run::<2, SHORT>(y, o),
                    3 => row.run::<3, SHORT>(y, o),
                    4 => row.run::<4, SHORT>(y, o),
                    _ => row.run::<0, SHORT>(y, o),
                }
            };
        }
    }
    o == y.len()
}

/// Lays out depthwise input rows for [`dw_vnni`]: for an output column, per block of 16
/// channels, the bytes `x + 128` of the kernel row's taps interleaved (4 per channel).
#[cfg(target_arch = "x86_64")]
pub(crate) struct DwLay<'a> {
    pub(crate) xv: &'a [i8],
    /// Where the input row starts in `xv`.
    pub(crate) row: usize,
    pub(crate) iw: usize,
    pub(crate) ic: usize,
    pub(crate) oc: usize,
    pub(crate) kw: usize,
    pub(crate) dw: usize,
    pub(crate) blocks: usize,
    /// The input zero point in every byte.
    pub(crate) z: std::arch::x86_64::__m512i,
    /// The interleaving `vpermb` index, and the sign bits.
    pub(crate) order: std::arch::x86_64::__m512i,
    pub(crate) flip: std::arch::x86_64::__m512i,
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
impl DwLay<'_> {
    /// Any column, its window starting at input column `x0` (taps outside the row read the
    /// zero point).
    ///
    /// # Safety
    /// AVX-512 F/BW/VBMI; `dst` writable for `blocks` vectors; `row + iw·ic <= xv.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
    #[inline]
    pub(crate) unsafe fn column(&self, x0: isize, dst: *mut Lane16) {
        use std::arch::x86_64::*;
        for blk in 0..self.blocks {
            let c = blk * 16;
            let lanes = ((1u32 << (self.oc - c).min(16)) - 1) as u16;
            let mut g = self.z;
            for t in 0..self.kw {
                let ix = x0 + (t * self.dw) as isize;
                if ix >= 0 && (ix as usize) < self.iw {
                    // SAFETY: pixel ix of the row, channels c.. masked to < oc = ic: inside
                    // the row; the store is vector blk < blocks of `dst`.
                    unsafe {
                        let at = self.xv.as_ptr().add(self.row + ix as usize * self.ic + c);
                        let tap = _mm_maskz_loadu_epi8(lanes, at as *const _);
                        g = _mm512_mask_broadcast_i32x4(g, 0xF << (4 * t), tap);
                    }
                }
            }
            let laid = _mm512_xor_si512(_mm512_permutexvar_epi8(self.order, g), self.flip);
            // SAFETY: as above.
            unsafe { _mm512_store_si512(dst.add(blk) as *mut _, laid) };
        }
    }

    /// `n` columns whose taps are all inside the row, whole blocks (oc a multiple of 16): the
    /// first window at `xv[first..]`, the next `step` bytes on; `KW` taps `dw·ic` apart.
    ///
    /// # Safety
    /// AVX-512 F/BW/VBMI; every tap of the `n` windows inside `xv`; `dst` writable for
    /// `n·blocks` vectors.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
    #[inline]
    pub(crate) unsafe fn inside<const KW: usize>(&self, first: usize, step: usize, n: usize, dst: *mut Lane16) {
        use std::arch::x86_64::*;
        let tap = self.dw * self.ic;
        // SAFETY: the caller's contract (each load is 16 bytes of one tap's pixel, channels
        // c..c + 16 <= ic).
        unsafe {
            let mut at = self.xv.as_ptr().add(first);
            let mut out = dst;
            for _ in 0..n {
                for blk in 0..self.blocks {
                    let p = at.add(blk * 16);
                    let mut g = _mm512_castsi128_si512(_mm_loadu_si128(p as *const _));
                    if KW > 1 {
                        g = _mm512_inserti32x4::<1>(g, _mm_loadu_si128(p.add(tap) as *const _));
                    }
                    if KW > 2 {
                        g = _mm512_inserti32x4::<2>(g, _mm_loadu_si128(p.add(2 * tap) as *const _));
                    }
                    if KW > 3 {
                        g = _mm512_inserti32x4::<3>(g, _mm_loadu_si128(p.add(3 * tap) as *const _));
                    }
                    let laid = _mm512_xor_si512(_mm512_permutexvar_epi8(self.order, g), self.flip);
                    _mm512_store_si512(out as *mut _, laid);
                    out = out.add(1);
                }
                at = at.add(step);
            }
        }
    }

    /// [`DwLay::inside`] when the taps are 16 bytes apart (16 channels, dilation 1): one load
    /// (`mask`: kw·16 bytes) gathers a window.
    ///
    /// # Safety
    /// As for [`DwLay::inside`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi")]
    #[inline]
    pub(crate) unsafe fn inside_contiguous(&self, first: usize, step: usize, n: usize, mask: u64, dst: *mut Lane16) {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract (a window's kw·16 bytes).
        unsafe {
            let mut at = self.xv.as_ptr().add(first);
            for i in 0..n {
                let g = _mm512_maskz_loadu_epi8(mask, at as *const _);
                let laid = _mm512_xor_si512(_mm512_permutexvar_epi8(self.order, g), self.flip);
                _mm512_store_si512(dst.add(i) as *mut _, laid);
                at = at.add(step);
            }
        }
    }
}

/// One output row of [`dw_vnni`]: its input rows laid out, the layer's parameters.
#[cfg(target_arch = "x86_64")]
pub(crate) struct DwRow<'a> {
    pub(crate) src: &'a [*const Lane16; DW_SLOTS],
    pub(crate) w: &'a AlignedI32,
    pub(crate) bias: &'a AlignedI32,
    pub(crate) mults: &'a Multipliers,
    pub(crate) out: &'a OutVec,
    pub(crate) oc: usize,
    pub(crate) ocp: usize,
    pub(crate) blocks: usize,
    pub(crate) ow: usize,
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
impl DwRow<'_> {
    /// The row's ow·oc outputs into `y` from `o`; returns where the next row's outputs go.
    /// `KH` kernel rows (0: `self.src`'s non-null entries, a loop).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/DQ/VL and VNNI; `src[..KH]` must each point at
    /// `ow·blocks` vectors; `w` must hold KH·ocp words, `bias` and `mults` ocp entries;
    /// `o + ow·oc <= y.len()`; with `SHORT`, `mults.short`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
    #[inline]
    pub(crate) unsafe fn run<const KH: usize, const SHORT: bool>(&self, y: &mut [i8], mut o: usize) -> usize {
        use std::arch::x86_64::*;
        let kh = if KH == 0 { self.src.iter().take_while(|p| !p.is_null()).count() } else { KH };
        let (blocks, ocp) = (self.blocks, self.ocp);
        // SAFETY (every load): the caller's contract; vector `at` < ow·blocks of each source
        // row, its channels c..c + 16 <= ocp. A macro: a closure is compiled without this
        // function's target features, out of line (measured: 20 % slower).
        macro_rules! acc {
            ($at:expr, $c:expr) => {{
                let (at, c) = ($at, $c);
                #[allow(unused_unsafe)]
                let acc = unsafe {
                    let mut acc = _mm512_load_si512(self.bias.as_ptr().add(c) as *const _);
                    for ky in 0..kh {
                        let x = _mm512_load_si512(self.src[ky].add(at) as *const _);
                        let w = _mm512_load_si512(self.w.as_ptr().add(ky * ocp + c) as *const _);
                        acc = _mm512_dpbusd_epi32(acc, x, w);
                    }
                    acc
                };
                acc
            }};
        }
        let total = self.ow * blocks;
        if self.oc.is_multiple_of(16) {
            // The row's vectors are consecutive outputs: requantized and stored four at a time
            // (64 bytes), the last (fewer than 4) one by one.
            let (mut at, mut c) = (0, 0);
            let next = |c: &mut usize| {
                let now = *c;
                *c = if now + 16 < ocp { now + 16 } else { 0 };
                now
            };
            while at + 4 <= total {
                let cs = [next(&mut c), next(&mut c), next(&mut c), next(&mut c)];
                let mut r = [_mm512_setzero_si512(); 4];
                for v in 0..4 {
                    // SAFETY: as above; the multipliers hold ocp entries.
                    r[v] = scale16!(SHORT, acc!(at + v, cs[v]), self.mults, cs[v], u16::MAX);
                }
                // SAFETY: outputs o..o + 64 belong to this row (4 of its vectors).
                unsafe { _mm512_storeu_si512(y.as_mut_ptr().add(o) as *mut _, self.out.finish4(r)) };
                (at, o) = (at + 4, o + 64);
            }
            while at < total {
                let c = next(&mut c);
                // SAFETY: as above; outputs o..o + 16 belong to this row.
                unsafe {
                    let q = requant16!(SHORT, self.out, acc!(at, c), self.mults, c, u16::MAX);
                    _mm_storeu_si128(y.as_mut_ptr().add(o) as *mut _, q);
                }
                (at, o) = (at + 1, o + 16);
            }
            return o;
        }
        for at in 0..total {
            let c = (at % blocks) * 16;
            let n = (self.oc - c).min(16);
            let lanes = ((1u32 << n) - 1) as u16;
            // SAFETY: as above; the masked store writes n outputs of this row's pixel.
            unsafe {
                let q = requant16!(SHORT, self.out, acc!(at, c), self.mults, c, lanes);
                _mm_mask_storeu_epi8(y.as_mut_ptr().add(o) as *mut _, lanes, q);
            }
            o += n;
        }
        o
    }
}

/// `acc + Σ_t w[t] · x[t]` over 16 channels: tap `t`'s input bytes at `xp + offsets[t]`
/// (the lanes `mask` selects), its weights at `wp + t·ocp`. A 3×3 window is passed as an
/// array, so the loop unrolls.
///
/// # Safety
/// For every tap, the masked input bytes and 16 weights must be readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(unsafe_code)]
#[inline]
pub(crate) unsafe fn dw_taps<O: AsRef<[usize]>>(
    xp: *const i8,
    wp: *const i32,
    offsets: O,
    ocp: usize,
    mask: u16,
    mut acc: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees every read below.
    unsafe {
        if mask == u16::MAX {
            for (t, &off) in offsets.as_ref().iter().enumerate() {
                let xb = _mm512_cvtepi8_epi32(_mm_loadu_si128(xp.add(off) as *const _));
                let wv = _mm512_loadu_si512(wp.add(t * ocp) as *const _);
                acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(xb, wv));
            }
        } else {
            for (t, &off) in offsets.as_ref().iter().enumerate() {
                let xb = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, xp.add(off) as *const _));
                let wv = _mm512_loadu_si512(wp.add(t * ocp) as *const _);
                acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(xb, wv));
            }
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) fn dw_accumulate_avx2(p: &PackedDepthwise, d: &ConvGeom, xv: &[i8], accs: &mut [i32], xi: &mut Vec<i32>) {
    dw_accumulate(p, d, xv, accs, xi);
}

/// The raw depthwise accumulators of every output pixel (`accs` is pixels × channels):
/// `Σ_taps w[tap][o] · (x[c(o)] − z)` over the taps inside the image, channels innermost so
/// the multiply-adds vectorize.
#[inline(always)]
pub(crate) fn dw_accumulate(p: &PackedDepthwise, d: &ConvGeom, xv: &[i8], accs: &mut [i32], xi: &mut Vec<i32>) {
    let op = &p.op;
    let mult = op.depth_multiplier.max(1);
    let (ih, iw, ic, oc) = (d.ih, d.iw, d.ic, p.oc);
    xi.clear();
    xi.resize(ih * iw * ic, 0);
    let mut pixels = accs.chunks_exact_mut(oc.max(1));
    for b in 0..d.n {
        let img = &xv[b * ih * iw * ic..(b + 1) * ih * iw * ic];
        for (t, &v) in xi.iter_mut().zip(img) {
            *t = v as i32 - p.z_in;
        }
        for oy in 0..d.oh {
            for ox in 0..d.ow {
                let Some(acc) = pixels.next() else { return };
                for ky in 0..p.kh {
                    let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - d.pad_h as isize;
                    if iy < 0 || iy as usize >= ih {
                        continue;
                    }
                    for kx in 0..p.kw {
                        let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize - d.pad_w as isize;
                        if ix < 0 || ix as usize >= iw {
                            continue;
                        }
                        let at = (iy as usize * iw + ix as usize) * ic;
                        let wt = &p.w[(ky * p.kw + kx) * oc..(ky * p.kw + kx + 1) * oc];
                        if mult == 1 {
                            let xs = &xi[at..at + ic];
                            for ((a, &w), &x) in acc.iter_mut().zip(wt).zip(xs) {
                                *a = a.wrapping_add(w.wrapping_mul(x));
                            }
                        } else {
                            for (o, (a, &w)) in acc.iter_mut().zip(wt).enumerate() {
                                *a = a.wrapping_add(w.wrapping_mul(xi[at + o / mult]));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Float DEPTHWISE_CONV_2D with the channel loop innermost (it vectorizes), each output's
/// taps summed in the reference kernel's order: the same float sums.
#[derive(Debug, Clone)]
pub struct PackedFloatDepthwise {
    pub(crate) op: qlite_ir::op::DepthwiseConv2d,
    pub(crate) w: Vec<f32>,
    pub(crate) ws: Vec<usize>,
    pub(crate) bias: Option<Vec<f32>>,
}

impl PackedFloatDepthwise {
    pub(crate) fn new(g: &Graph, n: &Node, op: &DepthwiseConv2d, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let x = g.tensor(n.input(0)?)?;
        let out = g.tensor(*n.outputs.first()?)?;
        if x.dtype != DType::F32 || out.dtype != DType::F32 || op.depth_multiplier != 1 {
            return None;
        }
        let (w, ws, bias) = float_params(n, consts)?;
        if ws.len() != 4 {
            return None;
        }
        Some(PackedFloatDepthwise { op: op.clone(), w: w.to_vec(), ws, bias })
    }

    pub(crate) fn run(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>, par: Parallel) -> Option<()> {
        let &[n, ih, iw, c] = xs else { return None };
        let [_, kh, kw, wc] = self.ws[..] else { return None };
        if wc != c || checked_len(xs)? != xv.len() {
            return None;
        }
        let op = &self.op;
        let (oh, pad_h) = op.padding.compute(ih, kh, op.stride[0], op.dilation[0])?;
        let (ow, pad_w) = op.padding.compute(iw, kw, op.stride[1], op.dilation[1])?;
        if checked_len(&[n, oh, ow, c])? > MAX_FAST_ELEMENTS {
            return None;
        }
        let y = Array::reuse_f32(out, &[n, oh, ow, c])?;
        let g = FloatDwGeom { ih, iw, c, oh, ow, kh, kw, pad_h, pad_w };
        // Output rows are independent: large layers split them over the pool.
        let rows = n * oh;
        let parts = par.parts(y.len().saturating_mul(kh * kw), rows);
        let isa = crate::isa::current();
        // Bias and activation applied as each part's rows are finished (no second pass).
        let ba = (self.bias.as_deref(), op.activation);
        par.chunks(y, ow * c, parts, |_, first, y| {
            // The same loops compiled per tier (16 lanes and FMA with AVX-512, 8 with AVX2 + FMA).
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            if isa.has_avx512() {
                // SAFETY: the tier says AVX-512F is available.
                unsafe { float_dw_avx512(&g, op, xv, &self.w, ba, first, y) };
            } else if isa.has_avx2() {
                // SAFETY: the tier says AVX2 and FMA are available.
                unsafe { float_dw_avx2(&g, op, xv, &self.w, ba, first, y) };
            } else {
                float_dw::<false>(&g, op, xv, &self.w, ba, first, y);
            }
            #[cfg(not(target_arch = "x86_64"))]
            float_dw::<false>(&g, op, xv, &self.w, ba, first, y);
        });
        Some(())
    }
}

/// Floats of output sums a float depthwise tile keeps (8 KiB: in L1 with its inputs).
const DW_TILE_FLOATS: usize = 2048;

/// Sizes of a float depthwise convolution (NHWC, one multiplier).
struct FloatDwGeom {
    ih: usize,
    iw: usize,
    c: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    pad_h: usize,
    pad_w: usize,
}

/// The sum over the window's taps inside the image, in (ky, kx) order as the reference kernel,
/// per output row: with `BLOCKED` (AVX-512), the columns whose windows lie inside the image
/// summed in registers ([`float_dw_inside_avx512`]) and the border ones a tile at a time
/// ([`float_dw_cols`]); otherwise every column a tile at a time. Each output element sees the
/// same additions in the same order as the reference.
#[inline(always)]
fn float_dw<const BLOCKED: bool>(
    g: &FloatDwGeom,
    op: &DepthwiseConv2d,
    xv: &[f32],
    w: &[f32],
    ba: BiasAct<'_>,
    first: usize,
    y: &mut [f32],
) {
    let FloatDwGeom { ih, iw, c, oh, ow, kh, kw, pad_h, pad_w } = *g;
    let (sy, sx) = (op.stride[0], op.stride[1]);
    let (dy, dx) = (op.dilation[0], op.dilation[1]);
    // Output columns whose every tap lies inside the row: lo..hi.
    let lo = pad_w.div_ceil(sx.max(1)).min(ow);
    let hi = (iw + pad_w).checked_sub(1 + (kw.max(1) - 1) * dx).map_or(0, |v| v / sx.max(1) + 1).clamp(lo, ow);
    // Output rows `first..` (across images), as many as `y` holds.
    for (r, yrow) in y.chunks_exact_mut((ow * c).max(1)).enumerate() {
        let (b, oy) = ((first + r) / oh.max(1), (first + r) % oh.max(1));
        let y0 = (oy * sy) as isize - pad_h as isize;
        let rows_inside = y0 >= 0 && y0 as usize + (kh.max(1) - 1) * dy < ih;
        if BLOCKED && rows_inside && lo < hi {
            float_dw_cols(g, op, xv, w, ba, b, oy, 0, lo, yrow);
            float_dw_cols(g, op, xv, w, ba, b, oy, hi, ow, yrow);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: BLOCKED is only instantiated by the AVX-512 entry point; the columns
            // lo..hi of this row have every tap inside image b.
            #[allow(unsafe_code)]
            unsafe {
                float_dw_inside_avx512(g, op, xv, w, ba, b, y0 as usize, lo, hi, yrow)
            };
        } else {
            float_dw_cols(g, op, xv, w, ba, b, oy, 0, ow, yrow);
        }
    }
}

/// Output columns `c0..c1` of row `oy` of image `b`: the sum over the window's taps inside the
/// image, in (ky, kx) order as the reference kernel, accumulated a tile of columns at a time:
/// for each tap, every output pixel of the tile whose tap falls inside the image adds `x · w`
/// over its channels (no dependency chain through the long inner loops; the tile's sums stay
/// in L1).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn float_dw_cols(
    g: &FloatDwGeom,
    op: &DepthwiseConv2d,
    xv: &[f32],
    w: &[f32],
    ba: BiasAct<'_>,
    b: usize,
    oy: usize,
    c0: usize,
    c1: usize,
    yrow: &mut [f32],
) {
    let FloatDwGeom { ih, iw, c, kh, kw, pad_h, pad_w, .. } = *g;
    let (sy, sx) = (op.stride[0], op.stride[1]);
    let (dy, dx) = (op.dilation[0], op.dilation[1]);
    if c0 >= c1 {
        return;
    }
    yrow[c0 * c..c1 * c].fill(0.0);
    // Tiles of output columns small enough that their sums stay in L1 across the taps.
    let tile = (DW_TILE_FLOATS / c.max(1)).clamp(1, (c1 - c0).max(1));
    for t0 in (c0..c1).step_by(tile) {
        let t1 = (t0 + tile).min(c1);
        for ky in 0..kh {
            let iy = (oy * sy + ky * dy) as isize - pad_h as isize;
            if iy < 0 || iy >= ih as isize {
                continue;
            }
            let xrow = &xv[(b * ih + iy as usize) * iw * c..(b * ih + iy as usize + 1) * iw * c];
            for kx in 0..kw {
                // Output columns whose input column ox·sx + kx·dx − pad_w is inside [0, iw).
                let off = kx * dx;
                let lo = pad_w.saturating_sub(off).div_ceil(sx).max(t0);
                let hi = if iw + pad_w > off { ((iw + pad_w - off - 1) / sx + 1).min(t1) } else { 0 };
                let wr = &w[(ky * kw + kx) * c..(ky * kw + kx + 1) * c];
                for ox in lo..hi {
                    let ix = ox * sx + off - pad_w;
                    let xr = &xrow[ix * c..(ix + 1) * c];
                    let yr = &mut yrow[ox * c..(ox + 1) * c];
                    for ((acc, &xv), &wv) in yr.iter_mut().zip(xr).zip(wr) {
                        *acc += xv * wv;
                    }
                }
            }
        }
    }
    bias_act(&mut yrow[c0 * c..c1 * c], c, ba.0, ba.1);
}

/// A float layer's bias (if any) and fused activation, applied as its outputs are stored.
type BiasAct<'a> = (Option<&'a [f32]>, qlite_ir::Activation);

/// Output columns `lo..hi` of one output row whose windows lie wholly inside image `b`
/// (first input row `iy0`): 4 pixels × 16 channels summed in registers over every tap in
/// (ky, kx) order — `acc + x · w` as a multiply then an add, the reference's operations in its
/// order, so the same bits — and stored once.
///
/// # Safety
/// The CPU must have AVX-512F; every tap of columns lo..hi must lie inside image b
/// (`iy0 + (kh − 1)·dy < ih`, `lo·sx >= pad_w`, `(hi − 1)·sx + (kw − 1)·dx − pad_w < iw`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code, clippy::too_many_arguments)]
unsafe fn float_dw_inside_avx512(
    g: &FloatDwGeom,
    op: &DepthwiseConv2d,
    xv: &[f32],
    w: &[f32],
    ba: BiasAct<'_>,
    b: usize,
    iy0: usize,
    lo: usize,
    hi: usize,
    yrow: &mut [f32],
) {
    use std::arch::x86_64::*;
    let FloatDwGeom { ih, iw, c, kh, kw, pad_w, .. } = *g;
    let (sx, dy, dx) = (op.stride[1], op.dilation[0], op.dilation[1]);
    // SAFETY: the caller's contract: every tap read (channels c0.. under the mask, < c) lies
    // inside image b, every store inside columns lo..hi of the row.
    unsafe {
        let img = xv.as_ptr().add(b * ih * iw * c);
        // P pixels from column ox, channels c0.. under `mask`.
        macro_rules! pixels {
            ($p:literal, $ox:expr, $c0:expr, $mask:expr) => {{
                let (ox, c0, mask) = ($ox, $c0, $mask);
                let mut acc = [_mm512_setzero_ps(); $p];
                for ky in 0..kh {
                    let row = img.add((iy0 + ky * dy) * iw * c + c0);
                    for kx in 0..kw {
                        let wv = _mm512_maskz_loadu_ps(mask, w.as_ptr().add((ky * kw + kx) * c + c0));
                        let x0 = ox * sx + kx * dx - pad_w;
                        for (p, a) in acc.iter_mut().enumerate() {
                            let xp = _mm512_maskz_loadu_ps(mask, row.add((x0 + p * sx) * c));
                            *a = _mm512_add_ps(*a, _mm512_mul_ps(xp, wv));
                        }
                    }
                }
                // The bias, then the activation (the reference's `act(sum + bias)`, NaN kept as
                // its `f32::max` / `clamp` keep it: see the float GEMM).
                let bv = match ba.0 {
                    Some(bias) => _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(c0)),
                    None => _mm512_setzero_ps(),
                };
                for (p, a) in acc.iter().enumerate() {
                    let v = if ba.0.is_some() { _mm512_add_ps(*a, bv) } else { *a };
                    let v = match ba.1 {
                        qlite_ir::Activation::None => v,
                        qlite_ir::Activation::Relu => _mm512_max_ps(v, _mm512_setzero_ps()),
                        qlite_ir::Activation::Relu6 => {
                            _mm512_min_ps(_mm512_set1_ps(6.0), _mm512_max_ps(_mm512_setzero_ps(), v))
                        }
                        qlite_ir::Activation::ReluN1To1 => {
                            _mm512_min_ps(_mm512_set1_ps(1.0), _mm512_max_ps(_mm512_set1_ps(-1.0), v))
                        }
                    };
                    _mm512_mask_storeu_ps(yrow.as_mut_ptr().add((ox + p) * c + c0), mask, v);
                }
            }};
        }
        // Pixel blocks outside, channel blocks inside: a block's windows (kernel rows × a few
        // pixels × all channels) stay in L1 while every channel block reads them (channels
        // outside re-read each input row from L2 once per 16 channels: 1.3× slower).
        let mask_of = |c0: usize| -> __mmask16 { if c - c0 >= 16 { 0xffff } else { ((1u32 << (c - c0)) - 1) as u16 } };
        let mut ox = lo;
        while ox + 4 <= hi {
            for c0 in (0..c).step_by(16) {
                pixels!(4, ox, c0, mask_of(c0));
            }
            ox += 4;
        }
        while ox < hi {
            for c0 in (0..c).step_by(16) {
                pixels!(1, ox, c0, mask_of(c0));
            }
            ox += 1;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn float_dw_avx512(
    g: &FloatDwGeom,
    op: &DepthwiseConv2d,
    xv: &[f32],
    w: &[f32],
    ba: BiasAct<'_>,
    first: usize,
    y: &mut [f32],
) {
    float_dw::<true>(g, op, xv, w, ba, first, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn float_dw_avx2(
    g: &FloatDwGeom,
    op: &DepthwiseConv2d,
    xv: &[f32],
    w: &[f32],
    ba: BiasAct<'_>,
    first: usize,
    y: &mut [f32],
) {
    float_dw::<false>(g, op, xv, w, ba, first, y)
}
