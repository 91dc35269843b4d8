//! Integer arithmetic of TFLite's reference kernels (double-rounding build), bit for bit.
//! See tflite/kernels/internal/quantization_util.cc and common.h upstream.

/// `QuantizeMultiplier`: `real ≈ m · 2^(shift−31)` with `m` in [2^30, 2^31).
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real == 0.0 || !real.is_finite() {
        return (0, 0);
    }
    let (f, mut e) = frexp(real);
    let mut q = (f * (1u64 << 31) as f64).round() as i64;
    if q == 1i64 << 31 {
        q /= 2;
        e += 1;
    }
    if e < -31 {
        e = 0;
        q = 0;
    }
    (q as i32, e)
}

/// C `frexp`: `x = f · 2^e` with `|f|` in [0.5, 1).
pub fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale up first.
        let (f, e) = frexp(x * (1u64 << 54) as f64);
        return (f, e - 54);
    }
    let e = exp - 1022;
    let f = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (f, e)
}

/// gemmlowp `SaturatingRoundingDoublingHighMul`.
pub fn srdhm(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let p = a as i64 * b as i64;
    let nudge = if p >= 0 { 1i64 << 30 } else { 1 - (1i64 << 30) };
    ((p + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp `RoundingDivideByPOT`: round to nearest, ties away from zero.
pub fn rdbpot(x: i32, e: i32) -> i32 {
    let e = e.clamp(0, 31);
    let mask = ((1i64 << e) - 1) as i32;
    let rem = x & mask;
    let thr = (mask >> 1) + i32::from(x < 0);
    (x >> e) + i32::from(rem > thr)
}

/// gemmlowp `SaturatingRoundingDoublingHighMul` on int16.
pub fn srdhm16(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        return i16::MAX;
    }
    let p = a as i32 * b as i32;
    let nudge = if p >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    ((p + nudge) / (1 << 15)) as i16
}

/// `SaturatingDoublingHighMul` of the reference HARD_SWISH: as [`srdhm16`], rounding toward
/// zero.
pub fn sdhm16(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        return i16::MAX;
    }
    ((a as i32 * b as i32) / (1 << 15)) as i16
}

/// gemmlowp `RoundingDivideByPOT` on int16.
pub fn rdbpot16(x: i16, e: i32) -> i16 {
    let e = e.clamp(0, 15);
    let mask = ((1i32 << e) - 1) as i16;
    let rem = x & mask;
    let thr = (mask >> 1) + i16::from(x < 0);
    (x >> e) + i16::from(rem > thr)
}

/// `SaturatingLeftShift` of the reference HARD_SWISH.
pub fn sat_left_shift16(x: i16, amount: i32) -> i16 {
    let r = (x as i64) << amount.clamp(0, 31);
    r.clamp(i16::MIN as i64, i16::MAX as i64) as i16
}

/// `DownScaleInt32ToInt16Multiplier`: the top 16 bits of a Q31 multiplier, rounded.
pub fn downscale_multiplier16(m: i32) -> i16 {
    const OFFSET: i32 = 1 << 15;
    if m >= i32::MAX - OFFSET {
        return i16::MAX;
    }
    ((m + OFFSET) >> 16) as i16
}

/// `MultiplyByQuantizedMultiplier` (int32, double rounding).
pub fn mbqm(x: i32, m: i32, shift: i32) -> i32 {
    let left = shift.max(0);
    let right = (-shift).max(0);
    rdbpot(srdhm(x.wrapping_mul(1i32.wrapping_shl(left as u32)), m), right)
}

/// `MultiplyByQuantizedMultiplier(int64_t x, ...)` (common.cc): the multiplier reduced to
/// 16 bits (rounded, saturated at 0x7FFF), one rounding right shift by `15 − shift`; the
/// result truncated to int32 as the C code does.
pub fn mbqm64(x: i64, m: i32, shift: i32) -> i32 {
    let reduced: i64 = if m < 0x7FFF_0000 { ((m as i64) + (1 << 15)) >> 16 } else { 0x7FFF };
    let total_shift = (15 - shift).clamp(1, 63);
    (x.wrapping_mul(reduced).wrapping_add(1i64 << (total_shift - 1)) >> total_shift) as i32
}

/// C `round` on f32: half away from zero.
#[inline(always)]
pub fn round_half_away(x: f32) -> f32 {
    // `f32::round`, written with `trunc` (one instruction where SSE4.1 or AVX is enabled) so
    // loops over it vectorize: `x − trunc(x)` is exact, and the ±1 step is taken at |·| >= 0.5.
    let t = x.trunc();
    if (x - t).abs() >= 0.5 { t + 1f32.copysign(x) } else { t }
}

/// `MultiplyByQuantizedMultiplierGreaterThanOne`: `SRDHM(x · 2^left_shift, m)`.
pub fn mbqm_greater_than_one(x: i32, m: i32, left_shift: i32) -> i32 {
    srdhm(x.wrapping_mul(1i32.wrapping_shl(left_shift.clamp(0, 31) as u32)), m)
}

/// gemmlowp `SaturatingRoundingMultiplyByPOT<exponent>` on int32.
pub fn sat_mul_pot(x: i32, exponent: i32) -> i32 {
    if exponent > 0 {
        let threshold = (1i32 << (31 - exponent)) - 1;
        if x > threshold {
            i32::MAX
        } else if x < -threshold {
            i32::MIN
        } else {
            x.wrapping_shl(exponent as u32)
        }
    } else if exponent < 0 {
        rdbpot(x, -exponent)
    } else {
        x
    }
}

/// gemmlowp `RoundingHalfSum` on int32.
pub fn rounding_half_sum(a: i32, b: i32) -> i32 {
    let sum = a as i64 + b as i64;
    let sign = if sum >= 0 { 1 } else { -1 };
    ((sum + sign) / 2) as i32
}

/// gemmlowp `exp_on_interval_between_negative_one_quarter_and_0_excl` (Q0.31 in and out).
fn exp_on_interval(a: i32) -> i32 {
    const CONSTANT_TERM: i32 = 1895147668; // exp(-1/8)
    const ONE_THIRD: i32 = 715827883;
    let x = a.wrapping_add(1 << 28);
    let x2 = srdhm(x, x);
    let x3 = srdhm(x2, x);
    let x4 = srdhm(x2, x2);
    let x4_over_4 = sat_mul_pot(x4, -2);
    let poly = sat_mul_pot(srdhm(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2), -1);
    CONSTANT_TERM.wrapping_add(srdhm(CONSTANT_TERM, x.wrapping_add(poly)))
}

/// gemmlowp `exp_on_negative_values` for an input with `integer_bits` integer bits; the result
/// is Q0.31.
pub fn exp_on_negative_values(a: i32, integer_bits: i32) -> i32 {
    let frac_bits = 31 - integer_bits;
    let one_quarter = 1i32 << (frac_bits - 2);
    let mask = one_quarter - 1;
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    let mut result = exp_on_interval(sat_mul_pot(a_mod_quarter_minus_one_quarter, integer_bits));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    const BARREL: [(i32, i32); 7] =
        [(-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242)];
    for (exponent, multiplier) in BARREL {
        if integer_bits > exponent {
            let shift = frac_bits + exponent;
            if remainder & (1i32 << shift) != 0 {
                result = srdhm(result, multiplier);
            }
        }
    }
    if integer_bits > 5 {
        let clamp = -(1i32 << (36 - integer_bits));
        if a < clamp {
            result = 0;
        }
    }
    if a == 0 {
        result = i32::MAX;
    }
    result
}

/// gemmlowp `one_over_one_plus_x_for_x_in_0_1` (Q0.31 in and out).
pub fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    const C48_17: i32 = 1515870810; // Q2.29
    const CNEG32_17: i32 = -1010580540;
    const F2_ONE: i32 = 1 << 29;
    let half_denominator = rounding_half_sum(a, i32::MAX);
    let mut x = C48_17.wrapping_add(srdhm(half_denominator, CNEG32_17));
    for _ in 0..3 {
        let half_denominator_times_x = srdhm(half_denominator, x);
        let one_minus = F2_ONE.wrapping_sub(half_denominator_times_x);
        x = x.wrapping_add(sat_mul_pot(srdhm(x, one_minus), 2));
    }
    sat_mul_pot(x, 1)
}

