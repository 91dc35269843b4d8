//! int8 ADD / SUB / MUL (with broadcasting) through a 256×256 table of the reference kernel's
//! results; int8 element-wise unary ops through a 256-entry table; float ADD / SUB / MUL.

use super::*;

/// int8 ADD, SUB and MUL of two same-shape tensors through one 256 × 256 table of the
/// reference kernel's results (`kernels::binary` on every pair of input values, fused activation
/// included): bit-exact by construction, one load per element.
#[derive(Debug, Clone)]
pub struct PackedBinary {
    /// int8: the 256 × 256 results; float32: empty.
    pub(crate) table: Vec<i8>,
    /// float32: the op, applied element by element as the reference kernel does.
    pub(crate) float: Option<qlite_ir::op::Binary>,
    /// int8 MUL: the reference's arithmetic, for the AVX-512 path (the table otherwise).
    pub(crate) mul: Option<MulParams>,
    /// int8 MUL: its output rescale on 16 lanes (the convolutions' vector form), for a
    /// per-channel operand broadcast over the pixels (squeeze-and-excite).
    pub(crate) mul_lanes: Option<Multipliers>,
    /// int16 (16x8, zero points 0): the reference's arithmetic per element.
    pub(crate) int16: Option<Int16Binary>,
    /// int8 ADD / SUB of same-length runs in vector arithmetic (AVX-512 VBMI), when it
    /// reproduces the table on every pair of inputs.
    pub(crate) sum: Option<SumPlanes>,
    /// int8 ADD / SUB of same-length runs in float arithmetic guarded at the rounding ties
    /// (AVX-512), when it reproduces the table on every pair of inputs; before `sum`.
    pub(crate) sum_f32: Option<SumFloat>,
}

/// The reference's parameters of an int8 ADD / SUB: the op, the input zero points, the
/// input and output multipliers, the inputs' left shift, the output zero point and range.
#[derive(Debug, Clone, Copy)]
struct AddSub {
    kind: qlite_ir::op::BinaryKind,
    zps: (i32, i32),
    mults: [(i32, i32); 3],
    left_shift: i32,
    zp: i32,
    range: (i32, i32),
}

/// Whether `run` (a vector form over equal-length runs) gives `table`'s bytes on all 65536
/// pairs of inputs.
fn reproduces(table: &[i8], run: impl FnOnce(&[i8], &[i8], &mut [i8])) -> bool {
    let xs: Vec<i8> = (0..65536).map(|i| (i >> 8) as u8 as i8).collect();
    let ys: Vec<i8> = (0..65536).map(|i| i as u8 as i8).collect();
    let mut got = vec![0i8; 65536];
    run(&xs, &ys, &mut got);
    table.len() == 65536
        && (0..65536).all(|i| got[i] == table[((xs[i] as u8 as usize) ^ 0x80) << 8 | ((ys[i] as u8 as usize) ^ 0x80)])
}

/// int8 ADD / SUB as one float multiply-add per element, `f = α·a + β·b + c` (α, β: the
/// reference's input and output rescales multiplied out; c: the zero points), rounded to the
/// nearest integer, except near a rounding tie: an element whose `f` is within `eps` of a
/// half-integer takes the reference's result from the table. The reference rounds twice (each
/// input's rescale, then the output's), so away from the ties the single rounding agrees with
/// it; `eps` is the smallest of a few widths for which the whole computation — this code, on
/// this CPU — gives the table's bytes on all 65536 pairs, checked at load (the path is not
/// used otherwise). Per 16 elements: two widenings, two conversions, two FMAs, the rounding
/// and its guard, where the exact vector form (`SumPlanes`) spends byte-table permutes and a
/// 64-bit requantization: ResNet-50's 56×56×256 residual ADD 212 → 112 µs (XNNPACK: 132).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SumFloat {
    alpha: f32,
    beta: f32,
    c: f32,
    /// `0.5 − eps`: a rounding off by more than this is near a tie.
    guard: f32,
    lo: i32,
    hi: i32,
}

impl SumFloat {
    /// The float form for ADD / SUB with the reference's parameters `p`; `None` unless it
    /// computes the `table` exactly on this CPU.
    fn new(p: AddSub, table: &[i8]) -> Option<Self> {
        if !crate::isa::current().has_avx512() || table.len() != 65536 {
            return None;
        }
        let [(m1, sh1), (m2, sh2), (mo, sho)] = p.mults;
        let real = |m: i32, sh: i32| m as f64 / 2f64.powi(31) * 2f64.powi(sh);
        let out = real(mo, sho);
        let alpha = 2f64.powi(p.left_shift) * real(m1, sh1) * out;
        let mut beta = 2f64.powi(p.left_shift) * real(m2, sh2) * out;
        if p.kind == qlite_ir::op::BinaryKind::Sub {
            beta = -beta;
        }
        let c = p.zp as f64 - alpha * p.zps.0 as f64 - beta * p.zps.1 as f64;
        let (lo, hi) = p.range;
        [1.0 / 1024.0, 1.0 / 256.0, 1.0 / 64.0, 1.0 / 16.0].into_iter().find_map(|eps| {
            let v = SumFloat { alpha: alpha as f32, beta: beta as f32, c: c as f32, guard: 0.5 - eps, lo, hi };
            // SAFETY: the tier (never above the host's) has AVX-512 F/BW/DQ/VL; equal lengths.
            #[allow(unsafe_code)]
            reproduces(table, |a, b, y| unsafe { sum_f32_avx512(&v, a, b, y, table) }).then_some(v)
        })
    }
}

/// [`SumFloat`] over equal-length runs: whole steps of 64 in vectors (the near-tie elements
/// from `table`), the rest from `table`.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, DQ and VL; `a`, `b` and `y` the same length; `table`
/// 65536 entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(unsafe_code)]
unsafe fn sum_f32_avx512(v: &SumFloat, a: &[i8], b: &[i8], y: &mut [i8], table: &[i8]) {
    use std::arch::x86_64::*;
    let n = y.len().min(a.len()).min(b.len());
    let lookup = |p: i8, q: i8| table[((p as u8 as usize) ^ 0x80) << 8 | ((q as u8 as usize) ^ 0x80)];
    let (alpha, beta, c) = (_mm512_set1_ps(v.alpha), _mm512_set1_ps(v.beta), _mm512_set1_ps(v.c));
    let guard = _mm512_set1_ps(v.guard);
    let (lo8, hi8) = (_mm512_set1_epi8(v.lo.clamp(-128, 127) as i8), _mm512_set1_epi8(v.hi.clamp(-128, 127) as i8));
    let mut i = 0;
    while i + 64 <= n {
        let mut r = [_mm512_setzero_si512(); 4];
        let mut near = 0u64;
        for (j, rj) in r.iter_mut().enumerate() {
            // SAFETY: i + 64 <= n: 16 bytes at i + 16j inside both inputs.
            let (pa, pb) = unsafe {
                (
                    _mm_loadu_si128(a.as_ptr().add(i + 16 * j) as *const _),
                    _mm_loadu_si128(b.as_ptr().add(i + 16 * j) as *const _),
                )
            };
            let fa = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(pa));
            let fb = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(pb));
            let f = _mm512_fmadd_ps(fa, alpha, _mm512_fmadd_ps(fb, beta, c));
            let rounded = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(f);
            let off = _mm512_abs_ps(_mm512_sub_ps(f, rounded));
            near |= (_mm512_cmp_ps_mask::<_CMP_GT_OQ>(off, guard) as u64) << (16 * j);
            *rj = _mm512_cvttps_epi32(rounded);
        }
        // Saturating packs (which cannot change what the clamp to [lo, hi] makes of a value;
        // |f| < 2^30 as α, β <= 2^20), then the packs' 128-bit lane order undone.
        let bytes = _mm512_packs_epi16(_mm512_packs_epi32(r[0], r[1]), _mm512_packs_epi32(r[2], r[3]));
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let bytes = _mm512_permutexvar_epi32(order, _mm512_min_epi8(_mm512_max_epi8(bytes, lo8), hi8));
        // SAFETY: i + 64 <= n.
        unsafe { _mm512_storeu_si512(y.as_mut_ptr().add(i) as *mut _, bytes) };
        while near != 0 {
            let k = i + near.trailing_zeros() as usize;
            y[k] = lookup(a[k], b[k]);
            near &= near - 1;
        }
        i += 64;
    }
    for ((o, &p), &q) in y[i..n].iter_mut().zip(&a[i..n]).zip(&b[i..n]) {
        *o = lookup(p, q);
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code)]
unsafe fn sum_f32_avx512(_: &SumFloat, _: &[i8], _: &[i8], _: &mut [i8], _: &[i8]) {}

