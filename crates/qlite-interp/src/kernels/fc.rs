//! FULLY_CONNECTED and BATCH_MATMUL: float, int8 (bit-exact with LiteRT's reference kernels) and
//! hybrid (dynamic-range), side by side.

use super::*;

pub fn fully_connected_f32(
    op: &FullyConnected,
    x: &[f32],
    w: &[f32],
    w_shape: &[usize],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (units, depth) = (w_shape[0], w_shape[1]);
    let batches = x.len() / depth;
    let mut out = vec![0f32; batches * units];
    for b in 0..batches {
        let row = &x[b * depth..(b + 1) * depth];
        for o in 0..units {
            let wr = &w[o * depth..(o + 1) * depth];
            let mut acc = 0f32;
            for d in 0..depth {
                acc += row[d] * wr[d];
            }
            if let Some(bias) = bias {
                acc += bias[o];
            }
            out[b * units + o] = op.activation.apply(acc);
        }
    }
    out
}

/// BATCH_MATMUL's index arithmetic: for every batch of the output, the offsets of the two
/// operands' matrices, and the strides of a[i][k] and b[k][j] (after adj_x / adj_y).
#[derive(Debug)]
pub struct MatMulPlan {
    pub batches: Vec<(usize, usize)>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// (row stride, column stride) of a as M×K and of b as K×N.
    pub a_st: (usize, usize),
    pub b_st: (usize, usize),
}

impl MatMulPlan {
    pub fn new(op: &BatchMatMul, a: &[usize], b: &[usize], out: &[usize]) -> Result<Self, String> {
        let (ra, rb, ro) = (a.len(), b.len(), out.len());
        if ra < 2 || rb < 2 || ro < 2 {
            return Err("BatchMatMul needs rank >= 2".into());
        }
        let (ar, ac) = (a[ra - 2], a[ra - 1]);
        let (br, bc) = (b[rb - 2], b[rb - 1]);
        let (m, k, a_st) = if op.adj_x { (ac, ar, (1, ac)) } else { (ar, ac, (ac, 1)) };
        let (n, b_st) = if op.adj_y { (br, (1, bc)) } else { (bc, (bc, 1)) };
        let batch_out = &out[..ro - 2];
        let ia = broadcast_indices(batch_out, &a[..ra - 2]);
        let ib = broadcast_indices(batch_out, &b[..rb - 2]);
        let batches = ia.into_iter().zip(ib).map(|(x, y)| (x * ar * ac, y * br * bc)).collect();
        Ok(MatMulPlan { batches, m, n, k, a_st, b_st })
    }
}

/// BATCH_MATMUL in float: each output `Σ_k a[i][k] · b[k][j]` in k order.
pub fn batch_matmul_f32(p: &MatMulPlan, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(p.batches.len() * p.m * p.n);
    for &(oa, ob) in &p.batches {
        for i in 0..p.m {
            for j in 0..p.n {
                let mut acc = 0f32;
                for k in 0..p.k {
                    acc += a[oa + i * p.a_st.0 + k * p.a_st.1] * b[ob + k * p.b_st.0 + j * p.b_st.1];
                }
                out.push(acc);
            }
        }
    }
    out
}

/// `reference_integer_ops::FullyConnected` / `FullyConnectedPerChannel` in the form the
/// reference resolver calls them (with the float scales): the accumulator (int32 for int8,
/// int64 for 16x8 with an int64 bias) is rescaled in double, `round(acc · (s_in · s_w[c] /
/// s_out))`, not with a fixed-point multiplier.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected(
    x: &[i32],
    (s_in, z_in): (f32, i32),
    w: &[i32],
    w_shape: &[usize],
    wq: &QuantParams,
    bias: Option<&[i64]>,
    acc_kind: Acc,
    out: OutQ,
    act: Activation,
) -> Vec<i32> {
    let (units, depth) = (w_shape[0], w_shape[1]);
    let batches = x.len() / depth.max(1);
    let (lo, hi) = out.range(act);
    // Per-channel weights are symmetric by spec: their zero points are ignored.
    let w_off = if wq.scales().len() == 1 { -(wq.zero_point() as i32) } else { 0 };
    let scales: Vec<f64> = (0..units)
        .map(|o| {
            let s_w = if wq.scales().len() == 1 { wq.scale() } else { wq.scales().get(o).copied().unwrap_or(0.0) };
            s_in as f64 * s_w as f64 / out.scale as f64
        })
        .collect();
    let mut y = vec![0i32; batches * units];
    for b in 0..batches {
        for o in 0..units {
            let mut acc: i64 = 0;
            for d in 0..depth {
                acc += (w[o * depth + d] + w_off) as i64 * (x[b * depth + d] - z_in) as i64;
            }
            acc += bias.map_or(0, |b| b[o]);
            // The accumulator is the bias type: int32 wraps, int64 (16x8) does not.
            let acc = if acc_kind == Acc::I32 { acc as i32 as f64 } else { acc as f64 };
            let scaled = (acc * scales[o]).round() as i32;
            y[b * units + o] = scaled.saturating_add(out.zp).clamp(lo, hi);
        }
    }
    y
}