/// TFLite `GetReciprocal`: returns (reciprocal in Q0.31, num_bits_over_unit).
pub fn get_reciprocal(x: i32, x_integer_digits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros() as i32;
    let num_bits_over_unit = x_integer_digits - headroom_plus_one;
    let shifted_sum_minus_one = ((x as u32).wrapping_shl(headroom_plus_one as u32)).wrapping_sub(1u32 << 31) as i32;
    (one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit)
}

/// `QuantizeMultiplierSmallerThanOneExp`'s input check, as an error.
pub fn multiplier_in_unit(real: f64) -> bool {
    real > 0.0 && real < 1.0
}

/// `GetInvSqrtQuantizedMultiplierExp` (common.h): `1/√input` as a multiplier and shift, by five
/// Newton-Raphson steps in gemmlowp Q3.28; the shift is multiplied by `reverse_shift`.
pub fn inv_sqrt_quantized_multiplier_exp(mut input: i32, reverse_shift: i32) -> (i32, i32) {
    if input <= 1 {
        return (i32::MAX, 0);
    }
    let mut shift = 11i32;
    while input >= (1 << 29) {
        input /= 4;
        shift += 1;
    }
    let max_left_shift_bits = (input as u32).leading_zeros() - 1;
    let left_shift_bit_pairs = max_left_shift_bits / 2 - 1;
    shift -= left_shift_bit_pairs as i32;
    input = input.wrapping_shl(2 * left_shift_bit_pairs);
    // F3 values: raw i32 with 3 integer bits. F3·F3 = F6 (srdhm of the raws); Rescale<3> from
    // F6 or F9 is a saturating left shift by 3 or 6.
    let fixedpoint_input = input >> 1;
    let half_input = sat_mul_pot(fixedpoint_input, -1);
    let half_three = (1 << 28) + (1 << 27);
    let mut x = 1i32 << 28;
    for _ in 0..5 {
        let x3 = sat_mul_pot(srdhm(srdhm(x, x), x), 6);
        x = sat_mul_pot(srdhm(half_three, x).wrapping_sub(srdhm(half_input, x3)), 3);
    }
    let half_sqrt_2 = 1518500250;
    let mut inv = srdhm(x, half_sqrt_2);
    if shift < 0 {
        inv = inv.wrapping_shl((-shift) as u32);
        shift = 0;
    }
    (inv, shift * reverse_shift)
}

