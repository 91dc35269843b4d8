//! Float GEMM with weights packed at load: `C = A · Wᵀ + bias`, then the fused activation.
//!
//! AVX-512 tier: the weights (`[n][k]`, one row per output channel, as OHWI convolution and
//! FULLY_CONNECTED weights are stored) are packed once into panels of 32 output channels, each
//! panel k-major (32 floats per k, zero past `n`). The microkernel keeps a 12 × 32 tile of C in
//! 24 registers and, for each k, loads the panel's two vectors once and broadcasts one value of
//! each of 12 rows of A, read in place (copying them k-major first, as GEMMs often do, was
//! slower here: the copy loop compiles to scatters); a block of up to 256 k of the 12 rows
//! stays in L1 while it meets every panel of a 512-channel block (in L2). Bias and activation are applied as the tile is stored the last
//! time, so the output is written once.
//!
//! Each output element is summed over k in order, one fused multiply-add per term: the
//! reference kernel's order, so the result is within the reference's own rounding (the fast
//! kernels' stated float bound). The AVX2 + FMA tier runs the same panels as two halves of 16
//! columns in a 6 × 16 register tile (no allocation per call at either); the portable tier
//! (ARM hosts) runs `matrixmultiply` on each panel.

use qlite_ir::Activation;

/// Output channels per panel (two AVX-512 vectors).
const NR: usize = 32;
/// Rows of A per microkernel call.
const MR: usize = 12;
/// Terms of k per block (A's rows in L1).
const KC: usize = 256;
/// Output channels per block (the block's panels in L2).
const NC: usize = 512;

/// Weights `[n][k]` packed for the AVX-512 kernel.
#[derive(Debug, Clone)]
pub(crate) struct PackedW {
    n: usize,
    k: usize,
    data: Vec<f32>,
}

/// Packed panels borrowed: `n` output channels (the panels' columns past `n` unused), `k` terms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PackedRef<'a> {
    n: usize,
    k: usize,
    data: &'a [f32],
}

impl PackedW {
    fn as_ref(&self) -> PackedRef<'_> {
        PackedRef { n: self.n, k: self.k, data: &self.data }
    }

    pub(crate) fn new(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if w.len() != n.checked_mul(k)? {
            return None;
        }
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels.checked_mul(k)?.checked_mul(NR)?];
        for (j, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
            let (p, lane) = (j / NR, j % NR);
            let panel = &mut data[p * k * NR..(p + 1) * k * NR];
            for (kk, &v) in row.iter().enumerate() {
                panel[kk * NR + lane] = v;
            }
        }
        Some(PackedW { n, k, data })
    }
}

/// `C[m×n] = act(A[m×k] · Wᵀ + bias)`; A row-major with rows `lda` apart, C dense. `None` if
/// the sizes do not fit the slices.
#[allow(unsafe_code)]
pub(crate) fn gemm_bias_act(
    m: usize,
    a: &[f32],
    lda: usize,
    w: &PackedW,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
) -> Option<()> {
    gemm_ref(m, a, lda, w.as_ref(), bias, act, c)
}

/// One row of A (`m` = 1: a fully connected layer on one sample) split over the pool by
/// panels of output channels; the same values as [`gemm_bias_act`].
pub(crate) fn gemv_split(
    a: &[f32],
    w: &PackedW,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
    par: super::Parallel,
) -> Option<()> {
    let (n, k) = (w.n, w.k);
    if c.len() < n || bias.is_some_and(|b| b.len() < n) {
        return None;
    }
    let panels = n.div_ceil(NR);
    let parts = par.parts(n.saturating_mul(k), panels);
    let ok = std::sync::atomic::AtomicBool::new(true);
    par.chunks(&mut c[..n], NR, parts, |_, p0, cp| {
        let p1 = p0 + cp.len().div_ceil(NR);
        let view = PackedRef { n: cp.len(), k, data: &w.data[p0 * k * NR..p1 * k * NR] };
        if gemm_ref(1, a, k, view, bias.map(|b| &b[p0 * NR..]), act, cp).is_none() {
            ok.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    });
    ok.into_inner().then_some(())
}

/// [`gemm_bias_act`] on packed weights borrowed (all of a layer's panels, or a run of them).
#[allow(unsafe_code)]
fn gemm_ref(
    m: usize,
    a: &[f32],
    lda: usize,
    w: PackedRef<'_>,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
) -> Option<()> {
    let (n, k) = (w.n, w.k);
    if w.data.len() < n.div_ceil(NR).checked_mul(k)?.checked_mul(NR)? {
        return None;
    }
    if m == 0 || n == 0 {
        return Some(());
    }
    if lda < k || (m - 1).checked_mul(lda)?.checked_add(k)? > a.len() || m.checked_mul(n)? > c.len() {
        return None;
    }
    if bias.is_some_and(|b| b.len() < n) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let isa = crate::isa::current();
        if isa.has_avx512() {
            // SAFETY: the tier says AVX-512F is available; the bounds were checked above.
            unsafe { avx512::gemm(m, a, lda, w, bias, act, c) };
            return Some(());
        }
        if isa.has_avx2() {
            // SAFETY: the tier says AVX2 and FMA are available; the bounds were checked above.
            unsafe { gemm_avx2(m, a, lda, w, bias, act, c) };
            return Some(());
        }
    }
    gemm_portable(m, a, lda, w, bias, act, c);
    Some(())
}

