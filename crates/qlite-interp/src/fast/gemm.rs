//! int8 dot products and GEMM for FULLY_CONNECTED and CONV_2D, per ISA tier (AVX-512 VNNI
//! `vpdpbusd`, AVX2 `vpmaddwd`, portable), and the float SGEMM of the float kernels.

/// A `units × depth` int8 matrix packed for `acc[o] = Σ_d w[o][d] · x[d]`.
#[derive(Debug, Clone)]
pub(crate) struct Matrix {
    pub(crate) units: usize,
    pub(crate) depth: usize,
    /// Row-major, for the AVX2 and portable paths (empty when the VNNI pack is used).
    pub(crate) rows: Vec<i8>,
    /// Row sums.
    pub(crate) sum_w: Vec<i32>,
    pub(crate) vnni: Option<VnniPack>,
}

/// Weights for `vpdpbusd`: blocks of 16 output units, each group of 4 depth positions of a
/// block 16 × 4 bytes (unit-major), so one 64-byte load feeds 16 dot products. Blocks go in
/// bands of 4 (the last band may be narrower), and within a band the groups are interleaved
/// — depth group 0 of its blocks, then group 1, ... — so a kernel working on a band reads
/// one sequential stream. Padded with zero weights to whole blocks and groups.
#[derive(Debug)]
pub(crate) struct VnniPack {
    pub(crate) groups: usize,
    /// The packed weights start at `start`, a 64-byte boundary, so no load splits a cache line.
    pub(crate) buf: Vec<i8>,
    pub(crate) start: usize,
    pub(crate) len: usize,
}

impl Clone for VnniPack {
    /// A copy aligned anew (its buffer is elsewhere).
    fn clone(&self) -> Self {
        let data = self.data();
        let mut copy = VnniPack::new(self.groups, data.len());
        copy.data_mut().copy_from_slice(data);
        copy
    }
}

impl VnniPack {
    pub(crate) fn new(groups: usize, len: usize) -> Self {
        let buf = vec![0i8; len + 64];
        let start = buf.as_ptr().align_offset(64).min(64);
        VnniPack { groups, buf, start, len }
    }

    pub(crate) fn data(&self) -> &[i8] {
        &self.buf[self.start..self.start + self.len]
    }

    pub(crate) fn data_mut(&mut self) -> &mut [i8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    /// Where block `blk`'s depth group `j` starts, of `blocks` blocks of `groups` groups.
    pub(crate) fn offset(blocks: usize, groups: usize, blk: usize, j: usize) -> usize {
        let band = blk / 4 * 4;
        let width = (blocks - band).min(4);
        (band * groups + j * width + (blk - band)) * 64
    }
}

impl Matrix {
    pub(crate) fn new(w: &[i8], units: usize, depth: usize) -> Option<Self> {
        if w.len() != units.checked_mul(depth)? || depth == 0 {
            return None;
        }
        let sum_w = w.chunks_exact(depth).map(|r| r.iter().fold(0i32, |a, &v| a.wrapping_add(v as i32))).collect();
        let vnni = crate::isa::current().has_vnni().then(|| {
            let groups = depth.div_ceil(4);
            let blocks = units.div_ceil(16);
            let mut pack = VnniPack::new(groups, blocks * groups * 64);
            let data = pack.data_mut();
            for o in 0..units {
                let (blk, lane) = (o / 16, o % 16);
                for d in 0..depth {
                    data[VnniPack::offset(blocks, groups, blk, d / 4) + lane * 4 + d % 4] = w[o * depth + d];
                }
            }
            pack
        });
        // The row-major copy only serves the non-VNNI paths.
        let rows = if vnni.is_some() { Vec::new() } else { w.to_vec() };
        Some(Matrix { units, depth, rows, sum_w, vnni })
    }

    /// Scratch sizes [`Matrix::dots`] needs: `acc` of at least `acc_len()` entries.
    pub(crate) fn acc_len(&self) -> usize {
        self.units.div_ceil(16) * 16
    }

    /// `acc[o] = Σ_d w[o][d] · x[d]` (wrapping) for every unit; `x.len() == depth`. `acc` is
    /// sized here (to whole VNNI blocks); its first `units` entries are the results.
    pub(crate) fn dots(&self, x: &[i8], xu: &mut Vec<u8>, acc: &mut Vec<i32>) {
        self.dots_plus(x, xu, acc, None, 0);
    }