/// int8 ADD / SUB as the reference computes them, 64 elements per step: each input's rescaled
/// value (`scaled_input`, a function of its 256 values) read from a table by `vpermi2b`, one
/// byte of the i32 at a time, the two summed as i32, and the output rescale (the reference's
/// `MultiplyByQuantizedMultiplier`, the convolutions' vector form) applied to the sum. The
/// 256 × 256 table costs a dependent byte load per element (L1 cannot hold it): ResNet-50's
/// residual ADDs were 14 % of the model.
#[derive(Debug, Clone)]
pub(crate) struct SumPlanes {
    /// `planes[i][k][x ^ 0x80]`: byte k of input i's rescaled value of x (SUB: input 1 negated).
    planes: Box<[[[u8; 256]; 4]; 2]>,
    /// The output rescale and zero point, on 16 lanes.
    out: Multipliers,
    lo: i32,
    hi: i32,
}

impl SumPlanes {
    /// The planes for ADD / SUB with the reference's parameters `p`; `None` unless the vector
    /// form computes the `table` exactly (checked on all 65536 pairs) on this CPU.
    fn new(p: AddSub, table: &[i8]) -> Option<Self> {
        use crate::fixedpoint::mbqm;
        if !crate::isa::current().has_vnni_vbmi() || table.len() != 65536 {
            return None;
        }
        let [(m1, sh1), (m2, sh2), (mo, sho)] = p.mults;
        let scaled = |x: i32, z: i32, m: i32, sh: i32| mbqm((x - z).wrapping_mul(1 << p.left_shift), m, sh);
        let mut planes = Box::new([[[0u8; 256]; 4]; 2]);
        let (mut b1, mut b2) = (0i64, 0i64);
        for x in -128..128i32 {
            let a = scaled(x, p.zps.0, m1, sh1);
            let mut b = scaled(x, p.zps.1, m2, sh2);
            if p.kind == qlite_ir::op::BinaryKind::Sub {
                b = b.wrapping_neg();
            }
            (b1, b2) = (b1.max((a as i64).abs()), b2.max((b as i64).abs()));
            for k in 0..4 {
                planes[0][k][(x ^ -128) as u8 as usize] = (a >> (8 * k)) as u8;
                planes[1][k][(x ^ -128) as u8 as usize] = (b >> (8 * k)) as u8;
            }
        }
        let out = Multipliers::new(&[(mo, sho); 16]).with_zp(p.zp).bounded(b1 + b2);
        let v = SumPlanes { planes, out, lo: p.range.0, hi: p.range.1 };
        // SAFETY: the tier (never above the host's) has AVX-512 F/BW/DQ/VL/VBMI; equal lengths.
        #[allow(unsafe_code)]
        reproduces(table, |a, b, y| unsafe { sum_vbmi(&v, a, b, y, table) }).then_some(v)
    }
}

/// [`SumPlanes`] over equal-length runs: whole steps of 64 in vectors, the rest from `table`.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, DQ, VL and VBMI; `a`, `b` and `y` the same length;
/// `table` 65536 entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi")]
#[allow(unsafe_code)]
unsafe fn sum_vbmi(v: &SumPlanes, a: &[i8], b: &[i8], y: &mut [i8], table: &[i8]) {
    use std::arch::x86_64::*;
    let n = y.len().min(a.len()).min(b.len());
    let q = &v.out;
    let flip = _mm512_set1_epi8(-128);
    let (lo8, hi8) = (_mm512_set1_epi8(v.lo.clamp(-128, 127) as i8), _mm512_set1_epi8(v.hi.clamp(-128, 127) as i8));
    // One input's rescaled values as 4 vectors of 16 i32, in the order the unpacks leave them
    // (128-bit lane L of vector j: elements 16L + 4j ..), which the packs below undo.
    let widen = |x: __m512i, t: &[[u8; 256]; 4]| -> [__m512i; 4] {
        let idx = _mm512_xor_si512(x, flip);
        let high = _mm512_movepi8_mask(idx);
        let mut p = [_mm512_setzero_si512(); 4];
        for (k, pk) in p.iter_mut().enumerate() {
            // SAFETY: each plane is 256 bytes: four 64-byte loads.
            let (t0, t1, t2, t3) = unsafe {
                let base = t[k].as_ptr() as *const __m512i;
                (
                    _mm512_loadu_si512(base),
                    _mm512_loadu_si512(base.add(1)),
                    _mm512_loadu_si512(base.add(2)),
                    _mm512_loadu_si512(base.add(3)),
                )
            };
            let low = _mm512_permutex2var_epi8(t0, idx, t1);
            let upper = _mm512_permutex2var_epi8(t2, idx, t3);
            *pk = _mm512_mask_blend_epi8(high, low, upper);
        }
        let (l01, h01) = (_mm512_unpacklo_epi8(p[0], p[1]), _mm512_unpackhi_epi8(p[0], p[1]));
        let (l23, h23) = (_mm512_unpacklo_epi8(p[2], p[3]), _mm512_unpackhi_epi8(p[2], p[3]));
        [
            _mm512_unpacklo_epi16(l01, l23),
            _mm512_unpackhi_epi16(l01, l23),
            _mm512_unpacklo_epi16(h01, h23),
            _mm512_unpackhi_epi16(h01, h23),
        ]
    };
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: i + 64 <= n, inside all three runs.
        unsafe {
            let sa = widen(_mm512_loadu_si512(a.as_ptr().add(i) as *const _), &v.planes[0]);
            let sb = widen(_mm512_loadu_si512(b.as_ptr().add(i) as *const _), &v.planes[1]);
            let mut r = [_mm512_setzero_si512(); 4];
            for j in 0..4 {
                let sum = _mm512_add_epi32(sa[j], sb[j]);
                r[j] = if q.short { scale16!(true, sum, q, 0, u16::MAX) } else { scale16!(false, sum, q, 0, u16::MAX) };
            }
            // Saturating packs (which cannot change what the clamp to [lo, hi] makes of a
            // value) put the elements back in order.
            let bytes = _mm512_packs_epi16(_mm512_packs_epi32(r[0], r[1]), _mm512_packs_epi32(r[2], r[3]));
            let bytes = _mm512_min_epi8(_mm512_max_epi8(bytes, lo8), hi8);
            _mm512_storeu_si512(y.as_mut_ptr().add(i) as *mut _, bytes);
        }
        i += 64;
    }
    for ((o, &p), &q) in y[i..n].iter_mut().zip(&a[i..n]).zip(&b[i..n]) {
        *o = table[((p as u8 as usize) ^ 0x80) << 8 | ((q as u8 as usize) ^ 0x80)];
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code)]
unsafe fn sum_vbmi(_: &SumPlanes, _: &[i8], _: &[i8], _: &mut [i8], _: &[i8]) {}

/// int16 ADD / SUB (general path, left shift 15) or MUL as the reference kernels compute them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Int16Binary {
    kind: qlite_ir::op::BinaryKind,
    /// ADD / SUB: the two input multipliers and the output one; MUL: the one in `m[2]`.
    m: [(i32, i32); 3],
    lo: i32,
    hi: i32,
}