/// Hybrid FULLY_CONNECTED (`EvalHybridDense` with the portable tensor utils): each input row
/// is quantized on its own, symmetric or asymmetric.
#[allow(clippy::too_many_arguments)]
pub fn hybrid_fully_connected(
    x: &[f32],
    w: &[i32],
    w_shape: &[usize],
    wq: &QuantParams,
    bias: Option<&[f32]>,
    act: Activation,
    asymmetric: bool,
) -> Vec<f32> {
    let (units, depth) = (w_shape[0], w_shape[1]);
    let batches = x.len() / depth.max(1);
    let mut y: Vec<f32> = (0..batches * units).map(|i| bias.map_or(0.0, |b| b[i % units])).collect();
    if x.iter().all(|&v| v == 0.0) {
        return y.into_iter().map(|v| act.apply(v)).collect();
    }
    let per_channel = wq.scales().len() > 1;
    let row_sums: Vec<i32> = (0..units).map(|o| w[o * depth..(o + 1) * depth].iter().sum()).collect();
    for b in 0..batches {
        let row = &x[b * depth..(b + 1) * depth];
        let (q, mut sf, zp) = if asymmetric {
            asymmetric_quantize(row)
        } else {
            let (q, sf) = symmetric_quantize(row);
            (q, sf, 0)
        };
        if !per_channel {
            sf *= wq.scale();
        }
        for o in 0..units {
            let mut dot: i32 = 0;
            for d in 0..depth {
                dot = dot.wrapping_add(w[o * depth + d].wrapping_mul(q[d]));
            }
            if asymmetric {
                dot = dot.wrapping_sub(row_sums[o].wrapping_mul(zp));
            }
            let scale = if per_channel { sf * wq.scales()[o] } else { sf };
            y[b * units + o] += dot as f32 * scale;
        }
    }
    y.into_iter().map(|v| act.apply(v)).collect()
}

/// BATCH_MATMUL on 8-bit operands (reference_ops::BatchMatMul): int32 sums of
/// `(a − z_a)(b − z_b)`, the multiplier `(s_a · s_b) / s_out` (the product in float, as
/// `GetQuantizedConvolutionMultipler`), the output zero point, clamped to the type.
pub fn batch_matmul(
    p: &crate::kernels::MatMulPlan,
    a: &[i32],
    b: &[i32],
    (s_a, z_a): (f32, i32),
    (s_b, z_b): (f32, i32),
    out: OutQ,
) -> Vec<i32> {
    let (m, sh) = quantize_multiplier(((s_a * s_b) as f64) / out.scale as f64);
    let (lo, hi) = out.range(Activation::None);
    let mut y = Vec::with_capacity(p.batches.len() * p.m * p.n);
    for &(oa, ob) in &p.batches {
        for i in 0..p.m {
            for j in 0..p.n {
                let mut acc = 0i32;
                for k in 0..p.k {
                    let x = a[oa + i * p.a_st.0 + k * p.a_st.1] - z_a;
                    let w = b[ob + k * p.b_st.0 + j * p.b_st.1] - z_b;
                    acc = acc.wrapping_add(x.wrapping_mul(w));
                }
                y.push(mbqm(acc, m, sh).wrapping_add(out.zp).clamp(lo, hi));
            }
        }
    }
    y
}
