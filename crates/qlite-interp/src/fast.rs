//! Fast integer kernels that give the reference kernels' bytes.
//!
//! Weights are packed once, when [`crate::Interpreter::kernels`] selects
//! [`crate::Kernels::Fast`]; an inference then runs `i8 × i8` dot products on the widest vector
//! unit the CPU has (AVX-512 VNNI `vpdpbusd`, AVX2 `vpmaddwd`, or portable code), chosen at run
//! time, followed by the reference kernel's own requantization. The zero-point terms are moved
//! out of the inner loop:
//!
//! `Σ (w + w_off)(x − z) = Σ w·x − z·Σ w + w_off·Σ x − n·w_off·z`
//!
//! All of it in wrapping i32 arithmetic, which is exact modulo 2³²: any regrouping of the sums
//! and products gives the reference kernel's (wrapped) accumulator bit for bit. Convolutions
//! gather each output pixel's input patch (im2col, padding taps filled with the input zero
//! point, so they contribute `(z − z)·w = 0` as the reference's skipped taps do) and reuse the
//! same dot products; depthwise convolutions vectorize across channels.

use crate::array::{Array, Data};
use crate::kernels::{OutQ, per_channel_multipliers, per_tensor};
use qlite_ir::op::{Conv2d, DepthwiseConv2d, FullyConnected};
use qlite_ir::{DType, Graph, Node, Op};
use std::sync::Arc;

/// A node's fast kernel, prepared when the interpreter is set up.
#[derive(Debug, Clone)]
pub enum Packed {
    Fc(PackedFc),
    Conv(PackedConv),
    Depthwise(PackedDepthwise),
    Mean(PackedMean),
    Softmax(PackedSoftmax),
    Pool(PackedPool),
    HybridFc(PackedHybridFc),
    Binary(PackedBinary),
    Pad(PackedPad),
    FloatConv(PackedFloatConv),
    FloatFc(PackedFloatFc),
    FloatDepthwise(PackedFloatDepthwise),
}

impl Packed {
    /// Prepare node `n` if a fast kernel covers it (int8 input, weights and output, constant
    /// weights and bias); `None` leaves it to the reference kernels.
    pub fn new(g: &Graph, n: &Node, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let w_f32 = n.input(1).and_then(|t| g.tensor(t)).is_some_and(|t| t.dtype == DType::F32);
        match &n.op {
            Op::FullyConnected(o) if w_f32 => return PackedFloatFc::new(g, n, o, consts).map(Packed::FloatFc),
            Op::Conv2d(o) if w_f32 => return PackedFloatConv::new(g, n, o, consts).map(Packed::FloatConv),
            Op::DepthwiseConv2d(o) if w_f32 => {
                return PackedFloatDepthwise::new(g, n, o, consts).map(Packed::FloatDepthwise);
            }
            Op::FullyConnected(o) if n.input(0).and_then(|t| g.tensor(t)).is_some_and(|t| t.dtype == DType::F32) => {
                return PackedHybridFc::new(g, n, o, consts).map(Packed::HybridFc);
            }
            Op::Mean(m) => return PackedMean::new(g, n, m).map(Packed::Mean),
            Op::Softmax(o) => return PackedSoftmax::new(g, n, o.beta).map(Packed::Softmax),
            Op::Pool2d(o) => return PackedPool::new(g, n, o).map(Packed::Pool),
            Op::Binary(b) => return PackedBinary::new(g, n, b).map(Packed::Binary),
            Op::Pad(_) => return PackedPad::new(g, n, consts).map(Packed::Pad),
            _ => {}
        }
        let common = Common::new(g, n, consts)?;
        match &n.op {
            Op::FullyConnected(o) => PackedFc::new(o, common).map(Packed::Fc),
            Op::Conv2d(o) => PackedConv::new(o, common).map(Packed::Conv),
            Op::DepthwiseConv2d(o) => PackedDepthwise::new(o, common).map(Packed::Depthwise),
            _ => None,
        }
    }

    /// Run on the node's first input (large convolutions split as `par` allows); `None` when
    /// the input is not what was packed for (the reference kernel then runs).
    pub fn run(&self, x: &Array, x2: Option<&Array>, par: Parallel) -> Option<Result<Array, String>> {
        let mut out = None;
        self.run_into(x, x2, &mut out, &mut Scratch::default(), par)?;
        out.map(Ok)
    }

    /// [`Packed::run`] writing into `out`, reusing its storage and `scratch`'s buffers: once
    /// they have grown to a model's sizes, a single-threaded run allocates nothing.
    pub fn run_into(
        &self,
        x: &Array,
        x2: Option<&Array>,
        out: &mut Option<Array>,
        scratch: &mut Scratch,
        par: Parallel,
    ) -> Option<()> {
        match (self, x.data()) {
            (Packed::HybridFc(p), Data::F32(xv)) => return p.run(x.shape(), xv, out, scratch),
            (Packed::FloatConv(p), Data::F32(xv)) => return p.run(x.shape(), xv, out, scratch),
            (Packed::FloatFc(p), Data::F32(xv)) => return p.run(x.shape(), xv, out),
            (Packed::FloatDepthwise(p), Data::F32(xv)) => return p.run(x.shape(), xv, out),
            (Packed::Pad(p), Data::F32(xv)) => return p.run_f32(x.shape(), xv, out),
            (Packed::Binary(p), Data::F32(_)) => return p.run(x, x2?, out),
            _ => {}
        }
        let Data::I8(xv) = x.data() else { return None };
        let xs = x.shape();
        match self {
            Packed::Fc(p) => p.run(xs, xv, out, scratch),
            Packed::Conv(p) => p.run(xs, xv, out, scratch, par),
            Packed::Depthwise(p) => p.run(xs, xv, out, scratch),
            Packed::Mean(p) => p.run(xs, xv, out, scratch),
            Packed::Softmax(p) => p.run(xs, xv, out),
            Packed::Pool(p) => p.run(xs, xv, out, scratch),
            Packed::Binary(p) => p.run(x, x2?, out),
            Packed::Pad(p) => p.run(xs, xv, out),
            Packed::HybridFc(_) | Packed::FloatConv(_) | Packed::FloatFc(_) | Packed::FloatDepthwise(_) => None,
        }
    }
}

/// How far a fast convolution may split its work: up to `threads` threads, each with at least
/// `min_macs` multiply-adds (a thread costs ~60 µs to start and join on the machine this was
/// tuned on, so only large layers gain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallel {
    pub threads: usize,
    pub min_macs: usize,
}

impl Default for Parallel {
    fn default() -> Self {
        Parallel { threads: 1, min_macs: 1 << 25 }
    }
}

/// Buffers the fast kernels reuse from one run to the next.
#[derive(Debug, Default)]
pub struct Scratch {
    xu: Vec<u8>,
    acc: Vec<i32>,
    taps: Vec<usize>,
    shape: Vec<usize>,
    tile: TileBufs,
    /// An explicitly padded input (int8).
    pad: Vec<i8>,
    /// An explicitly padded input (`x + 128`).
    pad_u8: Vec<u8>,
    /// A hybrid kernel's quantized input row.
    q: Vec<i8>,
    /// Depthwise input rows laid out for `vpdpbusd` ([`dw_vnni`]).
    dw_rows: Vec<Lane16>,
    /// The depthwise input widened to i32 less the zero point ([`dw_accumulate`]).
    xi: Vec<i32>,
    /// A float convolution's im2col rows.
    col_f32: Vec<f32>,
}

/// A convolution worker's buffers: gathered input rows, their offsets, accumulators.
#[derive(Debug, Default)]
struct TileBufs {
    col: Vec<u8>,
    offs: Vec<usize>,
    acc: Vec<i32>,
    /// A gathered int8 window ([`PackedConv::conv_rows`]).
    patch: Vec<i8>,
}

impl Scratch {
    /// Bytes held.
    pub fn capacity_bytes(&self) -> usize {
        self.xu.capacity()
            + self.pad.capacity()
            + self.pad_u8.capacity()
            + self.q.capacity()
            + self.tile.col.capacity()
            + self.dw_rows.capacity() * size_of::<Lane16>()
            + (self.acc.capacity() + self.tile.acc.capacity()) * 4
            + (self.tile.offs.capacity() + self.taps.capacity() + self.shape.capacity()) * size_of::<usize>()
    }
}

/// What every packed kernel needs from the node.
struct Common<'a> {
    z_in: i32,
    s_in: f32,
    out: OutQ,
    w: &'a [i8],
    w_shape: &'a [usize],
    wq: &'a qlite_ir::QuantParams,
    bias: Option<&'a [i32]>,
}

impl<'a> Common<'a> {
    fn new(g: &'a Graph, n: &Node, consts: &'a [Option<Arc<Array>>]) -> Option<Self> {
        let t = |i: usize| n.input(i).and_then(|t| g.tensor(t));
        let c = |i: usize| n.input(i).and_then(|t| consts.get(t.index())).and_then(|a| a.as_deref());
        let (x, w, out) = (t(0)?, t(1)?, n.outputs.first().and_then(|o| g.tensor(*o))?);
        if x.dtype != DType::I8 || w.dtype != DType::I8 || out.dtype != DType::I8 {
            return None;
        }
        let (s_in, z_in) = per_tensor(x.quant.as_ref(), "input").ok()?;
        let (s_out, zp) = per_tensor(out.quant.as_ref(), "output").ok()?;
        let wa = c(1)?;
        let Data::I8(wv) = wa.data() else { return None };
        let bias = match n.input(2) {
            Some(_) => match c(2)?.data() {
                Data::I32(b) => Some(b.as_slice()),
                _ => return None,
            },
            None => None,
        };
        Some(Common {
            z_in,
            s_in,
            out: OutQ { dtype: DType::I8, scale: s_out, zp },
            w: wv,
            w_shape: wa.shape(),
            wq: w.quant.as_ref()?,
            bias,
        })
    }
}

// ------------------------------------------------------------------ dot products

/// A `units × depth` int8 matrix packed for `acc[o] = Σ_d w[o][d] · x[d]`.
#[derive(Debug, Clone)]
struct Matrix {
    units: usize,
    depth: usize,
    /// Row-major, for the AVX2 and portable paths (empty when the VNNI pack is used).
    rows: Vec<i8>,
    /// Row sums.
    sum_w: Vec<i32>,
    vnni: Option<VnniPack>,
}

/// Weights for `vpdpbusd`: blocks of 16 output units, each group of 4 depth positions of a
/// block 16 × 4 bytes (unit-major), so one 64-byte load feeds 16 dot products. Blocks go in
/// bands of 4 (the last band may be narrower), and within a band the groups are interleaved
/// — depth group 0 of its blocks, then group 1, ... — so a kernel working on a band reads
/// one sequential stream. Padded with zero weights to whole blocks and groups.
#[derive(Debug)]
struct VnniPack {
    groups: usize,
    /// The packed weights start at `start`, a 64-byte boundary, so no load splits a cache line.
    buf: Vec<i8>,
    start: usize,
    len: usize,
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
    fn new(groups: usize, len: usize) -> Self {
        let buf = vec![0i8; len + 64];
        let start = buf.as_ptr().align_offset(64).min(64);
        VnniPack { groups, buf, start, len }
    }

    fn data(&self) -> &[i8] {
        &self.buf[self.start..self.start + self.len]
    }

