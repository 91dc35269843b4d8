//! Elementwise ops: binary (ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE), the unary
//! activations and maths (table, fixed-point and float forms), PRELU; float and int8 side by side.

use super::*;

pub fn binary_f32(op: &Binary, a: &Array, b: &Array, a_in: &[f32], b_in: &[f32], out_shape: &[usize]) -> Vec<f32> {
    let ia = broadcast_indices(out_shape, a.shape());
    let ib = broadcast_indices(out_shape, b.shape());
    ia.iter()
        .zip(&ib)
        .map(|(&i, &j)| {
            let (x, y) = (a_in[i], b_in[j]);
            let v = match op.kind {
                BinaryKind::Add => x + y,
                BinaryKind::Sub => x - y,
                BinaryKind::Mul => x * y,
                BinaryKind::Maximum => x.max(y),
                BinaryKind::Minimum => x.min(y),
                BinaryKind::Div => x / y,
                BinaryKind::SquaredDifference => (x - y) * (x - y),
            };
            op.activation.apply(v)
        })
        .collect()
}

pub fn unary_f32(kind: UnaryKind, x: &[f32]) -> Vec<f32> {
    match kind {
        UnaryKind::Relu => x.iter().map(|v| Activation::Relu.apply(*v)).collect(),
        UnaryKind::Relu6 => x.iter().map(|v| Activation::Relu6.apply(*v)).collect(),
        // As the reference kernel: `in · min(6, max(0, in + 3)) / 6` in float.
        UnaryKind::HardSwish => x.iter().map(|&v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0).collect(),
        UnaryKind::Logistic => x.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
        UnaryKind::Tanh => x.iter().map(|v| v.tanh()).collect(),
        UnaryKind::Exp => x.iter().map(|v| v.exp()).collect(),
        UnaryKind::Sqrt => x.iter().map(|v| v.sqrt()).collect(),
        UnaryKind::Neg => x.iter().map(|v| -v).collect(),
        UnaryKind::Abs => x.iter().map(|v| v.abs()).collect(),
        UnaryKind::ReluN1To1 => x.iter().map(|v| v.clamp(-1.0, 1.0)).collect(),
        UnaryKind::Elu
        | UnaryKind::Gelu
        | UnaryKind::GeluTanh
        | UnaryKind::Rsqrt
        | UnaryKind::Erf
        | UnaryKind::Erfc => {
            let f = unary_fn(kind);
            x.iter().map(|&v| f(v)).collect()
        }
    }
}

/// The float function of ELU, GELU (both forms) and RSQRT as LiteRT's float kernels compute
/// them; the int8 kernels tabulate the same function.
pub fn unary_fn(kind: UnaryKind) -> fn(f32) -> f32 {
    match kind {
        UnaryKind::Elu => |v| if v < 0.0 { libm::expm1f(v) } else { v },
        // reference_ops::Gelu: 0.5 · x · erfc(x · −1/√2).
        UnaryKind::Gelu => |v| 0.5 * v * libm::erfcf(v * -std::f32::consts::FRAC_1_SQRT_2),
        UnaryKind::GeluTanh => |v| {
            const SQRT_2_OVER_PI: f32 = 0.797_884_6;
            0.5 * v * (1.0 + (SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)).tanh())
        },
        UnaryKind::Rsqrt => |v| 1.0 / v.sqrt(),
        UnaryKind::Erf => libm::erff,
        UnaryKind::Erfc => libm::erfcf,
        UnaryKind::Logistic => |v| 1.0 / (1.0 + (-v).exp()),
        UnaryKind::Tanh => |v| v.tanh(),
        UnaryKind::Exp => |v| v.exp(),
        UnaryKind::Sqrt => |v| v.sqrt(),
        UnaryKind::Neg => |v| -v,
        UnaryKind::Abs => |v| v.abs(),
        UnaryKind::Relu => |v| v.max(0.0),
        UnaryKind::Relu6 => |v| v.clamp(0.0, 6.0),
        UnaryKind::ReluN1To1 => |v| v.clamp(-1.0, 1.0),
        UnaryKind::HardSwish => |v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
    }
}