impl Int16Binary {
    #[inline(always)]
    fn apply(&self, a: i16, b: i16) -> i16 {
        use crate::fixedpoint::mbqm;
        use qlite_ir::op::BinaryKind as K;
        let [(m1, s1), (m2, s2), (mo, so)] = self.m;
        let r = match self.kind {
            K::Mul => mbqm(a as i32 * b as i32, mo, so),
            K::Add | K::Sub => {
                let sa = mbqm((a as i32) << 15, m1, s1);
                let sb = mbqm((b as i32) << 15, m2, s2);
                let raw = if self.kind == K::Add { sa.wrapping_add(sb) } else { sa.wrapping_sub(sb) };
                mbqm(raw, mo, so)
            }
            _ => 0,
        };
        r.clamp(self.lo, self.hi) as i16
    }
}

/// int8 MUL as `reference_integer_ops::Mul` computes it: `clamp(zo + MBQM((a − za)(b − zb)))`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MulParams {
    za: i32,
    zb: i32,
    m: i32,
    left: u32,
    right: u32,
    zo: i32,
    lo: i32,
    hi: i32,
}

impl PackedBinary {
    pub(crate) fn new(g: &Graph, n: &Node, b: &qlite_ir::op::Binary) -> Option<Self> {
        use qlite_ir::op::BinaryKind;
        if !matches!(b.kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul) {
            return None;
        }
        let (a, c) = (g.tensor(n.input(0)?)?, g.tensor(n.input(1)?)?);
        let out = g.tensor(*n.outputs.first()?)?;
        if a.dtype == DType::F32 && c.dtype == DType::F32 && out.dtype == DType::F32 {
            return Some(PackedBinary {
                table: Vec::new(),
                float: Some(b.clone()),
                mul: None,
                mul_lanes: None,
                int16: None,
                sum: None,
                sum_f32: None,
            });
        }
        if a.dtype == DType::I16 && c.dtype == DType::I16 && out.dtype == DType::I16 {
            let (s1, z1) = per_tensor(a.quant.as_ref(), "input 0").ok()?;
            let (s2, z2) = per_tensor(c.quant.as_ref(), "input 1").ok()?;
            let (so, zo) = per_tensor(out.quant.as_ref(), "output").ok()?;
            if z1 != 0 || z2 != 0 || zo != 0 {
                return None;
            }
            let m = if b.kind == BinaryKind::Mul {
                [(0, 0), (0, 0), crate::fixedpoint::quantize_multiplier((s1 * s2 / so) as f64)]
            } else {
                crate::kernels::add_params(s1, s2, so, 15).ok()?
            };
            let (lo, hi) = OutQ { dtype: DType::I16, scale: so, zp: 0 }.range(b.activation);
            let int16 = Some(Int16Binary { kind: b.kind, m, lo, hi });
            return Some(PackedBinary {
                table: Vec::new(),
                float: None,
                mul: None,
                mul_lanes: None,
                int16,
                sum: None,
                sum_f32: None,
            });
        }
        if a.dtype != DType::I8 || c.dtype != DType::I8 || out.dtype != DType::I8 {
            return None;
        }
        let q1 = per_tensor(a.quant.as_ref(), "input 0").ok()?;
        let q2 = per_tensor(c.quant.as_ref(), "input 1").ok()?;
        let (scale, zp) = per_tensor(out.quant.as_ref(), "output").ok()?;
        let xs: Vec<i32> = (-128..128).collect();
        let pairs: Vec<(usize, usize)> = (0..256).flat_map(|i| (0..256).map(move |j| (i, j))).collect();
        let oq = OutQ { dtype: DType::I8, scale, zp };
        let t = crate::kernels::binary(b.kind, &xs, &xs, &pairs, q1, q2, oq, b.activation).ok()?;
        // The same multiplier the reference derives (its f32 product of the scales, widened).
        let mul = (b.kind == BinaryKind::Mul).then(|| {
            let (m, sh) = crate::fixedpoint::quantize_multiplier((q1.0 * q2.0 / scale) as f64);
            let (lo, hi) = oq.range(b.activation);
            MulParams {
                za: q1.1,
                zb: q2.1,
                m,
                left: sh.clamp(0, 31) as u32,
                right: (-sh).clamp(0, 31) as u32,
                zo: zp,
                lo,
                hi,
            }
        });
        let table: Vec<i8> = t.into_iter().map(|v| v as i8).collect();
        let (sum, sum_f32) = match b.kind {
            BinaryKind::Add | BinaryKind::Sub => {
                let shift = crate::kernels::add_left_shift(DType::I8);
                let params = crate::kernels::add_params(q1.0, q2.0, scale, shift).ok()?;
                let p = AddSub {
                    kind: b.kind,
                    zps: (q1.1, q2.1),
                    mults: params,
                    left_shift: shift,
                    zp,
                    range: oq.range(b.activation),
                };
                let f = SumFloat::new(p, &table);
                let planes = match f {
                    Some(_) => None,
                    None => SumPlanes::new(p, &table),
                };
                (planes, f)
            }
            _ => (None, None),
        };
        // |(a − za)(b − zb)| <= 255².
        let mul_lanes = mul.map(|mp| {
            let shift = mp.left as i32 - mp.right as i32;
            Multipliers::new(&[(mp.m, shift); 16]).with_zp(mp.zo).bounded(255 * 255)
        });
        Some(PackedBinary { table, float: None, mul, mul_lanes, int16: None, sum, sum_f32 })
    }