    /// [`Matrix::dots`] plus `add[o] + k` for every unit (wrapping), in the same pass.
    pub(crate) fn dots_plus(&self, x: &[i8], xu: &mut Vec<u8>, acc: &mut Vec<i32>, add: Option<&[i32]>, k: i32) {
        acc.resize(self.acc_len(), 0);
        let units = self.units;
        let add = add.filter(|a| a.len() == units);
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = &self.vnni {
            // x + 128 as unsigned bytes, zero-padded to whole groups of 4.
            flip_into(x, xu);
            xu.resize(p.groups * 4, 0);
            // SAFETY: the pack exists only when the tier (never above the host's) has AVX-512 F/BW/VNNI.
            #[allow(unsafe_code)]
            unsafe {
                dots_vnni(p, xu, acc)
            };
            match add {
                Some(add) => {
                    for ((a, &sw), &c) in acc[..units].iter_mut().zip(&self.sum_w).zip(add) {
                        *a = a.wrapping_sub(sw.wrapping_mul(128)).wrapping_add(c).wrapping_add(k);
                    }
                }
                None => {
                    for (a, &sw) in acc[..units].iter_mut().zip(&self.sum_w) {
                        *a = a.wrapping_sub(sw.wrapping_mul(128)).wrapping_add(k);
                    }
                }
            }
            return;
        }
        let _ = xu;
        dots(&self.rows, x, &mut acc[..units]);
        for (o, a) in acc[..units].iter_mut().enumerate() {
            *a = a.wrapping_add(add.map_or(0, |add| add[o])).wrapping_add(k);
        }
    }
}

/// `dst = x + 128` as unsigned bytes (the sign bit flipped): a copy, then the flip in place in
/// 64-byte chunks — both vectorized (an `extend` over a mapping iterator was not: 2 % of the
/// MobileNet-like model's time).
pub(crate) fn flip_into(x: &[i8], dst: &mut Vec<u8>) {
    flip_into_split(x, dst, super::Parallel::default());
}

/// [`flip_into`] in one pass (the bytes written once, not copied then flipped), split over
/// the pool in blocks of 4 KiB for large inputs (a convolution's input is then flipped where
/// the previous layer's parts left it in cache).
#[allow(unsafe_code)]
pub(crate) fn flip_into_split(x: &[i8], dst: &mut Vec<u8>, par: super::Parallel) {
    const BLOCK: usize = 4096;
    dst.clear();
    dst.reserve(x.len());
    let spare = &mut dst.spare_capacity_mut()[..x.len()];
    // A byte each: a part gets at least min_work bytes.
    let parts = par.parts(x.len(), x.len().div_ceil(BLOCK));
    par.chunks(spare, BLOCK, parts, |_, first, out| {
        let src = &x[first * BLOCK..first * BLOCK + out.len()];
        for (o, &v) in out.iter_mut().zip(src) {
            o.write(v as u8 ^ 0x80);
        }
    });
    // SAFETY: the parts together wrote every one of the first x.len() elements (the blocks
    // cover the slice, the last one short), within the reserved capacity.
    unsafe { dst.set_len(x.len()) };
}

/// `acc[o] = Σ_d (x[d] + 128) · w[o][d]` for every unit of the pack (wrapping), 64 products per
/// `vpdpbusd`. A band of up to 4 blocks (64 units) at a time, read as one stream: one
/// broadcast of x feeds the band's blocks, and 8 accumulator chains hide the instruction's
/// latency — 2 depth steps in flight for a band of 4 blocks, 4 for 2 blocks, 8 for 1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(unsafe_code)]
pub(crate) fn dots_vnni(p: &VnniPack, xu: &[u8], acc: &mut [i32]) {
    let g = p.groups;
    if g == 0 || xu.len() < g * 4 {
        return;
    }
    let blocks = acc.len() / 16;
    if p.data().len() < blocks * g * 64 {
        return;
    }
    let mut band = 0;
    while band < blocks {
        let width = (blocks - band).min(4);
        // SAFETY: band `band` holds `width` blocks × g groups × 64 bytes from band·g·64, inside
        // `p.data()` (>= blocks·g·64 bytes, checked); `xu` holds >= 4g bytes; `acc` holds
        // blocks·16 i32, (band + width)·16 of them.
        unsafe {
            let w = p.data().as_ptr().add(band * g * 64);
            let out = acc.as_mut_ptr().add(band * 16);
            match width {
                4 => dots_band::<4, 2>(w, g, xu.as_ptr(), out),
                3 => dots_band::<3, 2>(w, g, xu.as_ptr(), out),
                2 => dots_band::<2, 4>(w, g, xu.as_ptr(), out),
                _ => dots_band::<1, 8>(w, g, xu.as_ptr(), out),
            }
        }
        band += width;
    }
}

/// One band of [`dots_vnni`]: `W` blocks, `U` depth steps in flight.
///
/// # Safety
/// `w` must be readable for `W·g·64` bytes, `xu` for `4g`, `out` writable for `W·16` i32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(unsafe_code)]
#[inline]
pub(crate) unsafe fn dots_band<const W: usize, const U: usize>(w: *const i8, g: usize, xu: *const u8, out: *mut i32) {
    use std::arch::x86_64::*;
    let step = W * 64;
    let mut a = [[_mm512_setzero_si512(); W]; U];
    // SAFETY: the caller's contract covers every offset below (j < g).
    unsafe {
        let mut j = 0;
        while j + U <= g {
            for (u, au) in a.iter_mut().enumerate() {
                let x = _mm512_set1_epi32((xu.add(4 * (j + u)) as *const i32).read_unaligned());
                let wj = w.add((j + u) * step);
                for (b, ab) in au.iter_mut().enumerate() {
                    *ab = _mm512_dpbusd_epi32(*ab, x, _mm512_loadu_si512(wj.add(b * 64) as *const _));
                }
            }
            j += U;
        }
        while j < g {
            let x = _mm512_set1_epi32((xu.add(4 * j) as *const i32).read_unaligned());
            let wj = w.add(j * step);
            for (b, ab) in a[0].iter_mut().enumerate() {
                *ab = _mm512_dpbusd_epi32(*ab, x, _mm512_loadu_si512(wj.add(b * 64) as *const _));
            }
            j += 1;
        }
        for b in 0..W {
            let mut sum = a[0][b];
            for au in a.iter().skip(1) {
                sum = _mm512_add_epi32(sum, au[b]);
            }
            _mm512_storeu_si512(out.add(b * 16) as *mut _, sum);
        }
    }
}

/// `$tile!(R, B)` with the literal register-tile size for `nr` rows × `nb` blocks of 16 units
/// (each 1 to 4; larger counts take 4).
macro_rules! by_tile_size {
    ($nr:expr, $nb:expr, $tile:ident) => {
        match ($nr, $nb) {
            (4, 4) => $tile!(4, 4),
            (4, 3) => $tile!(4, 3),
            (4, 2) => $tile!(4, 2),
            (4, _) => $tile!(4, 1),
            (3, 4) => $tile!(3, 4),
            (3, 3) => $tile!(3, 3),
            (3, 2) => $tile!(3, 2),
            (3, _) => $tile!(3, 1),
            (2, 4) => $tile!(2, 4),
            (2, 3) => $tile!(2, 3),
            (2, 2) => $tile!(2, 2),
            (2, _) => $tile!(2, 1),
            (_, 4) => $tile!(1, 4),
            (_, 3) => $tile!(1, 3),
            (_, 2) => $tile!(1, 2),
            (_, _) => $tile!(1, 1),
        }
    };
}

/// Rows of inputs at once: `acc[r·stride + o] = init[o] + Σ_{d < 4g} xu[offs[r] + d] · w[o][d]`
/// for every row `r` of `offs` and every unit `o < units`, with `xu` holding `x + 128` as unsigned
/// bytes (VNNI's operand form). Tiles of 4 rows × 4 blocks of 16 units keep 16 accumulators
/// in registers: per 4 depth positions, 4 weight loads and 4 broadcasts feed 16 `vpdpbusd`.
/// Returns false (computing nothing) if a row or the accumulators would be out of bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(unsafe_code)]
pub(crate) fn gemm_vnni(
    p: &VnniPack,
    units: usize,
    xu: &[u8],
    offs: &[usize],
    acc: &mut [i32],
    stride: usize,
    init: &[i32],
) -> bool {
    let g = p.groups;
    let blocks = units.div_ceil(16);
    let rows = offs.len();
    if rows == 0 || units == 0 {
        return true;
    }
    let fits = stride >= units
        && init.len() == units
        && p.data().len() >= blocks * g * 64
        && offs.iter().all(|&o| o.checked_add(4 * g).is_some_and(|e| e <= xu.len()))
        && (rows - 1).checked_mul(stride).and_then(|v| v.checked_add(units)).is_some_and(|e| e <= acc.len());
    if !fits {
        return false;
    }
    let mut blk = 0;
    while blk < blocks {
        let nb = (blocks - blk).min(4);
        let mut r = 0;
        while r < rows {
            let nr = (rows - r).min(4);
            // SAFETY: checked above: every row reads 4g bytes from its offset inside `xu`,
            // blocks blk..blk+nb lie inside the pack, and every accumulator written (masked to
            // `units`) is inside `acc`.
            unsafe {
                let x = |i: usize| xu.as_ptr().add(offs[r + i.min(nr - 1)]);
                let out = |i: usize| acc.as_mut_ptr().add((r + i.min(nr - 1)) * stride + blk * 16);
                let mask = |b: usize| {
                    let left = units.saturating_sub((blk + b) * 16).min(16);
                    ((1u32 << left) - 1) as u16
                };
                let w = p.data().as_ptr().add(blk * g * 64);
                macro_rules! tile {
                    ($r:literal, $b:literal) => {
                        gemm_tile::<$r, $b>(
                            w,
                            g,
                            std::array::from_fn(x),
                            std::array::from_fn(out),
                            std::array::from_fn(mask),
                            init.as_ptr().add(blk * 16),
                        )
                    };
                }
                by_tile_size!(nr, nb, tile)
            }
            r += nr;
        }
        blk += nb;
    }
    true
}

/// One tile of [`gemm_vnni`]: `R` rows × a band of `B` blocks of 16 units, whose depth group
/// `j` is at `w + j·B·64` (block `b` at `+ b·64`); the sums start from `init` (the band's
/// units).
///
/// # Safety
/// Each `x[r]` must be readable for `4g` bytes, the weights for `B·g·64` bytes, `init` at
/// the lanes `masks` selects in `B` blocks of 16 i32, and each `out[r]` writable there.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(unsafe_code)]
#[inline]
pub(crate) unsafe fn gemm_tile<const R: usize, const B: usize>(
    w: *const i8,
    g: usize,
    x: [*const u8; R],
    out: [*mut i32; R],
    masks: [u16; B],
    init: *const i32,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract covers every pointer offset below (j < g).
    unsafe {
        let a = tile_sums::<R, B>(w, g, x, masks, init);
        for r in 0..R {
            for b in 0..B {
                _mm512_mask_storeu_epi32(out[r].add(b * 16) as *mut _, masks[b], a[r][b]);
            }
        }
    }
}

/// [`gemm_vnni`] with the output stage fused: each register tile of accumulators is
/// requantized by `co` where it is and stored as int8 (`y[r·units + o]` for row `r` of
/// `offs`), instead of going through an accumulator buffer. For `units` a multiple of 16 and
/// multipliers the vector paths take (the caller checks [`fused_requant_fits`]); each output
/// gets exactly the arithmetic of [`super::requant::requantize_fixed_avx512`]. Returns false
/// (computing nothing) if a row or an output would be out of bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[allow(unsafe_code)]
pub(crate) fn gemm_vnni_requant(
    p: &VnniPack,
    units: usize,
    xu: &[u8],
    offs: &[usize],
    y: &mut [i8],
    init: &[i32],
    co: &super::ChannelOut,
) -> bool {
    let g = p.groups;
    let blocks = units / 16;
    let rows = offs.len();
    if rows == 0 || units == 0 {
        return true;
    }
    let fits = fused_requant_fits(co, units)
        && init.len() == units
        && p.data().len() >= blocks * g * 64
        && offs.iter().all(|&o| o.checked_add(4 * g).is_some_and(|e| e <= xu.len()))
        && rows.checked_mul(units).is_some_and(|e| e <= y.len());
    if !fits {
        return false;
    }
    let k = super::OutVec::new(co.lo, co.hi);
    // The tile walk of `gemm_vnni`, written out again: a shared helper taking the tile as a
    // closure measured 260 → 315 µs on a 1×1 16 → 96 layer at 112×112 (worse code for the
    // fused tile), so each function keeps its own loop.
    let mut blk = 0;
    while blk < blocks {
        let nb = (blocks - blk).min(4);
        let mut r = 0;
        while r < rows {
            let nr = (rows - r).min(4);
            // SAFETY: checked above: every row reads 4g bytes from its offset inside `xu`,
            // blocks blk..blk+nb lie inside the pack and the parameters (units = 16·blocks
            // entries, the short form's constants 32 per block), every output row written is
            // inside `y`.
            unsafe {
                let x = |i: usize| xu.as_ptr().add(offs[r + i.min(nr - 1)]);
                let out = |i: usize| y.as_mut_ptr().add((r + i.min(nr - 1)) * units + blk * 16);
                let w = p.data().as_ptr().add(blk * g * 64);
                let init = init.as_ptr().add(blk * 16);
                macro_rules! tile {
                    ($r:literal, $b:literal) => {
                        if co.mults.short {
                            gemm_tile_requant::<$r, $b, true>(
                                w,
                                g,
                                std::array::from_fn(x),
                                std::array::from_fn(out),
                                init,
                                co,
                                blk * 16,
                                &k,
                            )
                        } else {
                            gemm_tile_requant::<$r, $b, false>(
                                w,
                                g,
                                std::array::from_fn(x),
                                std::array::from_fn(out),
                                init,
                                co,
                                blk * 16,
                                &k,
                            )
                        }
                    };
                }
                by_tile_size!(nr, nb, tile)
            }
            r += nr;
        }
        blk += nb;
    }
    true
}

/// Whether [`gemm_vnni_requant`] can take a layer of `units` output channels with this output
/// stage: whole blocks of 16, vector-ready multipliers.
pub(crate) fn fused_requant_fits(co: &super::ChannelOut, units: usize) -> bool {
    units > 0 && units.is_multiple_of(16) && co.mults.m.len() == units && co.mults.vector_ready(units)
}

/// One tile of [`gemm_vnni_requant`]: [`gemm_tile`]'s sums, then requantized (channels
/// `c0 + 16b ..`) and stored as int8 at `out[r] + 16b`; a row of 4 blocks packs its 64
/// outputs into one store.
///
/// # Safety
/// As [`gemm_tile`] with every block whole; `co`'s parameters must hold channels
/// `c0 .. c0 + 16B` (and `SHORT` only when `co.mults.short`); each `out[r]` writable for
/// `16B` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
#[allow(unsafe_code, clippy::too_many_arguments)]
#[inline]
unsafe fn gemm_tile_requant<const R: usize, const B: usize, const SHORT: bool>(
    w: *const i8,
    g: usize,
    x: [*const u8; R],
    out: [*mut i8; R],
    init: *const i32,
    co: &super::ChannelOut,
    c0: usize,
    k: &super::OutVec,
) {
    use super::Multipliers;
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract covers every pointer offset below (j < g, b < B).
    unsafe {
        let mut a = tile_sums::<R, B>(w, g, x, [u16::MAX; B], init);
        let q: &Multipliers = &co.mults;
        // A block's channel constants are loaded once for the tile's rows. Unrolled by hand
        // (constant indices): as loops, LLVM kept the tile in memory.
        macro_rules! block {
            ($b:literal) => {
                if $b < B {
                    let p = scale16_params!(SHORT, q, c0 + $b * 16);
                    macro_rules! row {
                        ($r:literal) => {
                            if $r < R {
                                a[$r][$b] = scale16_with!(SHORT, a[$r][$b], &p, q);
                            }
                        };
                    }
                    row!(0);
                    row!(1);
                    row!(2);
                    row!(3);
                }
            };
        }
        block!(0);
        block!(1);
        block!(2);
        block!(3);
        for (ar, &o) in a.iter().zip(&out) {
            if B == 4 {
                let v = std::array::from_fn(|b| ar[b.min(B - 1)]);
                _mm512_storeu_si512(o as *mut _, k.finish4(v));
            } else {
                for (b, &r) in ar.iter().enumerate() {
                    let v = _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(r, k.lo), k.hi));
                    _mm_storeu_si128(o.add(b * 16) as *mut _, v);
                }
            }
        }
    }
}

