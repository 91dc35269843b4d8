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
        // The loads are written where the arithmetic uses them (see `scale16_core`).
        scale16_core!(
            $short,
            x,
            q,
            _mm512_maskz_loadu_epi32(lanes, q.left.as_ptr().add(c)),
            _mm512_maskz_loadu_epi32(lanes, q.left1.as_ptr().add(c)),
            _mm512_maskz_loadu_epi32(lanes, q.m.as_ptr().add(c)),
            _mm512_maskz_loadu_epi32(lanes, q.m_odd.as_ptr().add(c)),
            _mm512_maskz_loadu_epi32(lanes, q.right.as_ptr().add(c)),
            if $short {
                _mm512_loadu_si512(q.k64.as_ptr().add(2 * c) as *const _)
            } else {
                _mm512_maskz_loadu_epi32(lanes, q.mask.as_ptr().add(c))
            },
            if $short {
                _mm512_loadu_si512(q.k64.as_ptr().add(2 * c + 16) as *const _)
            } else {
                _mm512_maskz_loadu_epi32(lanes, q.half.as_ptr().add(c))
            },
            _mm512_maskz_loadu_epi32(lanes, q.cnt.as_ptr().add(c))
        )
    }};
}

/// [`scale16`] with its per-channel vectors loaded once by [`scale16_params`] (the same
/// `short`, multipliers `q`), for several pixels' accumulators of the same channels.
#[cfg(target_arch = "x86_64")]
macro_rules! scale16_with {
    ($short:expr, $x:expr, $p:expr, $q:expr) => {{
        let (x, p, q): (std::arch::x86_64::__m512i, &super::ScaleParams, &Multipliers) = ($x, $p, $q);
        scale16_core!($short, x, q, p.left, p.left, p.m, p.m_odd, p.right, p.a, p.b, p.c)
    }};
}

/// The arithmetic of [`scale16`] on accumulators `x`, the per-channel vectors given as
/// expressions, each evaluated where it is used (a load there, as `scale16` writes them; the
/// compiler folds it into the instruction): the left shifts' multipliers and the short
/// form's `left + 1` shift counts (read only if `q.any_left`), `m`, `m_odd`, the right shifts, then the short form's two 64-bit constant
/// vectors and negative-lane correction, or the long form's remainder mask and half (`c`
/// unused).
#[cfg(target_arch = "x86_64")]
macro_rules! scale16_core {
    (
        $short:expr,
        $x:expr,
        $q:expr,
        $left:expr,
        $left1:expr,
        $m:expr,
        $m_odd:expr,
        $right:expr,
        $a:expr,
        $b:expr,
        $c:expr
    ) => {{
        let (x, q): (std::arch::x86_64::__m512i, &Multipliers) = ($x, $q);
        #[allow(unused_unsafe)]
        // SAFETY: the caller's contract (see `scale16`).
        let r = unsafe {
            let m = $m;
            let m_odd = $m_odd;
            let right = $right;
            if $short {
                // |x·2^left| < 2^30: 2x·2^left is exact (one shift by left + 1; the sign is
                // x's), and the high half of 2x·m + 2K is (x·m + K) >> 31 — no 64-bit shifts
                // (which only one port runs for 512-bit vectors), shuffles instead. A shift,
                // not vpmulld: 21 µs of a 260 µs 1×1 convolution, 47 of a 220 µs depthwise.
                let x2 = if q.any_left { _mm512_sllv_epi32(x, $left1) } else { _mm512_add_epi32(x, x) };
                let (ke, ko) = ($a, $b);
                let even = _mm512_add_epi64(_mm512_mul_epi32(x2, m), ke);
                let odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_shuffle_epi32::<0xF5>(x2), m_odd), ko);
                // The high halves in channel order: even channels from `even`, odd from `odd`.
                let pick = _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
                let h = _mm512_permutex2var_epi32(even, pick, odd);
                let negative = _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512());
                let sub = $c;
                _mm512_srav_epi32(_mm512_mask_sub_epi32(h, negative, h, sub), right)
            } else {
                let x = if q.any_left { _mm512_mullo_epi32(x, $left) } else { x };
                let round = _mm512_set1_epi64(1 << 30);
                let even = _mm512_srai_epi64::<31>(_mm512_add_epi64(_mm512_mul_epi32(x, m), round));
                let odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64::<32>(x), m_odd), round);
                // Bits 31..62 of the odd products into the high halves: the odd lanes' results.
                let h = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64::<1>(odd));
                // RoundingDivideByPOT.
                let rem = _mm512_and_si512(h, $a);
                let half = $b;
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