    fn data_mut(&mut self) -> &mut [i8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    /// Where block `blk`'s depth group `j` starts, of `blocks` blocks of `groups` groups.
    fn offset(blocks: usize, groups: usize, blk: usize, j: usize) -> usize {
        let band = blk / 4 * 4;
        let width = (blocks - band).min(4);
        (band * groups + j * width + (blk - band)) * 64
    }
}

impl Matrix {
    fn new(w: &[i8], units: usize, depth: usize) -> Option<Self> {
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
    fn acc_len(&self) -> usize {
        self.units.div_ceil(16) * 16
    }

    /// `acc[o] = Σ_d w[o][d] · x[d]` (wrapping) for every unit; `x.len() == depth`. `acc` is
    /// sized here (to whole VNNI blocks); its first `units` entries are the results.
    fn dots(&self, x: &[i8], xu: &mut Vec<u8>, acc: &mut Vec<i32>) {
        self.dots_plus(x, xu, acc, None, 0);
    }

    /// [`Matrix::dots`] plus `add[o] + k` for every unit (wrapping), in the same pass.
    fn dots_plus(&self, x: &[i8], xu: &mut Vec<u8>, acc: &mut Vec<i32>, add: Option<&[i32]>, k: i32) {
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
fn flip_into(x: &[i8], dst: &mut Vec<u8>) {
    dst.clear();
    dst.extend(x.iter().map(|&v| v as u8));
    let mut chunks = dst.chunks_exact_mut(64);
    for c in &mut chunks {
        for b in c {
            *b ^= 0x80;
        }
    }
    for b in chunks.into_remainder() {
        *b ^= 0x80;
    }
}

/// `acc[o] = Σ_d (x[d] + 128) · w[o][d]` for every unit of the pack (wrapping), 64 products per
/// `vpdpbusd`. A band of up to 4 blocks (64 units) at a time, read as one stream: one
/// broadcast of x feeds the band's blocks, and 8 accumulator chains hide the instruction's
/// latency — 2 depth steps in flight for a band of 4 blocks, 4 for 2 blocks, 8 for 1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(unsafe_code)]
fn dots_vnni(p: &VnniPack, xu: &[u8], acc: &mut [i32]) {
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
unsafe fn dots_band<const W: usize, const U: usize>(w: *const i8, g: usize, xu: *const u8, out: *mut i32) {
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

/// Rows of inputs at once: `acc[r·stride + o] = init[o] + Σ_{d < 4g} xu[offs[r] + d] · w[o][d]`
/// for every row `r` of `offs` and every unit `o < units`, with `xu` holding `x + 128` as unsigned
/// bytes (VNNI's operand form). Tiles of 4 rows × 4 blocks of 16 units keep 16 accumulators
/// in registers: per 4 depth positions, 4 weight loads and 4 broadcasts feed 16 `vpdpbusd`.
/// Returns false (computing nothing) if a row or the accumulators would be out of bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(unsafe_code)]
fn gemm_vnni(
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
                match (nr, nb) {
                    (4, 4) => tile!(4, 4),
                    (4, 3) => tile!(4, 3),
                    (4, 2) => tile!(4, 2),
                    (4, _) => tile!(4, 1),
                    (3, 4) => tile!(3, 4),
                    (3, 3) => tile!(3, 3),
                    (3, 2) => tile!(3, 2),
                    (3, _) => tile!(3, 1),
                    (2, 4) => tile!(2, 4),
                    (2, 3) => tile!(2, 3),
                    (2, 2) => tile!(2, 2),
                    (2, _) => tile!(2, 1),
                    (_, 4) => tile!(1, 4),
                    (_, 3) => tile!(1, 3),
                    (_, 2) => tile!(1, 2),
                    (_, _) => tile!(1, 1),
                }
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
unsafe fn gemm_tile<const R: usize, const B: usize>(
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
        for r in 0..R {
            for b in 0..B {
                _mm512_mask_storeu_epi32(out[r].add(b * 16) as *mut _, masks[b], a[r][b]);
            }
        }
    }
}

/// `acc[o] = Σ_d w[o·n + d] · x[d]` (wrapping), AVX2 when the CPU has it.
fn dots(w: &[i8], x: &[i8], acc: &mut [i32]) {
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
fn dots_avx2(w: &[i8], x: &[i8], acc: &mut [i32]) {
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

fn dots_portable(w: &[i8], x: &[i8], acc: &mut [i32]) {
    let n = x.len().max(1);
    for (a, row) in acc.iter_mut().zip(w.chunks_exact(n)) {
        *a = row.iter().zip(x).fold(0i32, |s, (&p, &q)| s.wrapping_add(p as i32 * q as i32));
    }
}

// ------------------------------------------------------------------ requantization

/// FULLY_CONNECTED's reference requantization, `clamp(round(acc · scale) + zp)` with `round`
/// half away from zero in double, written so it vectorizes (`v − trunc(v)` is exact).
fn requantize_double(acc: &[i32], scales: &[f64], zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::current().has_avx512() {
        // SAFETY: the CPU has AVX-512 F, BW, DQ and VL, the only requirements.
        #[allow(unsafe_code)]
        unsafe {
            requantize_double_avx512(acc, scales, zp, lo, hi, out)
        };
        return;
    }
    requantize_double_portable(acc, scales, zp, lo, hi, out);
}

/// 8 at a time: `v = acc · scale` in double (exact product of an integer and the scale, as
/// the reference), round half away from zero as `sign(v)·floor(|v| + ½)` for |v| >= ½ (the
/// floor is exact: where the sum rounds it stays between the same integers; beyond 2^52 every
/// double is an integer) and 0 below, then the zero point and clamp in double (exact for
/// integers below 2^53, and the clamp decides beyond).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(unsafe_code)]
fn requantize_double_avx512(acc: &[i32], scales: &[f64], zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    use std::arch::x86_64::*;
    let n = acc.len().min(scales.len()).min(out.len());
    let (vzp, vlo, vhi) = (_mm512_set1_pd(zp as f64), _mm512_set1_pd(lo as f64), _mm512_set1_pd(hi as f64));
    let half = _mm512_set1_pd(0.5);
    let sign = _mm512_set1_epi64(i64::MIN);
    const FLOOR: i32 = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
    // 8 lanes (those `mask` selects from i) → 8 clamped i32.
    let eight = |i: usize, mask: u8| {
        // SAFETY: (in the loops below) the mask selects lanes inside `acc` and `scales`.
        unsafe {
            let a = _mm512_cvtepi32_pd(_mm256_maskz_loadu_epi32(mask, acc.as_ptr().add(i)));
            let v = _mm512_mul_pd(a, _mm512_maskz_loadu_pd(mask, scales.as_ptr().add(i)));
            let m = _mm512_abs_pd(v);
            let fl = _mm512_roundscale_pd::<FLOOR>(_mm512_add_pd(m, half));
            let r = _mm512_castsi512_pd(_mm512_ternarylogic_epi64::<0xF8>(
                _mm512_castpd_si512(fl),
                _mm512_castpd_si512(v),
                sign,
            ));
            // |v| < ½: 0 + zp.
            let c = _mm512_mask_add_pd(vzp, _mm512_cmp_pd_mask::<_CMP_GE_OQ>(m, half), r, vzp);
            _mm512_cvttpd_epi32(_mm512_min_pd(_mm512_max_pd(c, vlo), vhi))
        }
    };
    let mut i = 0;
    while i + 16 <= n {
        let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(eight(i, 0xFF)), eight(i + 8, 0xFF));
        // SAFETY: i + 16 <= n <= out.len().
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut _, _mm512_cvtepi32_epi8(q)) };
        i += 16;
    }
    while i < n {
        let k = (n - i).min(8);
        let mask = ((1u32 << k) - 1) as u8;
        // SAFETY: the mask selects lanes i..i + k <= n, inside `out`.
        unsafe {
            _mm_mask_storeu_epi8(out.as_mut_ptr().add(i) as *mut _, mask as u16, _mm256_cvtepi32_epi8(eight(i, mask)))
        };
        i += 8;
    }
}

#[inline(always)]
fn requantize_double_portable(acc: &[i32], scales: &[f64], zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    let (zp, lo, hi) = (zp as f64, lo as f64, hi as f64);
    for ((o, &a), &s) in out.iter_mut().zip(acc).zip(scales) {
        let v = a as f64 * s;
        let t = v.trunc();
        let r = if (v - t).abs() >= 0.5 { t + 1f64.copysign(v) } else { t };
        // Integers below 2^53 are exact in double: clamping `r + zp` there equals the
        // reference's saturating integer add and clamp.
        let c = (r + zp).clamp(lo, hi);
        // SAFETY: `scales` are finite (checked when packing) and `a` is an integer, so `c` is
        // a finite integer in [lo, hi] ⊂ [-128, 127]: representable in i32.
        #[allow(unsafe_code)]
        let q = unsafe { c.to_int_unchecked::<i32>() };
        *o = q as i8;
    }
}

/// 16 i32 lanes on a 64-byte boundary.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Lane16([i32; 16]);

/// i32 values stored from a 64-byte boundary (so a vector of 16 of them at a multiple of 16
/// never splits a cache line), zero-padded to a whole number of vectors; derefs to the
/// values (without the padding).
#[derive(Debug, Clone, Default)]
struct AlignedI32 {
    lanes: Vec<Lane16>,
    len: usize,
}

impl AlignedI32 {
    fn new(values: &[i32]) -> Self {
        let mut lanes = vec![Lane16::default(); values.len().div_ceil(16)];
        for (l, chunk) in lanes.iter_mut().zip(values.chunks(16)) {
            l.0[..chunk.len()].copy_from_slice(chunk);
        }
        AlignedI32 { lanes, len: values.len() }
    }
}

impl FromIterator<i32> for AlignedI32 {
    fn from_iter<I: IntoIterator<Item = i32>>(iter: I) -> Self {
        AlignedI32::new(&iter.into_iter().collect::<Vec<_>>())
    }
}

impl std::ops::Deref for AlignedI32 {
    type Target = [i32];
    #[allow(unsafe_code)]
    fn deref(&self) -> &[i32] {
        // `Lane16` is `repr(C)` around `[i32; 16]`, 64 bytes with no padding: the lanes are
        // 16·lanes.len() >= len consecutive, initialized i32 values.
        let flat: &[[i32; 16]] =
            // SAFETY: as above, `[Lane16]` and `[[i32; 16]]` have the same layout per element,
            // and the pointer is at least as aligned as `[i32; 16]` needs.
            unsafe { std::slice::from_raw_parts(self.lanes.as_ptr() as *const [i32; 16], self.lanes.len()) };
        &flat.as_flattened()[..self.len]
    }
}

/// Per-channel `MultiplyByQuantizedMultiplier` parameters in the form the vector loops want.
#[derive(Debug, Clone)]
struct Multipliers {
    m: AlignedI32,
    /// `2^max(shift, 0)`.
    left: AlignedI32,
    /// `max(−shift, 0)`, at most 31.
    right: AlignedI32,
    /// The multiplier of the next channel at even positions (what `vpmuldq` reads for the
    /// odd lanes), 0 at odd ones.
    m_odd: AlignedI32,
    /// `2^right − 1` and half of it: RoundingDivideByPOT's remainder mask and threshold.
    mask: AlignedI32,
    half: AlignedI32,
    /// Some channel shifts left (otherwise the multiply by `left` is skipped).
    any_left: bool,
    /// Some multiplier is `i32::MIN` (the only one SaturatingRoundingDoublingHighMul can
    /// saturate with; quantized multipliers are positive, so in practice never).
    any_min: bool,
    /// The short form (see [`Multipliers::bounded`]): per block of 16 channels, the 64-bit
    /// rounding constants `2·(2^30 + 2^(right − 1)·2^31)` of its 8 even channels, then of its
    /// 8 odd ones (as i32 pairs), and what a negative accumulator subtracts (1, or 0 when
    /// `right` is 0).
    k64: AlignedI32,
    cnt: AlignedI32,
    /// `k64` and `cnt` are filled: the vector paths may use the short form.
    short: bool,
    /// The largest |accumulator + bias| the layer can produce, if known.
    bound: Option<i64>,
    /// The output zero point, added to every result.
    zp: i32,
}

impl Multipliers {
    fn new(mults: &[(i32, i32)]) -> Self {
        let m: Vec<i32> = mults.iter().map(|&(m, _)| m).collect();
        let right: Vec<i32> = mults.iter().map(|&(_, s)| (-s).clamp(0, 31)).collect();
        let mask: Vec<i32> = right.iter().map(|&e| ((1u32 << e) - 1) as i32).collect();
        Multipliers {
            left: mults.iter().map(|&(_, s)| 1i32.wrapping_shl(s.clamp(0, 31) as u32)).collect(),
            m_odd: (0..m.len()).map(|i| if i % 2 == 0 { m.get(i + 1).copied().unwrap_or(0) } else { 0 }).collect(),
            half: mask.iter().map(|&k| k >> 1).collect(),
            any_left: mults.iter().any(|&(_, s)| s > 0),
            any_min: m.contains(&i32::MIN),
            m: AlignedI32::new(&m),
            right: AlignedI32::new(&right),
            mask: AlignedI32::new(&mask),
            k64: AlignedI32::default(),
            cnt: AlignedI32::default(),
            short: false,
            bound: None,
            zp: 0,
        }
    }

    /// These multipliers for accumulators (bias included) of at most `bound` in magnitude,
    /// which lets the vector paths use a shorter exact form when it applies: every multiplier
    /// 0 or in [2^30, 2^31) (what QuantizeMultiplier produces), and `|x·2^left| + 2^(right−1)`
    /// far from overflowing i32. Then SaturatingRoundingDoublingHighMul's result `h` is
    /// negative exactly when x is (for x = −1 and m = 2^30, h = 0, and both forms below give
    /// 0 for right >= 1), and RoundingDivideByPOT(h, right) — round half away from zero — is
    /// `(h + 2^(right−1) − [x < 0]) >> right` (arithmetic; no sign term when right = 0),
    /// whose `2^(right−1)` folds into the 64-bit rounding constant: `floor((floor(P/2^31) +
    /// k)/2^e) = floor((P + k·2^31)/2^(31+e))` … applied as `(P + K) >> 31` then `>> right`.
    fn bounded(mut self, bound: i64) -> Self {
        self.bound = Some(bound);
        self.prepare_short();
        self
    }

    /// These multipliers with the output zero point `zp` added to their results (folded into
    /// the short form's constants; one add otherwise).
    fn with_zp(mut self, zp: i32) -> Self {
        self.zp = zp;
        self.prepare_short();
        self
    }

    /// The short form's constants, when it applies (see [`Multipliers::bounded`]); the zero
    /// point rides along: `(h + 2^(right−1) + zp·2^right − [x < 0]) >> right` is the
    /// rounded result plus zp.
    fn prepare_short(&mut self) {
        self.short = false;
        let Some(bound) = self.bound else { return };
        let n = self.m.len();
        let ms_ok = self.m.iter().all(|&m| m == 0 || m >= 1 << 30);
        let left_max = self.left.iter().map(|&l| l as i64).max().unwrap_or(1);
        let right_max = self.right.iter().copied().max().unwrap_or(0).clamp(0, 31);
        let x_max = bound.saturating_mul(left_max);
        let extra = (1i64 << right_max) * (1 + (self.zp as i64).abs()) + 2;
        let fits = x_max.saturating_add(extra) < 1i64 << 30;
        if !ms_ok || !fits || self.any_min || n == 0 {
            return;
        }
        let blocks = n.div_ceil(16);
        let mut k = vec![0i32; blocks * 32];
        let konst = |c: usize| -> i64 {
            let r = self.right.get(c).copied().unwrap_or(0) as i64;
            let rounding = if r > 0 { 1i64 << (r - 1) } else { 0 };
            // Doubled (see `scale16`).
            2 * ((1i64 << 30) + ((rounding + ((self.zp as i64) << r)) << 31))
        };
        for b in 0..blocks {
            for j in 0..8 {
                for (half, c) in [(0, b * 16 + 2 * j), (16, b * 16 + 2 * j + 1)] {
                    let v = konst(c);
                    k[b * 32 + half + 2 * j] = v as i32;
                    k[b * 32 + half + 2 * j + 1] = (v >> 32) as i32;
                }
            }
        }
        let cnt: Vec<i32> = self.right.iter().map(|&r| (r > 0) as i32).collect();
        (self.k64, self.cnt, self.short) = (AlignedI32::new(&k), AlignedI32::new(&cnt), true);
    }
}

/// The largest |Σ w·(x − z) + bias| of `channels` channels over any int8 input (|x − z| at most
/// 255): `w` holds the weights with the channel `channel_last` (depthwise) or first.
fn acc_bound(w: &[i8], bias: Option<&[i32]>, channels: usize, channel_last: bool) -> i64 {
    if channels == 0 {
        return 0;
    }
    let mut sums = vec![0i64; channels];
    let per = w.len() / channels;
    for (i, &v) in w.iter().enumerate() {
        let c = if channel_last { i % channels } else { (i / per.max(1)).min(channels - 1) };
        sums[c] += (v as i64).abs();
    }
    (0..channels)
        .map(|c| sums[c] * 255 + bias.and_then(|b| b.get(c)).map_or(0, |&b| (b as i64).abs()))
        .max()
        .unwrap_or(0)
}

/// 16 accumulators (bias included) `x` of channels `c..c + 16` →
/// `MultiplyByQuantizedMultiplier` with multipliers `q`, plus `q.zp` (before the clamp).
/// `short` (a constant) picks the short form of [`Multipliers::bounded`]; otherwise the
/// reference's SaturatingRoundingDoublingHighMul, `(p + nudge) / 2^31` truncated with `nudge =
/// 2^30` for `p >= 0` and `1 − 2^30` otherwise, which equals `floor((p + 2^30) / 2^31)` for
/// every `p` (for `p < 0`, truncation is `ceil`, and `ceil((p + 1 − 2^30) / 2^31)` is
/// `floor((p + 2^30) / 2^31)`): one add and one shift per 64-bit product; then
/// RoundingDivideByPOT.
///
/// A macro, so it is always inlined: as a `#[target_feature]` function LLVM inlined it into
/// some loops and not others, by build (measured: a call per vector cost up to 30 %).
///
/// Safety (the caller's): AVX-512 F/BW/DQ/VL enabled; `q`'s vectors hold the lanes `lanes`
/// selects at `c..`; `q.any_min` false; with `short`, `q.short` and `c` a multiple of 16.
#[cfg(target_arch = "x86_64")]
macro_rules! scale16 {
    ($short:expr, $x:expr, $q:expr, $c:expr, $lanes:expr) => {{
        let (x, q, c, lanes): (std::arch::x86_64::__m512i, &Multipliers, usize, u16) = ($x, $q, $c, $lanes);
        #[allow(unused_unsafe)]
        // SAFETY: the caller's contract above.
        let r = unsafe {
            let x = if q.any_left {
                _mm512_mullo_epi32(x, _mm512_maskz_loadu_epi32(lanes, q.left.as_ptr().add(c)))
            } else {
                x
            };
            let m = _mm512_maskz_loadu_epi32(lanes, q.m.as_ptr().add(c));
            let m_odd = _mm512_maskz_loadu_epi32(lanes, q.m_odd.as_ptr().add(c));
            let right = _mm512_maskz_loadu_epi32(lanes, q.right.as_ptr().add(c));
            if $short {
                // |x| < 2^30: 2x is exact, and the high half of 2x·m + 2K is (x·m + K) >> 31 —
                // no shifts (which only one port runs for 512-bit vectors), shuffles instead.
                let x2 = _mm512_add_epi32(x, x);
                let k = q.k64.as_ptr().add(2 * c);
                let (ke, ko) = (_mm512_loadu_si512(k as *const _), _mm512_loadu_si512(k.add(16) as *const _));
                let even = _mm512_add_epi64(_mm512_mul_epi32(x2, m), ke);
                let odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_shuffle_epi32::<0xF5>(x2), m_odd), ko);
                // The high halves in channel order: even channels from `even`, odd from `odd`.
                let pick = _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
                let h = _mm512_permutex2var_epi32(even, pick, odd);
                let negative = _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512());
                let sub = _mm512_maskz_loadu_epi32(lanes, q.cnt.as_ptr().add(c));
                _mm512_srav_epi32(_mm512_mask_sub_epi32(h, negative, h, sub), right)
            } else {
                let round = _mm512_set1_epi64(1 << 30);
                let even = _mm512_srai_epi64::<31>(_mm512_add_epi64(_mm512_mul_epi32(x, m), round));
                let odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64::<32>(x), m_odd), round);
                // Bits 31..62 of the odd products into the high halves: the odd lanes' results.
                let h = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64::<1>(odd));
                // RoundingDivideByPOT.
                let rem = _mm512_and_si512(h, _mm512_maskz_loadu_epi32(lanes, q.mask.as_ptr().add(c)));
                let half = _mm512_maskz_loadu_epi32(lanes, q.half.as_ptr().add(c));
                let threshold = _mm512_add_epi32(half, _mm512_srli_epi32::<31>(h));
                let shifted = _mm512_srav_epi32(h, right);
                let up = _mm512_cmpgt_epi32_mask(rem, threshold);
                let r = _mm512_mask_add_epi32(shifted, up, shifted, _mm512_set1_epi32(1));
                // The zero point (a wrapping add, as the reference's).
                _mm512_add_epi32(r, _mm512_set1_epi32(q.zp))
            }
        };
        r
    }};
}