    pub(crate) fn run(&self, a: &Array, b: &Array, out: &mut Option<Array>, par: Parallel) -> Option<()> {
        let plan = Broadcast::new(a.shape(), b.shape())?;
        // Large outputs split over the pool in blocks of 64 elements (each element a few
        // operations: a part gets at least min_work / 8 of them).
        let n = 64;
        let parts = |len: usize| par.parts(len.saturating_mul(8), len.div_ceil(n));
        if let (Some(op), Data::F32(av), Data::F32(bv)) = (&self.float, a.data(), b.data()) {
            use qlite_ir::op::BinaryKind as K;
            let y = Array::reuse_f32(out, plan.out())?;
            // One loop per (op, activation), each simple enough to vectorize (a function
            // pointer per element ran ResNet-50's residual ADDs at 4 ns per element).
            let act = op.activation;
            par.chunks(y, n, parts(y.len()), |_, first, y| match op.kind {
                K::Add => plan.each_from(av, bv, first * n, y, |p, q| float_binary(p, q, act, |x, y| x + y)),
                K::Sub => plan.each_from(av, bv, first * n, y, |p, q| float_binary(p, q, act, |x, y| x - y)),
                _ => plan.each_from(av, bv, first * n, y, |p, q| float_binary(p, q, act, |x, y| x * y)),
            });
            return matches!(op.kind, K::Add | K::Sub | K::Mul).then_some(());
        }
        if let (Some(op), Data::I16(av), Data::I16(bv)) = (&self.int16, a.data(), b.data()) {
            let y = Array::reuse_i16(out, plan.out())?;
            par.chunks(y, n, parts(y.len()), |_, first, y| {
                plan.each_from(av, bv, first * n, y, |(o, p), q| match (p.len(), q.len()) {
                    (1, _) => o.iter_mut().zip(q).for_each(|(o, &q)| *o = op.apply(p[0], q)),
                    (_, 1) => o.iter_mut().zip(p).for_each(|(o, &p)| *o = op.apply(p, q[0])),
                    _ => o.iter_mut().zip(p).zip(q).for_each(|((o, &p), &q)| *o = op.apply(p, q)),
                })
            });
            return Some(());
        }
        let (Data::I8(av), Data::I8(bv)) = (a.data(), b.data()) else { return None };
        let y = Array::reuse_i8(out, plan.out())?;
        #[cfg(target_arch = "x86_64")]
        if let Some(mp) = self.mul
            && crate::isa::current().has_avx512()
        {
            if let Some(q) = &self.mul_lanes
                && let Some(cb) = ChannelBroadcast::new(a.shape(), b.shape(), plan.out(), (mp.za, mp.zb))
            {
                let (full, small) = if cb.small_is_b { (av, bv) } else { (bv, av) };
                // A few operations an element: split only large tensors.
                let parts = par.parts(y.len().saturating_mul(2), y.len().div_ceil(n));
                par.chunks(y, n, parts, |_, first, y| {
                    // Sample by sample: the operand's channels for that sample, and the phase
                    // in them where the part starts.
                    let mut off = 0;
                    while off < y.len() {
                        let e = first * n + off;
                        let (s, within) = (e / cb.sample, e % cb.sample);
                        let len = (cb.sample - within).min(y.len() - off);
                        let c0 = if cb.per_sample { s * cb.channels } else { 0 };
                        let (Some(x), Some(ch)) = (full.get(e..e + len), small.get(c0..c0 + cb.channels)) else {
                            return;
                        };
                        // SAFETY: the tier says AVX-512 F/BW/DQ/VL are available.
                        #[allow(unsafe_code)]
                        unsafe {
                            mul_channels_avx512(&mp, q, cb.zps, x, ch, within % cb.channels, &mut y[off..off + len])
                        };
                        off += len;
                    }
                });
                return Some(());
            }
            par.chunks(y, n, parts(y.len()), |_, first, y| {
                plan.each_from(av, bv, first * n, y, |(o, p), q| {
                    // SAFETY: the tier says AVX-512 F/BW are available; the run lengths agree
                    // (each operand run is the output run's length or one element).
                    #[allow(unsafe_code)]
                    unsafe {
                        mul_i8_avx512(&mp, p, q, o)
                    }
                })
            });
            return Some(());
        }
        let table = &self.table[..65536];
        let sum = self.sum.as_ref().filter(|_| crate::isa::current().has_vnni_vbmi());
        let sum_f32 = self.sum_f32.as_ref().filter(|_| crate::isa::current().has_avx512());
        par.chunks(y, n, parts(y.len()), |_, first, y| {
            plan.each_from(av, bv, first * n, y, |p, q| {
                let (o, p, q) = (p.0, p.1, q);
                match (p.len(), q.len()) {
                    (1, _) => {
                        let row = &table[((p[0] as u8 as usize) ^ 0x80) << 8..][..256];
                        o.iter_mut().zip(q).for_each(|(o, &q)| *o = row[(q as u8 as usize) ^ 0x80]);
                    }
                    (_, 1) => {
                        let qi = (q[0] as u8 as usize) ^ 0x80;
                        o.iter_mut().zip(p).for_each(|(o, &p)| *o = table[((p as u8 as usize) ^ 0x80) << 8 | qi]);
                    }
                    _ => {
                        #[cfg(target_arch = "x86_64")]
                        if let Some(sf) = sum_f32 {
                            // SAFETY: the tier has AVX-512 F/BW/DQ/VL; the runs have one length.
                            #[allow(unsafe_code)]
                            unsafe {
                                sum_f32_avx512(sf, p, q, o, table)
                            };
                            return;
                        }
                        #[cfg(target_arch = "x86_64")]
                        if let Some(sp) = sum {
                            // SAFETY: the tier has AVX-512 F/BW/DQ/VL/VBMI; the runs have one length.
                            #[allow(unsafe_code)]
                            unsafe {
                                sum_vbmi(sp, p, q, o, table)
                            };
                            return;
                        }
                        o.iter_mut().zip(p).zip(q).for_each(|((o, &p), &q)| {
                            *o = table[((p as u8 as usize) ^ 0x80) << 8 | ((q as u8 as usize) ^ 0x80)]
                        })
                    }
                }
            })
        });
        Some(())
    }
}

/// An int8 MUL whose one operand is a channel vector broadcast over every pixel of the other
/// (`[N or 1, 1, …, 1, C]` against `[N, …, C]`: squeeze-and-excite's scaling).
struct ChannelBroadcast {
    /// Whether the vector is the second operand.
    small_is_b: bool,
    /// Elements per sample of the output, and channels.
    sample: usize,
    channels: usize,
    /// The vector has one row per sample (else one for all).
    per_sample: bool,
    /// (the full operand's zero point, the vector's).
    zps: (i32, i32),
}

impl ChannelBroadcast {
    fn new(a: &[usize], b: &[usize], out: &[usize], (za, zb): (i32, i32)) -> Option<Self> {
        let r = out.len();
        let c = *out.last()?;
        if r < 2 || c == 0 {
            return None;
        }
        let small = |v: &[usize]| {
            v.len() <= r
                && v.last() == Some(&c)
                && v.iter().rev().skip(1).take(r - 2).all(|&d| d == 1)
                && (v.len() < r || v[0] == 1 || v[0] == out[0])
        };
        let (small_is_b, s) = if a == out && small(b) {
            (true, b)
        } else if b == out && small(a) {
            (false, a)
        } else {
            return None;
        };
        let per_sample = s.len() == r && s[0] == out[0] && out[0] > 1;
        let zps = if small_is_b { (za, zb) } else { (zb, za) };
        Some(ChannelBroadcast { small_is_b, sample: out[1..].iter().product(), channels: c, per_sample, zps })
    }
}

/// `y = clamp(zo + MultiplyByQuantizedMultiplier((x − zx)·(ch[c] − zc)))` with `c` the channel
/// of each element (`phase` for the first, then cyclic), 64 per step: the channel values
/// repeated over lcm(C, 16) lanes, the product requantized in the convolutions' vector form
/// (`q`, bounded by 255²), packed. Channel counts whose period exceeds 4096 lanes, and the
/// last elements, go through the scalar arithmetic.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, DQ and VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(unsafe_code)]
unsafe fn mul_channels_avx512(
    mp: &MulParams,
    q: &Multipliers,
    (zx, zc): (i32, i32),
    x: &[i8],
    ch: &[i8],
    phase: usize,
    y: &mut [i8],
) {
    use std::arch::x86_64::*;
    const MAX_PERIOD: usize = 4096;
    let c = ch.len();
    let n = y.len().min(x.len());
    let period = if c == 0 { 0 } else { c / gcd(c, 16) * 16 };
    let mut i = 0;
    if (1..=MAX_PERIOD).contains(&period) && q.vector_ready(16) {
        // Only as many lanes zeroed as the period needs (a 16 KiB fill was most of a small
        // layer's time).
        let mut small = [0i32; 512];
        let mut large;
        let lanes: &mut [i32] = if period <= small.len() {
            &mut small
        } else {
            large = [0i32; MAX_PERIOD];
            &mut large
        };
        for (j, v) in lanes[..period].iter_mut().enumerate() {
            *v = ch[(phase + j) % c] as i32 - zc;
        }
        let zxv = _mm512_set1_epi32(zx);
        let k = super::OutVec::new(mp.lo, mp.hi);
        let mut j = 0;
        while i + 64 <= n {
            let mut r = [_mm512_setzero_si512(); 4];
            for rv in r.iter_mut() {
                // SAFETY: i + 64 <= n bounds the 16-byte loads; j + 16 <= period <= 4096.
                let p = unsafe {
                    let xv = _mm512_cvtepi8_epi32(_mm_loadu_si128(x.as_ptr().add(i) as *const _));
                    _mm512_mullo_epi32(_mm512_sub_epi32(xv, zxv), _mm512_loadu_si512(lanes.as_ptr().add(j) as *const _))
                };
                *rv = if q.short { scale16!(true, p, q, 0, u16::MAX) } else { scale16!(false, p, q, 0, u16::MAX) };
                i += 16;
                j = if j + 16 == period { 0 } else { j + 16 };
            }
            // SAFETY: the 64 outputs just computed lie inside y.
            unsafe { _mm512_storeu_si512(y.as_mut_ptr().add(i - 64) as *mut _, k.finish4(r)) };
        }
    }
    let shift = mp.left as i32 - mp.right as i32;
    for t in i..n {
        let b = if c == 0 { 0 } else { ch[(phase + t) % c] as i32 - zc };
        let v = crate::fixedpoint::mbqm((x[t] as i32 - zx) * b, mp.m, shift);
        y[t] = mp.zo.wrapping_add(v).clamp(mp.lo, mp.hi) as i8;
    }
}

