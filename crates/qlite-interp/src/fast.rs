//! Fast integer kernels that give the reference kernels' bytes.
//!
//! Weights are packed once, when [`crate::Interpreter::kernels`] selects [`crate::Kernels::Fast`]:
//! int8 rows kept as `i8` with their sums precomputed, so an inference only does `i8 × i8` dot
//! products (vectorized; an AVX2 build of the same loop is chosen at run time on x86-64) and
//! the reference's requantization. The zero-point terms are moved out of the inner loop:
//!
//! `Σ (w + w_off)(x − z) = Σ w·x − z·Σ w + w_off·Σ x − n·w_off·z`
//!
//! All of it in wrapping i32 arithmetic, which is exact modulo 2³²: any regrouping of sums
//! and products gives the reference kernel's wrapped accumulator bit for bit.

use crate::array::{Array, Data};
use crate::int8::{OutQ, per_tensor};
use qlite_ir::op::FullyConnected;
use qlite_ir::{DType, Graph, Node, Op};

/// An int8 FULLY_CONNECTED with constant weights, packed for [`PackedFc::run`].
#[derive(Debug, Clone)]
pub struct PackedFc {
    units: usize,
    depth: usize,
    keep_num_dims: bool,
    /// `units × depth`, row-major.
    w: Vec<i8>,
    /// `−z_in · Σ_d w[o][d] − depth · w_off · z_in + bias[o]`: everything but `Σ w·x` and `w_off · Σ x`.
    row_const: Vec<i32>,
    w_off: i32,
    /// `s_in · s_w[o] / s_out` in double, as the reference computes it.
    scales: Vec<f64>,
    zp_out: i32,
    lo: i32,
    hi: i32,
}

impl PackedFc {
    /// Pack node `n` when it is an int8 FULLY_CONNECTED over constant int8 weights (and an
    /// optional constant int32 bias) with int8 per-tensor input and output; otherwise `None`
    /// (the reference kernel runs it).
    pub fn new(g: &Graph, n: &Node, consts: &[Option<Array>]) -> Option<Self> {
        let Op::FullyConnected(FullyConnected { activation, keep_num_dims, .. }) = &n.op else { return None };
        let t = |i: usize| n.input(i).and_then(|t| g.tensor(t));
        let c = |i: usize| n.input(i).and_then(|t| consts.get(t.index())).and_then(|a| a.as_ref());
        let (x, w, out) = (t(0)?, t(1)?, n.outputs.first().and_then(|o| g.tensor(*o))?);
        if x.dtype != DType::I8 || w.dtype != DType::I8 || out.dtype != DType::I8 {
            return None;
        }
        let (s_in, z_in) = per_tensor(x.quant.as_ref(), "input").ok()?;
        let (s_out, zp_out) = per_tensor(out.quant.as_ref(), "output").ok()?;
        let wq = w.quant.as_ref()?;
        let wa = c(1)?;
        let Data::I8(wv) = wa.data() else { return None };
        let &[units, depth] = wa.shape() else { return None };
        let per_channel = wq.scales().len() != 1;
        if per_channel && wq.scales().len() != units {
            return None;
        }
        let bias: Option<&[i32]> = match n.input(2) {
            Some(_) => match c(2)?.data() {
                Data::I32(b) if b.len() == units => Some(b),
                _ => return None,
            },
            None => None,
        };
        let w_off = if per_channel { 0 } else { -(wq.zero_point() as i32) };
        let scales = (0..units)
            .map(|o| {
                let s_w = if per_channel { wq.scales()[o] } else { wq.scale() };
                s_in as f64 * s_w as f64 / s_out as f64
            })
            .collect();
        let n_w_off_z = (depth as i32).wrapping_mul(w_off).wrapping_mul(z_in);
        let row_const = (0..units)
            .map(|o| {
                let sum_w = wv[o * depth..(o + 1) * depth].iter().fold(0i32, |a, &v| a.wrapping_add(v as i32));
                z_in.wrapping_neg().wrapping_mul(sum_w).wrapping_sub(n_w_off_z).wrapping_add(bias.map_or(0, |b| b[o]))
            })
            .collect();
        let (lo, hi) = OutQ { dtype: DType::I8, scale: s_out, zp: zp_out }.range(*activation);
        Some(PackedFc {
            units,
            depth,
            keep_num_dims: *keep_num_dims,
            w: wv.clone(),
            row_const,
            w_off,
            scales,
            zp_out,
            lo,
            hi,
        })
    }

    /// Run on the int8 input; `None` when the input is not what was packed for.
    pub fn run(&self, x: &Array) -> Option<Result<Array, String>> {
        let Data::I8(xv) = x.data() else { return None };
        if self.depth == 0 || xv.len() % self.depth != 0 {
            return None;
        }
        let batches = xv.len() / self.depth;
        let shape = if self.keep_num_dims {
            let mut s = x.shape().to_vec();
            *s.last_mut()? = self.units;
            s
        } else {
            vec![batches, self.units]
        };
        let mut y = vec![0i8; batches * self.units];
        let mut acc = vec![0i32; self.units];
        for (xr, yr) in xv.chunks_exact(self.depth).zip(y.chunks_exact_mut(self.units.max(1))) {
            let sum_x = xr.iter().fold(0i32, |a, &v| a.wrapping_add(v as i32));
            let x_term = self.w_off.wrapping_mul(sum_x);
            dots(&self.w, xr, &mut acc);
            for (o, (out, &d)) in yr.iter_mut().zip(&acc).enumerate() {
                let total = d.wrapping_add(x_term).wrapping_add(self.row_const[o]);
                let scaled = (total as f64 * self.scales[o]).round() as i32;
                *out = scaled.saturating_add(self.zp_out).clamp(self.lo, self.hi) as i8;
            }
        }
        Some(Array::new(shape, Data::I8(y)).map_err(|e| e.to_string()))
    }
}

/// `acc[o] = Σ_d w[o·n + d] · x[d]` (wrapping), with the widest vector unit available.
fn dots(w: &[i8], x: &[i8], acc: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above), the only requirement of
        // `dots_avx2`, which is the portable loop compiled with AVX2 enabled.
        #[allow(unsafe_code)]
        unsafe {
            dots_avx2(w, x, acc)
        };
        return;
    }
    dots_portable(w, x, acc);
}

/// AVX2: 16 int8 pairs at a time, sign-extended to i16 and multiplied-and-pair-added into
/// i32 lanes (`vpmaddwd`; a pair of i8 products cannot overflow i32), then the portable tail.
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

#[inline(always)]
fn dots_portable(w: &[i8], x: &[i8], acc: &mut [i32]) {
    let n = x.len();
    for (a, row) in acc.iter_mut().zip(w.chunks_exact(n.max(1))) {
        *a = dot(row, x);
    }
}

#[inline(always)]
fn dot(a: &[i8], b: &[i8]) -> i32 {
    // Sixteen lanes summed independently so the loop vectorizes into widening multiply-adds.
    let mut lanes = [0i32; 16];
    let (ac, at) = a.split_at(a.len() / 16 * 16);
    let (bc, bt) = b.split_at(ac.len());
    for (ca, cb) in ac.chunks_exact(16).zip(bc.chunks_exact(16)) {
        for k in 0..16 {
            lanes[k] = lanes[k].wrapping_add(ca[k] as i32 * cb[k] as i32);
        }
    }
    let mut s = lanes.iter().fold(0i32, |a, &v| a.wrapping_add(v));
    for (&p, &q) in at.iter().zip(bt) {
        s = s.wrapping_add(p as i32 * q as i32);
    }
    s
}