/// The AVX2 + FMA tier: the same panels, each taken as two halves of 16 columns, a 6 × 16 tile
/// of C in twelve registers, k in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code, clippy::too_many_arguments)]
fn gemm_avx2(m: usize, a: &[f32], lda: usize, w: PackedRef<'_>, bias: Option<&[f32]>, act: Activation, c: &mut [f32]) {
    use std::arch::x86_64::*;
    const R: usize = 6;
    let (n, k) = (w.n, w.k);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // Lanes below `v` of a 256-bit mask vector.
    let below = |v: usize| _mm256_cmpgt_epi32(_mm256_set1_epi32(v.min(8) as i32), lanes);
    for p in 0..n.div_ceil(NR) {
        for half in 0..2 {
            let col0 = p * NR + half * 16;
            if col0 >= n {
                break;
            }
            let nr = 16.min(n - col0);
            let (mk0, mk1) = (below(nr), below(nr.saturating_sub(8)));
            let wbase = unsafe { w.data.as_ptr().add(p * k * NR + half * 16) };
            let bias_v = bias.map(|b| unsafe {
                (
                    _mm256_maskload_ps(b.as_ptr().add(col0), mk0),
                    _mm256_maskload_ps(b.as_ptr().wrapping_add(col0 + 8), mk1),
                )
            });
            let mut m0 = 0;
            while m0 < m {
                let mr = R.min(m - m0);
                let mut lo = [_mm256_setzero_ps(); R];
                let mut hi = [_mm256_setzero_ps(); R];
                let ap = unsafe { a.as_ptr().add(m0 * lda) };
                for kk in 0..k {
                    // SAFETY: the panel holds k rows of 32; A's rows m0..m0+mr hold k values.
                    let (w0, w1) =
                        unsafe { (_mm256_loadu_ps(wbase.add(kk * NR)), _mm256_loadu_ps(wbase.add(kk * NR + 8))) };
                    for r in 0..mr {
                        let x = _mm256_set1_ps(unsafe { *ap.add(r * lda + kk) });
                        lo[r] = _mm256_fmadd_ps(x, w0, lo[r]);
                        hi[r] = _mm256_fmadd_ps(x, w1, hi[r]);
                    }
                }
                for r in 0..mr {
                    let (mut v0, mut v1) = (lo[r], hi[r]);
                    if let Some((b0, b1)) = bias_v {
                        v0 = _mm256_add_ps(v0, b0);
                        v1 = _mm256_add_ps(v1, b1);
                    }
                    let (v0, v1) = (activate_avx2(act, v0), activate_avx2(act, v1));
                    let row = unsafe { c.as_mut_ptr().add((m0 + r) * n + col0) };
                    unsafe {
                        _mm256_maskstore_ps(row, mk0, v0);
                        _mm256_maskstore_ps(row.wrapping_add(8), mk1, v1);
                    }
                }
                m0 += mr;
            }
        }
    }
}

/// The fused activation on 8 lanes, NaN kept as the reference keeps it (see the AVX-512 one).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn activate_avx2(act: Activation, v: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let clamp = |lo: f32, hi: f32| _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), v));
    match act {
        Activation::None => v,
        Activation::Relu => _mm256_max_ps(v, _mm256_setzero_ps()),
        Activation::Relu6 => clamp(0.0, 6.0),
        Activation::ReluN1To1 => clamp(-1.0, 1.0),
    }
}