/// PRELU in float: `x` where `x >= 0`, else `x · alpha` (alpha broadcast).
pub fn prelu_f32(x: &Array, alpha: &Array, xv: &[f32], av: &[f32], out_shape: &[usize]) -> Vec<f32> {
    let ix = broadcast_indices(out_shape, x.shape());
    let ia = broadcast_indices(out_shape, alpha.shape());
    ix.iter().zip(&ia).map(|(&i, &a)| if xv[i] >= 0.0 { xv[i] } else { xv[i] * av[a] }).collect()
}

/// The left shift of the general quantized ADD / SUB: 20 for 8-bit tensors, 15 for 16-bit
/// ones (add.cc / sub.cc; the int16 general path is taken when `pot_scale_int16` is false).
pub fn add_left_shift(dtype: DType) -> i32 {
    if dtype == DType::I16 { 15 } else { 20 }
}

/// Prepared parameters of `reference_integer_ops::Add` (general path) and the matching SUB.
pub fn add_params(s1: f32, s2: f32, s_out: f32, left_shift: i32) -> Result<[(i32, i32); 3], String> {
    let twice_max = (2.0 * s1.max(s2)) as f64;
    let r1 = s1 as f64 / twice_max;
    let r2 = s2 as f64 / twice_max;
    let r_out = twice_max / (((1i64 << left_shift) as f32 * s_out) as f64);
    for (r, what) in [(r1, "input 1"), (r2, "input 2"), (r_out, "output")] {
        if !multiplier_in_unit(r) {
            return Err(format!("the {what} rescale multiplier {r} is outside (0, 1): scales are inconsistent"));
        }
    }
    Ok([quantize_multiplier(r1), quantize_multiplier(r2), quantize_multiplier(r_out)])
}

/// ADD / SUB / MUL over broadcast index pairs (`reference_integer_ops::Add`, `sub.h`, `Mul`).
#[allow(clippy::too_many_arguments)]
pub fn binary(
    kind: BinaryKind,
    a: &[i32],
    b: &[i32],
    pairs: &[(usize, usize)],
    (s1, z1): (f32, i32),
    (s2, z2): (f32, i32),
    out: OutQ,
    act: Activation,
) -> Result<Vec<i32>, String> {
    let (lo, hi) = out.range(act);
    match kind {
        BinaryKind::Add | BinaryKind::Sub => {
            let left_shift = add_left_shift(out.dtype);
            let [(m1, sh1), (m2, sh2), (mo, sho)] = add_params(s1, s2, out.scale, left_shift)?;
            Ok(pairs
                .iter()
                .map(|&(i, j)| {
                    let sa = mbqm((a[i] - z1).wrapping_mul(1 << left_shift), m1, sh1);
                    let sb = mbqm((b[j] - z2).wrapping_mul(1 << left_shift), m2, sh2);
                    let raw = if kind == BinaryKind::Add { sa.wrapping_add(sb) } else { sa.wrapping_sub(sb) };
                    mbqm(raw, mo, sho).wrapping_add(out.zp).clamp(lo, hi)
                })
                .collect())
        }
        BinaryKind::Mul => {
            let (m, sh) = quantize_multiplier((s1 * s2 / out.scale) as f64);
            Ok(pairs
                .iter()
                .map(|&(i, j)| out.zp.wrapping_add(mbqm((a[i] - z1).wrapping_mul(b[j] - z2), m, sh)).clamp(lo, hi))
                .collect())
        }
        // reference_ops::MaximumMinimumBroadcastSlow: the raw values compared (TFLite's spec
        // gives inputs and output the same parameters; LiteRT does not rescale either way).
        BinaryKind::Maximum => Ok(pairs.iter().map(|&(i, j)| a[i].max(b[j])).collect()),
        BinaryKind::Minimum => Ok(pairs.iter().map(|&(i, j)| a[i].min(b[j])).collect()),
        // squared_difference.cc: both inputs rescaled to twice the larger scale with 7 bits of
        // headroom, the difference squared in int32, then rescaled to the output.
        BinaryKind::SquaredDifference => {
            let twice_max = 2.0 * s1.max(s2);
            let smaller = |real: f64| {
                let (m, sh) = quantize_multiplier(real);
                if sh > 0 {
                    Err(format!("SquaredDifference multiplier {real} is not below 1 (LiteRT aborts on it)"))
                } else {
                    Ok((m, sh))
                }
            };
            let (m1, sh1) = smaller(s1 as f64 / twice_max as f64)?;
            let (m2, sh2) = smaller(s2 as f64 / twice_max as f64)?;
            let (mo, sho) = smaller((twice_max as f64 * twice_max as f64) / ((1i32 << 14) as f32 * out.scale) as f64)?;
            Ok(pairs
                .iter()
                .map(|&(i, j)| {
                    let sa = mbqm((a[i] - z1).wrapping_mul(1 << 7), m1, sh1);
                    let sb = mbqm((b[j] - z2).wrapping_mul(1 << 7), m2, sh2);
                    let d = sa.wrapping_sub(sb);
                    mbqm(d.wrapping_mul(d), mo, sho).wrapping_add(out.zp).clamp(lo, hi)
                })
                .collect())
        }
        BinaryKind::Div => {
            Err("Div has no int8 kernel (LiteRT has none either; the quantizer keeps it in float)".into())
        }
    }
}