/// The sums of a register tile (`R` rows × `B` blocks of 16 units, depth group `j` of the
/// band at `w + j·B·64`), starting from `init` in the lanes `masks` selects: what
/// [`gemm_tile`] stores and [`gemm_tile_requant`] requantizes.
///
/// # Safety
/// As [`gemm_tile`], without the outputs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(unsafe_code)]
#[inline]
unsafe fn tile_sums<const R: usize, const B: usize>(
    w: *const i8,
    g: usize,
    x: [*const u8; R],
    masks: [u16; B],
    init: *const i32,
) -> [[std::arch::x86_64::__m512i; B]; R] {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract covers every pointer offset below (j < g).
    unsafe {
        let mut first = [_mm512_setzero_si512(); B];
        for (b, v) in first.iter_mut().enumerate() {
            *v = _mm512_maskz_loadu_epi32(masks[b], init.add(b * 16));
        }
        let mut a = [first; R];
        for j in 0..g {
            let wj = w.add(j * B * 64);
            // Plain loops around the intrinsics (see `requantize_fixed_avx512`).
            let mut wv = [_mm512_setzero_si512(); B];
            for (b, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(wj.add(b * 64) as *const _);
            }
            for r in 0..R {
                let xb = _mm512_set1_epi32((x[r].add(4 * j) as *const i32).read_unaligned());
                for b in 0..B {
                    a[r][b] = _mm512_dpbusd_epi32(a[r][b], xb, wv[b]);
                }
            }
        }
        a
    }
}