/// [`scale16`], then `out`'s clamp: 16 int8 (an `__m128i`). Same contract.
#[cfg(target_arch = "x86_64")]
macro_rules! requant16 {
    ($short:expr, $out:expr, $x:expr, $q:expr, $c:expr, $lanes:expr) => {{
        let out: &OutVec = $out;
        let r = scale16!($short, $x, $q, $c, $lanes);
        #[allow(unused_unsafe)]
        // SAFETY: AVX-512 F enabled (the caller's contract).
        let v = unsafe { _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(r, out.lo), out.hi)) };
        v
    }};
}

/// A convolution's output stage: per-channel multipliers, output zero point and the clamp of
/// its fused activation.
#[derive(Debug, Clone)]
struct ChannelOut {
    mults: Multipliers,
    /// For fewer than 16 channels dividing 16: the multipliers repeated over 16 lanes.
    tiled: Option<Multipliers>,
    /// The output zero point (also in `mults.zp`: the vector paths add it there).
    zp: i32,
    lo: i32,
    hi: i32,
}

impl ChannelOut {
    fn new(c: &Common, activation: qlite_ir::op::Activation, channels: usize, channel_last: bool) -> Self {
        let (lo, hi) = c.out.range(activation);
        let mults = Multipliers::new(&per_channel_multipliers(c.s_in, c.wq, c.out.scale, channels))
            .with_zp(c.out.zp)
            .bounded(acc_bound(c.w, c.bias, channels, channel_last));
        ChannelOut { tiled: mults.tiled16(), mults, zp: c.out.zp, lo, hi }
    }

    /// Requantize pixels × channels accumulators (plus `bias`, unless the accumulators hold
    /// it already) into `out`: the reference's bias, `MultiplyByQuantizedMultiplier`, offset
    /// and clamp, branch-free so it vectorizes.
    fn apply(&self, acc: &[i32], bias: Option<&[i32]>, out: &mut [i8]) {
        #[cfg(target_arch = "x86_64")]
        if crate::isa::current().has_avx512() {
            // SAFETY: the CPU has AVX-512 F, BW, DQ and VL, the only requirements.
            #[allow(unsafe_code)]
            unsafe {
                requantize_fixed_avx512(acc, bias, self, out)
            };
            return;
        }
        requantize_fixed_portable(acc, bias, self, out);
    }
}

impl Multipliers {
    /// The vector paths can use these for `n` channels: every parameter vector holds `n`
    /// entries and no multiplier is `i32::MIN` (which the vector high-mul does not saturate).
    fn vector_ready(&self, n: usize) -> bool {
        [&self.m, &self.left, &self.right, &self.m_odd, &self.mask, &self.half].iter().all(|v| v.len() == n)
            && !self.any_min
    }

    /// For `n` < 16 channels with `n` dividing 16, the parameters repeated over 16 lanes (a
    /// vector then covers 16/n pixels).
    fn tiled16(&self) -> Option<Multipliers> {
        let n = self.m.len();
        if n == 0 || n >= 16 || !16usize.is_multiple_of(n) {
            return None;
        }
        let pairs: Vec<(i32, i32)> = (0..16)
            .map(|i| {
                let c = i % n;
                let shift = if self.left[c] != 1 { self.left[c].trailing_zeros() as i32 } else { -self.right[c] };
                (self.m[c], shift)
            })
            .collect();
        let mut q = Multipliers::new(&pairs);
        (q.bound, q.zp) = (self.bound, self.zp);
        q.prepare_short();
        Some(q)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(unsafe_code)]
fn requantize_fixed_avx512(acc: &[i32], bias: Option<&[i32]>, co: &ChannelOut, out: &mut [i8]) {
    let (q, n) = (&co.mults, co.mults.m.len());
    if n == 0 || !q.vector_ready(n) || bias.is_some_and(|b| b.len() != n) {
        requantize_fixed_portable(acc, bias, co, out);
        return;
    }
    // SAFETY: the CPU has what this function enables; the short form only when every set
    // of multipliers used has it.
    unsafe {
        if q.short && co.tiled.as_ref().is_none_or(|t| t.short) {
            requantize_fixed_avx512_as::<true>(acc, bias, co, out)
        } else {
            requantize_fixed_avx512_as::<false>(acc, bias, co, out)
        }
    }
}

/// [`requantize_fixed_avx512`] with the form of [`OutVec::scale`] chosen.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/DQ/VL; with `SHORT`, `co.mults.short` and (if present)
/// `co.tiled`'s `short` must be true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(unsafe_code)]
unsafe fn requantize_fixed_avx512_as<const SHORT: bool>(
    acc: &[i32],
    bias: Option<&[i32]>,
    co: &ChannelOut,
    out: &mut [i8],
) {
    use std::arch::x86_64::*;
    let (q, n) = (&co.mults, co.mults.m.len());
    if n == 0 || !q.vector_ready(n) || bias.is_some_and(|b| b.len() != n) {
        requantize_fixed_portable(acc, bias, co, out);
        return;
    }
    let pixels = (acc.len() / n).min(out.len() / n);
    let k = OutVec::new(co.lo, co.hi);
    if let Some(t) = co.tiled.as_ref().filter(|t| n < 16 && 16 % n == 0 && t.vector_ready(16)) {
        // Few channels: each vector covers 16/n pixels, the parameters tiled to match.
        let mut tb = [0i32; 16];
        if let Some(bias) = bias {
            for (i, b) in tb.iter_mut().enumerate() {
                *b = bias[i % n];
            }
        }
        let total = pixels * n;
        let mut i = 0;
        while i < total {
            let lanes = ((1u32 << (total - i).min(16)) - 1) as u16;
            // SAFETY: the lanes selected are i..min(i + 16, total) <= acc.len(), out.len(),
            // and lanes < 16 of the 16-entry tiled parameters and `tb`.
            unsafe {
                let x = _mm512_add_epi32(
                    _mm512_maskz_loadu_epi32(lanes, acc.as_ptr().add(i)),
                    _mm512_loadu_si512(tb.as_ptr() as *const _),
                );
                _mm_mask_storeu_epi8(out.as_mut_ptr().add(i) as *mut _, lanes, requant16!(SHORT, &k, x, t, 0, lanes));
            }
            i += 16;
        }
        return;
    }
    // The accumulators plus the bias of channels c.. (the lanes selected), if one is given.
    let bias = bias.map(|b| b.as_ptr());
    macro_rules! plus_bias {
        ($x:expr, $c:expr, $lanes:expr) => {
            match bias {
                // (In the callers' unsafe blocks: the bias holds n entries, the lanes selected
                // lie below n.)
                Some(b) => _mm512_add_epi32($x, _mm512_maskz_loadu_epi32($lanes, b.add($c))),
                None => $x,
            }
        };
    }
    if n.is_multiple_of(16) {
        // Whole vectors: 64 outputs (4 vectors, across pixels) per packed store.
        let total = pixels * n;
        let mut i = 0;
        // The channel of output i (i mod n), kept without dividing.
        let mut c = 0;
        let next = |c: &mut usize| {
            let now = *c;
            *c = if now + 16 < n { now + 16 } else { 0 };
            now
        };
        while i + 64 <= total {
            let cs = [next(&mut c), next(&mut c), next(&mut c), next(&mut c)];
            // SAFETY: i + 64 <= total <= acc.len(), out.len(); each vector's channels
            // cs[v] .. cs[v] + 16 lie inside the parameter slices (n a multiple of 16).
            // A plain loop: built with `array::from_fn` and a closure, `scale` was not inlined
            // (measured: the 48×48×32 pointwise convolution took 46 µs instead of 32).
            unsafe {
                let mut r = [_mm512_setzero_si512(); 4];
                for v in 0..4 {
                    let x = plus_bias!(_mm512_loadu_si512(acc.as_ptr().add(i + 16 * v) as *const _), cs[v], u16::MAX);
                    r[v] = scale16!(SHORT, x, q, cs[v], u16::MAX);
                }
                _mm512_storeu_si512(out.as_mut_ptr().add(i) as *mut _, k.finish4(r));
            }
            i += 64;
        }
        while i < total {
            let c = next(&mut c);
            // SAFETY: i + 16 <= total (both multiples of 16); c + 16 <= n.
            unsafe {
                let x = plus_bias!(_mm512_loadu_si512(acc.as_ptr().add(i) as *const _), c, u16::MAX);
                _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut _, requant16!(SHORT, &k, x, q, c, u16::MAX));
            }
            i += 16;
        }
        return;
    }
    for px in 0..pixels {
        for c in (0..n).step_by(16) {
            let lanes = ((1u32 << (n - c).min(16)) - 1) as u16;
            let i = px * n + c;
            // SAFETY (every masked load and store): the lanes selected are c..min(c + 16, n),
            // inside each parameter slice (length n), and i..i + (n − c) <= (px + 1)·n <=
            // acc.len(), out.len().
            unsafe {
                let x = plus_bias!(_mm512_maskz_loadu_epi32(lanes, acc.as_ptr().add(i)), c, lanes);
                let y = requant16!(SHORT, &k, x, q, c, lanes);
                _mm_mask_storeu_epi8(out.as_mut_ptr().add(i) as *mut _, lanes, y);
            }
        }
    }
}