/// The portable tier (no x86 vector tier; ARM hosts): `matrixmultiply` on each panel (its own
/// NEON / SSE kernels; it allocates its packing buffers per call), then the bias and activation.
#[allow(unsafe_code)]
fn gemm_portable(
    m: usize,
    a: &[f32],
    lda: usize,
    w: PackedRef<'_>,
    bias: Option<&[f32]>,
    act: Activation,
    c: &mut [f32],
) {
    let (n, k) = (w.n, w.k);
    for p in 0..n.div_ceil(NR) {
        let nr = NR.min(n - p * NR);
        let panel = &w.data[p * k * NR..(p + 1) * k * NR];
        // SAFETY: A is m rows of lda ≥ k values (checked by the caller), the panel k rows of
        // 32, and C's block is rows of n from column p·32, nr wide: all inside their slices.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                nr,
                1.0,
                a.as_ptr(),
                lda as isize,
                1,
                panel.as_ptr(),
                NR as isize,
                1,
                0.0,
                c.as_mut_ptr().add(p * NR),
                n as isize,
                1,
            );
        }
    }
    super::bias_act(&mut c[..m * n], n, bias, act);
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::too_many_arguments)]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemm(
        m: usize,
        a: &[f32],
        lda: usize,
        w: PackedRef<'_>,
        bias: Option<&[f32]>,
        act: Activation,
        c: &mut [f32],
    ) {
        let (n, k) = (w.n, w.k);
        let panels = n.div_ceil(NR);
        let (ap, wp, cp) = (a.as_ptr(), w.data.as_ptr(), c.as_mut_ptr());
        if k == 0 {
            // No terms: the bias alone.
            for i in 0..m {
                for j in 0..n {
                    c[i * n + j] = act.apply(bias.map_or(0.0, |b| b[j]));
                }
            }
            return;
        }
        // Blocks of equal length (576 = 288 + 288, not 256 + 256 + 64: a short last block
        // pays a whole reload of C for little work).
        let kb = k.div_ceil(k.div_ceil(KC));
        for kc0 in (0..k).step_by(kb) {
            let kc = kb.min(k - kc0);
            let (first, last) = (kc0 == 0, kc0 + kc == k);
            for p0 in (0..panels).step_by(NC / NR) {
                let p1 = (p0 + NC / NR).min(panels);
                let mut m0 = 0;
                while m0 < m {
                    let mr = MR.min(m - m0);
                    for p in p0..p1 {
                        let nr = NR.min(n - p * NR);
                        let t = Tile {
                            a: unsafe { ap.add(m0 * lda + kc0) },
                            lda,
                            w: unsafe { wp.add((p * k + kc0) * NR) },
                            c: unsafe { cp.add(m0 * n + p * NR) },
                            ldc: n,
                            kc,
                            nr,
                            first,
                            bias: if last { bias.map(|b| unsafe { b.as_ptr().add(p * NR) }) } else { None },
                            act: if last { Some(act) } else { None },
                        };
                        unsafe {
                            match mr {
                                12 => t.run::<12>(),
                                11 => t.run::<11>(),
                                10 => t.run::<10>(),
                                9 => t.run::<9>(),
                                8 => t.run::<8>(),
                                7 => t.run::<7>(),
                                6 => t.run::<6>(),
                                5 => t.run::<5>(),
                                4 => t.run::<4>(),
                                3 => t.run::<3>(),
                                2 => t.run::<2>(),
                                _ => t.run::<1>(),
                            }
                        }
                    }
                    m0 += mr;
                }
            }
        }
    }

    /// One microkernel call: `R` rows × one panel, `kc` terms.
    struct Tile {
        /// A's first row of the tile at the block's first k: element (r, kk) at `r · lda + kk`.
        a: *const f32,
        lda: usize,
        w: *const f32,
        c: *mut f32,
        ldc: usize,
        kc: usize,
        /// Valid columns of the panel (≤ 32). The second half's address is formed with
        /// `wrapping_add`: past the last column it may lie beyond C (or the bias), where the
        /// empty mask touches nothing.
        nr: usize,
        /// The first block of k: start from zero, not from C.
        first: bool,
        /// The last block of k: add the bias (if any) and apply the activation.
        bias: Option<*const f32>,
        act: Option<Activation>,
    }

    impl Tile {
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn run<const R: usize>(&self) {
            let m0: __mmask16 = if self.nr >= 16 { 0xffff } else { ((1u32 << self.nr) - 1) as u16 };
            let m1: __mmask16 = if self.nr >= 32 {
                0xffff
            } else if self.nr > 16 {
                ((1u32 << (self.nr - 16)) - 1) as u16
            } else {
                0
            };
            let mut lo = [_mm512_setzero_ps(); R];
            let mut hi = [_mm512_setzero_ps(); R];
            if !self.first {
                for r in 0..R {
                    let row = unsafe { self.c.add(r * self.ldc) };
                    lo[r] = unsafe { _mm512_maskz_loadu_ps(m0, row) };
                    hi[r] = unsafe { _mm512_maskz_loadu_ps(m1, row.wrapping_add(16)) };
                }
            }
            for kk in 0..self.kc {
                let w0 = unsafe { _mm512_loadu_ps(self.w.add(kk * NR)) };
                let w1 = unsafe { _mm512_loadu_ps(self.w.add(kk * NR + 16)) };
                for r in 0..R {
                    let x = _mm512_set1_ps(unsafe { *self.a.add(r * self.lda + kk) });
                    lo[r] = _mm512_fmadd_ps(x, w0, lo[r]);
                    hi[r] = _mm512_fmadd_ps(x, w1, hi[r]);
                }
            }
            if let Some(b) = self.bias {
                let b0 = unsafe { _mm512_maskz_loadu_ps(m0, b) };
                let b1 = unsafe { _mm512_maskz_loadu_ps(m1, b.wrapping_add(16)) };
                for r in 0..R {
                    lo[r] = _mm512_add_ps(lo[r], b0);
                    hi[r] = _mm512_add_ps(hi[r], b1);
                }
            }
            // One simple loop per activation (a match inside the loop kept the tile in memory:
            // 43 % of a K = 16 layer's time was spent outside the k loop), with the reference's
            // NaN behaviour: ReLU (`f32::max`) turns NaN into 0, the clamps (`f32::clamp`)
            // keep it (max_ps / min_ps return their second operand when either is NaN).
            let clamp = |lo_v: f32, hi_v: f32, v: __m512| {
                _mm512_min_ps(_mm512_set1_ps(hi_v), _mm512_max_ps(_mm512_set1_ps(lo_v), v))
            };
            match self.act {
                None | Some(Activation::None) => {}
                Some(Activation::Relu) => {
                    for r in 0..R {
                        lo[r] = _mm512_max_ps(lo[r], _mm512_setzero_ps());
                        hi[r] = _mm512_max_ps(hi[r], _mm512_setzero_ps());
                    }
                }
                Some(Activation::Relu6) => {
                    for r in 0..R {
                        lo[r] = clamp(0.0, 6.0, lo[r]);
                        hi[r] = clamp(0.0, 6.0, hi[r]);
                    }
                }
                Some(Activation::ReluN1To1) => {
                    for r in 0..R {
                        lo[r] = clamp(-1.0, 1.0, lo[r]);
                        hi[r] = clamp(-1.0, 1.0, hi[r]);
                    }
                }
            }
            for r in 0..R {
                let row = unsafe { self.c.add(r * self.ldc) };
                unsafe {
                    _mm512_mask_storeu_ps(row, m0, lo[r]);
                    _mm512_mask_storeu_ps(row.wrapping_add(16), m1, hi[r]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed kernel against a plain sequential sum (the reference's order) on random sizes
    /// around every tail: m around MR, n around NR and NC, k around KC.
    #[test]
    fn packed_gemm_matches_sequential_sums() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % m) as usize
        };
        let acts = [Activation::None, Activation::Relu, Activation::Relu6, Activation::ReluN1To1];
        for case in 0..120 {
            let m = [1, 5, 11, 12, 13, 25, 40][next(7)];
            let n = [1, 7, 16, 17, 31, 32, 33, 64, 100, 513, 530][next(11)];
            let k = [0, 1, 3, 64, 255, 256, 257, 600][next(8)];
            let lda = k + next(3);
            let a: Vec<f32> = (0..m * lda).map(|_| next(2001) as f32 / 1000.0 - 1.0).collect();
            let wv: Vec<f32> = (0..n * k).map(|_| next(2001) as f32 / 1000.0 - 1.0).collect();
            let bias: Option<Vec<f32>> =
                (case % 3 != 0).then(|| (0..n).map(|_| next(2001) as f32 / 1000.0 - 1.0).collect());
            let act = acts[case % 4];
            let pw = PackedW::new(&wv, n, k).unwrap();
            let tier = crate::isa::Isa::available()[case % crate::isa::Isa::available().len()];
            let mut c = vec![f32::NAN; m * n];
            crate::isa::with(tier, || gemm_bias_act(m, &a, lda, &pw, bias.as_deref(), act, &mut c).unwrap());
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0f32;
                    for kk in 0..k {
                        s += a[i * lda + kk] * wv[j * k + kk];
                    }
                    let want = act.apply(s + bias.as_ref().map_or(0.0, |b| b[j]));
                    let got = c[i * n + j];
                    let tol = 1e-6 + 1e-5 * (k as f32).sqrt() * want.abs().max(1.0);
                    assert!((got - want).abs() <= tol, "{tier}: m{m} n{n} k{k} [{i},{j}]: {got} vs {want}");
                }
            }
        }
    }
}