/// `acc[o] = Σ_d w[o·n + d] · x[d]` (wrapping), AVX2 when the CPU has it.
pub(crate) fn dots(w: &[i8], x: &[i8], acc: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::current().has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked just above), the only requirement.
        #[allow(unsafe_code)]
        unsafe {
            dots_avx2(w, x, acc)
        };
        return;
    }
    dots_portable(w, x, acc);
}

/// AVX2: 16 int8 pairs at a time, sign-extended to i16 and multiplied-and-pair-added into
/// i32 lanes (`vpmaddwd`; a pair of i8 products cannot overflow i32), then the scalar tail.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
pub(crate) fn dots_avx2(w: &[i8], x: &[i8], acc: &mut [i32]) {
    use std::arch::x86_64::*;
    let n = x.len();
    if n == 0 {
        acc.fill(0);
        return;
    }
    let body = n / 16 * 16;
    for (a, row) in acc.iter_mut().zip(w.chunks_exact(n)) {
        let mut v = _mm256_setzero_si256();
        let mut k = 0;
        while k < body {
            // SAFETY: k + 16 <= body <= n = row.len() = x.len(): both 16-byte loads are in bounds.
            let (xb, wb) = unsafe {
                (
                    _mm_loadu_si128(x.as_ptr().add(k) as *const __m128i),
                    _mm_loadu_si128(row.as_ptr().add(k) as *const __m128i),
                )
            };
            v = _mm256_add_epi32(v, _mm256_madd_epi16(_mm256_cvtepi8_epi16(xb), _mm256_cvtepi8_epi16(wb)));
            k += 16;
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` is 32 bytes, the size of one __m256i.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, v) };
        let mut s = lanes.iter().fold(0i32, |a, &l| a.wrapping_add(l));
        for (&p, &q) in row[body..].iter().zip(&x[body..]) {
            s = s.wrapping_add(p as i32 * q as i32);
        }
        *a = s;
    }
}

pub(crate) fn dots_portable(w: &[i8], x: &[i8], acc: &mut [i32]) {
    let n = x.len().max(1);
    for (a, row) in acc.iter_mut().zip(w.chunks_exact(n)) {
        *a = row.iter().zip(x).fold(0i32, |s, (&p, &q)| s.wrapping_add(p as i32 * q as i32));
    }
}

/// `C[m×n] = A[m×k] · B[k×n]` with the given strides (row, column), C dense row-major.
#[allow(clippy::too_many_arguments, unsafe_code)]
pub(crate) fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    c: &mut [f32],
) -> Option<()> {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        if rows == 0 || cols == 0 {
            Some(0)
        } else {
            (rows - 1).checked_mul(rs)?.checked_add((cols - 1).checked_mul(cs)?)?.checked_add(1)
        }
    };
    if last(m, k, rsa, csa)? > a.len() || last(k, n, rsb, csb)? > b.len() || m.checked_mul(n)? > c.len() {
        return None;
    }
    if m == 0 || n == 0 {
        return Some(());
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return Some(());
    }
    let st = |v: usize| isize::try_from(v).ok();
    let (rsa, csa, rsb, csb, rsc) = (st(rsa)?, st(csa)?, st(rsb)?, st(csb)?, st(n)?);
    // SAFETY: every element the strides address is inside its slice (checked above), `c` is
    // written only at `i·n + j` for i < m, j < n, and the slices do not overlap (distinct borrows).
    unsafe {
        matrixmultiply::sgemm(m, k, n, 1.0, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, 0.0, c.as_mut_ptr(), rsc, 1);
    }
    Some(())
}