/// The constants of a 16-lane requantization.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct OutVec {
    lo: std::arch::x86_64::__m512i,
    hi: std::arch::x86_64::__m512i,
    /// `lo` and `hi` as bytes.
    lo8: std::arch::x86_64::__m512i,
    hi8: std::arch::x86_64::__m512i,
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
impl OutVec {
    #[target_feature(enable = "avx512f")]
    fn new(lo: i32, hi: i32) -> Self {
        use std::arch::x86_64::*;
        let byte = |v: i32| _mm512_set1_epi8(v.clamp(-128, 127) as i8);
        OutVec { lo: _mm512_set1_epi32(lo), hi: _mm512_set1_epi32(hi), lo8: byte(lo), hi8: byte(hi) }
    }

    /// Four vectors of [`scale16`] results (zero point included) → 64 int8 in order: packed
    /// to i16 and i8 with saturation (which cannot
    /// change what the clamp to [lo, hi] ⊂ [−128, 127] makes of a value), clamped, and the
    /// 4-byte groups the packs interleave put back in order.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    #[inline]
    fn finish4(&self, r: [std::arch::x86_64::__m512i; 4]) -> std::arch::x86_64::__m512i {
        use std::arch::x86_64::*;
        let a = _mm512_packs_epi32(r[0], r[1]);
        let b = _mm512_packs_epi32(r[2], r[3]);
        let v = _mm512_packs_epi16(a, b);
        let v = _mm512_min_epi8(_mm512_max_epi8(v, self.lo8), self.hi8);
        // 128-bit lane L holds the 4-byte groups L of r0, r1, r2, r3: dword L·4 + k → k·4 + L.
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        _mm512_permutexvar_epi32(order, v)
    }
}

#[inline(always)]
fn requantize_fixed_portable(acc: &[i32], bias: Option<&[i32]>, co: &ChannelOut, out: &mut [i8]) {
    let n = co.mults.m.len();
    if n == 0 || bias.is_some_and(|b| b.len() != n) {
        return;
    }
    for (out, acc) in out.chunks_exact_mut(n).zip(acc.chunks_exact(n)) {
        requantize_pixel(acc, bias, &co.mults, co.zp, co.lo, co.hi, out);
    }
}

/// One pixel's channels (`acc`, `out` and the bias as long as `q`).
#[inline(always)]
fn requantize_pixel(acc: &[i32], bias: Option<&[i32]>, q: &Multipliers, zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
    let n = q.m.len();
    let (out, acc) = (&mut out[..n], &acc[..n]);
    let (ms, left, right) = (&q.m[..n], &q.left[..n], &q.right[..n]);
    for i in 0..n {
        let b = bias.map_or(0, |b| b[i]);
        let x = acc[i].wrapping_add(b).wrapping_mul(left[i]);
        let m = ms[i];
        // SaturatingRoundingDoublingHighMul: (x·m + nudge) / 2^31, rounding toward zero.
        let p = x as i64 * m as i64;
        let neg = p >> 63; // 0 or −1
        let t = p + (((1i64 << 30) ^ neg) - 2 * neg); // p ≥ 0: +2^30; p < 0: 1 − 2^30
        let hmul = ((t + (neg & ((1i64 << 31) - 1))) >> 31) as i32;
        let sat = (x == i32::MIN) & (m == i32::MIN);
        let hmul = if sat { i32::MAX } else { hmul };
        // RoundingDivideByPOT.
        let e = right[i];
        let mask = ((1i32 as u32).wrapping_shl(e as u32).wrapping_sub(1)) as i32;
        let rem = hmul & mask;
        let threshold = (mask >> 1) + ((hmul >> 31) & 1);
        let r = (hmul >> e) + (rem > threshold) as i32;
        out[i] = (r.wrapping_add(zp)).clamp(lo, hi) as i8;
    }
}

// ------------------------------------------------------------------ FULLY_CONNECTED

/// An int8 FULLY_CONNECTED with constant weights.
#[derive(Debug, Clone)]
pub struct PackedFc {
    m: Matrix,
    keep_num_dims: bool,
    /// `−z_in · Σ_d w[o][d] − depth · w_off · z_in + bias[o]`: all but `Σ w·x` and `w_off · Σ x`.
    row_const: Vec<i32>,
    w_off: i32,
    /// `s_in · s_w[o] / s_out` in double, as the reference computes it.
    scales: Vec<f64>,
    zp_out: i32,
    lo: i32,
    hi: i32,
}

impl PackedFc {
    fn new(op: &FullyConnected, c: Common) -> Option<Self> {
        let &[units, depth] = c.w_shape else { return None };
        let per_channel = c.wq.scales().len() != 1;
        if (per_channel && c.wq.scales().len() != units) || c.bias.is_some_and(|b| b.len() != units) {
            return None;
        }
        let m = Matrix::new(c.w, units, depth)?;
        let w_off = if per_channel { 0 } else { -(c.wq.zero_point() as i32) };
        let scales: Vec<f64> = (0..units)
            .map(|o| {
                let s_w = if per_channel { c.wq.scales()[o] } else { c.wq.scale() };
                c.s_in as f64 * s_w as f64 / c.out.scale as f64
            })
            .collect();
        if scales.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let n_w_off_z = (depth as i32).wrapping_mul(w_off).wrapping_mul(c.z_in);
        let row_const = (0..units)
            .map(|o| {
                c.z_in
                    .wrapping_neg()
                    .wrapping_mul(m.sum_w[o])
                    .wrapping_sub(n_w_off_z)
                    .wrapping_add(c.bias.map_or(0, |b| b[o]))
            })
            .collect();
        let (lo, hi) = c.out.range(op.activation);
        Some(PackedFc { m, keep_num_dims: op.keep_num_dims, row_const, w_off, scales, zp_out: c.out.zp, lo, hi })
    }

    fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>, s: &mut Scratch) -> Option<()> {
        let (units, depth) = (self.m.units, self.m.depth);
        if !xv.len().is_multiple_of(depth) {
            return None;
        }
        fc_out_shape(xs, xv.len() / depth, units, self.keep_num_dims, &mut s.shape)?;
        let y = Array::reuse_i8(out, &s.shape)?;
        for (xr, yr) in xv.chunks_exact(depth).zip(y.chunks_exact_mut(units.max(1))) {
            // Symmetric weights (always, per channel) have no `w_off · Σ x` term.
            let x_term = match self.w_off {
                0 => 0,
                w_off => w_off.wrapping_mul(xr.iter().fold(0i32, |a, &v| a.wrapping_add(v as i32))),
            };
            self.m.dots_plus(xr, &mut s.xu, &mut s.acc, Some(&self.row_const), x_term);
            requantize_double(&s.acc[..units], &self.scales, self.zp_out, self.lo, self.hi, yr);
        }
        Some(())
    }
}

/// A FULLY_CONNECTED's output shape into `shape`: the input's with the last dimension
/// replaced (keep_num_dims), else `[batches, units]`.
fn fc_out_shape(xs: &[usize], batches: usize, units: usize, keep: bool, shape: &mut Vec<usize>) -> Option<()> {
    shape.clear();
    if keep {
        shape.extend_from_slice(xs);
        *shape.last_mut()? = units;
    } else {
        shape.extend_from_slice(&[batches, units]);
    }
    Some(())
}

// ------------------------------------------------------------------ hybrid FULLY_CONNECTED

/// A hybrid (dynamic-range) FULLY_CONNECTED: float input and output, constant symmetric int8
/// weights. Each input row is quantized as the reference does (symmetric, or asymmetric when
/// the op says so), multiplied on the int8 dot products, and scaled back with the reference's
/// float operations in the reference's order — so the floats are the same bits.
#[derive(Debug, Clone)]
pub struct PackedHybridFc {
    m: Matrix,
    keep_num_dims: bool,
    asymmetric: bool,
    /// Per output unit (per-channel weights), or one (per-tensor).
    w_scales: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: qlite_ir::op::Activation,
}

impl PackedHybridFc {
    fn new(g: &Graph, n: &Node, op: &FullyConnected, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let t = |i: usize| n.input(i).and_then(|t| g.tensor(t));
        let c = |i: usize| n.input(i).and_then(|t| consts.get(t.index())).and_then(|a| a.as_deref());
        let out = n.outputs.first().and_then(|o| g.tensor(*o))?;
        if t(0)?.dtype != DType::F32 || out.dtype != DType::F32 || t(1)?.dtype != DType::I8 {
            return None;
        }
        let wq = t(1)?.quant.as_ref()?;
        let wa = c(1)?;
        let (Data::I8(w), &[units, depth]) = (wa.data(), wa.shape()) else { return None };
        if wq.zero_points().iter().any(|&z| z != 0) || (wq.scales().len() != 1 && wq.scales().len() != units) {
            return None; // the reference kernel reports it
        }
        let bias = match n.input(2) {
            Some(_) => match c(2)?.data() {
                Data::F32(b) if b.len() == units => Some(b.clone()),
                _ => return None,
            },
            None => None,
        };
        Some(PackedHybridFc {
            m: Matrix::new(w, units, depth)?,
            keep_num_dims: op.keep_num_dims,
            asymmetric: op.asymmetric_inputs,
            w_scales: wq.scales().to_vec(),
            bias,
            activation: op.activation,
        })
    }