/// sigmoid on [0, 10.7) in 0.16 fixed point, 256 points 1/24 apart: the numbers LiteRT's int16
/// LOGISTIC and TANH interpolate between (`sigmoid_table_uint16`, common.h). They are not plain
/// samples of sigmoid(i/24) (44 differ by one from those): the table is data, needed as is for
/// bit-exact results.
#[rustfmt::skip]
const SIGMOID_TABLE_U16: [u16; 256] = [
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794, 41432, 42064, 42688,
    43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409,
    51865, 52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110,
    61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186,
    63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900,
    64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208,
    65221, 65234, 65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433, 65438, 65442, 65445, 65449,
    65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530,
    65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535,
];

/// `CheckedLog2`: the rounded base-2 logarithm of a scale (in float, as LiteRT computes it)
/// and whether the scale is a power of two within 1e-3 of an octave.
pub fn checked_log2(x: f32) -> (bool, i32) {
    let l = x.ln() * (1.0f32 / 2f32.ln());
    let r = round_half_away(l);
    ((l - r).abs() < 1e-3, r as i32)
}

/// The input rescale of int16 LOGISTIC / TANH (`SigmoidPrepare` / `TanhPrepare`): the input
/// multiplier (0 on the power-of-two path) and left shift. `tanh` accepts a power-of-two input
/// scale of 2^-12 or 2^-11, LOGISTIC only 2^-12; other scales are brought to 1/(3·4096).
pub fn sigmoid_tanh_int16_params(s_in: f32, tanh: bool) -> (i32, i32) {
    const INPUT_INTEGER_BITS: i32 = 3;
    let (mut pot, log2) = checked_log2(s_in);
    let left_shift = (15 - INPUT_INTEGER_BITS) + log2;
    pot &= left_shift == 0 || (tanh && left_shift == 1);
    if pot {
        return (0, left_shift);
    }
    let mut multiplier = s_in as f64 * 4096.0 * 3.0;
    let mut shift = 0;
    while multiplier <= 32767.0 / 2.0 && shift <= 30 {
        shift += 1;
        multiplier *= 2.0;
    }
    (multiplier as i32, shift)
}