/// int8 MUL of one inner run, 16 lanes at a time: the reference's integer arithmetic
/// (`MultiplyByQuantizedMultiplier`: the doubling high multiply rounding half away from zero in
/// 64-bit lanes, then the rounding right shift), an operand of one element repeated.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[allow(unsafe_code)]
unsafe fn mul_i8_avx512(mp: &MulParams, a: &[i8], b: &[i8], y: &mut [i8]) {
    use std::arch::x86_64::*;
    let n = y.len();
    let (za, zb) = (_mm512_set1_epi32(mp.za), _mm512_set1_epi32(mp.zb));
    let (zo, lo, hi) = (_mm512_set1_epi32(mp.zo), _mm512_set1_epi32(mp.lo), _mm512_set1_epi32(mp.hi));
    // An operand of one element, widened and offset once.
    let (sa, sb) = (
        (a.len() == 1).then(|| _mm512_set1_epi32(a[0] as i32 - mp.za)),
        (b.len() == 1).then(|| _mm512_set1_epi32(b[0] as i32 - mp.zb)),
    );
    let mut i = 0;
    while i < n {
        let k = (n - i).min(16);
        let mask: __mmask16 = if k == 16 { 0xffff } else { ((1u32 << k) - 1) as u16 };
        // SAFETY (both loads): the mask covers k bytes from i, inside the run.
        let va = match sa {
            Some(v) => v,
            None => _mm512_sub_epi32(
                _mm512_cvtepi8_epi32(unsafe { _mm_maskz_loadu_epi8(mask, a.as_ptr().add(i) as *const _) }),
                za,
            ),
        };
        let vb = match sb {
            Some(v) => v,
            None => _mm512_sub_epi32(
                _mm512_cvtepi8_epi32(unsafe { _mm_maskz_loadu_epi8(mask, b.as_ptr().add(i) as *const _) }),
                zb,
            ),
        };
        let p = _mm512_mullo_epi32(va, vb);
        let v = mbqm_avx512(p, mp.m, mp.left, mp.right);
        let r = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(v, zo), lo), hi);
        // SAFETY: the mask covers k bytes from i, inside the output run.
        unsafe { _mm512_mask_cvtepi32_storeu_epi8(y.as_mut_ptr().add(i) as *mut _, mask, r) };
        i += k;
    }
}

/// [`crate::fixedpoint::mbqm`] on 16 lanes: `x · 2^left` (wrapping), the saturating rounding
/// doubling high multiply by `m` (no lane can saturate: `m` is never `i32::MIN`), then the
/// rounding divide by `2^right`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
pub(crate) fn mbqm_avx512(x: std::arch::x86_64::__m512i, m: i32, left: u32, right: u32) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let x = _mm512_sll_epi32(x, _mm_cvtsi32_si128(left as i32));
    let mv = _mm512_set1_epi64(m as i64);
    let c30 = _mm512_set1_epi64(1 << 30);
    let c31m1 = _mm512_set1_epi64((1i64 << 31) - 1);
    // One 64-bit half: (x·m + nudge) / 2^31, truncating toward zero.
    let half = |lanes: __m512i| -> __m512i {
        let t = _mm512_mul_epi32(lanes, mv);
        let sign = _mm512_srai_epi64::<63>(t);
        let t = _mm512_add_epi64(t, _mm512_sub_epi64(c30, _mm512_and_si512(sign, c31m1)));
        let sign = _mm512_srai_epi64::<63>(t);
        _mm512_srai_epi64::<31>(_mm512_add_epi64(t, _mm512_and_si512(sign, c31m1)))
    };
    let even = half(x);
    let odd = half(_mm512_srli_epi64::<32>(x));
    let v = _mm512_mask_blend_epi32(0xaaaa, even, _mm512_slli_epi64::<32>(odd));
    if right == 0 {
        return v;
    }
    let mask = _mm512_set1_epi32(((1i64 << right) - 1) as i32);
    let rem = _mm512_and_si512(v, mask);
    let thr = _mm512_sub_epi32(_mm512_srli_epi32::<1>(mask), _mm512_srai_epi32::<31>(v));
    let up = _mm512_cmpgt_epi32_mask(rem, thr);
    let shifted = _mm512_sra_epi32(v, _mm_cvtsi32_si128(right as i32));
    _mm512_mask_sub_epi32(shifted, up, shifted, _mm512_set1_epi32(-1))
}

/// How two operands broadcast (NumPy / TFLite rules, shapes aligned at the right): the output
/// shape, and each operand's element strides per output axis (0 along a broadcast axis), with
/// the innermost run that both read contiguously (or one reads as a single repeated value).
#[derive(Debug)]
struct Broadcast {
    /// The output shape (the first `rank` entries).
    out: [usize; MAX_RANK],
    rank: usize,
    /// Output axes outside the inner run, and both operands' strides along them (the first
    /// `n_outer` entries).
    outer: [(usize, usize, usize); MAX_RANK],
    n_outer: usize,
    /// Length of the inner run; each operand's step along it (1, or 0 when repeated).
    inner: usize,
    step: (usize, usize),
}

/// Ranks the fast path takes (the IR's limit); fixed-size arrays keep a run free of
/// allocations.
const MAX_RANK: usize = qlite_ir::MAX_RANK;

impl Broadcast {
    fn new(a: &[usize], b: &[usize]) -> Option<Self> {
        let rank = a.len().max(b.len());
        if rank > MAX_RANK {
            return None;
        }
        let dim = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
        let mut out = [1usize; MAX_RANK];
        for (i, o) in out.iter_mut().enumerate().take(rank) {
            let (p, q) = (dim(a, i), dim(b, i));
            *o = match (p, q) {
                _ if p == q => p,
                (1, q) => q,
                (p, 1) => p,
                _ => return None,
            };
        }
        let strides = |s: &[usize]| {
            let mut st = [0usize; MAX_RANK];
            let mut acc = 1;
            for i in (0..rank).rev() {
                let d = dim(s, i);
                st[i] = if d == 1 { 0 } else { acc };
                acc *= d;
            }
            st
        };
        let (sa, sb) = (strides(a), strides(b));
        // The inner run: the longest run of trailing axes over which each operand is either
        // dense (its dims are the output's) or a single value (its dims are all 1).
        let modes = |s: &[usize], from: usize| {
            ((from..rank).all(|j| dim(s, j) == out[j]), (from..rank).all(|j| dim(s, j) == 1))
        };
        let mut k = rank;
        while k > 0 {
            let ((ad, a1), (bd, b1)) = (modes(a, k - 1), modes(b, k - 1));
            if !((ad || a1) && (bd || b1)) {
                break;
            }
            k -= 1;
        }
        let ((ad, _), (bd, _)) = (modes(a, k), modes(b, k));
        let inner: usize = out[k..rank].iter().product();
        let step = (usize::from(ad), usize::from(bd));
        let mut outer = [(0usize, 0usize, 0usize); MAX_RANK];
        let mut n_outer = 0;
        for i in (0..k).filter(|&i| out[i] != 1) {
            outer[n_outer] = (out[i], sa[i], sb[i]);
            n_outer += 1;
        }
        Some(Broadcast { out, rank, outer, n_outer, inner, step })
    }

    fn out(&self) -> &[usize] {
        &self.out[..self.rank]
    }

