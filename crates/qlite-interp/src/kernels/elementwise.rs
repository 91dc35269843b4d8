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

/// Prepared parameters of `reference_integer_ops::Add` (general path, left shift 20) and the
/// matching SUB.
pub fn add_params(s1: f32, s2: f32, s_out: f32) -> Result<[(i32, i32); 3], String> {
    let left_shift = 20;
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
            let [(m1, sh1), (m2, sh2), (mo, sho)] = add_params(s1, s2, out.scale)?;
            Ok(pairs
                .iter()
                .map(|&(i, j)| {
                    let sa = mbqm((a[i] - z1).wrapping_mul(1 << 20), m1, sh1);
                    let sb = mbqm((b[j] - z2).wrapping_mul(1 << 20), m2, sh2);
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