/// `SaturatingAddNonGemmlowp` / `SaturatingSub` on int32: the exact result, clamped.
fn sat_add(a: i32, b: i32) -> i32 {
    (a as i64 + b as i64).clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

fn sat_sub(a: i32, b: i32) -> i32 {
    (a as i64 - b as i64).clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// `log_x_for_x_greater_than_or_equal_to_1_impl` (common.h): `ln(x)` of a fixed-point value with
/// `input_bits` integer bits, as a raw value with `output_bits` integer bits.
pub fn log_x_for_x_ge_1(input: i32, input_bits: i32, output_bits: i32) -> i32 {
    const LOG_2: i32 = 1488522236;
    const SQRT_SQRT_HALF: i32 = 1805811301;
    const SQRT_HALF: i32 = 1518500250;
    const ONE_QUARTER: i32 = 536870912;
    const ALPHA_N: i32 = 117049297;
    const ALPHA_D: i32 = 127690142;
    const ALPHA_I: i32 = 1057819769;
    const ALPHA_F: i32 = 638450708;
    let accum_bits = output_bits + 1;
    let shifted_quarter = sat_mul_pot(ONE_QUARTER, -accum_bits);
    let z_a = input;
    let z_a_headroom_plus_1 = (z_a as u32).leading_zeros() as i32;
    let r_a_tmp = sat_mul_pot(z_a, z_a_headroom_plus_1 - 1);
    let r_a_raw = sat_mul_pot(srdhm(r_a_tmp, SQRT_HALF), 1);
    let z_a_pow_2_adj = sat_add(sat_mul_pot(input_bits - z_a_headroom_plus_1, 31 - accum_bits), shifted_quarter);
    let z_b = srdhm(z_a, SQRT_HALF);
    let z_b_headroom = (z_b as u32).leading_zeros() as i32 - 1;
    let r_b_raw = sat_mul_pot(z_a, z_b_headroom);
    let z_b_pow_2_adj = sat_sub(sat_mul_pot(input_bits - z_b_headroom, 31 - accum_bits), shifted_quarter);
    let r = r_a_raw.min(r_b_raw);
    let z_pow_2_adj = z_a_pow_2_adj.max(z_b_pow_2_adj);
    let p = rounding_half_sum(r, SQRT_SQRT_HALF);
    let mut q = r.wrapping_sub(SQRT_SQRT_HALF);
    q = q.wrapping_add(q);
    let common_sq = srdhm(q, q);
    let num = srdhm(q, r).wrapping_add(srdhm(srdhm(q, common_sq), ALPHA_N));
    let denom_minus_one =
        srdhm(p, ALPHA_I.wrapping_add(q).wrapping_add(srdhm(ALPHA_D, common_sq))).wrapping_add(srdhm(ALPHA_F, q));
    let recip_denom = one_over_one_plus_x_for_x_in_0_1(denom_minus_one);
    let num_scaled = sat_mul_pot(num, -accum_bits);
    let sum = srdhm(z_pow_2_adj, LOG_2).wrapping_add(srdhm(num_scaled, recip_denom));
    sat_mul_pot(sum, accum_bits - output_bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_edges() {
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        // Rounds up to 2^31 → halved, exponent bumped.
        assert_eq!(quantize_multiplier(1.0 - 1e-12), (1 << 30, 1));
        // Tiny multipliers flush to zero.
        assert_eq!(quantize_multiplier(1e-12), (0, 0));
        let (m, s) = quantize_multiplier(0.3);
        assert_eq!((m, s), (1288490189, -1));
    }

    #[test]
    fn rounding_helpers() {
        assert_eq!(srdhm(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(rdbpot(5, 1), 3);
        assert_eq!(rdbpot(-5, 1), -3);
        assert_eq!(rdbpot(4, 1), 2);
        assert_eq!(mbqm(100, 1 << 30, 0), 50);
        // SRDHM nudges negative ties toward zero: -1.5 → -1.
        assert_eq!(mbqm(-3, 1 << 30, 0), -1);
        assert_eq!(frexp(8.0), (0.5, 4));
        assert_eq!(frexp(0.75), (0.75, 0));
    }

    #[test]
    fn gemmlowp_functions_track_their_real_counterparts() {
        // exp on Q5.26 inputs, result Q0.31.
        for x in [-0.1f64, -0.5, -1.0, -2.5, -7.0] {
            let raw = (x * (1u64 << 26) as f64) as i32;
            let got = exp_on_negative_values(raw, 5) as f64 / (1u64 << 31) as f64;
            assert!((got - x.exp()).abs() < 1e-6, "exp({x}) = {got}");
        }
        assert_eq!(exp_on_negative_values(0, 5), i32::MAX);
        for x in [0.1f64, 0.5, 0.9] {
            let raw = (x * (1u64 << 31) as f64) as i32;
            let got = one_over_one_plus_x_for_x_in_0_1(raw) as f64 / (1u64 << 31) as f64;
            assert!((got - 1.0 / (1.0 + x)).abs() < 1e-6, "1/(1+{x}) = {got}");
        }
        // 3.0 in Q12.19 is 1.5 · 2^1: the reciprocal is 1/1.5 = 0.666.. with one bit over unit.
        let (r, bits) = get_reciprocal(3 << 19, 12);
        assert_eq!(bits, 1);
        assert!(((r as f64 / (1u64 << 31) as f64) / 2f64.powi(bits) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(sat_mul_pot(i32::MAX / 2, 2), i32::MAX);
        assert_eq!(sat_mul_pot(-5, -1), -3);
        assert_eq!(rounding_half_sum(3, 4), 4);
        assert_eq!(rounding_half_sum(-3, -4), -4);
    }
}