    /// Call `f((out_run, a_run), b_run)` for each inner run of `y`, in output order, where `y`
    /// holds the output's elements `first..` (a part of a split op: it may start and end inside
    /// a run); a run of an operand that repeats one value is that one element.
    fn each_from<T: Copy, U>(
        &self,
        a: &[T],
        b: &[T],
        first: usize,
        y: &mut [U],
        mut f: impl FnMut((&mut [U], &[T]), &[T]),
    ) {
        let n = self.inner.max(1);
        let (sa, sb) = self.step;
        let outer = &self.outer[..self.n_outer];
        // The run holding element `first`: its position along the outer axes, and its
        // operands' offsets.
        let mut idx = [0usize; MAX_RANK];
        let (mut ia, mut ib) = (0usize, 0usize);
        let mut rest = first / n;
        for (j, &(d, da, db)) in outer.iter().enumerate().rev() {
            idx[j] = rest % d.max(1);
            rest /= d.max(1);
            ia += idx[j] * da;
            ib += idx[j] * db;
        }
        let mut at = first % n;
        let mut y = y;
        while !y.is_empty() {
            let len = (n - at).min(y.len());
            let (run, tail) = y.split_at_mut(len);
            let (la, lb) = (if sa == 1 { len } else { 1 }, if sb == 1 { len } else { 1 });
            f((run, &a[ia + at * sa..][..la]), &b[ib + at * sb..][..lb]);
            y = tail;
            at = 0;
            for (j, &(d, da, db)) in outer.iter().enumerate().rev() {
                idx[j] += 1;
                ia += da;
                ib += db;
                if idx[j] < d {
                    break;
                }
                idx[j] = 0;
                ia -= da * d;
                ib -= db * d;
            }
        }
    }
}

/// An int8 op each of whose output values depends only on the input value at the same place
/// (element-wise unary ops, requantization): the reference kernel's result for each of the 256
/// inputs, computed at load by the interpreter itself, so bit-exact by construction.
#[derive(Debug, Clone)]
pub struct PackedTable {
    pub(crate) table: Vec<i8>,
}

impl PackedTable {
    #[allow(unsafe_code)]
    pub(crate) fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>, par: Parallel) -> Option<()> {
        let y = Array::reuse_i8(out, xs)?;
        let t: &[i8; 256] = self.table.get(..256)?.try_into().ok()?;
        if y.len() != xv.len() {
            return None;
        }
        // Large tensors split over the pool in blocks of 64 bytes.
        let vbmi = crate::isa::current().has_vnni_vbmi();
        par.chunks(y, 64, par.parts(y.len(), y.len().div_ceil(64)), |_, first, y| {
            let x = &xv[first * 64..first * 64 + y.len()];
            #[cfg(target_arch = "x86_64")]
            if vbmi {
                // SAFETY: the tier says AVX-512 BW and VBMI are available; y and x have one
                // length.
                unsafe { table_vbmi(t, x, y) };
                return;
            }
            let _ = vbmi;
            y.iter_mut().zip(x).for_each(|(o, &v)| *o = t[(v as u8 ^ 0x80) as usize]);
        });
        Some(())
    }
}

/// 64 lookups per step: two `vpermi2b` over the table's halves, the index's top bit choosing.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[allow(unsafe_code)]
unsafe fn table_vbmi(t: &[i8; 256], x: &[i8], y: &mut [i8]) {
    use std::arch::x86_64::*;
    let p = t.as_ptr() as *const __m512i;
    // SAFETY: the table is 256 bytes: four unaligned 64-byte loads.
    let (t0, t1, t2, t3) = unsafe {
        (
            _mm512_loadu_si512(p),
            _mm512_loadu_si512(p.add(1)),
            _mm512_loadu_si512(p.add(2)),
            _mm512_loadu_si512(p.add(3)),
        )
    };
    let flip = _mm512_set1_epi8(-128);
    let n = x.len().min(y.len());
    let mut i = 0;
    while i < n {
        let k = (n - i).min(64);
        let mask: __mmask64 = if k == 64 { u64::MAX } else { (1u64 << k) - 1 };
        // SAFETY: the mask covers k ≤ n − i bytes from i, inside both slices.
        let v = unsafe { _mm512_maskz_loadu_epi8(mask, x.as_ptr().add(i)) };
        let idx = _mm512_xor_si512(v, flip);
        let lo = _mm512_permutex2var_epi8(t0, idx, t1);
        let hi = _mm512_permutex2var_epi8(t2, idx, t3);
        let r = _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi);
        unsafe { _mm512_mask_storeu_epi8(y.as_mut_ptr().add(i), mask, r) };
        i += k;
    }
}

/// One inner run of `y = act(f(a, b))`, the reference kernel's arithmetic; an operand of one
/// element is repeated.
#[inline(always)]
fn float_binary(
    (y, av): (&mut [f32], &[f32]),
    bv: &[f32],
    act: qlite_ir::Activation,
    f: impl Fn(f32, f32) -> f32 + Copy,
) {
    use qlite_ir::Activation as A;
    #[inline(always)]
    fn with(y: &mut [f32], av: &[f32], bv: &[f32], g: impl Fn(f32, f32) -> f32) {
        match (av.len(), bv.len()) {
            (1, _) => y.iter_mut().zip(bv).for_each(|(o, &q)| *o = g(av[0], q)),
            (_, 1) => y.iter_mut().zip(av).for_each(|(o, &p)| *o = g(p, bv[0])),
            _ => y.iter_mut().zip(av).zip(bv).for_each(|((o, &p), &q)| *o = g(p, q)),
        }
    }
    match act {
        A::None => with(y, av, bv, f),
        A::Relu => with(y, av, bv, |p, q| f(p, q).max(0.0)),
        A::Relu6 => with(y, av, bv, |p, q| f(p, q).clamp(0.0, 6.0)),
        A::ReluN1To1 => with(y, av, bv, |p, q| f(p, q).clamp(-1.0, 1.0)),
    }
}

/// Float swish, `MUL(x, LOGISTIC(x))` (EfficientNet's and MobileNetV3's activation), in one
/// pass: the fast LOGISTIC's value of each element, then the MUL's product and fused
/// activation — the same operations as the two nodes, so the same bits, without writing and
/// re-reading the sigmoid tensor (the interpreter then skips the LOGISTIC node when nothing
/// else reads it).
#[derive(Debug, Clone)]
pub struct PackedSwish {
    pub(crate) activation: qlite_ir::Activation,
}

impl PackedSwish {
    pub(crate) fn run(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>, par: Parallel) -> Option<()> {
        let y = Array::reuse_f32(out, xs)?;
        if y.len() != xv.len() {
            return None;
        }
        let sigmoid = PackedLogistic { kind: qlite_ir::UnaryKind::Logistic };
        let (isa, act) = (crate::isa::current(), self.activation);
        par.chunks(y, 64, par.parts(y.len().saturating_mul(32), y.len().div_ceil(64)), |_, first, y| {
            let x = &xv[first * 64..first * 64 + y.len()];
            // Blocks of 16 KiB, so the product reads the sigmoid back from L1 (a whole part
            // at once wrote it out to L3 and read it again: EfficientNet-B0's 112×112×96
            // swish, 4.8 MB, took 787 µs).
            for (y, x) in y.chunks_mut(4096).zip(x.chunks(4096)) {
                sigmoid.apply(isa, x, y);
                // y = act(x · sigmoid(x)), as the MUL computes it (`float_binary`).
                let it = y.iter_mut().zip(x);
                match act {
                    qlite_ir::Activation::None => it.for_each(|(o, &v)| *o *= v),
                    qlite_ir::Activation::Relu => it.for_each(|(o, &v)| *o = (v * *o).max(0.0)),
                    qlite_ir::Activation::Relu6 => it.for_each(|(o, &v)| *o = (v * *o).clamp(0.0, 6.0)),
                    qlite_ir::Activation::ReluN1To1 => it.for_each(|(o, &v)| *o = (v * *o).clamp(-1.0, 1.0)),
                }
            }
        });
        Some(())
    }
}

/// Float element-wise unary ops on the fast path: LOGISTIC, `1 / (1 + e^−x)`, with an
/// exponential the compiler vectorizes ([`exp`]: within 2e-7 relative of the reference's libm
/// `exp`, tested over the whole float range); RELU, RELU6, RELU_N1_TO_1, ABS and NEG with the
/// reference's own arithmetic, in place in a session.
#[derive(Debug, Clone)]
pub struct PackedLogistic {
    kind: qlite_ir::UnaryKind,
}