/// `reference_integer_ops::Logistic` / `Tanh` on int16 (output scale 2^-15, zero points 0):
/// the input rescaled to 1/(3·4096) per unit, the sigmoid table interpolated on its absolute
/// value, the sign applied by symmetry.
pub fn sigmoid_tanh_int16(x: &[i32], s_in: f32, tanh: bool) -> Vec<i32> {
    let (mut multiplier, mut left_shift) = sigmoid_tanh_int16_params(s_in, tanh);
    if multiplier == 0 {
        multiplier = 3 << left_shift;
        left_shift = 0;
    }
    let round = if left_shift > 0 { 1i32 << (left_shift - 1) } else { 0 };
    x.iter()
        .map(|&v| {
            let input = v.wrapping_mul(multiplier).wrapping_add(round) >> left_shift;
            let abs = input.unsigned_abs();
            if tanh {
                let uh = abs >> 8;
                let result: i32 = if uh >= 255 {
                    0xFFFF << 8
                } else {
                    let ua = SIGMOID_TABLE_U16[uh as usize] as u32;
                    let ub = SIGMOID_TABLE_U16[uh as usize + 1] as u32;
                    let ut = abs & 0xFF;
                    (ua << 8).wrapping_add(ut.wrapping_mul(ub.wrapping_sub(ua))) as i32
                };
                let r = if input >= 0 {
                    result - (1 << (14 + 9)) + (1 << (9 - 2))
                } else {
                    -result + (1 << (14 + 9)) + (1 << (9 - 2)) - 1
                };
                (r >> (9 - 1)) as i16 as i32
            } else {
                let uh = abs >> 9;
                let mut result: u32 = if uh >= 255 {
                    0x7FFF << 10
                } else {
                    let ua = SIGMOID_TABLE_U16[uh as usize] as u32;
                    let ub = SIGMOID_TABLE_U16[uh as usize + 1] as u32;
                    let ut = abs & 0x1FF;
                    (ua << 9).wrapping_add(ut.wrapping_mul(ub.wrapping_sub(ua)))
                };
                result = if input >= 0 {
                    result.wrapping_add(1 << 9)
                } else {
                    (1u32 << (16 + 9)).wrapping_sub(result).wrapping_add(1 << 9).wrapping_sub(1)
                };
                (result >> 10) as i16 as i32
            }
        })
        .collect()
}