/// The per-channel vectors of [`scale16`] for 16 channels, loaded once ([`scale16_params`])
/// for [`scale16_with`]: the fields are `scale16_core`'s arguments (`left` holds the short
/// form's `left + 1` shift counts, or the long form's multipliers).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct ScaleParams {
    left: std::arch::x86_64::__m512i,
    m: std::arch::x86_64::__m512i,
    m_odd: std::arch::x86_64::__m512i,
    right: std::arch::x86_64::__m512i,
    a: std::arch::x86_64::__m512i,
    b: std::arch::x86_64::__m512i,
    c: std::arch::x86_64::__m512i,
}

/// The [`ScaleParams`] of channels `c..c + 16` of multipliers `q` (the short form's vectors
/// if `short`, a constant). Same contract as [`scale16`] with all 16 lanes.
#[cfg(target_arch = "x86_64")]
macro_rules! scale16_params {
    ($short:expr, $q:expr, $c:expr) => {{
        let (q, c): (&Multipliers, usize) = ($q, $c);
        #[allow(unused_unsafe)]
        // SAFETY: the caller's contract (see `scale16`).
        let p = unsafe {
            let zero = _mm512_setzero_si512();
            super::ScaleParams {
                left: match (q.any_left, $short) {
                    (false, _) => zero,
                    (true, true) => _mm512_loadu_si512(q.left1.as_ptr().add(c) as *const _),
                    (true, false) => _mm512_loadu_si512(q.left.as_ptr().add(c) as *const _),
                },
                m: _mm512_loadu_si512(q.m.as_ptr().add(c) as *const _),
                m_odd: _mm512_loadu_si512(q.m_odd.as_ptr().add(c) as *const _),
                right: _mm512_loadu_si512(q.right.as_ptr().add(c) as *const _),
                a: if $short {
                    _mm512_loadu_si512(q.k64.as_ptr().add(2 * c) as *const _)
                } else {
                    _mm512_loadu_si512(q.mask.as_ptr().add(c) as *const _)
                },
                b: if $short {
                    _mm512_loadu_si512(q.k64.as_ptr().add(2 * c + 16) as *const _)
                } else {
                    _mm512_loadu_si512(q.half.as_ptr().add(c) as *const _)
                },
                c: if $short { _mm512_loadu_si512(q.cnt.as_ptr().add(c) as *const _) } else { zero },
            }
        };
        p
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

mod conv;
mod depthwise;
mod elementwise;
mod fc;
mod gemm;
mod gemm_f32;
mod int16;
mod movement;
mod pool;
mod requant;
mod softmax;

pub use conv::*;
pub use depthwise::*;
pub use elementwise::*;
pub use fc::*;
pub(crate) use gemm::*;
pub use int16::*;
pub use movement::*;
pub use pool::*;
pub(crate) use requant::*;
pub use softmax::*;

use crate::array::{Array, Data};
use crate::kernels::{OutQ, per_channel_multipliers, per_tensor};
use crate::threads::ThreadPool;
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
    Softmax16(PackedSoftmax16),
    Pool(PackedPool),
    HybridFc(PackedHybridFc),
    Binary(PackedBinary),
    Table(PackedTable),
    Logistic(PackedLogistic),
    Swish(PackedSwish),
    Pad(PackedPad),
    FloatConv(PackedFloatConv),
    FloatFc(PackedFloatFc),
    FloatDepthwise(PackedFloatDepthwise),
    Int16(PackedInt16),
}
impl Packed {
    /// Prepare node `n` if a fast kernel covers it (int8 input, weights and output, constant
    /// weights and bias); `None` leaves it to the reference kernels.
    pub fn new(g: &Graph, n: &Node, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let w_f32 = n.input(1).and_then(|t| g.tensor(t)).is_some_and(|t| t.dtype == DType::F32);
        let x_i16 = n.input(0).and_then(|t| g.tensor(t)).is_some_and(|t| t.dtype == DType::I16);
        if x_i16 && matches!(n.op, Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::FullyConnected(_)) {
            return PackedInt16::new(g, n, consts).map(Packed::Int16);
        }
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
            Op::Softmax(o) => {
                return PackedSoftmax::new(g, n, o.beta)
                    .map(Packed::Softmax)
                    .or_else(|| PackedSoftmax16::new(g, n, o.beta).map(Packed::Softmax16));
            }
            Op::Pool2d(o) => return PackedPool::new(g, n, o).map(Packed::Pool),
            Op::Binary(b) => return PackedBinary::new(g, n, b).map(Packed::Binary),
            Op::Unary(u) => return PackedLogistic::new(g, n, u).map(Packed::Logistic),
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
            (Packed::FloatConv(p), Data::F32(xv)) => return p.run(x.shape(), xv, out, scratch, par),
            (Packed::FloatFc(p), Data::F32(xv)) => return p.run(x.shape(), xv, out, par),
            (Packed::FloatDepthwise(p), Data::F32(xv)) => return p.run(x.shape(), xv, out, par),
            (Packed::Pad(p), Data::F32(xv)) => return p.run_f32(x.shape(), xv, out),
            (Packed::Pad(p), Data::I16(xv)) => return p.run_i16(x.shape(), xv, out),
            (Packed::Binary(p), Data::F32(_) | Data::I16(_)) => return p.run(x, x2?, out, par),
            (Packed::Pool(p), Data::F32(xv)) => return p.run_f32(x.shape(), xv, out),
            (Packed::Pool(p), Data::I16(xv)) => return p.run_i16(x.shape(), xv, out, scratch),
            (Packed::Softmax16(p), Data::I16(xv)) => return p.run(x.shape(), xv, out),
            (Packed::Mean(p), Data::F32(xv)) => return p.run_f32(x.shape(), xv, out),
            (Packed::Logistic(p), Data::F32(xv)) => return p.run(x.shape(), xv, out, par),
            (Packed::Swish(p), Data::F32(xv)) => return p.run(x.shape(), xv, out, par),
            (Packed::Int16(p), Data::I16(xv)) => return p.run(x.shape(), xv, out, scratch),
            _ => {}
        }
        let Data::I8(xv) = x.data() else { return None };
        let xs = x.shape();
        match self {
            Packed::Fc(p) => p.run(xs, xv, out, scratch),
            Packed::Conv(p) => p.run(xs, xv, out, scratch, par),
            Packed::Depthwise(p) => p.run(xs, xv, out, scratch, par),
            Packed::Mean(p) => p.run(xs, xv, out, scratch, par),
            Packed::Softmax(p) => p.run(xs, xv, out),
            Packed::Pool(p) => p.run(xs, xv, out, scratch),
            Packed::Binary(p) => p.run(x, x2?, out, par),
            Packed::Table(p) => p.run(xs, xv, out, par),
            Packed::Pad(p) => p.run(xs, xv, out),
            Packed::HybridFc(_)
            | Packed::FloatConv(_)
            | Packed::FloatFc(_)
            | Packed::FloatDepthwise(_)
            | Packed::Int16(_)
            | Packed::Softmax16(_)
            | Packed::Logistic(_)
            | Packed::Swish(_) => None,
        }
    }
}
/// How far a fast kernel may split its work: over the interpreter's [`ThreadPool`] (none: one
/// thread), each part at least `min_work` multiply-adds (or element operations), as a part
/// costs about a microsecond to hand over and some cache traffic. The output bytes do not
/// depend on how work is split.
#[derive(Debug, Clone, Copy)]
pub struct Parallel<'a> {
    pub(crate) pool: Option<&'a ThreadPool>,
    pub min_work: usize,
}
/// The least work a part of a split kernel gets by default (multiply-adds).
pub const DEFAULT_MIN_WORK: usize = 1 << 17;
impl Default for Parallel<'_> {
    fn default() -> Self {
        Parallel { pool: None, min_work: DEFAULT_MIN_WORK }
    }
}
impl Parallel<'_> {
    /// Threads a split kernel runs on.
    pub fn threads(&self) -> usize {
        self.pool.map_or(1, ThreadPool::threads)
    }

    /// How many parts `work` over `units` independent units splits into.
    pub(crate) fn parts(&self, work: usize, units: usize) -> usize {
        self.threads().min(work / self.min_work.max(1)).clamp(1, units.max(1))
    }

    /// Run `f(0..parts)` over the pool.
    pub(crate) fn run(&self, parts: usize, f: impl Fn(usize) + Sync) {
        match self.pool {
            Some(p) if parts > 1 => p.run(parts, &f),
            _ => (0..parts).for_each(f),
        }
    }

    /// Units per part and parts for `units` split into up to `parts` (at most `cap`).
    fn per_part(units: usize, parts: usize, cap: usize) -> (usize, usize) {
        let per = units.div_ceil(parts.clamp(1, cap.max(1))).max(1);
        (per, units.div_ceil(per))
    }

    /// Split `data` into up to `parts` runs of whole `unit`s (the last unit may be short) and
    /// call `f(part, first unit, run)` for each over the pool.
    pub(crate) fn chunks<T: Send>(
        &self,
        data: &mut [T],
        unit: usize,
        parts: usize,
        f: impl Fn(usize, usize, &mut [T]) + Sync,
    ) {
        let mut none: [(); 0] = [];
        self.split(data, unit, &mut [], 0, parts, &mut none, true, |i, first, run, _: &mut [u8], _| f(i, first, run));
    }

    /// [`Parallel::chunks`], each part with its own `states[part]` (`states` caps the parts).
    pub(crate) fn chunks_with<T: Send, S: Send>(
        &self,
        data: &mut [T],
        unit: usize,
        parts: usize,
        states: &mut [S],
        f: impl Fn(usize, usize, &mut [T], &mut S) + Sync,
    ) {
        self.split(data, unit, &mut [], 0, parts, states, false, |i, first, run, _: &mut [u8], s| {
            if let Some(s) = s {
                f(i, first, run, s)
            }
        });
    }

    /// [`Parallel::chunks`] over two slices split on the same units (`unit_a` and `unit_b`
    /// elements per unit; the units are `a`'s).
    pub(crate) fn chunks2<A: Send, B: Send>(
        &self,
        a: &mut [A],
        unit_a: usize,
        b: &mut [B],
        unit_b: usize,
        parts: usize,
        f: impl Fn(usize, usize, &mut [A], &mut [B]) + Sync,
    ) {
        let mut none: [(); 0] = [];
        self.split(a, unit_a, b, unit_b, parts, &mut none, true, |i, first, ra, rb, _| f(i, first, ra, rb));
    }

    #[allow(clippy::too_many_arguments)]
    fn split<A: Send, B: Send, S: Send>(
        &self,
        a: &mut [A],
        unit_a: usize,
        b: &mut [B],
        unit_b: usize,
        parts: usize,
        states: &mut [S],
        stateless: bool,
        f: impl Fn(usize, usize, &mut [A], &mut [B], Option<&mut S>) + Sync,
    ) {
        let unit_a = unit_a.max(1);
        // Units of `a` (the last may be short), which `b` must hold too (an empty `b` with
        // `unit_b` 0 is unused).
        let units = a.len().div_ceil(unit_a);
        if unit_b != 0 && b.len() / unit_b < a.len() / unit_a {
            return;
        }
        let cap = if stateless { parts } else { states.len() };
        let (per, parts) = Self::per_part(units, parts, cap);
        if parts <= 1 {
            let end = if unit_b == 0 { 0 } else { b.len().min(units * unit_b) };
            f(0, 0, a, &mut b[..end], states.first_mut());
            return;
        }
        let (la, lb) = (a.len(), b.len());
        let (pa, pb, ps) = (SyncPtr(a.as_mut_ptr()), SyncPtr(b.as_mut_ptr()), SyncPtr(states.as_mut_ptr()));
        self.run(parts, |i| {
            let first = i * per;
            let n = per.min(units - first);
            let (a0, b0) = (first * unit_a, (first * unit_b).min(lb));
            let (na, nb) = ((n * unit_a).min(la - a0), (n * unit_b).min(lb - b0));
            #[allow(unsafe_code)]
            // SAFETY: part `i` runs once and takes units `first..first + n`, disjoint from every
            // other part's, clipped to both slices' ends; `states[i]` is its own
            // (`i < parts <= states.len()` unless stateless). The borrows end before `split`
            // returns.
            let (ra, rb, s) = unsafe {
                (
                    std::slice::from_raw_parts_mut(pa.get().add(a0), na),
                    std::slice::from_raw_parts_mut(pb.get().add(b0), nb),
                    if stateless { None } else { Some(&mut *ps.get().add(i)) },
                )
            };
            f(i, first, ra, rb, s);
        });
    }
}