impl PackedLogistic {
    pub(crate) fn new(g: &Graph, n: &Node, u: &qlite_ir::op::Unary) -> Option<Self> {
        use qlite_ir::UnaryKind as K;
        let x = g.tensor(n.input(0)?)?;
        let out = g.tensor(*n.outputs.first()?)?;
        let known = matches!(u.kind, K::Logistic | K::Relu | K::Relu6 | K::ReluN1To1 | K::Abs | K::Neg);
        (known && x.dtype == DType::F32 && out.dtype == DType::F32).then_some(PackedLogistic { kind: u.kind })
    }

    pub(crate) fn run(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>, par: Parallel) -> Option<()> {
        use qlite_ir::UnaryKind as K;
        let y = Array::reuse_f32(out, xs)?;
        if y.len() != xv.len()
            || !matches!(self.kind, K::Logistic | K::Relu | K::Relu6 | K::ReluN1To1 | K::Abs | K::Neg)
        {
            return None;
        }
        // Large tensors split over the pool in blocks of 64 (a logistic costs some 20
        // operations an element, the others one).
        let cost = if self.kind == K::Logistic { 32 } else { 2 };
        let isa = crate::isa::current();
        par.chunks(y, 64, par.parts(y.len().saturating_mul(cost), y.len().div_ceil(64)), |_, first, y| {
            self.apply(isa, &xv[first * 64..first * 64 + y.len()], y)
        });
        Some(())
    }

    #[allow(unsafe_code)]
    fn apply(&self, isa: crate::isa::Isa, xv: &[f32], y: &mut [f32]) {
        use qlite_ir::UnaryKind as K;
        let it = y.iter_mut().zip(xv);
        match self.kind {
            K::Relu => it.for_each(|(o, &v)| *o = v.max(0.0)),
            K::Relu6 => it.for_each(|(o, &v)| *o = v.clamp(0.0, 6.0)),
            K::ReluN1To1 => it.for_each(|(o, &v)| *o = v.clamp(-1.0, 1.0)),
            K::Abs => it.for_each(|(o, &v)| *o = v.abs()),
            K::Neg => it.for_each(|(o, &v)| *o = -v),
            _ => {
                // LOGISTIC: the same loop compiled per tier (`floor` is one instruction from
                // SSE 4.1 on, a library call and no vectorization below).
                #[cfg(target_arch = "x86_64")]
                {
                    if isa.has_avx512() {
                        // SAFETY: the tier says AVX-512F is available.
                        unsafe { logistic_avx512(xv, y) };
                        return;
                    }
                    if isa.has_avx2() {
                        // SAFETY: the tier says AVX2 and FMA are available.
                        unsafe { logistic_avx2(xv, y) };
                        return;
                    }
                }
                let _ = isa;
                logistic(xv, y);
            }
        }
    }
}

#[inline(always)]
fn logistic(x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(o, &v)| *o = 1.0 / (1.0 + exp(-v)));
}

/// LOGISTIC on AVX-512: `1 + e^−x` by the loop above (vectorized by the compiler), then its
/// reciprocal by `vrcp14ps` and one Newton step instead of a division (the division bounded
/// EfficientNet-B0's swish layers: one per 16 lanes every several cycles), in blocks that stay
/// in L1. Within 2e-7 relative of libm's `1 / (1 + e^−x)` (tested); lanes whose `1 + e^−x`
/// reaches 2^120 (a reciprocal near the denormals, which `vrcp14ps` does not keep) divide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn logistic_avx512(x: &[f32], y: &mut [f32]) {
    for (y, x) in y.chunks_mut(1024).zip(x.chunks(1024)) {
        y.iter_mut().zip(x).for_each(|(o, &v)| *o = 1.0 + exp_with::<true>(-v));
        recip_avx512(y);
    }
}

/// `y = 1 / y` in place for `y >= 1` (or NaN): see [`logistic_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
fn recip_avx512(y: &mut [f32]) {
    use std::arch::x86_64::*;
    let (one, two, big) = (_mm512_set1_ps(1.0), _mm512_set1_ps(2.0), _mm512_set1_ps(2f32.powi(120)));
    let mut i = 0;
    while i < y.len() {
        let mask: __mmask16 = if y.len() - i >= 16 { 0xffff } else { ((1u32 << (y.len() - i)) - 1) as u16 };
        // SAFETY: the mask selects lanes i.. below y.len().
        unsafe {
            let d = _mm512_maskz_loadu_ps(mask, y.as_ptr().add(i));
            let r = _mm512_rcp14_ps(d);
            let mut r = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, two));
            let huge = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(mask, d, big);
            if huge != 0 {
                r = _mm512_mask_div_ps(r, huge, one, d);
            }
            _mm512_mask_storeu_ps(y.as_mut_ptr().add(i), mask, r);
        }
        i += 16;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn logistic_avx2(x: &[f32], y: &mut [f32]) {
    logistic(x, y)
}

/// `e^x` for f32 without a library call, so loops over it vectorize: `x = n·ln 2 + r` with
/// `|r| ≤ ln 2 / 2` (ln 2 in two parts), `e^r` by Cephes' degree-7 polynomial for `expf`, times
/// `2^n` built from its bits. Inputs are clamped to [−87.3, 88]: below, the result is the
/// smallest normal instead of a denormal or 0 (≤ 1.2e-38 away); above, e^88 instead of a larger
/// value or ∞. NaN stays NaN.
#[inline(always)]
#[allow(clippy::manual_clamp, clippy::excessive_precision)]
pub(crate) fn exp(x: f32) -> f32 {
    exp_with::<false>(x)
}