    fn run(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>, s: &mut Scratch) -> Option<()> {
        let (units, depth) = (self.m.units, self.m.depth);
        if !xv.len().is_multiple_of(depth) {
            return None;
        }
        fc_out_shape(xs, xv.len() / depth, units, self.keep_num_dims, &mut s.shape)?;
        let y = Array::reuse_f32(out, &s.shape)?;
        for yr in y.chunks_exact_mut(units.max(1)) {
            match &self.bias {
                Some(b) => yr.copy_from_slice(b),
                None => yr.fill(0.0),
            }
        }
        // The reference skips the products when the whole input is zero.
        if !xv.iter().all(|&v| v == 0.0) {
            let per_channel = self.w_scales.len() > 1;
            for (row, yr) in xv.chunks_exact(depth).zip(y.chunks_exact_mut(units.max(1))) {
                let (mut sf, zp) = if self.asymmetric {
                    crate::kernels::asymmetric_quantize_into(row, &mut s.q)
                } else {
                    (crate::kernels::symmetric_quantize_into(row, &mut s.q), 0)
                };
                if !per_channel {
                    sf *= self.w_scales[0];
                }
                self.m.dots(&s.q, &mut s.xu, &mut s.acc);
                for (o, (yo, &dot)) in yr.iter_mut().zip(s.acc.iter()).enumerate() {
                    let dot = if self.asymmetric { dot.wrapping_sub(self.m.sum_w[o].wrapping_mul(zp)) } else { dot };
                    let scale = if per_channel { sf * self.w_scales[o] } else { sf };
                    *yo += dot as f32 * scale;
                }
            }
        }
        use qlite_ir::op::Activation;
        match self.activation {
            Activation::None => {}
            Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
            a => y.iter_mut().for_each(|v| *v = a.apply(*v)),
        }
        Some(())
    }
}

// ------------------------------------------------------------------ CONV_2D

/// Output size and leading padding of one spatial axis, as the IR's shape inference has it.
fn axis(padding: qlite_ir::Padding, input: usize, k: usize, stride: usize, dilation: usize) -> Option<(usize, usize)> {
    padding.compute(input, k, stride, dilation)
}

/// An int8 CONV_2D (one group) with constant per-channel weights.
#[derive(Debug, Clone)]
pub struct PackedConv {
    op: Conv2d,
    m: Matrix,
    kh: usize,
    kw: usize,
    ic: usize,
    z_in: i32,
    /// `bias[o] − z_in · Σ w[o]`.
    row_const: Vec<i32>,
    /// `row_const[o] − 128 · Σ w[o]`: the bias of the VNNI path, whose products take `x + 128`.
    vnni_bias: AlignedI32,
    out: ChannelOut,
}

impl PackedConv {
    fn new(op: &Conv2d, c: Common) -> Option<Self> {
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

    fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>, s: &mut Scratch, par: Parallel) -> Option<()> {
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
        // Output rows are independent: large convolutions split them over threads (the
        // bytes are the same however they are split).
        let macs = y.len().saturating_mul(self.m.depth);
        let threads = par.threads.min(macs / par.min_macs.max(1)).clamp(1, rows.max(1));
        let per = rows.div_ceil(threads.max(1)).max(1);
        if let Some(p) = &self.m.vnni {
            // The VNNI path reads `x + 128` as unsigned bytes: converted once for the whole
            // input, with slack so a pointwise row may read its last group of 4 whole.
            flip_into(xv, &mut s.xu);
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
            let ok = if threads <= 1 {
                self.conv_rows_vnni(&g, p, xu, 0, y, &mut s.tile)
            } else {
                std::thread::scope(|sc| {
                    let handles: Vec<_> = y
                        .chunks_mut(per * row_len)
                        .enumerate()
                        .map(|(t, chunk)| {
                            let g = &g;
                            // A worker runs at the tier of the thread that started it.
                            let isa = crate::isa::current();
                            sc.spawn(move || {
                                crate::isa::with(isa, || {
                                    self.conv_rows_vnni(g, p, xu, t * per, chunk, &mut TileBufs::default())
                                })
                            })
                        })
                        .collect();
                    handles.into_iter().all(|h| h.join().unwrap_or(false))
                })
            };
            return ok.then_some(());
        }
        let mut accs = std::mem::take(&mut s.acc);
        accs.clear();
        accs.resize(y.len(), 0);
        if threads <= 1 {
            self.conv_rows(&g, xv, 0, &mut accs, &mut s.tile);
        } else {
            std::thread::scope(|sc| {
                for (t, chunk) in accs.chunks_mut(per * row_len).enumerate() {
                    let g = &g;
                    let isa = crate::isa::current();
                    sc.spawn(move || {
                        crate::isa::with(isa, || self.conv_rows(g, xv, t * per, chunk, &mut TileBufs::default()))
                    });
                }
            });
        }
        self.out.apply(&accs, Some(&self.row_const), y);
        s.acc = accs;
        Some(())
    }