/// A pointer handed to the parts of a split kernel, each touching its own elements.
struct SyncPtr<T>(*mut T);
#[allow(unsafe_code)]
// SAFETY: the parts of one split reach disjoint elements through it (see `Parallel::chunks`).
unsafe impl<T: Send> Sync for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

/// Buffers the fast kernels reuse from one run to the next.
#[derive(Debug, Default)]
pub struct Scratch {
    xu: Vec<u8>,
    /// A 16x8 convolution's input patch.
    i16_row: Vec<i16>,
    acc: Vec<i32>,
    shape: Vec<usize>,
    /// The tile buffers of a split convolution's parts.
    tiles: Vec<TileBufs>,
    /// The buffers of a split int8 depthwise's parts.
    dw_parts: Vec<DwPart>,
    /// An explicitly padded input (int8).
    pad: Vec<i8>,
    /// An explicitly padded input (`x + 128`).
    pad_u8: Vec<u8>,
    /// A hybrid kernel's quantized input row.
    q: Vec<i8>,
    /// The depthwise input widened to i32 less the zero point ([`dw_accumulate`]).
    xi: Vec<i32>,
    /// A float convolution's im2col rows.
    col_f32: Vec<f32>,
}
/// A convolution worker's buffers: gathered input rows, their offsets, accumulators.
#[derive(Debug, Default)]
pub(crate) struct TileBufs {
    col: Vec<u8>,
    offs: Vec<usize>,
    acc: Vec<i32>,
    /// A gathered int8 window ([`PackedConv::conv_rows`]).
    patch: Vec<i8>,
}
impl TileBufs {
    fn capacity_bytes(&self) -> usize {
        self.col.capacity()
            + self.patch.capacity()
            + self.acc.capacity() * 4
            + self.offs.capacity() * size_of::<usize>()
    }
}
impl Scratch {
    /// Bytes held.
    pub fn capacity_bytes(&self) -> usize {
        self.xu.capacity()
            + self.pad.capacity()
            + self.pad_u8.capacity()
            + self.q.capacity()
            + self.tiles.iter().map(TileBufs::capacity_bytes).sum::<usize>()
            + self.dw_parts.iter().map(DwPart::capacity_bytes).sum::<usize>()
            + self.acc.capacity() * 4
            + self.shape.capacity() * size_of::<usize>()
    }
}
/// What every packed kernel needs from the node.
pub(crate) struct Common<'a> {
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
/// Output size and leading padding of one spatial axis, as the IR's shape inference has it.
fn axis(padding: qlite_ir::Padding, input: usize, k: usize, stride: usize, dilation: usize) -> Option<(usize, usize)> {
    padding.compute(input, k, stride, dilation)
}
/// The most elements a fast kernel writes or stages (the interpreter's limit); past it the
/// reference kernel runs and reports the limit.
const MAX_FAST_ELEMENTS: usize = 1 << 31;
fn checked_len(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}
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
    use qlite_ir::Activation as A;
    if cols == 0 {
        return;
    }
    // One loop per activation, so each vectorizes.
    fn each(out: &mut [f32], cols: usize, bias: Option<&[f32]>, f: impl Fn(f32) -> f32) {
        for row in out.chunks_exact_mut(cols) {
            match bias {
                Some(b) => row.iter_mut().zip(b).for_each(|(o, &bv)| *o = f(*o + bv)),
                None => row.iter_mut().for_each(|o| *o = f(*o)),
            }
        }
    }
    match act {
        A::None => each(out, cols, bias, |x| x),
        A::Relu => each(out, cols, bias, |x| x.max(0.0)),
        A::Relu6 => each(out, cols, bias, |x| x.clamp(0.0, 6.0)),
        A::ReluN1To1 => each(out, cols, bias, |x| x.clamp(-1.0, 1.0)),
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
        ChannelOut { tiled: mults.tiled16(), periodic: mults.periodic(), mults, zp, lo, hi }.apply(
            acc,
            Some(bias),
            out,
        );
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