/// [`exp`], its polynomial in fused multiply-adds when `FMA` (for loops compiled with the FMA
/// feature: half the operations, and one rounding per step instead of two).
#[inline(always)]
#[allow(clippy::manual_clamp, clippy::excessive_precision)]
pub(crate) fn exp_with<const FMA: bool>(x: f32) -> f32 {
    let madd = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // max / min (not clamp, not an `as` conversion below: those compile to per-lane branches).
    let xc = x.max(-87.336_55).min(88.0);
    let n = (xc * LOG2E + 0.5).floor();
    let r = xc - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4_f32;
    p = madd(p, r, 1.398_199_9e-3);
    p = madd(p, r, 8.333_452e-3);
    p = madd(p, r, 4.166_579_6e-2);
    p = madd(p, r, 1.666_666_5e-1);
    p = madd(p, r, 5.000_000_1e-1);
    let e = madd(p * r, r, r) + 1.0;
    // n is in [−126, 127] after the clamp: a normal power of two. Adding 1.5·2^23 puts n's
    // integer value in the low mantissa bits (two's complement after the subtraction).
    const MAGIC: f32 = 12_582_912.0;
    let k = (n + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits());
    let y = e * f32::from_bits(k.wrapping_add(127) << 23);
    if x.is_nan() { x } else { y }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 16-lane MBQM against the scalar one on random values, every multiplier form the
    /// quantizer makes and every shift.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[allow(unsafe_code)]
    fn mbqm_lanes_equal_the_scalar() {
        use std::arch::x86_64::*;
        if !crate::isa::Isa::process_default().has_avx512() {
            return;
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..20_000 {
            let real = f64::from_bits(0x3f00_0000_0000_0000 + next() % 0x0100_0000_0000_0000);
            let (m, sh) = crate::fixedpoint::quantize_multiplier(real);
            let sh = if case % 7 == 0 { (next() % 40) as i32 - 31 } else { sh };
            let (left, right) = (sh.clamp(0, 31) as u32, (-sh).clamp(0, 31) as u32);
            let xs: [i32; 16] = std::array::from_fn(|k| match k {
                0 => i32::MIN,
                1 => i32::MAX,
                2 => 0,
                _ if case % 2 == 0 => (next() % 130_051) as i32 - 65_025,
                _ => next() as i32,
            });
            let mut got = [0i32; 16];
            // SAFETY: AVX-512 checked above; both arrays are 16 lanes.
            unsafe {
                let v = mbqm_avx512(_mm512_loadu_si512(xs.as_ptr() as *const _), m, left, right);
                _mm512_storeu_si512(got.as_mut_ptr() as *mut _, v);
            }
            for k in 0..16 {
                assert_eq!(got[k], crate::fixedpoint::mbqm(xs[k], m, sh.clamp(-31, 31)), "x {} m {m} sh {sh}", xs[k]);
            }
        }
    }

    /// The vectorizable `exp` against libm over the range LOGISTIC uses, and LOGISTIC itself
    /// over the whole float range (its stated bound: 2e-7 relative, or 1e-37 absolute near 0).
    /// int8 ADD and SUB in vector arithmetic: taken for ResNet-like and odd parameters (zero
    /// points at the ends, fused ReLU, an input scale 40× the other), and the same bytes as the
    /// reference's table on runs of every length around the 64-element step.
    /// A vector form of ADD / SUB over equal-length runs (`a`, `b`, `y`).
    type SumRun<'t> = dyn Fn(&[i8], &[i8], &mut [i8]) + 't;
    /// Makes a [`SumRun`] for the parameters and table (`None`: the form refused them).
    type SumForm = dyn for<'t> Fn(AddSub, &'t [i8]) -> Option<Box<SumRun<'t>>>;

    /// ADD / SUB parameter sets (ResNet-like, odd, and 40 random ones) with their reference
    /// tables, each run through `form` (a vector form, `None` if refused) on runs of every
    /// length against the table; returns how many sets had consistent scales.
    fn sums_equal_the_table(form: &SumForm) -> usize {
        use qlite_ir::op::{Activation, BinaryKind};
        let xs: Vec<i32> = (-128..128).collect();
        let pairs: Vec<(usize, usize)> = (0..256).flat_map(|i| (0..256).map(move |j| (i, j))).collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut cases = vec![
            (BinaryKind::Add, (0.0412f32, -7), (0.0391f32, 12), (0.0555f32, -128), Activation::Relu),
            (BinaryKind::Add, (0.2, 127), (0.005, -128), (0.21, 3), Activation::None),
            (BinaryKind::Sub, (0.03, 0), (0.06, -20), (0.05, 40), Activation::None),
            (BinaryKind::Sub, (0.011, 90), (0.011, 90), (0.02, 0), Activation::Relu6),
        ];
        for _ in 0..40 {
            let mut scale = || 10f32.powf((next() % 3000) as f32 / 1000.0 - 3.0);
            let (s1, s2, so) = (scale(), scale(), scale());
            let mut zp = || (next() % 256) as i32 - 128;
            let (z1, z2, zo) = (zp(), zp(), zp());
            let kind = if next().is_multiple_of(2) { BinaryKind::Add } else { BinaryKind::Sub };
            let act = [Activation::None, Activation::Relu, Activation::Relu6][(next() % 3) as usize];
            cases.push((kind, (s1, z1), (s2, z2), (so, zo), act));
        }
        let mut consistent = 0;
        for (kind, q1, q2, (so, zo), act) in cases {
            let oq = OutQ { dtype: DType::I8, scale: so, zp: zo };
            let Ok(t) = crate::kernels::binary(kind, &xs, &xs, &pairs, q1, q2, oq, act) else { continue };
            let table: Vec<i8> = t.into_iter().map(|v| v as i8).collect();
            let Ok(mults) = crate::kernels::add_params(q1.0, q2.0, so, 20) else { continue };
            let p = AddSub { kind, zps: (q1.1, q2.1), mults, left_shift: 20, zp: zo, range: oq.range(act) };
            let run =
                form(p, &table).unwrap_or_else(|| panic!("{kind:?} {q1:?} {q2:?} {so} {zo}: the form was refused"));
            consistent += 1;
            for len in [0, 1, 63, 64, 65, 200, 1000] {
                let a: Vec<i8> = (0..len).map(|_| next() as i8).collect();
                let b: Vec<i8> = (0..len).map(|_| next() as i8).collect();
                let mut got = vec![0i8; len];
                run(&a, &b, &mut got);
                let want: Vec<i8> = a
                    .iter()
                    .zip(&b)
                    .map(|(&p, &q)| table[((p as u8 as usize) ^ 0x80) << 8 | ((q as u8 as usize) ^ 0x80)])
                    .collect();
                assert_eq!(got, want, "{kind:?} {q1:?} {q2:?}, {len} elements");
            }
        }
        consistent
    }

    /// The byte-plane form (AVX-512 VBMI) is accepted for every consistent parameter set and
    /// gives the table's bytes.
    #[test]
    fn vector_sums_equal_the_table() {
        if !crate::isa::current().has_vnni_vbmi() {
            return;
        }
        let n = sums_equal_the_table(&|p, table| {
            let v = SumPlanes::new(p, table)?;
            // SAFETY: the tier has AVX-512 VBMI (checked above); the runs have one length.
            #[allow(unsafe_code)]
            Some(Box::new(move |a, b, y| unsafe { sum_vbmi(&v, a, b, y, table) }))
        });
        assert!(n >= 20, "only {n} parameter sets had consistent scales");
    }

    /// The tie-guarded float form is accepted (its load-time check on every pair passes) for
    /// every consistent parameter set and gives the table's bytes, its near-tie lanes
    /// included.
    #[test]
    fn float_sums_equal_the_table() {
        if !crate::isa::current().has_avx512() {
            return;
        }
        let n = sums_equal_the_table(&|p, table| {
            let v = SumFloat::new(p, table)?;
            // SAFETY: the tier has AVX-512 (checked above); the runs have one length.
            #[allow(unsafe_code)]
            Some(Box::new(move |a, b, y| unsafe { sum_f32_avx512(&v, a, b, y, table) }))
        });
        assert!(n >= 20, "only {n} parameter sets had consistent scales");
    }

    #[test]
    fn exp_and_logistic_stay_within_their_bound() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x < 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max((got - want).abs() / want);
            x += 0.001_37;
        }
        assert!(worst < 2e-7, "exp: worst relative error {worst:e}");
        let mut state = 0x9e37_79b9u32;
        for i in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let v = if i < 8 {
                [0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0, f32::INFINITY, f32::NEG_INFINITY][i]
            } else {
                f32::from_bits(state)
            };
            if v.is_nan() {
                continue;
            }
            let got = 1.0 / (1.0 + exp(-v));
            let want = 1.0 / (1.0 + (-v).exp());
            let err = (got - want).abs();
            assert!(err <= 2e-7 * want.abs() || err <= 1e-37, "logistic({v}) = {got}, libm {want}");
        }
        assert!((1.0 / (1.0 + exp(-f32::NAN))).is_nan());
        // The kernel itself at every tier (AVX-512: a reciprocal and a Newton step).
        crate::isa::for_each_tier(|t| {
            let sigmoid = PackedLogistic { kind: qlite_ir::UnaryKind::Logistic };
            let mut state = 0x85eb_ca6bu32;
            let mut xs: Vec<f32> = vec![0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0, 87.0, -87.0, 88.5, -88.5, 1e30, -1e30];
            xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
            xs.extend((0..200_000).map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                f32::from_bits(state)
            }));
            xs.extend((0..100_000).map(|i| -40.0 + i as f32 * 0.0008));
            let mut ys = vec![0f32; xs.len()];
            sigmoid.apply(t, &xs, &mut ys);
            let mut worst = 0f64;
            for (&v, &got) in xs.iter().zip(&ys) {
                if v.is_nan() {
                    assert!(got.is_nan(), "{t}: logistic(NaN) = {got}");
                    continue;
                }
                let want = 1.0 / (1.0 + (-(v as f64)).exp());
                let err = (got as f64 - want).abs();
                assert!(err <= 2e-7 * want || err <= 1e-37, "{t}: logistic({v}) = {got}, libm {want}");
                if want > 1e-30 {
                    worst = worst.max(err / want);
                }
            }
            eprintln!("{t}: logistic worst relative error {worst:e}");
        });
    }
}