    /// The output rows `first..` that `y` covers (whole rows of ow × oc), on the VNNI pack:
    /// pixels in batches, each batch's input rows (pointwise: read in place; otherwise
    /// gathered, padding taps holding the input zero point) multiplied by the weights in
    /// register tiles, then requantized while the batch's accumulators are in cache. `xu` is
    /// the whole input as `x + 128`. False if a row would fall outside the input (nothing is
    /// then trusted).
    #[cfg(target_arch = "x86_64")]
    fn conv_rows_vnni(
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
        let TileBufs { col, offs, acc, .. } = bufs;
        if !pointwise {
            col.resize(BATCH * k4 + 16, 0);
        }
        acc.resize(BATCH * oc, 0);
        // The output pixel (image, row, column) walked incrementally.
        let (mut b, mut oy, mut ox) = (first / oh, first % oh, 0usize);
        // The common case gets a lean gather: every window inside the (explicitly padded)
        // input, kernel rows contiguous (dilation 1 across) and at most 16 bytes, so each is
        // one 16-byte move. The largest offset read and written is checked once, up front.
        let row_offsets: [usize; 8] = std::array::from_fn(|ky| ky * op.dilation[0] * iw * ic);
        let lean = !pointwise
            && contiguous
            && row_bytes <= 16
            && kh <= 8
            && g.pad_h == 0
            && g.pad_w == 0
            && (oh - 1) * op.stride[0] + (kh - 1) * op.dilation[0] < ih
            && (ow - 1) * op.stride[1] + kw - 1 < iw
            && col.len() >= BATCH * k4 + 16
            && {
                let last_image = (first + pixels.div_ceil(ow)).div_ceil(oh).max(1) - 1;
                let last = last_image * ih * iw * ic
                    + ((oh - 1) * op.stride[0] * iw + (ow - 1) * op.stride[1]) * ic
                    + row_offsets[kh - 1];
                last + 16 <= xu.len()
            };
        for start in (0..pixels).step_by(BATCH) {
            let count = (pixels - start).min(BATCH);
            offs.clear();
            for i in 0..count {
                let img = b * ih * iw * ic;
                if lean {
                    let src = img + (oy * op.stride[0] * iw + ox * op.stride[1]) * ic;
                    for (ky, &off) in row_offsets.iter().enumerate().take(kh) {
                        // SAFETY: `lean` checked that the farthest row start plus 16 bytes is
                        // inside `xu` (offsets grow with the pixel and the row) and that `col`
                        // holds BATCH·k4 + 16 bytes, past i·k4 + (kh − 1)·row_bytes + 16.
                        #[allow(unsafe_code)]
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                xu.as_ptr().add(src + off),
                                col.as_mut_ptr().add(i * k4 + ky * row_bytes),
                                16,
                            );
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
            // SAFETY: a VNNI pack exists only when the tier (never above the host's) has AVX-512 F/BW/VNNI.
            #[allow(unsafe_code)]
            let ok = unsafe { gemm_vnni(p, oc, src, offs, acc, oc, &self.vnni_bias) };
            if !ok {
                return false;
            }
            self.out.apply(&acc[..count * oc], None, &mut y[start * oc..(start + count) * oc]);
        }
        true
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn conv_rows_vnni(&self, _: &ConvGeom, _: &VnniPack, _: &[u8], _: usize, _: &mut [i8], _: &mut TileBufs) -> bool {
        false
    }

    /// Accumulators of the output rows `first..` that `accs` covers (whole rows of ow × oc).
    fn conv_rows(&self, g: &ConvGeom, xv: &[i8], first: usize, accs: &mut [i32], bufs: &mut TileBufs) {
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
struct ConvGeom {
    n: usize,
    ih: usize,
    iw: usize,
    ic: usize,
    oh: usize,
    ow: usize,
    pad_h: usize,
    pad_w: usize,
}

impl ConvGeom {
    /// Copy the input into `out` with its padding made explicit — `fill` (the input zero
    /// point, in whatever form the kernel reads it) around each image, as far as the windows
    /// reach — and return the geometry of the padded input (no implicit padding left): every
    /// window then lies inside the image. `None` (out untouched) if every window already does.
    fn pad_into<T: Copy>(
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

// ------------------------------------------------------------------ DEPTHWISE_CONV_2D

/// An int8 DEPTHWISE_CONV_2D with constant per-channel weights.
#[derive(Debug, Clone)]
pub struct PackedDepthwise {
    op: DepthwiseConv2d,
    kh: usize,
    kw: usize,
    oc: usize,
    /// `[kh·kw][oc]` widened to i32 once.
    w: Vec<i32>,
    z_in: i32,
    bias: Vec<i32>,
    out: ChannelOut,
    /// The AVX-512 form (multiplier 1, CPU with AVX-512 F/BW/DQ/VL).
    wide: Option<Box<DwWide>>,
}

/// Depthwise parameters padded to whole vectors of 16 channels (zeros past `oc`).
#[derive(Debug, Clone)]
struct DwWide {
    /// Channels rounded up to a multiple of 16.
    ocp: usize,
    /// `[kh·kw][ocp]`.
    w: AlignedI32,
    bias: AlignedI32,
    /// `bias − z_in · Σ_taps w`: the bias of a pixel whose taps all lie inside the image,
    /// whose accumulator then needs no zero-point subtraction per tap.
    bias_inside: AlignedI32,
    mults: Multipliers,
    /// For `oc` < 16 channels dividing 16: weights `[kh·kw][16]`, `bias_inside` and the
    /// multipliers repeated over 16 lanes, so one vector covers 16/oc adjacent pixels.
    tiled: Option<(AlignedI32, AlignedI32, Multipliers)>,
    /// The `vpdpbusd` form (kernels at most 4 wide, CPU with AVX-512 VNNI and VBMI).
    vnni: Option<DwVnni>,
}

/// A depthwise kernel row as `vpdpbusd` operands: each channel's (up to 4) taps of one kernel
/// row are one i32 word of 4 bytes, multiplied with the 4 input bytes those taps read — which
/// [`dw_vnni`] lays out the same way, once per input row.
#[derive(Debug, Clone)]
struct DwVnni {
    /// `[kh][ocp]` words: bytes `w[ky][kx][c]` for kx < kw, zero after.
    w: AlignedI32,
    /// `bias − (z_in + 128) · Σ_taps w`: the inputs enter as `x + 128` (unsigned).
    bias: AlignedI32,
}

impl PackedDepthwise {
    fn new(op: &DepthwiseConv2d, c: Common) -> Option<Self> {
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
            let vnni = (kw <= 4 && crate::isa::current().has_vnni_vbmi()).then(|| {
                let mut words = vec![0i32; kh * ocp];
                for ky in 0..kh {
                    for o in 0..ocp {
                        let mut b = [0u8; 4];
                        for kx in 0..kw {
                            b[kx] = wp[(ky * kw + kx) * ocp + o] as i8 as u8;
                        }
                        words[ky * ocp + o] = i32::from_le_bytes(b);
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

    fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>, s: &mut Scratch) -> Option<()> {
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
        if let Some((wide, v)) = self.wide.as_ref().and_then(|w| Some((w, w.vnni.as_ref()?))).filter(|_| !tiled) {
            // SAFETY: a VNNI form exists only when the tier (never above the host's) has AVX-512
            // F/BW/DQ/VL, VNNI and VBMI; the short form only when the multipliers have it.
            #[allow(unsafe_code)]
            let done = unsafe {
                if wide.mults.short {
                    dw_vnni::<true>(self, wide, v, &dims, xv, y, &mut s.dw_rows)
                } else {
                    dw_vnni::<false>(self, wide, v, &dims, xv, y, &mut s.dw_rows)
                }
            };
            if done {
                return Some(());
            }
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
            // SAFETY: `wide` exists only when the tier (never above the host's) has AVX-512 F/BW/DQ/VL.
            #[allow(unsafe_code)]
            let done = unsafe { dw_avx512(self, wide, &geom, input, y, &mut s.taps) };
            s.pad = padded;
            if done {
                return Some(());
            }
        }
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
fn dw_avx512(p: &PackedDepthwise, k: &DwWide, d: &ConvGeom, xv: &[i8], y: &mut [i8], offsets: &mut Vec<usize>) -> bool {
    // SAFETY: the CPU has what this function enables; the short form only when every set of
    // multipliers used has it.
    unsafe {
        if k.mults.short && k.tiled.as_ref().is_none_or(|t| t.2.short) {
            dw_avx512_as::<true>(p, k, d, xv, y, offsets)
        } else {
            dw_avx512_as::<false>(p, k, d, xv, y, offsets)
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
unsafe fn dw_avx512_as<const SHORT: bool>(
    p: &PackedDepthwise,
    k: &DwWide,
    d: &ConvGeom,
    xv: &[i8],
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
        && y.len() == d.n * d.oh * d.ow * oc
        && k.w.len() == taps * ocp
        && k.bias.len() == ocp
        && k.bias_inside.len() == ocp
        && k.mults.vector_ready(ocp);
    if !sizes_ok {
        return false;
    }
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
        for b in 0..d.n {
            for oy in 0..d.oh {
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
        for b in 0..d.n {
            for oy in 0..d.oh {
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
    for b in 0..d.n {
        for oy in 0..d.oh {
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

/// Most slots of input rows [`dw_vnni`] keeps laid out (the rows one output row reads).
const DW_SLOTS: usize = 16;

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
#[allow(unsafe_code)]
unsafe fn dw_vnni<const SHORT: bool>(
    p: &PackedDepthwise,
    k: &DwWide,
    v: &DwVnni,
    d: &ConvGeom,
    xv: &[i8],
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
    let ok = kh > 0
        && (1..=4).contains(&kw)
        && ic == oc
        && oc > 0
        && ocp.is_multiple_of(16)
        && ocp >= oc
        && slots <= DW_SLOTS
        && sh > 0
        && sw > 0
        && xv.len() == d.n * ih * iw * ic
        && y.len() == d.n * oh * ow * oc
        && v.w.len() == kh * ocp
        && v.bias.len() == ocp
        && k.mults.vector_ready(ocp);
    if !ok {
        return false;
    }
    if y.is_empty() {
        return true;
    }
    let row_vecs = ow * blocks;
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
    let tap_mask: u64 = if kw == 4 { u64::MAX } else { (1u64 << (16 * kw)) - 1 };
    // Rows of the padded image the windows reach (the slots' tags count them per image).
    let reach = (oh.max(1) - 1) * sh + (kh - 1) * dh + 1;
    let mut tags = [usize::MAX; DW_SLOTS];
    let mut o = 0usize;
    let base = rows.as_mut_ptr();
    for b in 0..d.n {
        for oy in 0..oh {
            let mut src = [std::ptr::null::<Lane16>(); DW_SLOTS];
            for (ky, src) in src.iter_mut().enumerate().take(kh) {
                let r = oy * sh + ky * dh;
                let slot = r % slots;
                let tag = b * reach + r;
                // SAFETY: slot < slots, so the slot's row_vecs vectors lie inside `rows`.
                let dst = unsafe { base.add(slot * row_vecs) };
                *src = dst;
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
                // Output columns whose taps all lie inside the row: lo..hi.
                let lo = d.pad_w.div_ceil(sw).min(ow);
                let last = (iw + d.pad_w).checked_sub(1 + (kw - 1) * dw).map_or(0, |v| v / sw + 1);
                let hi = last.clamp(lo, ow);
                let lay = DwLay { xv, row, iw, ic, oc, kw, dw, blocks, z, order, flip };
                for ox in (0..lo).chain(hi..ow) {
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
                            match kw {
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
            // SAFETY: every src[ky] (ky < kh) is a slot of row_vecs = ow·blocks vectors, the
            // weights hold kh·ocp words, the bias and multipliers ocp; `o` is where this row's
            // outputs go — ow·oc of them, inside `y`.
            o = unsafe {
                match kh {
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
struct DwLay<'a> {
    xv: &'a [i8],
    /// Where the input row starts in `xv`.
    row: usize,
    iw: usize,
    ic: usize,
    oc: usize,
    kw: usize,
    dw: usize,
    blocks: usize,
    /// The input zero point in every byte.
    z: std::arch::x86_64::__m512i,
    /// The interleaving `vpermb` index, and the sign bits.
    order: std::arch::x86_64::__m512i,
    flip: std::arch::x86_64::__m512i,
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
    unsafe fn column(&self, x0: isize, dst: *mut Lane16) {
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
    unsafe fn inside<const KW: usize>(&self, first: usize, step: usize, n: usize, dst: *mut Lane16) {
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
    unsafe fn inside_contiguous(&self, first: usize, step: usize, n: usize, mask: u64, dst: *mut Lane16) {
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
struct DwRow<'a> {
    src: &'a [*const Lane16; DW_SLOTS],
    w: &'a AlignedI32,
    bias: &'a AlignedI32,
    mults: &'a Multipliers,
    out: &'a OutVec,
    oc: usize,
    ocp: usize,
    blocks: usize,
    ow: usize,
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
    unsafe fn run<const KH: usize, const SHORT: bool>(&self, y: &mut [i8], mut o: usize) -> usize {
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
unsafe fn dw_taps<O: AsRef<[usize]>>(
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
fn dw_accumulate_avx2(p: &PackedDepthwise, d: &ConvGeom, xv: &[i8], accs: &mut [i32], xi: &mut Vec<i32>) {
    dw_accumulate(p, d, xv, accs, xi);
}

/// The raw depthwise accumulators of every output pixel (`accs` is pixels × channels):
/// `Σ_taps w[tap][o] · (x[c(o)] − z)` over the taps inside the image, channels innermost so
/// the multiply-adds vectorize.
#[inline(always)]
fn dw_accumulate(p: &PackedDepthwise, d: &ConvGeom, xv: &[i8], accs: &mut [i32], xi: &mut Vec<i32>) {
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

// ------------------------------------------------------------------ MEAN

/// An int8 MEAN over the spatial axes of an NHWC tensor (global average pooling): per image,
/// channel sums over the pixels (i32 lanes), then the reference's QuantizedMeanOrSum output.
#[derive(Debug, Clone)]
pub struct PackedMean {
    keep_dims: bool,
    s_in: f32,
    z_in: i32,
    out: OutQ,
}

impl PackedMean {
    fn new(g: &Graph, n: &Node, op: &qlite_ir::op::Mean) -> Option<Self> {
        let x = n.input(0).and_then(|t| g.tensor(t))?;
        let out = n.outputs.first().and_then(|o| g.tensor(*o))?;
        let mut axes = op.axes.clone();
        axes.sort_unstable();
        if x.dtype != DType::I8 || out.dtype != DType::I8 || x.shape.rank() != 4 || axes != [1, 2] {
            return None;
        }
        let (s_in, z_in) = per_tensor(x.quant.as_ref(), "input").ok()?;
        let (scale, zp) = per_tensor(out.quant.as_ref(), "output").ok()?;
        Some(PackedMean { keep_dims: op.keep_dims, s_in, z_in, out: OutQ { dtype: DType::I8, scale, zp } })
    }

    fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>, s: &mut Scratch) -> Option<()> {
        let &[n, h, w, c] = xs else { return None };
        let pixels = h.checked_mul(w)?;
        if n.checked_mul(pixels)?.checked_mul(c)? != xv.len() || pixels == 0 || c == 0 {
            return None;
        }
        let count = pixels as i64;
        let mult = crate::kernels::mean_multiplier(count, self.s_in, self.out.scale);
        let (lo, hi) = self.out.range(qlite_ir::op::Activation::None);
        let y = if self.keep_dims { Array::reuse_i8(out, &[n, 1, 1, c])? } else { Array::reuse_i8(out, &[n, c])? };
        let sums = &mut s.acc;
        sums.resize(c, 0);
        for (img, yb) in xv.chunks_exact(pixels * c).zip(y.chunks_exact_mut(c)) {
            sums.fill(0);
            for px in img.chunks_exact(c) {
                for (s, &v) in sums.iter_mut().zip(px) {
                    *s = s.wrapping_add(v as i32);
                }
            }
            for (o, &s) in yb.iter_mut().zip(sums.iter()) {
                *o = crate::kernels::mean_output(s, self.z_in, count, mult, self.out.zp, lo, hi) as i8;
            }
        }
        Some(())
    }
}

// ------------------------------------------------------------------ SOFTMAX

/// An int8 SOFTMAX (output quantized 1/256, −128) with its exponentials tabulated: an int8
/// input's difference from its row maximum is one of 256 values, so the reference kernel's
/// fixed-point `exp` of each (and the term it adds to the sum) is computed once, when the
/// model is loaded; a run does the reference's sum, reciprocal and output arithmetic.
#[derive(Debug, Clone)]
pub struct PackedSoftmax {
    /// Indexed by `max − x` (0..=255): the Q0.31 exponential, or `None` below diff_min.
    exp: Vec<Option<i32>>,
    /// The same, rescaled to the sum's format (`SaturatingMultiplyByPOT(e, −12)`).
    term: Vec<i32>,
}

impl PackedSoftmax {
    const SCALED_DIFF_INTEGER_BITS: i32 = 5;
    const ACCUM_INTEGER_BITS: i32 = 12;

    fn new(g: &Graph, n: &Node, beta: f32) -> Option<Self> {
        use crate::fixedpoint::*;
        let x = n.input(0).and_then(|t| g.tensor(t))?;
        let out = n.outputs.first().and_then(|o| g.tensor(*o))?;
        if x.dtype != DType::I8 || out.dtype != DType::I8 {
            return None;
        }
        let (s_in, _) = per_tensor(x.quant.as_ref(), "input").ok()?;
        let (s_out, z_out) = per_tensor(out.quant.as_ref(), "output").ok()?;
        if z_out != -128 || (s_out - 1.0 / 256.0).abs() > 0.001 / 256.0 {
            return None; // the reference kernel reports it
        }
        // The reference's multiplier and cut-off (kernels::softmax_with).
        let bits = Self::SCALED_DIFF_INTEGER_BITS;
        let real = (beta as f64 * s_in as f64 * (1i64 << (31 - bits)) as f64).min((1i64 << 31) as f64 - 1.0);
        let (mult, left_shift) = quantize_multiplier(real);
        let max_input_rescaled =
            ((1i64 << bits) - 1) as f64 * (1i64 << (31 - bits)) as f64 / (1i64 << left_shift.clamp(0, 62)) as f64;
        let diff_min = -(max_input_rescaled.floor() as i32);
        let exp: Vec<Option<i32>> = (0..256)
            .map(|d: i32| {
                let diff = -d;
                (diff >= diff_min).then(|| exp_on_negative_values(mbqm_greater_than_one(diff, mult, left_shift), bits))
            })
            .collect();
        let term = exp.iter().map(|e| e.map_or(0, |e| sat_mul_pot(e, -Self::ACCUM_INTEGER_BITS))).collect();
        Some(PackedSoftmax { exp, term })
    }

    fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>) -> Option<()> {
        use crate::fixedpoint::*;
        let depth = *xs.last()?;
        let y = Array::reuse_i8(out, xs)?;
        if depth == 0 || y.len() != xv.len() || self.exp.len() != 256 || self.term.len() != 256 {
            return None;
        }
        for (row, yrow) in xv.chunks_exact(depth).zip(y.chunks_exact_mut(depth)) {
            let max = row.iter().copied().max().unwrap_or(0);
            let sum = row.iter().fold(0i32, |s, &v| s.wrapping_add(self.term[(max as i32 - v as i32) as usize]));
            let (recip, num_bits_over_unit) = get_reciprocal(sum, Self::ACCUM_INTEGER_BITS);
            let exponent = (num_bits_over_unit + 31 - 8).clamp(0, 31);
            for (o, &v) in yrow.iter_mut().zip(row) {
                *o = match self.exp[(max as i32 - v as i32) as usize] {
                    Some(e) => (rdbpot(srdhm(recip, e), exponent) - 128).clamp(-128, 127) as i8,
                    None => -128,
                };
            }
        }
        Some(())
    }
}

// ------------------------------------------------------------------ pools

/// An int8 MAX_POOL_2D / AVERAGE_POOL_2D (NHWC; input and output quantized alike): each
/// output pixel reduces its window's pixels channel-wise (vectorizable), then the
/// reference's clamp (max) or rounded division by the number of taps inside the image
/// (average).
#[derive(Debug, Clone)]
pub struct PackedPool {
    op: qlite_ir::op::Pool2d,
    lo: i32,
    hi: i32,
}

impl PackedPool {
    fn new(g: &Graph, n: &Node, op: &qlite_ir::op::Pool2d) -> Option<Self> {
        let x = n.input(0).and_then(|t| g.tensor(t))?;
        let out = n.outputs.first().and_then(|o| g.tensor(*o))?;
        if x.dtype != DType::I8 || out.dtype != DType::I8 || x.shape.rank() != 4 {
            return None;
        }
        let q_in = per_tensor(x.quant.as_ref(), "input").ok()?;
        let (scale, zp) = per_tensor(out.quant.as_ref(), "output").ok()?;
        if q_in != (scale, zp) {
            return None; // the reference kernel reports it
        }
        let (lo, hi) = OutQ { dtype: DType::I8, scale, zp }.range(op.activation);
        Some(PackedPool { op: op.clone(), lo, hi })
    }

    fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>, s: &mut Scratch) -> Option<()> {
        let op = &self.op;
        let &[n, ih, iw, c] = xs else { return None };
        if n.checked_mul(ih)?.checked_mul(iw)?.checked_mul(c)? != xv.len() || c == 0 {
            return None;
        }
        let (oh, pad_h) = op.padding.compute(ih, op.filter[0], op.stride[0], 1)?;
        let (ow, pad_w) = op.padding.compute(iw, op.filter[1], op.stride[1], 1)?;
        let y = Array::reuse_i8(out, &[n, oh, ow, c])?;
        let max = op.kind == qlite_ir::op::PoolKind::Max;
        #[cfg(target_arch = "x86_64")]
        let max_avx512 = max && crate::isa::current().has_avx512();
        let acc = &mut s.acc;
        acc.resize(c, 0);
        let mut pixels = y.chunks_exact_mut(c);
        for b in 0..n {
            let img = &xv[b * ih * iw * c..(b + 1) * ih * iw * c];
            for oy in 0..oh {
                let y0 = (oy * op.stride[0]) as isize - pad_h as isize;
                let rows = y0.max(0) as usize..(y0 + op.filter[0] as isize).clamp(0, ih as isize) as usize;
                for ox in 0..ow {
                    let x0 = (ox * op.stride[1]) as isize - pad_w as isize;
                    let cols = x0.max(0) as usize..(x0 + op.filter[1] as isize).clamp(0, iw as isize) as usize;
                    let px = pixels.next()?;
                    #[cfg(target_arch = "x86_64")]
                    if max_avx512 {
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
                        px.fill(self.lo as i8);
                        for iy in rows.clone() {
                            for ix in cols.clone() {
                                let at = (iy * iw + ix) * c;
                                for (o, &v) in px.iter_mut().zip(&img[at..at + c]) {
                                    *o = (*o).max(v);
                                }
                            }
                        }
                        for o in px.iter_mut() {
                            *o = (*o).min(self.hi as i8);
                        }
                    } else {
                        acc.fill(0);
                        for iy in rows.clone() {
                            for ix in cols.clone() {
                                let at = (iy * iw + ix) * c;
                                for (a, &v) in acc.iter_mut().zip(&img[at..at + c]) {
                                    *a += v as i32;
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
                            *o = v.clamp(self.lo, self.hi) as i8;
                        }
                    }
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
fn max_pixel_avx512(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded xorshift64 stream for the randomized tests.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// Every dot-product path (VNNI when the CPU has it, AVX2, portable) against a plain sum:
    /// the tests otherwise only exercise the best path of the machine they run on.
    #[test]
    fn every_dot_product_path_gives_the_same_sums() {
        crate::isa::for_each_tier(|_| {
            let mut next = xorshift(0x853c49e6748fea9bu64);
            for _ in 0..200 {
                let units = 1 + (next() % 150) as usize;
                let depth = 1 + (next() % 300) as usize;
                let w: Vec<i8> = (0..units * depth).map(|_| next() as i8).collect();
                let x: Vec<i8> = (0..depth).map(|_| next() as i8).collect();
                let want: Vec<i32> =
                    w.chunks(depth).map(|r| r.iter().zip(&x).map(|(&a, &b)| a as i32 * b as i32).sum()).collect();
                let m = Matrix::new(&w, units, depth).unwrap();
                let (mut acc, mut xu) = (Vec::new(), Vec::new());
                m.dots(&x, &mut xu, &mut acc);
                assert_eq!(&acc[..units], &want[..], "best path, {units}x{depth}");
                let plain = Matrix { vnni: None, rows: w.clone(), ..m.clone() };
                plain.dots(&x, &mut xu, &mut acc);
                assert_eq!(&acc[..units], &want[..], "AVX2 / portable path, {units}x{depth}");
                let mut p = vec![0i32; units];
                dots_portable(&w, &x, &mut p);
                assert_eq!(p, want, "portable path, {units}x{depth}");
            }
        });
    }

    /// The convolutions' output stage with explicit parameters.
    fn requantize_fixed(acc: &[i32], bias: &[i32], q: &Multipliers, zp: i32, lo: i32, hi: i32, out: &mut [i8]) {
        let mults = q.clone().with_zp(zp);
        ChannelOut { tiled: mults.tiled16(), mults, zp, lo, hi }.apply(acc, Some(bias), out);
    }

    #[test]
    fn vectorized_fixed_point_requantization_matches_mbqm() {
        crate::isa::for_each_tier(|_| {
            let mut next = xorshift(0x2545f4914f6cdd1du64);
            let mut acc = vec![i32::MIN, i32::MAX, 0, -1, 1, i32::MIN];
            let mut mults =
                vec![(i32::MIN, 0), (i32::MAX, 5), (1 << 30, -31), (1 << 30, -1), (1 << 30, -1), (i32::MIN, 0)];
            for _ in 0..50000 {
                acc.push(next() as i32 >> (next() % 32));
                let m = (next() as i32).wrapping_abs().max(1 << 30);
                mults.push((m, (next() % 44) as i32 - 32));
            }
            let bias: Vec<i32> = (0..acc.len()).map(|i| if i % 3 == 0 { next() as i32 >> 10 } else { 0 }).collect();
            let q = Multipliers::new(&mults);
            let mut got = vec![0i8; acc.len()];
            requantize_fixed(&acc, &bias, &q, -5, -128, 127, &mut got);
            for i in 0..acc.len() {
                let (m, sh) = mults[i];
                let want = crate::fixedpoint::mbqm(acc[i].wrapping_add(bias[i]), m, sh)
                    .wrapping_add(-5)
                    .clamp(-128, 127) as i8;
                assert_eq!(got[i], want, "acc {} mult {m} shift {sh}", acc[i]);
            }
            // Many pixels (the vector path: whole and partial vectors of 16 channels; multipliers
            // without i32::MIN, which sends a tensor to the scalar path), activation clamps.
            for channels in [16usize, 32, 48, 1, 2, 4, 8, 5, 21, 100] {
                let pixels = 700;
                let accs: Vec<i32> =
                    (0..channels * pixels).map(|i| if i < 6 { acc[i] } else { acc[i % acc.len()] }).collect();
                let ch_mults = &mults[6..6 + channels];
                let ch_bias = &bias[..channels];
                let q = Multipliers::new(ch_mults);
                assert!(!q.any_min);
                let mut got = vec![0i8; accs.len()];
                requantize_fixed(&accs, ch_bias, &q, 7, -100, 90, &mut got);
                for (i, &a) in accs.iter().enumerate() {
                    let c = i % channels;
                    let (m, sh) = ch_mults[c];
                    let want = crate::fixedpoint::mbqm(a.wrapping_add(ch_bias[c]), m, sh)
                        .wrapping_add(7)
                        .clamp(-100, 90) as i8;
                    assert_eq!(got[i], want, "channels {channels} element {i}");
                }
            }
        });
    }

    /// The short form of `Multipliers::bounded` against the reference's
    /// MultiplyByQuantizedMultiplier: accumulators anywhere within the bound (and every small
    /// one, where the rounding ties are), multipliers at 2^30 (exact halves: ties everywhere),
    /// 0, the top of the range and between; right shifts 0 to 31, left shifts; bounds up to
    /// where the form must give way to the general one.
    #[test]
    fn short_requantization_matches_mbqm_within_its_bound() {
        crate::isa::for_each_tier(|_| {
            let mut next = xorshift(0x6a09e667f3bcc909u64);
            let mut short_used = 0;
            for round in 0..600usize {
                let channels = [16usize, 32, 48, 5, 21, 1, 2, 8][round % 8];
                let bound = 1i64 << (4 + next() % 27);
                let mults: Vec<(i32, i32)> = (0..channels)
                    .map(|_| {
                        let m = match next() % 8 {
                            0 => 1 << 30,
                            1 => 0,
                            2 => i32::MAX,
                            _ => (1 << 30) + (next() % (1 << 30)) as i32,
                        };
                        // Extreme shifts (which may rule the short form out) in a third of rounds.
                        let shift = match next() % 8 {
                            0 => 0,
                            1 if round % 3 == 0 => 1 + (next() % 3) as i32,
                            2 if round % 3 == 0 => -31,
                            _ => -((next() % 14) as i32 + 1),
                        };
                        (m, shift)
                    })
                    .collect();
                let q = Multipliers::new(&mults).bounded(bound);
                short_used += q.short as usize;
                let pixels = 40;
                let mut xs: Vec<i64> = (0..channels * pixels)
                    .map(|i| match i % 4 {
                        0 => (next() % 129) as i64 - 64,
                        1 => [-bound, bound, -1, 0, 1][(next() % 5) as usize],
                        _ => (next() % (2 * bound as u64 + 1)) as i64 - bound,
                    })
                    .collect();
                xs.truncate(channels * pixels);
                let bias: Vec<i32> = (0..channels).map(|_| (next() % 201) as i32 - 100).collect();
                let accs: Vec<i32> =
                    xs.iter().enumerate().map(|(i, &x)| (x - bias[i % channels] as i64) as i32).collect();
                let mut got = vec![0i8; accs.len()];
                requantize_fixed(&accs, &bias, &q, 3, -128, 127, &mut got);
                for (i, &a) in accs.iter().enumerate() {
                    let c = i % channels;
                    let (m, sh) = mults[c];
                    let want =
                        crate::fixedpoint::mbqm(a.wrapping_add(bias[c]), m, sh).wrapping_add(3).clamp(-128, 127) as i8;
                    assert_eq!(got[i], want, "round {round}: x {} bound {bound} mult {m} shift {sh}", xs[i]);
                }
            }
            assert!(short_used > 300, "the short form must be exercised ({short_used} of 600)");
        });
    }

    /// Near the top of the i32 range the reference's `+ zero point` wraps (the vector paths
    /// pack with saturation only after adding it, so they must wrap too).
    #[test]
    fn requantization_wraps_the_zero_point_add_like_the_reference() {
        crate::isa::for_each_tier(|_| {
            let channels = 16;
            let pixels = 9; // 144 outputs: two packed groups of 64 and one single vector
            let mults = vec![(i32::MAX, 0); channels];
            let q = Multipliers::new(&mults);
            let accs: Vec<i32> = (0..channels * pixels).map(|i| i32::MAX - (i as i32 % 5)).collect();
            let bias = vec![0; channels];
            let mut got = vec![0i8; accs.len()];
            requantize_fixed(&accs, &bias, &q, 100, -128, 127, &mut got);
            for (i, &a) in accs.iter().enumerate() {
                let want = crate::fixedpoint::mbqm(a, i32::MAX, 0).wrapping_add(100).clamp(-128, 127) as i8;
                assert_eq!(got[i], want, "acc {a}");
            }
            assert!(got.contains(&-128), "the wrapped sums clamp low");
        });
    }

    #[test]
    fn vectorizable_rounding_is_round_half_away_from_zero() {
        crate::isa::for_each_tier(|_| {
            let mut next = xorshift(0x9e3779b97f4a7c15u64);
            let mut accs = vec![0, 1, -1, 5, -5, 3, -3, i32::MAX, i32::MIN, 7, -7];
            let mut scales = vec![0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1e-9, 1e-9, 0.25, 0.25];
            for _ in 0..20000 {
                accs.push(next() as i32 >> (next() % 31));
                scales.push(f64::from_bits(0x3f00_0000_0000_0000 + (next() >> 12) % (1 << 53)));
            }
            let mut got = vec![0i8; accs.len()];
            requantize_double(&accs, &scales, 3, -128, 127, &mut got);
            for (i, (&a, &s)) in accs.iter().zip(&scales).enumerate() {
                let want = ((a as f64 * s).round() as i32).saturating_add(3).clamp(-128, 127) as i8;
                assert_eq!(got[i], want, "acc {a} scale {s}");
            }
        });
    }
}

/// int8 ADD, SUB and MUL of two same-shape tensors through one 256 × 256 table of the
/// reference kernel's results (`kernels::binary` on every pair of input values, fused activation
/// included): bit-exact by construction, one load per element.
#[derive(Debug, Clone)]
pub struct PackedBinary {
    /// int8: the 256 × 256 results; float32: empty.
    table: Vec<i8>,
    /// float32: the op, applied element by element as the reference kernel does.
    float: Option<qlite_ir::op::Binary>,
}

impl PackedBinary {
    fn new(g: &Graph, n: &Node, b: &qlite_ir::op::Binary) -> Option<Self> {
        use qlite_ir::op::BinaryKind;
        if !matches!(b.kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul) {
            return None;
        }
        let (a, c) = (g.tensor(n.input(0)?)?, g.tensor(n.input(1)?)?);
        let out = g.tensor(*n.outputs.first()?)?;
        if a.dtype == DType::F32 && c.dtype == DType::F32 && out.dtype == DType::F32 {
            return Some(PackedBinary { table: Vec::new(), float: Some(b.clone()) });
        }
        if a.dtype != DType::I8 || c.dtype != DType::I8 || out.dtype != DType::I8 || a.shape != c.shape {
            return None;
        }
        let q1 = per_tensor(a.quant.as_ref(), "input 0").ok()?;
        let q2 = per_tensor(c.quant.as_ref(), "input 1").ok()?;
        let (scale, zp) = per_tensor(out.quant.as_ref(), "output").ok()?;
        let xs: Vec<i32> = (-128..128).collect();
        let pairs: Vec<(usize, usize)> = (0..256).flat_map(|i| (0..256).map(move |j| (i, j))).collect();
        let oq = OutQ { dtype: DType::I8, scale, zp };
        let t = crate::kernels::binary(b.kind, &xs, &xs, &pairs, q1, q2, oq, b.activation).ok()?;
        Some(PackedBinary { table: t.into_iter().map(|v| v as i8).collect(), float: None })
    }

    fn run(&self, a: &Array, b: &Array, out: &mut Option<Array>) -> Option<()> {
        if a.shape() != b.shape() {
            return None;
        }
        if let (Some(op), Data::F32(av), Data::F32(bv)) = (&self.float, a.data(), b.data()) {
            use qlite_ir::op::BinaryKind as K;
            let f: fn(f32, f32) -> f32 = match op.kind {
                K::Add => |x, y| x + y,
                K::Sub => |x, y| x - y,
                K::Mul => |x, y| x * y,
                _ => return None,
            };
            let y = Array::reuse_f32(out, a.shape())?;
            let act = op.activation;
            for ((o, &p), &q) in y.iter_mut().zip(av).zip(bv) {
                *o = act.apply(f(p, q));
            }
            return Some(());
        }
        let (Data::I8(av), Data::I8(bv)) = (a.data(), b.data()) else { return None };
        let y = Array::reuse_i8(out, a.shape())?;
        let table = &self.table[..65536];
        for ((o, &p), &q) in y.iter_mut().zip(av).zip(bv) {
            *o = table[((p as u8 as usize) ^ 0x80) << 8 | ((q as u8 as usize) ^ 0x80)];
        }
        Some(())
    }
}

/// int8 PAD (and PADV2 with a constant value): whole rows of the innermost axis copied, the
/// rest filled with the value (the zero point for PAD), as the reference kernel fills it.
#[derive(Debug, Clone)]
pub struct PackedPad {
    paddings: Vec<[usize; 2]>,
    value: i8,
    /// float32 PAD (zeros) or PADV2 with a constant value.
    value_f32: Option<f32>,
}

impl PackedPad {
    fn new(g: &Graph, n: &Node, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let Op::Pad(p) = &n.op else { return None };
        let x = g.tensor(n.input(0)?)?;
        let out = g.tensor(*n.outputs.first()?)?;
        if p.paddings.len() != x.shape.rank() || p.paddings.is_empty() || x.dtype != out.dtype {
            return None;
        }
        if x.dtype == DType::F32 {
            let value = match n.input(1) {
                None => 0.0,
                Some(v) => match consts.get(v.index())?.as_deref()?.data() {
                    Data::F32(d) if d.len() == 1 => d[0],
                    _ => return None,
                },
            };
            return Some(PackedPad { paddings: p.paddings.clone(), value: 0, value_f32: Some(value) });
        }
        if x.dtype != DType::I8 {
            return None;
        }
        let value = match n.input(1) {
            None => i8::try_from(x.quant.as_ref().map_or(0, |q| q.zero_point())).ok()?,
            Some(v) => match consts.get(v.index())?.as_deref()?.data() {
                Data::I8(d) if d.len() == 1 => d[0],
                _ => return None,
            },
        };
        Some(PackedPad { paddings: p.paddings.clone(), value, value_f32: None })
    }

    fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>) -> Option<()> {
        if self.value_f32.is_some() {
            return None;
        }
        let os = self.out_shape(xs, xv.len())?;
        let y = Array::reuse_i8(out, &os)?;
        self.fill(xs, &os, xv, y, self.value)
    }

    fn run_f32(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>) -> Option<()> {
        let value = self.value_f32?;
        let os = self.out_shape(xs, xv.len())?;
        let y = Array::reuse_f32(out, &os)?;
        self.fill(xs, &os, xv, y, value)
    }

    fn out_shape(&self, xs: &[usize], len: usize) -> Option<Vec<usize>> {
        if xs.len() != self.paddings.len() || checked_len(xs)? != len {
            return None;
        }
        let os: Vec<usize> = xs
            .iter()
            .zip(&self.paddings)
            .map(|(&d, p)| d.checked_add(p[0])?.checked_add(p[1]))
            .collect::<Option<_>>()?;
        // Past the interpreter's limit the reference kernel reports it.
        (checked_len(&os)? <= MAX_FAST_ELEMENTS).then_some(os)
    }

    fn fill<T: Copy>(&self, xs: &[usize], os: &[usize], xv: &[T], y: &mut [T], value: T) -> Option<()> {
        let rank = xs.len();
        let (inner_in, inner_out) = (xs[rank - 1], os[rank - 1]);
        let [before, _] = self.paddings[rank - 1];
        if inner_out == 0 {
            return Some(());
        }
        let rows = y.len() / inner_out;
        let mut idx = vec![0usize; rank - 1];
        for r in 0..rows {
            let row = &mut y[r * inner_out..(r + 1) * inner_out];
            // The input row this output row reads, if every outer index is inside the input.
            let mut src = Some(0usize);
            for (a, &i) in idx.iter().enumerate() {
                let lo = self.paddings[a][0];
                src = match src {
                    Some(s) if i >= lo && i - lo < xs[a] => Some(s * xs[a] + (i - lo)),
                    _ => None,
                };
            }
            match src {
                Some(s) => {
                    row[..before].fill(value);
                    row[before..before + inner_in].copy_from_slice(&xv[s * inner_in..(s + 1) * inner_in]);
                    row[before + inner_in..].fill(value);
                }
                None => row.fill(value),
            }
            for a in (0..rank - 1).rev() {
                idx[a] += 1;
                if idx[a] < os[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        Some(())
    }
}

/// The most elements a fast kernel writes or stages (the interpreter's limit); past it the
/// reference kernel runs and reports the limit.
const MAX_FAST_ELEMENTS: usize = 1 << 31;

fn checked_len(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

// ---------------------------------------------------------------- float32

/// Float weights and bias of a conv / FC node (constant float32), if they are.
/// (weights, their shape, bias).
type FloatParams<'a> = (&'a [f32], Vec<usize>, Option<Vec<f32>>);

fn float_params<'a>(n: &Node, consts: &'a [Option<Arc<Array>>]) -> Option<FloatParams<'a>> {
    let c = |i: usize| n.input(i).and_then(|t| consts.get(t.index())).and_then(|a| a.as_deref());
    let wa = c(1)?;
    let Data::F32(w) = wa.data() else { return None };
    let bias = match n.input(2) {
        Some(_) => match c(2)?.data() {
            Data::F32(b) => Some(b.clone()),
            _ => return None,
        },
        None => None,
    };
    Some((w.as_slice(), wa.shape().to_vec(), bias))
}

/// `out[m, :] = act(out[m, :] + bias)`.
fn bias_act(out: &mut [f32], cols: usize, bias: Option<&[f32]>, act: qlite_ir::Activation) {
    if cols == 0 {
        return;
    }
    for row in out.chunks_exact_mut(cols) {
        match bias {
            Some(b) => {
                for (o, &bv) in row.iter_mut().zip(b) {
                    *o = act.apply(*o + bv);
                }
            }
            None => {
                for o in row.iter_mut() {
                    *o = act.apply(*o);
                }
            }
        }
    }
}

/// `C[m×n] = A[m×k] · B[k×n]` with the given strides (row, column), C dense row-major.
#[allow(clippy::too_many_arguments, unsafe_code)]
fn sgemm(
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

/// Float CONV_2D (one group) as im2col + SGEMM over the OHWI weights, then bias and
/// activation. Sums are in SGEMM's blocked order: within float rounding of the reference
/// kernel's sequential sums (the stated bound, `tests/it/random_ops.rs`).
#[derive(Debug, Clone)]
pub struct PackedFloatConv {
    op: qlite_ir::op::Conv2d,
    w: Vec<f32>,
    ws: Vec<usize>,
    bias: Option<Vec<f32>>,
}

impl PackedFloatConv {
    fn new(g: &Graph, n: &Node, op: &qlite_ir::op::Conv2d, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let x = g.tensor(n.input(0)?)?;
        let out = g.tensor(*n.outputs.first()?)?;
        if x.dtype != DType::F32 || out.dtype != DType::F32 {
            return None;
        }
        let (w, ws, bias) = float_params(n, consts)?;
        if ws.len() != 4 || x.shape.dim(3).and_then(|d| d.fixed()) != Some(ws[3]) {
            return None; // grouped convolutions stay on the reference kernel
        }
        Some(PackedFloatConv { op: op.clone(), w: w.to_vec(), ws, bias })
    }

    fn run(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>, s: &mut Scratch) -> Option<()> {
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
        for b in 0..n {
            let img = &xv[b * ih * iw * ic..(b + 1) * ih * iw * ic];
            let yb = &mut y[b * pixels * oc..(b + 1) * pixels * oc];
            if direct {
                sgemm(pixels, k, oc, img, (k, 1), &self.w, (1, k), yb)?;
            } else {
                let col = &mut s.col_f32;
                col.clear();
                col.resize(pixels.checked_mul(k)?, 0.0);
                for oy in 0..oh {
                    for ox in 0..ow {
                        let row = &mut col[(oy * ow + ox) * k..(oy * ow + ox + 1) * k];
                        for ky in 0..kh {
                            let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize - pad_h as isize;
                            for kx in 0..kw {
                                let dst = &mut row[(ky * kw + kx) * ic..(ky * kw + kx + 1) * ic];
                                let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize - pad_w as isize;
                                if iy < 0 || iy >= ih as isize || ix < 0 || ix >= iw as isize {
                                    dst.fill(0.0);
                                } else {
                                    let at = (iy as usize * iw + ix as usize) * ic;
                                    dst.copy_from_slice(&img[at..at + ic]);
                                }
                            }
                        }
                    }
                }
                sgemm(pixels, k, oc, col, (k, 1), &self.w, (1, k), yb)?;
            }
            bias_act(yb, oc, self.bias.as_deref(), op.activation);
        }
        Some(())
    }
}

/// Float FULLY_CONNECTED as one SGEMM over the [units, depth] weights.
#[derive(Debug, Clone)]
pub struct PackedFloatFc {
    activation: qlite_ir::Activation,
    keep_num_dims: bool,
    /// The interpreter's own constant ([units, depth] row-major is already the layout the
    /// GEMM reads): shared, not copied.
    w: Arc<Array>,
    units: usize,
    depth: usize,
    bias: Option<Vec<f32>>,
}

impl PackedFloatFc {
    fn new(g: &Graph, n: &Node, op: &FullyConnected, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let x = g.tensor(n.input(0)?)?;
        let out = g.tensor(*n.outputs.first()?)?;
        if x.dtype != DType::F32 || out.dtype != DType::F32 {
            return None;
        }
        let (_, ws, bias) = float_params(n, consts)?;
        let [units, depth] = ws[..] else { return None };
        Some(PackedFloatFc {
            activation: op.activation,
            keep_num_dims: op.keep_num_dims,
            w: Arc::clone(consts.get(n.input(1)?.index())?.as_ref()?),
            units,
            depth,
            bias,
        })
    }

    fn run(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>) -> Option<()> {
        let (units, depth) = (self.units, self.depth);
        if depth == 0 || !xv.len().is_multiple_of(depth) || (self.keep_num_dims && xs.last() != Some(&depth)) {
            return None;
        }
        let batches = xv.len() / depth;
        // The op's output shape: [batches, units], or the input's leading dims when kept.
        let mut os: Vec<usize> = if self.keep_num_dims { xs[..xs.len() - 1].to_vec() } else { vec![batches] };
        os.push(units);
        if checked_len(&os)? != batches.checked_mul(units)? || batches * units > MAX_FAST_ELEMENTS {
            return None;
        }
        let y = Array::reuse_f32(out, &os)?;
        let Data::F32(w) = self.w.data() else { return None };
        sgemm(batches, depth, units, xv, (depth, 1), w, (1, depth), y)?;
        bias_act(y, units, self.bias.as_deref(), self.activation);
        Some(())
    }
}

/// Float DEPTHWISE_CONV_2D with the channel loop innermost (it vectorizes), each output's
/// taps summed in the reference kernel's order: the same float sums.
#[derive(Debug, Clone)]
pub struct PackedFloatDepthwise {
    op: qlite_ir::op::DepthwiseConv2d,
    w: Vec<f32>,
    ws: Vec<usize>,
    bias: Option<Vec<f32>>,
}

impl PackedFloatDepthwise {
    fn new(g: &Graph, n: &Node, op: &DepthwiseConv2d, consts: &[Option<Arc<Array>>]) -> Option<Self> {
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

    fn run(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>) -> Option<()> {
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
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = &mut y[((b * oh + oy) * ow + ox) * c..((b * oh + oy) * ow + ox + 1) * c];
                    o.fill(0.0);
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
                            let at = ((b * ih + iy as usize) * iw + ix as usize) * c;
                            let xr = &xv[at..at + c];
                            let wr = &self.w[(ky * kw + kx) * c..(ky * kw + kx + 1) * c];
                            for ((acc, &xv), &wv) in o.iter_mut().zip(xr).zip(wr) {
                                *acc += xv * wv;
                            }
                        }
                    }
                }
            }
        }
        bias_act(y, c, self.bias.as_deref(), op.activation);
        Some(())
    }
}