/// `LUTPopulate` + lookup: LOGISTIC and TANH on 8-bit tensors (both resolvers build this table
/// in float).
pub fn lut(kind: UnaryKind, x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Result<Vec<i32>, String> {
    let f: fn(f32) -> f32 = match kind {
        UnaryKind::Logistic
        | UnaryKind::Tanh
        | UnaryKind::Elu
        | UnaryKind::Gelu
        | UnaryKind::GeluTanh
        | UnaryKind::Exp => crate::kernels::unary_fn(kind),
        _ => return Err("only Logistic, Tanh, Elu, Gelu and Exp use a lookup table".into()),
    };
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let inverse_scale = 1.0 / out.scale;
    let entry = |v: i32| {
        let dequantized = s_in * (v - z_in) as f32;
        let rescaled = round_half_away(f(dequantized) * inverse_scale);
        ((rescaled + out.zp as f32) as i32).clamp(lo, hi)
    };
    let table: Vec<i32> = (lo..=hi).map(entry).collect();
    Ok(x.iter().map(|&v| table[(v - lo) as usize]).collect())
}

/// `HardSwishPrepare`: the output and "relu-ish" multipliers as 16-bit fixed point with their
/// exponents; an output exponent above 0 is refused, as LiteRT refuses it.
pub fn hard_swish_params(s_in: f32, s_out: f32) -> Result<(i16, i32, i16, i32), String> {
    let hires_input_scale = (1.0f32 / 128.0) * s_in;
    let reluish_scale = 3.0f32 / 32768.0;
    let (out_m, out_e) = quantize_multiplier((hires_input_scale / s_out) as f64);
    if out_e > 0 {
        return Err(format!(
            "HARD_SWISH input scale {s_in} is more than 128 times the output scale {s_out} (LiteRT refuses it too)"
        ));
    }
    let (rel_m, rel_e) = quantize_multiplier((hires_input_scale / reluish_scale) as f64);
    Ok((downscale_multiplier16(out_m), out_e, downscale_multiplier16(rel_m), rel_e))
}

/// HARD_SWISH on 8-bit tensors: `HardSwishPrepare`'s 16-bit multipliers (computed from the
/// float scales as the kernel does) and `reference_ops::HardSwish`'s int16 arithmetic.
pub fn hard_swish(x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Result<Vec<i32>, String> {
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let (out_m16, out_e, rel_m16, rel_e) = hard_swish_params(s_in, out.scale)?;
    Ok(x.iter()
        .map(|&v| {
            let input_value = (v - z_in) as i16;
            let hires = input_value.wrapping_mul(1 << 7);
            let preshift_out = srdhm16(hires, out_m16);
            let mut reluish = hires;
            if rel_e > 0 {
                reluish = sat_left_shift16(reluish, rel_e - 1);
            }
            reluish = srdhm16(reluish, rel_m16);
            if rel_e > 0 {
                reluish = sat_left_shift16(reluish, 1);
            }
            if rel_e < 0 {
                reluish = rdbpot16(reluish, -rel_e);
            }
            let reluish = ((reluish as i32 + (1 << 15)) >> 1) as i16;
            let pre = sdhm16(reluish, preshift_out);
            let o = rdbpot16(pre, -out_e).wrapping_add(out.zp as i16);
            (o as i32).clamp(lo, hi)
        })
        .collect())
}

/// ABS on 8-bit tensors (`AbsEvalQuantized`): `|q − z_in|`, rescaled only when the scales differ.
pub fn abs(x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Vec<i32> {
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let rescale = (s_in != out.scale).then(|| quantize_multiplier((s_in / out.scale) as f64));
    x.iter()
        .map(|&v| {
            let value = (v - z_in).abs();
            match rescale {
                None => value + out.zp,
                Some((m, sh)) => mbqm(value, m, sh).wrapping_add(out.zp),
            }
            .clamp(lo, hi)
        })
        .collect()
}

/// SQRT on 8-bit tensors (`SqrtEvalQuantized`): computed in float and truncated toward zero,
/// as LiteRT does; a negative input is an error there too.
pub fn sqrt(x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Result<Vec<i32>, String> {
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    x.iter()
        .map(|&v| {
            let d = s_in * (v - z_in) as f32;
            if d < 0.0 {
                return Err(format!("Sqrt is only defined for non-negative values, got {d}"));
            }
            Ok(((d.sqrt() / out.scale) as i32).wrapping_add(out.zp).clamp(lo, hi))
        })
        .collect()
}

/// RSQRT on int8 (`RsqrtEvalQuantizedInt8`): `1/√(q − z_in)` from
/// `GetInvSqrtQuantizedMultiplierExp`, then `1/(√s_in · s_out)`; an input below the zero point
/// is an error, as in LiteRT, and `q = z_in` gives the largest output.
pub fn rsqrt(x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Result<Vec<i32>, String> {
    const K_SHIFT: i32 = 20;
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let (m, sh) = quantize_multiplier(1.0 / (s_in.sqrt() * out.scale) as f64);
    x.iter()
        .map(|&v| {
            if v < z_in {
                return Err("Rsqrt is only defined for positive values".to_string());
            }
            let value = v - z_in;
            if value == 0 {
                return Ok(hi);
            }
            let (inv, inv_sh) = inv_sqrt_quantized_multiplier_exp(value, -1);
            let data = mbqm(1, inv, inv_sh + K_SHIFT);
            Ok(mbqm(data, m, sh - K_SHIFT).wrapping_add(out.zp).clamp(lo, hi))
        })
        .collect()
}

/// Standalone RELU / RELU6 on quantized tensors (`QuantizedReluX` + `ReluX`).
pub fn relu(kind: UnaryKind, x: &[i32], (s_in, z_in): (f32, i32), out: OutQ) -> Vec<i32> {
    let (lo, hi) = out.dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let act_min = lo.max(out.zp.saturating_add(round_half_away(0.0 / out.scale) as i32));
    let act_min = match kind {
        UnaryKind::ReluN1To1 => lo.max(out.zp.saturating_add(round_half_away(-1.0 / out.scale) as i32)),
        _ => act_min,
    };
    let act_max = match kind {
        UnaryKind::Relu6 => hi.min(out.zp.saturating_add(round_half_away(6.0 / out.scale) as i32)),
        UnaryKind::ReluN1To1 => hi.min(out.zp.saturating_add(round_half_away(1.0 / out.scale) as i32)),
        _ => hi,
    };
    let (m, sh) = quantize_multiplier((s_in / out.scale) as f64);
    x.iter().map(|&v| out.zp.wrapping_add(mbqm(v - z_in, m, sh)).clamp(act_min, act_max)).collect()
}

/// PRELU's two multipliers, as LiteRT's prepare computes them: the real multipliers in float
/// (`s_in / s_out` and `s_in · s_alpha / s_out`, float arithmetic widened to double).
pub fn prelu_params(s_in: f32, s_alpha: f32, s_out: f32) -> Result<[(i32, i32); 2], String> {
    let r1 = (s_in / s_out) as f64;
    let r2 = (s_in * s_alpha / s_out) as f64;
    for (r, what) in [(r1, "identity"), (r2, "alpha")] {
        if !(r.is_finite() && r > 0.0 && r < (1u64 << 30) as f64) {
            return Err(format!("PRELU {what} multiplier {r:e} has no fixed-point form"));
        }
    }
    Ok([quantize_multiplier(r1), quantize_multiplier(r2)])
}

/// PRELU, reference_ops::BroadcastPrelu4DSlow: `x − z_in` scaled by the first multiplier when
/// non-negative, else `(x − z_in)(alpha − z_alpha)` by the second; plus the output zero point,
/// clamped. `pairs` maps each output to its (input, alpha) elements.
pub fn prelu(
    x: &[i32],
    alpha: &[i32],
    pairs: &[(usize, usize)],
    (s_in, z_in): (f32, i32),
    (s_a, z_a): (f32, i32),
    out: OutQ,
) -> Result<Vec<i32>, String> {
    let [(m1, e1), (m2, e2)] = prelu_params(s_in, s_a, out.scale)?;
    let (lo, hi) = activation_range(Activation::None, out.dtype, out.scale, out.zp);
    Ok(pairs
        .iter()
        .map(|&(i, a)| {
            let v = x[i] - z_in;
            let y = if v >= 0 { mbqm(v, m1, e1) } else { mbqm(v * (alpha[a] - z_a), m2, e2) };
            (y + out.zp).clamp(lo, hi)
        })
        .collect())
}

#[cfg(test)]
mod int16_tests {
    use super::*;

    /// int16 LOGISTIC / TANH: 0 maps to one half (LOGISTIC) and to 0 (TANH), inputs far out
    /// saturate, the kernels are point-symmetric as the float functions are, and within 2^-14
    /// of them. (Bit-exactness is LiteRT's to judge: the int16 conformance cases.)
    #[test]
    fn int16_logistic_and_tanh_are_symmetric_and_saturate() {
        let x: Vec<i32> = vec![0, 1, -1, 4096, -4096, 32767, -32768, 12345, -12345];
        let s = 1.0f32 / 4096.0; // LiteRT's power-of-two path
        let sig = sigmoid_tanh_int16(&x, s, false);
        let tanh = sigmoid_tanh_int16(&x, s, true);
        assert_eq!(sig[0], 16384);
        assert_eq!(tanh[0], 0);
        // Far beyond the table (|x| = 32 on a scale of 2^-10): saturated.
        let far = [32767, -32768];
        // (LiteRT's negative side mirrors 0x7FFF·2^10 around 2^25 with its rounding: 1, not 0.)
        assert_eq!(sigmoid_tanh_int16(&far, 1.0 / 1024.0, false), [32767, 1]);
        let t = sigmoid_tanh_int16(&far, 1.0 / 1024.0, true);
        assert!(t[0] >= 32766 && t[1] <= -32766, "{t:?}");
        for k in [1, 3, 7] {
            assert!((sig[k] + sig[k + 1] - 32768).abs() <= 1, "sigmoid(x) + sigmoid(-x) = 1 at {}", x[k]);
            assert!((tanh[k] + tanh[k + 1]).abs() <= 1, "tanh is odd at {}", x[k]);
        }
        // Within 2^-14 of the true functions.
        for (k, &v) in x.iter().enumerate() {
            let f = v as f64 * s as f64;
            assert!((sig[k] as f64 / 32768.0 - 1.0 / (1.0 + (-f).exp())).abs() < 1.0 / 16384.0, "sigmoid at {f}");
            assert!((tanh[k] as f64 / 32768.0 - f.tanh()).abs() < 1.0 / 16384.0, "tanh at {f}");
        }
    }
}
