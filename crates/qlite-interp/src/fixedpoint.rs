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

/// `MultiplyByQuantizedMultiplier` (int32, double rounding).
pub fn mbqm(x: i32, m: i32, shift: i32) -> i32 {
    let left = shift.max(0);
    let right = (-shift).max(0);
    rdbpot(srdhm(x.wrapping_mul(1i32.wrapping_shl(left as u32)), m), right)
}

/// C `round` on f32: half away from zero.
pub fn round_half_away(x: f32) -> f32 {
    x.round()
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
}
