//! Seeded random single-op integer models: shapes, strides, paddings, dilations, activations
//! and quantization parameters drawn at random, run in qlite and exported for LiteRT's
//! reference kernels, which must give the very same bytes (`cargo xtask conformance`).

use crate::common::{Builder, export_case};
use qlite::ir::op::*;
use qlite::ir::tensor::i32_bytes;
use qlite::ir::{DType, QuantParams, Shape, Tensor, TensorId};
use qlite::sample::Rng;
use qlite::{Array, Data};

/// Cases per op kind. With QLITE_CONFORMANCE_DIR set every case is exported.
const PER_KIND: usize = 200;

pub(crate) fn pick<T: Copy>(rng: &mut Rng, v: &[T]) -> T {
    v[(rng.next_u64() % v.len() as u64) as usize]
}

pub(crate) fn int(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    lo + (rng.next_u64() % ((hi - lo + 1) as u64)) as i64
}

/// A scale spread over several decades, and a zero point that is often at an extreme.
fn qp(rng: &mut Rng) -> QuantParams {
    let scale = 10f32.powf(rng.uniform(-3.0, 0.5));
    let zp = match rng.next_u64() % 6 {
        0 => -128,
        1 => 127,
        2 => 0,
        _ => int(rng, -128, 127),
    };
    QuantParams::per_tensor(scale, zp)
}

/// An output quantization whose scale is `typical` within half a decade, so outputs spread over
/// the int8 range instead of saturating.
fn qp_near(rng: &mut Rng, typical: f32) -> QuantParams {
    let scale = typical * 10f32.powf(rng.uniform(-0.5, 0.5));
    let zp = if rng.next_u64().is_multiple_of(8) { pick(rng, &[-128, 127]) } else { int(rng, -100, 100) };
    QuantParams::per_tensor(scale, zp)
}

/// `qo`, or in a quarter of the cases an output scale that makes the layer's multiplier
/// `s_in · s_w / s_out` 0.5–8 (a left shift in the requantization, as real models' layers
/// with narrow outputs have; `qp_near` keeps it below 0.5).
fn with_gain(rng: &mut Rng, qo: QuantParams, s_in: f32, w_scales: &[f32]) -> QuantParams {
    if !rng.next_u64().is_multiple_of(4) {
        return qo;
    }
    let mean = w_scales.iter().sum::<f32>() / w_scales.len().max(1) as f32;
    QuantParams::per_tensor(s_in * mean / 10f32.powf(rng.uniform(-0.3, 0.9)), qo.zero_point())
}

fn i8s(rng: &mut Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| rng.next_u64() as u8 as i8).collect()
}

fn act(rng: &mut Rng) -> Activation {
    pick(rng, &[Activation::None, Activation::None, Activation::Relu, Activation::Relu6, Activation::ReluN1To1])
}

fn input(b: &mut Builder, name: &str, dims: &[usize], q: QuantParams) -> TensorId {
    let n = dims.iter().product();
    let v = i8s(&mut b.rng, n);
    let t = Tensor::activation(name, DType::I8, Shape::fixed(dims)).with_quant(q);
    b.input_with(t, Array::new(dims.to_vec(), Data::I8(v)).unwrap())
}

/// Symmetric int8 weights, per channel along `axis` (or per tensor).
pub(crate) fn weights(b: &mut Builder, dims: &[usize], axis: usize, per_channel: bool) -> (TensorId, Vec<f32>) {
    let n: usize = dims.iter().product();
    let vals: Vec<u8> = (0..n).map(|_| int(&mut b.rng, -127, 127) as i8 as u8).collect();
    let channels = if per_channel { dims[axis] } else { 1 };
    let base = b.rng.uniform(-3.0, -1.0);
    let scales: Vec<f32> = (0..channels).map(|_| 10f32.powf(base + b.rng.uniform(0.0, 0.7))).collect();
    let q = if per_channel {
        QuantParams::per_channel(scales.clone(), vec![0; channels], axis)
    } else {
        QuantParams::per_tensor(scales[0], 0)
    };
    let t = Tensor::constant("w", DType::I8, Shape::fixed(dims), vals.into()).with_quant(q);
    (b.raw_const(t), scales)
}

/// int32 bias with scale s_in · s_w[c].
fn bias(b: &mut Builder, channels: usize, s_in: f32, w_scales: &[f32]) -> TensorId {
    let vals: Vec<i32> = (0..channels).map(|_| int(&mut b.rng, -20000, 20000) as i32).collect();
    let scales: Vec<f32> = (0..w_scales.len()).map(|c| s_in * w_scales[c]).collect();
    let q = if scales.len() == 1 {
        QuantParams::per_tensor(scales[0], 0)
    } else {
        QuantParams::per_channel(scales.clone(), vec![0; scales.len()], 0)
    };
    b.raw_const(Tensor::constant("b", DType::I32, Shape::fixed(&[channels]), i32_bytes(&vals)).with_quant(q))
}

/// Output scale at which a sum of `k` int8 products lands around ±60.
fn typical_out(s_in: f32, w_scales: &[f32], k: usize) -> f32 {
    let mean = w_scales.iter().sum::<f32>() / w_scales.len().max(1) as f32;
    s_in * mean * 120.0 * (k as f32).sqrt()
}

fn spatial(rng: &mut Rng) -> (usize, usize, usize) {
    (int(rng, 1, 2) as usize, int(rng, 3, 9) as usize, int(rng, 3, 9) as usize)
}

/// `g` on the reference and on the fast kernels, single-threaded and split over 3 threads into
/// the smallest parts: the outputs must be the same bytes (a panic naming `case` otherwise);
/// returns how many nodes ran a fast kernel.
fn fast_against_reference(g: &qlite::ir::Graph, inputs: Vec<Array>, case: &str) -> usize {
    let reference = qlite::Interpreter::new(g).unwrap().run(inputs.clone()).unwrap();
    let mut nodes = 0;
    qlite::isa::for_each_tier(|t| {
        for threads in [1, 3] {
            let fast = qlite::Interpreter::new(g)
                .unwrap()
                .isa(t)
                .kernels(qlite::Kernels::Fast)
                .threads(threads)
                .min_macs_per_thread(1);
            assert_eq!(
                fast.run(inputs.clone()).unwrap(),
                reference,
                "{case} at {t}, {threads} threads: fast kernels differ from the reference"
            );
            nodes = fast.fast_nodes();
        }
    });
    nodes
}

type Gen = fn(&mut Builder) -> TensorId;

fn gen_fully_connected(b: &mut Builder) -> TensorId {
    let (batch, depth, units) =
        (int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 1, 40) as usize, int(&mut b.rng, 1, 20) as usize);
    let qi = qp(&mut b.rng);
    let x = input(b, "x", &[batch, depth], qi.clone());
    let per_channel = b.rng.next_u64().is_multiple_of(2);
    let (w, ws) = weights(b, &[units, depth], 0, per_channel);
    let has_bias = !b.rng.next_u64().is_multiple_of(4);
    let bias = has_bias.then(|| bias(b, units, qi.scale(), &ws));
    let a = act(&mut b.rng);
    let qo = qp_near(&mut b.rng, typical_out(qi.scale(), &ws, depth));
    let op = Op::FullyConnected(FullyConnected { activation: a, keep_num_dims: false, asymmetric_inputs: false });
    b.node(op, &[Some(x), Some(w), bias], Some((DType::I8, qo)))
}

/// Convolutions with whole blocks of 16 output channels (1 to 5), the layers whose output
/// stage runs on the GEMM's register tiles: pointwise or k×k, and in a quarter of the cases a
/// bias of ±2^30 on one channel, which takes the requantization's long form (accumulators too
/// large for the short one).
fn gen_conv_wide(b: &mut Builder) -> TensorId {
    let (n, h, w_) = spatial(&mut b.rng);
    let (ic, oc) = (int(&mut b.rng, 1, 24) as usize, 16 * int(&mut b.rng, 1, 5) as usize);
    let pointwise = b.rng.next_u64().is_multiple_of(2);
    let (kh, kw) = if pointwise { (1, 1) } else { (int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 1, 3) as usize) };
    let stride = [int(&mut b.rng, 1, 2) as usize, int(&mut b.rng, 1, 2) as usize];
    let padding = if kh > h || kw > w_ { Padding::Same } else { pick(&mut b.rng, &[Padding::Same, Padding::Valid]) };
    let qi = qp(&mut b.rng);
    let x = input(b, "x", &[n, h, w_, ic], qi.clone());
    let per_channel = !b.rng.next_u64().is_multiple_of(4);
    let (w, ws) = weights(b, &[oc, kh, kw, ic], 0, per_channel);
    let mut vals: Vec<i32> = (0..oc).map(|_| int(&mut b.rng, -20000, 20000) as i32).collect();
    if b.rng.next_u64().is_multiple_of(4) {
        let c = int(&mut b.rng, 0, oc as i64 - 1) as usize;
        vals[c] = pick(&mut b.rng, &[1 << 30, -(1 << 30)]);
    }
    let scales: Vec<f32> = ws.iter().map(|&s| qi.scale() * s).collect();
    let q = if scales.len() == 1 {
        QuantParams::per_tensor(scales[0], 0)
    } else {
        QuantParams::per_channel(scales.clone(), vec![0; scales.len()], 0)
    };
    let bias = b.raw_const(Tensor::constant("b", DType::I32, Shape::fixed(&[oc]), i32_bytes(&vals)).with_quant(q));
    let a = act(&mut b.rng);
    let qo = qp_near(&mut b.rng, typical_out(qi.scale(), &ws, kh * kw * ic));
    let qo = with_gain(&mut b.rng, qo, qi.scale(), &ws);
    b.node(
        Op::Conv2d(Conv2d { padding, stride, dilation: [1, 1], activation: a }),
        &[Some(x), Some(w), Some(bias)],
        Some((DType::I8, qo)),
    )
}

fn gen_conv(b: &mut Builder) -> TensorId {
    let (n, h, w_) = spatial(&mut b.rng);
    let (ic, oc) = (int(&mut b.rng, 1, 6) as usize, int(&mut b.rng, 1, 6) as usize);
    let (kh, kw) = (int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 1, 3) as usize);
    let stride = [int(&mut b.rng, 1, 2) as usize, int(&mut b.rng, 1, 2) as usize];
    let dilation = [int(&mut b.rng, 1, 2) as usize, int(&mut b.rng, 1, 2) as usize];
    let padding = if (kh - 1) * dilation[0] + 1 > h || (kw - 1) * dilation[1] + 1 > w_ {
        Padding::Same
    } else {
        pick(&mut b.rng, &[Padding::Same, Padding::Valid])
    };
    let qi = qp(&mut b.rng);
    let x = input(b, "x", &[n, h, w_, ic], qi.clone());
    let per_channel = !b.rng.next_u64().is_multiple_of(4);
    let (w, ws) = weights(b, &[oc, kh, kw, ic], 0, per_channel);
    let bias = bias(b, oc, qi.scale(), &ws);
    let a = act(&mut b.rng);
    let qo = qp_near(&mut b.rng, typical_out(qi.scale(), &ws, kh * kw * ic));
    b.node(
        Op::Conv2d(Conv2d { padding, stride, dilation, activation: a }),
        &[Some(x), Some(w), Some(bias)],
        Some((DType::I8, qo)),
    )
}

fn gen_transpose_conv(b: &mut Builder) -> TensorId {
    let (n, h, w_) = spatial(&mut b.rng);
    let (h, w_) = (h.min(5), w_.min(5));
    let (ic, oc) = (int(&mut b.rng, 1, 5) as usize, int(&mut b.rng, 1, 5) as usize);
    let (kh, kw) = (int(&mut b.rng, 1, 4) as usize, int(&mut b.rng, 1, 4) as usize);
    let stride = [int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 1, 3) as usize];
    let padding = pick(&mut b.rng, &[Padding::Same, Padding::Valid]);
    // The sizes a Conv2DTranspose gives: SAME h·s, VALID (h − 1)·s + k.
    let output = match padding {
        Padding::Same => [h * stride[0], w_ * stride[1]],
        Padding::Valid => [(h - 1) * stride[0] + kh, (w_ - 1) * stride[1] + kw],
    };
    let qi = qp(&mut b.rng);
    let x = input(b, "x", &[n, h, w_, ic], qi.clone());
    let per_channel = !b.rng.next_u64().is_multiple_of(4);
    let (w, ws) = weights(b, &[oc, kh, kw, ic], 0, per_channel);
    let with_bias = !b.rng.next_u64().is_multiple_of(3);
    let bias = with_bias.then(|| bias(b, oc, qi.scale(), &ws));
    let qo = qp_near(&mut b.rng, typical_out(qi.scale(), &ws, ic * 2));
    let op = Op::TransposeConv2d(TransposeConv2d { padding, stride, output, activation: Activation::None });
    b.node(op, &[Some(x), Some(w), bias], Some((DType::I8, qo)))
}

fn gen_batch_matmul(b: &mut Builder) -> TensorId {
    let (m, k, n) = (int(&mut b.rng, 1, 6) as usize, int(&mut b.rng, 1, 12) as usize, int(&mut b.rng, 1, 6) as usize);
    let (adj_x, adj_y) = (!b.rng.next_u64().is_multiple_of(3), b.rng.next_u64().is_multiple_of(3));
    let batch_a: Vec<usize> = match b.rng.next_u64() % 3 {
        0 => vec![],
        1 => vec![int(&mut b.rng, 1, 3) as usize],
        _ => vec![2, int(&mut b.rng, 1, 2) as usize],
    };
    // b's batch: the same, or broadcast (1s, or fewer axes).
    let batch_b: Vec<usize> = if b.rng.next_u64().is_multiple_of(2) {
        batch_a.clone()
    } else {
        batch_a.iter().map(|_| 1).skip(b.rng.next_u64() as usize % (batch_a.len() + 1)).collect()
    };
    let mut da = batch_a.clone();
    da.extend(if adj_x { [k, m] } else { [m, k] });
    let mut db = batch_b.clone();
    db.extend(if adj_y { [n, k] } else { [k, n] });
    let (qa, qb) = (qp(&mut b.rng), qp(&mut b.rng));
    let x = input(b, "a", &da, qa.clone());
    let y = input(b, "b", &db, qb.clone());
    let qo = qp_near(&mut b.rng, qa.scale() * qb.scale() * 60.0 * (k as f32).sqrt());
    b.node(Op::BatchMatMul(BatchMatMul { adj_x, adj_y }), &[Some(x), Some(y)], Some((DType::I8, qo)))
}

fn gen_depthwise(b: &mut Builder) -> TensorId {
    let (n, h, w_) = spatial(&mut b.rng);
    let (ic, m) = (int(&mut b.rng, 1, 6) as usize, int(&mut b.rng, 1, 2) as usize);
    let (kh, kw) = (int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 1, 3) as usize);
    let stride = [int(&mut b.rng, 1, 2) as usize, int(&mut b.rng, 1, 2) as usize];
    let dilation = [int(&mut b.rng, 1, 2) as usize, int(&mut b.rng, 1, 2) as usize];
    let padding = if (kh - 1) * dilation[0] + 1 > h || (kw - 1) * dilation[1] + 1 > w_ {
        Padding::Same
    } else {
        pick(&mut b.rng, &[Padding::Same, Padding::Valid])
    };
    let qi = qp(&mut b.rng);
    let x = input(b, "x", &[n, h, w_, ic], qi.clone());
    let (w, ws) = weights(b, &[1, kh, kw, ic * m], 3, true);
    let bias = bias(b, ic * m, qi.scale(), &ws);
    let a = act(&mut b.rng);
    let qo = qp_near(&mut b.rng, typical_out(qi.scale(), &ws, kh * kw));
    let qo = with_gain(&mut b.rng, qo, qi.scale(), &ws);
    let op = Op::DepthwiseConv2d(DepthwiseConv2d { padding, stride, dilation, depth_multiplier: m, activation: a });
    b.node(op, &[Some(x), Some(w), Some(bias)], Some((DType::I8, qo)))
}

/// Two shapes that broadcast (rank 1..4).
fn broadcast_pair(rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let rank = int(rng, 1, 4) as usize;
    let full: Vec<usize> = (0..rank).map(|_| int(rng, 1, 5) as usize).collect();
    let mut a = full.clone();
    let mut b = full;
    for i in 0..rank {
        match rng.next_u64() % 4 {
            0 => a[i] = 1,
            1 => b[i] = 1,
            _ => {}
        }
    }
    if rng.next_u64().is_multiple_of(3) {
        let k = int(rng, 0, rank as i64 - 1) as usize;
        b.drain(..k);
    }
    (a, b)
}

fn gen_binary(b: &mut Builder, kind: BinaryKind) -> TensorId {
    let (sa, sb) = broadcast_pair(&mut b.rng);
    let q1 = qp(&mut b.rng);
    let ratio = 10f32.powf(b.rng.uniform(-1.0, 1.0));
    let q2 = qp_near(&mut b.rng, q1.scale() * ratio);
    let typical = match kind {
        BinaryKind::Mul => q1.scale() * q2.scale() * 10000.0 / 64.0,
        _ => q1.scale().max(q2.scale()) * 2.0,
    };
    let x = input(b, "x", &sa, q1);
    let y = input(b, "y", &sb, q2);
    let a = act(&mut b.rng);
    let qo = qp_near(&mut b.rng, typical);
    b.node(Op::Binary(Binary { kind, activation: a }), &[Some(x), Some(y)], Some((DType::I8, qo)))
}

/// MAXIMUM / MINIMUM: inputs and output share one quantization, as TFLite's spec has them.
fn gen_max_min(b: &mut Builder) -> TensorId {
    let kind = pick(&mut b.rng, &[BinaryKind::Maximum, BinaryKind::Minimum]);
    let (sa, sb) = broadcast_pair(&mut b.rng);
    let q = qp(&mut b.rng);
    let x = input(b, "x", &sa, q.clone());
    let y = input(b, "y", &sb, q.clone());
    b.node(Op::Binary(Binary { kind, activation: Activation::None }), &[Some(x), Some(y)], Some((DType::I8, q)))
}

fn gen_add(b: &mut Builder) -> TensorId {
    gen_binary(b, BinaryKind::Add)
}
fn gen_sub(b: &mut Builder) -> TensorId {
    gen_binary(b, BinaryKind::Sub)
}
fn gen_mul(b: &mut Builder) -> TensorId {
    gen_binary(b, BinaryKind::Mul)
}

fn gen_pool(b: &mut Builder, kind: PoolKind) -> TensorId {
    let (n, h, w) = spatial(&mut b.rng);
    let c = int(&mut b.rng, 1, 5) as usize;
    let filter = [int(&mut b.rng, 1, 3.min(h) as i64) as usize, int(&mut b.rng, 1, 3.min(w) as i64) as usize];
    let stride = [int(&mut b.rng, 1, 2) as usize, int(&mut b.rng, 1, 2) as usize];
    let padding = pick(&mut b.rng, &[Padding::Same, Padding::Valid]);
    let q = qp(&mut b.rng);
    let x = input(b, "x", &[n, h, w, c], q.clone());
    let a = act(&mut b.rng);
    b.node(Op::Pool2d(Pool2d { kind, filter, stride, padding, activation: a }), &[Some(x)], Some((DType::I8, q)))
}

fn gen_avg_pool(b: &mut Builder) -> TensorId {
    gen_pool(b, PoolKind::Average)
}
fn gen_max_pool(b: &mut Builder) -> TensorId {
    gen_pool(b, PoolKind::Max)
}

fn gen_mean(b: &mut Builder) -> TensorId {
    let rank = int(&mut b.rng, 2, 4) as usize;
    let dims: Vec<usize> = (0..rank).map(|_| int(&mut b.rng, 1, 6) as usize).collect();
    let mut axes: Vec<usize> = (0..rank).filter(|_| b.rng.next_u64().is_multiple_of(2)).collect();
    if axes.is_empty() {
        axes.push(rank - 1);
    }
    let keep_dims = b.rng.next_u64().is_multiple_of(2);
    let qi = qp(&mut b.rng);
    let x = input(b, "x", &dims, qi.clone());
    let qo = if b.rng.next_u64().is_multiple_of(3) { qi } else { qp_near(&mut b.rng, qi.scale()) };
    b.node(Op::Mean(Mean { axes, keep_dims }), &[Some(x)], Some((DType::I8, qo)))
}

/// SUM: the input zero point kept small, so that the sum's offset `−z_in · n` does not swamp it.
fn gen_sum(b: &mut Builder) -> TensorId {
    let rank = int(&mut b.rng, 1, 4) as usize;
    let dims: Vec<usize> = (0..rank).map(|_| int(&mut b.rng, 1, 5) as usize).collect();
    let mut axes: Vec<usize> = (0..rank).filter(|_| b.rng.next_u64().is_multiple_of(2)).collect();
    if axes.is_empty() {
        axes.push(rank - 1);
    }
    let keep_dims = b.rng.next_u64().is_multiple_of(2);
    let count: usize = axes.iter().map(|&a| dims[a]).product();
    let qi = QuantParams::per_tensor(10f32.powf(b.rng.uniform(-3.0, 0.5)), int(&mut b.rng, -20, 20));
    let x = input(b, "x", &dims, qi.clone());
    let spread = (qi.zero_point().abs() as f32 * count as f32 + 128.0 * (count as f32).sqrt()) / 100.0;
    let qo = qp_near(&mut b.rng, qi.scale() * spread);
    b.node(Op::Sum(Mean { axes, keep_dims }), &[Some(x)], Some((DType::I8, qo)))
}

/// What LiteRT's reference SUM kernel gives on int8: `reduce.cc` runs
/// `reference_ops::QuantizedMeanOrSum<uint8_t>` on every 8-bit type, so int8 bytes are summed
/// as uint8 and the output clamped to [0, 255] before it is stored as a byte.
fn litert_reference_sum_int8(g: &qlite::ir::Graph, x: &Array) -> Array {
    let n = &g.nodes()[0];
    let Op::Sum(m) = &n.op else { unreachable!() };
    let (ti, to) = (g.tensor(n.inputs[0].unwrap()).unwrap(), g.tensor(n.outputs[0]).unwrap());
    let (qi, qo) = (ti.quant.as_ref().unwrap(), to.quant.as_ref().unwrap());
    let Data::I8(v) = x.data() else { unreachable!() };
    let xs = x.shape();
    let kept: Vec<usize> = (0..xs.len()).filter(|a| !m.axes.contains(a)).collect();
    let out_len: usize = kept.iter().map(|&a| xs[a]).product();
    let count: i64 = m.axes.iter().map(|&a| xs[a] as i64).product();
    let mut sums = vec![0i32; out_len];
    for (i, &val) in v.iter().enumerate() {
        let (mut o, mut rest, mut stride) = (0usize, i, 1usize);
        let mut coords = vec![0usize; xs.len()];
        for a in (0..xs.len()).rev() {
            coords[a] = rest % xs[a];
            rest /= xs[a];
        }
        for &a in kept.iter().rev() {
            o += coords[a] * stride;
            stride *= xs[a];
        }
        sums[o] += i32::from(val as u8);
    }
    let (mult, shift) = qlite_interp::fixedpoint::quantize_multiplier(qi.scale() as f64 / qo.scale() as f64);
    let out: Vec<i8> = sums
        .into_iter()
        .map(|s| {
            let shifted = s - qi.zero_point() as i32 * count as i32;
            let y = qlite_interp::fixedpoint::mbqm(shifted, mult, shift) + qo.zero_point() as i32;
            y.clamp(0, 255) as u8 as i8
        })
        .collect();
    Array::new(to.shape.dims().iter().map(|d| d.fixed().unwrap()).collect(), Data::I8(out)).unwrap()
}

/// Inputs at or above the zero point (SQRT and RSQRT are defined on non-negative reals only).
fn input_non_negative(b: &mut Builder, name: &str, dims: &[usize], q: QuantParams) -> TensorId {
    let n: usize = dims.iter().product();
    let zp = q.zero_point();
    let v: Vec<i8> = (0..n).map(|_| int(&mut b.rng, zp, 127) as i8).collect();
    let t = Tensor::activation(name, DType::I8, Shape::fixed(dims)).with_quant(q);
    b.input_with(t, Array::new(dims.to_vec(), Data::I8(v)).unwrap())
}

/// EXP, ABS, SQRT, RSQRT and RELU_N1_TO_1 on int8.
fn gen_unary_more(b: &mut Builder) -> TensorId {
    let kind =
        pick(&mut b.rng, &[UnaryKind::Exp, UnaryKind::Abs, UnaryKind::Sqrt, UnaryKind::Rsqrt, UnaryKind::ReluN1To1]);
    let len = int(&mut b.rng, 1, 64) as usize;
    let u = b.rng.uniform(-0.3, 0.3);
    let (x, qo) = match kind {
        UnaryKind::Exp => {
            let qi = qp_near(&mut b.rng, 4.0 / 128.0);
            let top = (qi.scale() * (127 - qi.zero_point()) as f32).min(5.0);
            let x = input(b, "x", &[1, len], qi);
            (x, QuantParams::per_tensor(top.exp() / 220.0 * 10f32.powf(u), int(&mut b.rng, -120, -90)))
        }
        UnaryKind::Abs => {
            let qi = qp(&mut b.rng);
            let x = input(b, "x", &[1, len], qi.clone());
            let qo = if b.rng.next_u64().is_multiple_of(3) {
                qi
            } else {
                QuantParams::per_tensor(qi.scale() * 10f32.powf(u), int(&mut b.rng, -128, -60))
            };
            (x, qo)
        }
        UnaryKind::Sqrt | UnaryKind::Rsqrt => {
            let qi = QuantParams::per_tensor(10f32.powf(b.rng.uniform(-3.0, 0.5)), int(&mut b.rng, -128, 60));
            let top = qi.scale() * (127 - qi.zero_point()) as f32;
            let x = input_non_negative(b, "x", &[1, len], qi.clone());
            let out_top = if kind == UnaryKind::Sqrt { top.sqrt() } else { 1.0 / (qi.scale() * 4.0).sqrt() };
            (x, QuantParams::per_tensor(out_top / 220.0 * 10f32.powf(u), int(&mut b.rng, -120, -90)))
        }
        _ => {
            let qi = qp_near(&mut b.rng, 1.5 / 128.0);
            let x = input(b, "x", &[1, len], qi.clone());
            let qo = if b.rng.next_u64().is_multiple_of(2) { qi } else { qp_near(&mut b.rng, 1.0 / 100.0) };
            (x, qo)
        }
    };
    b.node(Op::Unary(Unary { kind }), &[Some(x)], Some((DType::I8, qo)))
}

/// SQUARED_DIFFERENCE with broadcast (no fused activation in TFLite).
fn gen_squared_difference(b: &mut Builder) -> TensorId {
    let (sa, sb) = broadcast_pair(&mut b.rng);
    let q1 = qp(&mut b.rng);
    let ratio = 10f32.powf(b.rng.uniform(-1.0, 1.0));
    let q2 = qp_near(&mut b.rng, q1.scale() * ratio);
    let m = q1.scale().max(q2.scale());
    let typical = m * m * 10000.0 / 128.0;
    let x = input(b, "x", &sa, q1);
    let y = input(b, "y", &sb, q2);
    let qo = qp_near(&mut b.rng, typical);
    let op = Op::Binary(Binary { kind: BinaryKind::SquaredDifference, activation: Activation::None });
    b.node(op, &[Some(x), Some(y)], Some((DType::I8, qo)))
}

/// Inputs whose real range is a few units: where the curves bend.
fn qp_activation(rng: &mut Rng) -> QuantParams {
    qp_near(rng, 8.0 / 128.0)
}

fn gen_softmax(b: &mut Builder) -> TensorId {
    let dims = [int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 1, 20) as usize];
    let qi = qp_activation(&mut b.rng);
    let x = input(b, "x", &dims, qi);
    let beta = pick(&mut b.rng, &[1.0, 1.0, 0.5, 2.0]);
    b.node(Op::Softmax(Softmax { beta }), &[Some(x)], Some((DType::I8, QuantParams::per_tensor(1.0 / 256.0, -128))))
}

/// LOG_SOFTMAX: the output fixed at (16/256, 127), as LiteRT requires.
fn gen_log_softmax(b: &mut Builder) -> TensorId {
    let dims = [int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 2, 24) as usize];
    let qi = if b.rng.next_u64().is_multiple_of(4) { qp(&mut b.rng) } else { qp_activation(&mut b.rng) };
    let x = input(b, "x", &dims, qi);
    b.node(Op::LogSoftmax, &[Some(x)], Some((DType::I8, QuantParams::per_tensor(16.0 / 256.0, 127))))
}

fn gen_logistic(b: &mut Builder) -> TensorId {
    let qi = qp_activation(&mut b.rng);
    let len = int(&mut b.rng, 1, 64) as usize;
    let x = input(b, "x", &[1, len], qi);
    b.node(
        Op::Unary(Unary { kind: UnaryKind::Logistic }),
        &[Some(x)],
        Some((DType::I8, QuantParams::per_tensor(1.0 / 256.0, -128))),
    )
}

fn gen_tanh(b: &mut Builder) -> TensorId {
    let qi = qp_activation(&mut b.rng);
    let len = int(&mut b.rng, 1, 64) as usize;
    let x = input(b, "x", &[1, len], qi);
    b.node(
        Op::Unary(Unary { kind: UnaryKind::Tanh }),
        &[Some(x)],
        Some((DType::I8, QuantParams::per_tensor(1.0 / 128.0, 0))),
    )
}

fn gen_resize_nearest(b: &mut Builder) -> TensorId {
    let (n, h, w) = spatial(&mut b.rng);
    let c = int(&mut b.rng, 1, 4) as usize;
    let size = [int(&mut b.rng, 1, 2 * h as i64 + 1) as usize, int(&mut b.rng, 1, 2 * w as i64 + 1) as usize];
    let (align_corners, half_pixel_centers) = pick(&mut b.rng, &[(false, false), (true, false), (false, true)]);
    let q = qp(&mut b.rng);
    let x = input(b, "x", &[n, h, w, c], q.clone());
    let op = Op::Resize(Resize { mode: ResizeMode::NearestNeighbor, size, align_corners, half_pixel_centers });
    b.node(op, &[Some(x)], Some((DType::I8, q)))
}

fn gen_resize_bilinear(b: &mut Builder) -> TensorId {
    let (n, h, w) = spatial(&mut b.rng);
    let c = int(&mut b.rng, 1, 4) as usize;
    let size = [int(&mut b.rng, 1, 2 * h as i64 + 1) as usize, int(&mut b.rng, 1, 2 * w as i64 + 1) as usize];
    let (align_corners, half_pixel_centers) = pick(&mut b.rng, &[(false, false), (true, false), (false, true)]);
    let q = qp(&mut b.rng);
    let x = input(b, "x", &[n, h, w, c], q.clone());
    let op = Op::Resize(Resize { mode: ResizeMode::Bilinear, size, align_corners, half_pixel_centers });
    b.node(op, &[Some(x)], Some((DType::I8, q)))
}

fn gen_hard_swish(b: &mut Builder) -> TensorId {
    let qi = if b.rng.next_u64().is_multiple_of(3) { qp(&mut b.rng) } else { qp_activation(&mut b.rng) };
    let len = int(&mut b.rng, 1, 64) as usize;
    let x = input(b, "x", &[1, len], qi.clone());
    // Outputs span about [-0.375, max(x)]: around the input's own scale.
    let qo = qp_near(&mut b.rng, qi.scale() * 0.6);
    b.node(Op::Unary(Unary { kind: UnaryKind::HardSwish }), &[Some(x)], Some((DType::I8, qo)))
}

/// ELU and GELU (both forms): LiteRT tabulates them for int8, as qlite does.
fn gen_lut_activation(b: &mut Builder) -> TensorId {
    let kind = pick(&mut b.rng, &[UnaryKind::Elu, UnaryKind::Gelu, UnaryKind::GeluTanh]);
    let qi = if b.rng.next_u64().is_multiple_of(3) { qp(&mut b.rng) } else { qp_activation(&mut b.rng) };
    let len = int(&mut b.rng, 1, 64) as usize;
    let x = input(b, "x", &[1, len], qi.clone());
    let qo = qp_near(&mut b.rng, qi.scale() * 0.7);
    b.node(Op::Unary(Unary { kind }), &[Some(x)], Some((DType::I8, qo)))
}

fn gen_relu(b: &mut Builder) -> TensorId {
    let kind = pick(&mut b.rng, &[UnaryKind::Relu, UnaryKind::Relu6]);
    let qi = qp(&mut b.rng);
    let len = int(&mut b.rng, 1, 64) as usize;
    let x = input(b, "x", &[1, len], qi.clone());
    let qo = if b.rng.next_u64().is_multiple_of(2) { qi } else { qp_near(&mut b.rng, qi.scale()) };
    b.node(Op::Unary(Unary { kind }), &[Some(x)], Some((DType::I8, qo)))
}

fn gen_requantize(b: &mut Builder) -> TensorId {
    let qi = qp(&mut b.rng);
    let len = int(&mut b.rng, 1, 64) as usize;
    let qo = qp_near(&mut b.rng, qi.scale());
    let x = input(b, "x", &[1, len], qi);
    b.node(Op::Quantize, &[Some(x)], Some((DType::I8, qo)))
}

fn gen_concat_pad(b: &mut Builder) -> TensorId {
    let q = qp_near(&mut b.rng, 0.05);
    let (h, c) = (int(&mut b.rng, 1, 4) as usize, int(&mut b.rng, 1, 4) as usize);
    let x = input(b, "x", &[1, h, 3, c], q.clone());
    let h2 = int(&mut b.rng, 1, 4) as usize;
    let y = input(b, "y", &[1, h2, 3, c], q.clone());
    let cat = b.node(
        Op::Concatenation(Concatenation { axis: 1, activation: Activation::None }),
        &[Some(x), Some(y)],
        Some((DType::I8, q.clone())),
    );
    let paddings = (0..4).map(|_| [int(&mut b.rng, 0, 2) as usize, int(&mut b.rng, 0, 2) as usize]).collect();
    b.node(Op::Pad(Pad { paddings }), &[Some(cat)], Some((DType::I8, q)))
}

/// PADV2: the pad value an int8 constant with the input's parameters.
fn gen_padv2(b: &mut Builder) -> TensorId {
    let dims = random_dims(&mut b.rng);
    let paddings = dims.iter().map(|_| [int(&mut b.rng, 0, 2) as usize, int(&mut b.rng, 0, 2) as usize]).collect();
    let q = qp(&mut b.rng);
    let x = input(b, "x", &dims, q.clone());
    let value = int(&mut b.rng, -128, 127) as i8 as u8;
    let v =
        b.raw_const(Tensor::constant("value", DType::I8, Shape::fixed(&[]), vec![value].into()).with_quant(q.clone()));
    b.node(Op::Pad(Pad { paddings }), &[Some(x), Some(v)], Some((DType::I8, q)))
}

fn gen_strided_slice(b: &mut Builder) -> TensorId {
    let rank = int(&mut b.rng, 1, 4) as usize;
    let dims: Vec<usize> = (0..rank).map(|_| int(&mut b.rng, 1, 6) as usize).collect();
    let mut axes = Vec::with_capacity(rank);
    for &n in &dims {
        let n = n as i64;
        let mut axis = SliceDim::ALL;
        // Up to 8 draws for a non-empty axis; the whole axis otherwise.
        for _ in 0..8 {
            let a = match b.rng.next_u64() % 8 {
                0 => SliceDim::ALL,
                1 => SliceDim { begin: Some(int(&mut b.rng, -n, n - 1)), end: None, stride: 1, shrink: true },
                _ => {
                    let edge = |rng: &mut Rng| (!rng.next_u64().is_multiple_of(4)).then(|| int(rng, -n - 1, n + 1));
                    let (begin, end) = (edge(&mut b.rng), edge(&mut b.rng));
                    SliceDim { begin, end, stride: pick(&mut b.rng, &[-2, -1, 1, 1, 2, 3]), shrink: false }
                }
            };
            if a.resolve(n as usize).is_some_and(|(_, c)| c > 0) {
                axis = a;
                break;
            }
        }
        axes.push(axis);
    }
    let q = qp(&mut b.rng);
    let x = input(b, "x", &dims, q.clone());
    b.node(Op::StridedSlice(StridedSlice { axes }), &[Some(x)], Some((DType::I8, q)))
}

fn gen_prelu(b: &mut Builder) -> TensorId {
    let (n, h, w) = spatial(&mut b.rng);
    let c = int(&mut b.rng, 1, 6) as usize;
    let qi = qp(&mut b.rng);
    let x = input(b, "x", &[n, h, w, c], qi.clone());
    // The slope: per channel ([c] or [1, 1, c]) or one value, asymmetric int8.
    let dims: Vec<usize> = match b.rng.next_u64() % 3 {
        0 => vec![c],
        1 => vec![1, 1, c],
        _ => vec![1],
    };
    let len: usize = dims.iter().product();
    let qa = QuantParams::per_tensor(10f32.powf(b.rng.uniform(-3.0, -1.5)), int(&mut b.rng, -128, 127));
    let vals: Vec<u8> = i8s(&mut b.rng, len).into_iter().map(|v| v as u8).collect();
    let alpha = b.raw_const(Tensor::constant("alpha", DType::I8, Shape::fixed(&dims), vals.into()).with_quant(qa));
    let qo = qp_near(&mut b.rng, qi.scale() * 0.7);
    b.node(Op::Prelu, &[Some(x), Some(alpha)], Some((DType::I8, qo)))
}

fn random_dims(rng: &mut Rng) -> Vec<usize> {
    let rank = int(rng, 1, 4) as usize;
    (0..rank).map(|_| int(rng, 1, 5) as usize).collect()
}

fn gen_gather(b: &mut Builder) -> TensorId {
    let dims = random_dims(&mut b.rng);
    let axis = int(&mut b.rng, 0, dims.len() as i64 - 1) as usize;
    let count = int(&mut b.rng, 1, 5) as usize;
    let idx: Vec<i32> = (0..count).map(|_| int(&mut b.rng, 0, dims[axis] as i64 - 1) as i32).collect();
    let q = qp(&mut b.rng);
    let x = input(b, "x", &dims, q.clone());
    let i = b.raw_const(Tensor::constant("indices", DType::I32, Shape::fixed(&[count]), i32_bytes(&idx)));
    b.node(Op::Gather(Gather { axis }), &[Some(x), Some(i)], Some((DType::I8, q)))
}

fn gen_tile(b: &mut Builder) -> TensorId {
    let dims = random_dims(&mut b.rng);
    let multiples = dims.iter().map(|_| int(&mut b.rng, 1, 3) as usize).collect();
    let q = qp(&mut b.rng);
    let x = input(b, "x", &dims, q.clone());
    b.node(Op::Tile(Tile { multiples }), &[Some(x)], Some((DType::I8, q)))
}

fn gen_mirror_pad(b: &mut Builder) -> TensorId {
    let dims = random_dims(&mut b.rng);
    let mode = pick(&mut b.rng, &[MirrorMode::Reflect, MirrorMode::Symmetric]);
    let paddings = dims
        .iter()
        .map(|&n| {
            let most = if mode == MirrorMode::Reflect { n as i64 - 1 } else { n as i64 };
            [int(&mut b.rng, 0, most) as usize, int(&mut b.rng, 0, most) as usize]
        })
        .collect();
    let q = qp(&mut b.rng);
    let x = input(b, "x", &dims, q.clone());
    b.node(Op::MirrorPad(MirrorPad { paddings, mode }), &[Some(x)], Some((DType::I8, q)))
}

fn gen_space_to_depth(b: &mut Builder) -> TensorId {
    let block = int(&mut b.rng, 2, 3) as usize;
    let (n, h, w) = spatial(&mut b.rng);
    let c = int(&mut b.rng, 1, 4) as usize;
    let q = qp(&mut b.rng);
    let x = input(b, "x", &[n, h.min(3) * block, w.min(3) * block, c], q.clone());
    b.node(Op::SpaceToDepth(SpaceDepth { block }), &[Some(x)], Some((DType::I8, q)))
}

fn gen_depth_to_space(b: &mut Builder) -> TensorId {
    let block = int(&mut b.rng, 2, 3) as usize;
    let (n, h, w) = spatial(&mut b.rng);
    let c = int(&mut b.rng, 1, 3) as usize;
    let q = qp(&mut b.rng);
    let x = input(b, "x", &[n, h.min(4), w.min(4), c * block * block], q.clone());
    b.node(Op::DepthToSpace(SpaceDepth { block }), &[Some(x)], Some((DType::I8, q)))
}

#[test]
fn random_integer_ops_are_exported_for_litert() {
    let kinds: [(&str, Gen); 35] = [
        ("fully_connected", gen_fully_connected),
        ("conv2d", gen_conv),
        ("conv2d_wide", gen_conv_wide),
        ("depthwise", gen_depthwise),
        ("add", gen_add),
        ("sub", gen_sub),
        ("mul", gen_mul),
        ("average_pool", gen_avg_pool),
        ("max_pool", gen_max_pool),
        ("mean", gen_mean),
        ("softmax", gen_softmax),
        ("logistic", gen_logistic),
        ("tanh", gen_tanh),
        ("relu", gen_relu),
        ("requantize", gen_requantize),
        ("concat_pad", gen_concat_pad),
        ("strided_slice", gen_strided_slice),
        ("hard_swish", gen_hard_swish),
        ("resize_nearest", gen_resize_nearest),
        ("resize_bilinear", gen_resize_bilinear),
        ("prelu", gen_prelu),
        ("max_min", gen_max_min),
        ("transpose_conv", gen_transpose_conv),
        ("elu_gelu", gen_lut_activation),
        ("batch_matmul", gen_batch_matmul),
        ("padv2", gen_padv2),
        ("gather", gen_gather),
        ("tile", gen_tile),
        ("mirror_pad", gen_mirror_pad),
        ("space_to_depth", gen_space_to_depth),
        ("depth_to_space", gen_depth_to_space),
        ("sum", gen_sum),
        ("unary_more", gen_unary_more),
        ("squared_difference", gen_squared_difference),
        ("log_softmax", gen_log_softmax),
    ];
    let mut snap = String::new();
    let mut redrawn = Vec::new();
    for (name, generate) in kinds {
        for i in 0..PER_KIND {
            let case = format!("rand_{name}_{i:03}");
            let (g, inputs, y, attempts) = draw(&case, generate);
            if attempts > 0 {
                redrawn.push(format!("{case} ({attempts})"));
            }
            let bytes = qlite_tflite::write_model(&g).unwrap();
            if name == "sum" {
                let reference = litert_reference_sum_int8(&g, &inputs[0]);
                crate::common::export_case_with_reference(&case, &bytes, &inputs, &y, Some(&[reference]), "exact");
            } else {
                export_case(&case, &bytes, &inputs, &y, "exact");
            }
            // BUILTIN_REF registers only the float versions of these two: LiteRT's default
            // kernel (a copy, like ours) is held to the bit instead.
            let elu = g.nodes().iter().any(|n| matches!(&n.op, Op::Unary(u) if u.kind == UnaryKind::Elu));
            let unregistered = match name {
                "depth_to_space" => Some("'DEPTH_TO_SPACE' version '2'"),
                "tile" => Some("'TILE' version '3'"),
                // BUILTIN_REF registers no ELU at all.
                _ if elu => Some("'ELU' version '1'"),
                _ => None,
            };
            if let Some(op) = unregistered {
                crate::common::reference_resolver_fails(
                    &case,
                    &format!("Didn't find op for builtin opcode {op}"),
                    "BUILTIN_REF does not register the int8 version of this op",
                );
            }
            if i < 2 {
                snap.push_str(&format!(
                    "== {case}\n{}{}\n\n",
                    qlite::ir::print_graph(&g),
                    crate::common::arrays_text(&y)
                ));
            }
        }
    }
    // Exact int8 outputs of the first cases of each kind (all cases are checked against LiteRT).
    insta::assert_snapshot!("random_int8_ops", snap);
    eprintln!("{} random cases redrawn (attempts): {}", redrawn.len(), redrawn.join(", "));
}

/// A random case must show at least `min(MIN_DISTINCT, ⌈n/2⌉)` distinct values among its n
/// outputs and at most `MAX_SATURATED` of them at -128 or 127; otherwise it proves
/// little (a constant or clamped output agrees with almost any kernel) and is drawn again.
/// (Half the outputs at the ReLU floor is what a real ReLU layer with zero point -128 gives, so
/// the bound sits above that; the padding of PAD cases is the zero point, legitimately common.)
const MIN_DISTINCT: usize = 4;
const MAX_SATURATED: f64 = 0.6;
/// Draws before a generator is declared broken.
const MAX_DRAWS: usize = 64;

/// Why an int8 output is too trivial to test anything, if it is.
fn trivial(y: &Array) -> Option<String> {
    let Data::I8(v) = y.data() else { return None };
    let n = v.len();
    let mut counts = [0usize; 256];
    for &x in v {
        counts[(x as i16 + 128) as usize] += 1;
    }
    let distinct = counts.iter().filter(|&&c| c > 0).count();
    let saturated = (counts[0] + counts[255]) as f64 / n.max(1) as f64;
    if distinct < MIN_DISTINCT.min(n.div_ceil(2)) {
        Some(format!("{distinct} distinct values in {n}"))
    } else if saturated > MAX_SATURATED {
        Some(format!("{:.0}% of the outputs at -128 or 127", 100.0 * saturated))
    } else {
        None
    }
}

/// Draw `case` from `generate` until its output is not trivial. The first draw is seeded by
/// the case's name, redraw k by `NAME~k`: deterministic. Returns the graph, inputs, the
/// reference outputs and how many draws were refused.
fn draw(case: &str, generate: Gen) -> (qlite::ir::Graph, Vec<Array>, Vec<Array>, usize) {
    draw_until(case, generate, trivial)
}

/// [`draw`] with the triviality test of the output's type (int8 here, int16 in `int16x8`).
pub(crate) fn draw_until(
    case: &str,
    generate: fn(&mut Builder) -> TensorId,
    trivial: fn(&Array) -> Option<String>,
) -> (qlite::ir::Graph, Vec<Array>, Vec<Array>, usize) {
    let mut why = String::new();
    for attempt in 0..MAX_DRAWS {
        let seed = if attempt == 0 { case.to_string() } else { format!("{case}~{attempt}") };
        let mut b = Builder::new(&seed);
        let out = generate(&mut b);
        let (g, inputs) = b.finish(&[out]);
        let y = qlite::run(&g, inputs.clone()).unwrap_or_else(|e| panic!("{case}: {e}"));
        match trivial(&y[0]) {
            None => return (g, inputs, y, attempt),
            Some(w) => why = w,
        }
    }
    panic!("{case}: {MAX_DRAWS} draws all gave trivial outputs (last: {why}): the generator is broken")
}

/// Sabotage: a generator whose outputs always saturate (ReLU with the output zero point at
/// 127) must be refused, not exported.
#[test]
fn a_saturating_generator_is_refused() {
    fn saturating(b: &mut Builder) -> TensorId {
        let x = input(b, "x", &[1, 32], QuantParams::per_tensor(0.1, 0));
        let op = Op::Unary(Unary { kind: UnaryKind::Relu });
        b.node(op, &[Some(x)], Some((DType::I8, QuantParams::per_tensor(0.1, 127))))
    }
    let r = std::panic::catch_unwind(|| draw("rand_saturating_000", saturating));
    assert!(r.is_err(), "a saturating generator was accepted");
    let y = Array::new(vec![6], Data::I8(vec![127, 127, 127, 127, 3, -5])).unwrap();
    assert!(trivial(&y).is_some());
    let y = Array::new(vec![6], Data::I8(vec![7, 7, 7, 8, 8, 8])).unwrap();
    assert!(trivial(&y).is_some());
    let y = Array::new(vec![6], Data::I8(vec![1, 2, 3, 4, 5, 6])).unwrap();
    assert!(trivial(&y).is_none());
}

/// The fast FULLY_CONNECTED against the reference kernel: depths that exercise every vector
/// tail, batches, kept leading dimensions, per-tensor weights with a zero point (which the
/// reference subtracts), per-channel weights, every activation, saturating outputs.
#[test]
fn fast_fully_connected_is_bit_exact_with_the_reference() {
    let mut fast_nodes = 0;
    for seed in 0..400u64 {
        let mut b = Builder::new(&format!("fast_fc_{seed}"));
        let depth = match seed % 4 {
            0 => int(&mut b.rng, 1, 17) as usize,
            1 => int(&mut b.rng, 16, 70) as usize,
            _ => int(&mut b.rng, 60, 700) as usize,
        };
        let units = int(&mut b.rng, 1, if seed % 2 == 0 { 70 } else { 200 }) as usize;
        let keep = seed % 5 == 0;
        let dims: Vec<usize> = if keep {
            vec![2, int(&mut b.rng, 1, 3) as usize, depth]
        } else {
            vec![int(&mut b.rng, 1, 4) as usize, depth]
        };
        let qi = qp(&mut b.rng);
        let x = input(&mut b, "x", &dims, qi.clone());
        let per_channel = seed % 3 != 0;
        let (w, ws) = weights(&mut b, &[units, depth], 0, per_channel);
        let w = if !per_channel && seed % 2 == 0 {
            // Per-tensor weights with a non-zero zero point.
            let t = b.g.tensor(w).unwrap().clone();
            let zp = int(&mut b.rng, -20, 20);
            b.raw_const(t.with_quant(QuantParams::per_tensor(ws[0], zp)))
        } else {
            w
        };
        let bias = (seed % 4 != 3).then(|| bias(&mut b, units, qi.scale(), &ws));
        let a = act(&mut b.rng);
        let typical = typical_out(qi.scale(), &ws, depth) * if seed % 7 == 0 { 0.05 } else { 1.0 };
        let qo = qp_near(&mut b.rng, typical);
        let op = Op::FullyConnected(FullyConnected { activation: a, keep_num_dims: keep, asymmetric_inputs: false });
        let out = b.node(op, &[Some(x), Some(w), bias], Some((DType::I8, qo)));
        let (g, inputs) = b.finish(&[out]);
        fast_nodes += fast_against_reference(&g, inputs, &format!("seed {seed}: depth {depth}, units {units}"));
    }
    assert_eq!(fast_nodes, 400, "every case must run the fast kernel");
}

/// Large convolutions split their output rows over threads: the bytes must not change.
#[test]
fn threaded_fast_convolutions_match_the_reference() {
    for (seed, (h, w, ic, oc, k, stride)) in
        [(40usize, 36usize, 16usize, 32usize, 3usize, 1usize), (33, 29, 24, 48, 1, 1), (31, 30, 8, 40, 5, 2)]
            .into_iter()
            .enumerate()
    {
        let mut b = Builder::new(&format!("threaded_conv_{seed}"));
        let qi = qp(&mut b.rng);
        let x = input(&mut b, "x", &[2, h, w, ic], qi.clone());
        let (wt, ws) = weights(&mut b, &[oc, k, k, ic], 0, true);
        let bias = bias(&mut b, oc, qi.scale(), &ws);
        let qo = qp_near(&mut b.rng, typical_out(qi.scale(), &ws, k * k * ic));
        let op = Op::Conv2d(Conv2d {
            padding: if seed % 2 == 0 { Padding::Same } else { Padding::Valid },
            stride: [stride, stride],
            dilation: [1, 1],
            activation: Activation::Relu,
        });
        let out = b.node(op, &[Some(x), Some(wt), Some(bias)], Some((DType::I8, qo)));
        let (g, inputs) = b.finish(&[out]);
        let reference = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
        qlite::isa::for_each_tier(|t| {
            for threads in [1, 2, 3, 7] {
                let fast = qlite::Interpreter::new(&g)
                    .unwrap()
                    .isa(t)
                    .kernels(qlite::Kernels::Fast)
                    .threads(threads)
                    .min_macs_per_thread(1 << 16);
                assert_eq!(fast.run(inputs.clone()).unwrap(), reference, "case {seed} at {t}, {threads} threads");
            }
        });
    }
}

/// The fast CONV_2D and DEPTHWISE_CONV_2D against the reference kernels on shapes the
/// LiteRT-exported cases keep small: channel counts around and across the vector widths (4,
/// 16, 64 units), kernels up to 5×5, strides, dilations, both paddings, pointwise convolutions
/// read in place (strided too), depth multipliers, batches.
#[test]
fn fast_convolutions_are_bit_exact_with_the_reference() {
    let mut fast_nodes = 0;
    for seed in 0..300u64 {
        let mut b = Builder::new(&format!("fast_conv_{seed}"));
        let n = int(&mut b.rng, 1, 2) as usize;
        let (h, w_) = (int(&mut b.rng, 1, 14) as usize, int(&mut b.rng, 1, 14) as usize);
        let depthwise = seed % 3 == 2;
        let pointwise = seed % 3 == 1;
        let ic = match seed % 4 {
            0 => int(&mut b.rng, 1, 5),
            1 => int(&mut b.rng, 12, 20),
            _ => int(&mut b.rng, 1, 70),
        } as usize;
        let (kh, kw) =
            if pointwise { (1, 1) } else { (int(&mut b.rng, 1, 5) as usize, int(&mut b.rng, 1, 5) as usize) };
        let stride = [int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 1, 3) as usize];
        let dilation =
            if pointwise { [1, 1] } else { [int(&mut b.rng, 1, 2) as usize, int(&mut b.rng, 1, 2) as usize] };
        let fits = (kh - 1) * dilation[0] < h && (kw - 1) * dilation[1] < w_;
        let padding =
            if pointwise || (fits && b.rng.next_u64().is_multiple_of(2)) { Padding::Valid } else { Padding::Same };
        let qi = qp(&mut b.rng);
        let x = input(&mut b, "x", &[n, h, w_, ic], qi.clone());
        let a = act(&mut b.rng);
        let out = if depthwise {
            let m = int(&mut b.rng, 1, 3) as usize;
            let (w, ws) = weights(&mut b, &[1, kh, kw, ic * m], 3, true);
            let bias = bias(&mut b, ic * m, qi.scale(), &ws);
            let qo = qp_near(&mut b.rng, typical_out(qi.scale(), &ws, kh * kw));
            let op =
                Op::DepthwiseConv2d(DepthwiseConv2d { padding, stride, dilation, depth_multiplier: m, activation: a });
            b.node(op, &[Some(x), Some(w), Some(bias)], Some((DType::I8, qo)))
        } else {
            let oc = match seed % 5 {
                0 => int(&mut b.rng, 1, 15),
                1 => int(&mut b.rng, 15, 17),
                2 => int(&mut b.rng, 60, 70),
                _ => int(&mut b.rng, 1, 150),
            } as usize;
            let (w, ws) = weights(&mut b, &[oc, kh, kw, ic], 0, seed % 6 != 0);
            let bias = (seed % 7 != 3).then(|| bias(&mut b, oc, qi.scale(), &ws));
            let qo = qp_near(&mut b.rng, typical_out(qi.scale(), &ws, kh * kw * ic));
            let op = Op::Conv2d(Conv2d { padding, stride, dilation, activation: a });
            b.node(op, &[Some(x), Some(w), bias], Some((DType::I8, qo)))
        };
        let (g, inputs) = b.finish(&[out]);
        let case = format!(
            "seed {seed}: {n}x{h}x{w_}x{ic}, kernel {kh}x{kw}, stride {stride:?}, dilation {dilation:?}, {padding:?}, depthwise {depthwise}"
        );
        fast_nodes += fast_against_reference(&g, inputs, &case);
    }
    assert_eq!(fast_nodes, 300, "every case must run a fast kernel");
}

/// The fast spatial MEAN (global average pooling, the end of most CNNs) against the reference:
/// window sizes up to hundreds of pixels, channel counts across vector widths, both
/// keep_dims, output scales equal to and unlike the input's.
#[test]
fn fast_spatial_mean_is_bit_exact_with_the_reference() {
    let mut fast_nodes = 0;
    for seed in 0..150u64 {
        let mut b = Builder::new(&format!("fast_mean_{seed}"));
        let dims = [
            int(&mut b.rng, 1, 3) as usize,
            int(&mut b.rng, 1, 20) as usize,
            int(&mut b.rng, 1, 20) as usize,
            int(&mut b.rng, 1, 80) as usize,
        ];
        let axes = if seed % 2 == 0 { vec![1, 2] } else { vec![2, 1] };
        let keep_dims = seed % 3 == 0;
        let qi = qp(&mut b.rng);
        let x = input(&mut b, "x", &dims, qi.clone());
        let qo = if seed % 4 == 0 { qi } else { qp_near(&mut b.rng, qi.scale()) };
        let out = b.node(Op::Mean(Mean { axes, keep_dims }), &[Some(x)], Some((DType::I8, qo)));
        let (g, inputs) = b.finish(&[out]);
        fast_nodes += fast_against_reference(&g, inputs, &format!("seed {seed}: {dims:?}"));
    }
    assert_eq!(fast_nodes, 150, "every case must run the fast kernel");
}

/// The float32 fast kernels (CONV_2D as im2col + SGEMM, FULLY_CONNECTED as SGEMM, DEPTHWISE
/// with the channel loop inside, same-shape ADD / SUB / MUL, PAD) against the reference kernels,
/// random shapes, strides, dilations, paddings and activations: within `FAST_FLOAT_TOL`.
#[test]
fn fast_float_kernels_are_within_the_stated_bound() {
    let tol = crate::common::FAST_FLOAT_TOL;
    let mut fast_nodes = 0;
    for seed in 0..150u64 {
        let mut b = Builder::new(&format!("fast_float_{seed}"));
        let (n, h, w_) = spatial(&mut b.rng);
        let (ic, oc) = (int(&mut b.rng, 1, 24) as usize, int(&mut b.rng, 1, 24) as usize);
        let (kh, kw) = (int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 1, 3) as usize);
        let stride = [int(&mut b.rng, 1, 2) as usize, int(&mut b.rng, 1, 2) as usize];
        let dilation = [int(&mut b.rng, 1, 2) as usize, int(&mut b.rng, 1, 2) as usize];
        let padding = if (kh - 1) * dilation[0] + 1 > h || (kw - 1) * dilation[1] + 1 > w_ {
            Padding::Same
        } else {
            pick(&mut b.rng, &[Padding::Same, Padding::Valid])
        };
        let x = b.input("x", &[n, h, w_, ic], -1.0, 1.0);
        let a = act(&mut b.rng);
        let op = match seed % 3 {
            0 => Op::Conv2d(Conv2d { padding, stride, dilation, activation: a }),
            1 => Op::DepthwiseConv2d(DepthwiseConv2d { padding, stride, dilation, depth_multiplier: 1, activation: a }),
            _ => Op::FullyConnected(FullyConnected {
                activation: a,
                keep_num_dims: seed % 2 == 0,
                asymmetric_inputs: false,
            }),
        };
        let (wdims, bias_len) = match &op {
            Op::Conv2d(_) => (vec![oc, kh, kw, ic], oc),
            Op::DepthwiseConv2d(_) => (vec![1, kh, kw, ic], ic),
            _ => (vec![oc, ic], oc),
        };
        let wt = b.konst("w", &wdims);
        let bias = (seed % 4 != 0).then(|| b.konst("b", &[bias_len]));
        let y = b.node(op, &[Some(x), Some(wt), bias], None);
        let other = b.input("o", &g_shape(&b, y), -1.0, 1.0);
        let kind = pick(&mut b.rng, &[BinaryKind::Add, BinaryKind::Sub, BinaryKind::Mul]);
        let a2 = act(&mut b.rng);
        let z = b.node(Op::Binary(Binary { kind, activation: a2 }), &[Some(y), Some(other)], None);
        let rank = g_shape(&b, z).len();
        let paddings: Vec<[usize; 2]> =
            (0..rank).map(|_| [int(&mut b.rng, 0, 2) as usize, int(&mut b.rng, 0, 2) as usize]).collect();
        let p = b.node(Op::Pad(Pad { paddings }), &[Some(z)], None);
        let (g, inputs) = b.finish(&[p]);
        let reference = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
        qlite::isa::for_each_tier(|t| {
            let fast = qlite::Interpreter::new(&g).unwrap().isa(t).kernels(qlite::Kernels::Fast);
            let got = fast.run(inputs.clone()).unwrap();
            if let Err(e) = qlite::compare_all(&got, &reference, tol) {
                panic!("seed {seed} at {t}: {e}\n{}", qlite::ir::print_graph(&g));
            }
            assert_eq!(fast.fast_nodes(), 3, "seed {seed}: the layer, the binary op and the pad run fast");
            // Split over threads into the smallest parts: the same values, bit for bit.
            let split = fast.threads(3).min_macs_per_thread(1).run(inputs.clone()).unwrap();
            assert_eq!(split, got, "seed {seed} at {t}: a split layer differs");
        });
        fast_nodes += 1;
    }
    assert_eq!(fast_nodes, 150);
}

/// A float FULLY_CONNECTED on one sample splits its output channels over the pool by panels
/// of 32: the same bits as one thread, within the bound of the reference, across panel tails.
#[test]
fn split_float_fully_connected_matches_one_thread() {
    let tol = crate::common::FAST_FLOAT_TOL;
    for seed in 0..40u64 {
        let mut b = Builder::new(&format!("split_fc_{seed}"));
        let (depth, units) = (int(&mut b.rng, 1, 70) as usize, int(&mut b.rng, 1, 200) as usize);
        let x = b.input("x", &[1, depth], -1.0, 1.0);
        let w = b.konst("w", &[units, depth]);
        let bias = (seed % 3 != 0).then(|| b.konst("b", &[units]));
        let op = Op::FullyConnected(FullyConnected {
            activation: act(&mut b.rng),
            keep_num_dims: false,
            asymmetric_inputs: false,
        });
        let y = b.node(op, &[Some(x), Some(w), bias], None);
        let (g, inputs) = b.finish(&[y]);
        let reference = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
        qlite::isa::for_each_tier(|t| {
            let one = qlite::Interpreter::new(&g).unwrap().isa(t).kernels(qlite::Kernels::Fast);
            let got = one.run(inputs.clone()).unwrap();
            qlite::compare_all(&got, &reference, tol).unwrap_or_else(|e| panic!("seed {seed} at {t}: {e}"));
            let split = one.threads(3).min_macs_per_thread(1).run(inputs.clone()).unwrap();
            assert_eq!(split, got, "seed {seed} at {t}: {depth} -> {units}");
        });
    }
}

/// Float element-wise unary ops split over the pool in blocks of 64 elements: the same bits
/// as one thread, within the bound of the reference, across block tails.
#[test]
fn split_float_unary_ops_match_one_thread() {
    let tol = crate::common::FAST_FLOAT_TOL;
    let kinds = [UnaryKind::Logistic, UnaryKind::Relu, UnaryKind::Relu6, UnaryKind::Abs, UnaryKind::Neg];
    for seed in 0..30u64 {
        let mut b = Builder::new(&format!("split_unary_{seed}"));
        let dims =
            [1, int(&mut b.rng, 1, 9) as usize, int(&mut b.rng, 1, 40) as usize, int(&mut b.rng, 1, 33) as usize];
        let x = b.input("x", &dims, -8.0, 8.0);
        let y = b.node(Op::Unary(Unary { kind: kinds[seed as usize % kinds.len()] }), &[Some(x)], None);
        let (g, inputs) = b.finish(&[y]);
        let reference = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
        qlite::isa::for_each_tier(|t| {
            let one = qlite::Interpreter::new(&g).unwrap().isa(t).kernels(qlite::Kernels::Fast);
            let got = one.run(inputs.clone()).unwrap();
            assert_eq!(one.fast_nodes(), 1, "seed {seed}: the fast kernel runs");
            qlite::compare_all(&got, &reference, tol).unwrap_or_else(|e| panic!("seed {seed} at {t}: {e}"));
            let split = one.threads(3).min_macs_per_thread(1).run(inputs.clone()).unwrap();
            assert_eq!(split, got, "seed {seed} at {t}: {dims:?}");
        });
    }
}

/// Float swish (`MUL(x, LOGISTIC(x))`) runs as one kernel and plain runs skip the LOGISTIC
/// node when the MUL is its only reader: the same bits as the two fast nodes; observed runs
/// (calibration) still see the LOGISTIC's values; a second reader keeps the node running.
#[test]
fn fused_swish_skips_its_logistic_and_keeps_the_bits() {
    struct Seen(Vec<qlite::ir::TensorId>);
    impl qlite::Observer for Seen {
        fn observe(&mut self, t: qlite::ir::TensorId, _: &Array) {
            self.0.push(t);
        }
    }
    let tol = crate::common::FAST_FLOAT_TOL;
    for seed in 0..20u64 {
        let mut b = Builder::new(&format!("swish_{seed}"));
        let dims =
            [1, int(&mut b.rng, 1, 12) as usize, int(&mut b.rng, 1, 30) as usize, int(&mut b.rng, 1, 40) as usize];
        let x = b.input("x", &dims, -6.0, 6.0);
        let l = b.node(Op::Unary(Unary { kind: UnaryKind::Logistic }), &[Some(x)], None);
        let act = act(&mut b.rng);
        let y = b.node(Op::Binary(Binary { kind: BinaryKind::Mul, activation: act }), &[Some(x), Some(l)], None);
        // Odd seeds: the sigmoid is also a graph output (a second reader: not skipped).
        let outs = if seed % 2 == 1 { vec![y, l] } else { vec![y] };
        let (g, inputs) = b.finish(&outs);
        let reference = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
        let fast = qlite::Interpreter::new(&g).unwrap().kernels(qlite::Kernels::Fast);
        let got = fast.run(inputs.clone()).unwrap();
        qlite::compare_all(&got, &reference, tol).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // Plain runs skip the LOGISTIC unless something else reads it.
        let mut ran = 0;
        fast.session().run_with(&inputs, &mut |_| ran += 1).unwrap();
        assert_eq!(ran, if seed % 2 == 1 { 2 } else { 1 }, "seed {seed}: nodes run");
        let mut seen = Seen(Vec::new());
        let observed = fast.run_observed(inputs.clone(), &mut seen).unwrap();
        assert_eq!(observed, got, "seed {seed}: observed and plain runs give the same bits");
        assert!(seen.0.contains(&l), "seed {seed}: the observer sees the sigmoid");
        let split = qlite::Interpreter::new(&g)
            .unwrap()
            .kernels(qlite::Kernels::Fast)
            .threads(3)
            .min_macs_per_thread(1)
            .run(inputs.clone())
            .unwrap();
        assert_eq!(split, got, "seed {seed}: split over threads");
    }
}

fn g_shape(b: &Builder, t: TensorId) -> Vec<usize> {
    b.g.tensor(t).and_then(|x| x.shape.to_fixed()).expect("a fixed shape")
}

/// The table-driven int8 ADD / SUB / MUL (same-shape operands, any fused activation) and the
/// row-copying int8 PAD / PADV2 give the reference kernels' bytes at every tier, and run fast.
#[test]
fn fast_binary_and_pad_match_the_reference() {
    let mut fast_nodes = 0;
    for seed in 0..120u64 {
        let mut b = Builder::new(&format!("fast_binary_{seed}"));
        let rank = int(&mut b.rng, 1, 4) as usize;
        let dims: Vec<usize> = (0..rank).map(|_| int(&mut b.rng, 1, 9) as usize).collect();
        let kind = pick(&mut b.rng, &[BinaryKind::Add, BinaryKind::Sub, BinaryKind::Mul]);
        let (q1, q2) = (qp(&mut b.rng), qp(&mut b.rng));
        let typical = match kind {
            BinaryKind::Mul => q1.scale() * q2.scale() * 10000.0 / 64.0,
            _ => q1.scale().max(q2.scale()) * 2.0,
        };
        let x = input(&mut b, "x", &dims, q1);
        let y = input(&mut b, "y", &dims, q2);
        let a = act(&mut b.rng);
        let qo = qp_near(&mut b.rng, typical);
        let out = b.node(Op::Binary(Binary { kind, activation: a }), &[Some(x), Some(y)], Some((DType::I8, qo)));
        let (g, inputs) = b.finish(&[out]);
        fast_nodes += fast_against_reference(&g, inputs, &format!("binary seed {seed}: {kind:?} {dims:?}"));
    }
    // MUL by a channel vector broadcast over the pixels (squeeze-and-excite), either operand
    // order, one vector per sample or one for all, channel counts below, at and above a
    // vector, not dividing 16, and past the 4096-lane period (scalar).
    for seed in 0..60u64 {
        let mut b = Builder::new(&format!("fast_channel_mul_{seed}"));
        let c = pick(&mut b.rng, &[1usize, 3, 16, 24, 32, 40, 96, 144, 5000]);
        let n = int(&mut b.rng, 1, 2) as usize;
        let (h, w) = (int(&mut b.rng, 1, 9) as usize, int(&mut b.rng, 1, 9) as usize);
        let small: Vec<usize> = match seed % 3 {
            0 => vec![n, 1, 1, c],
            1 => vec![1, 1, 1, c],
            _ => vec![c],
        };
        let (q1, q2) = (qp(&mut b.rng), qp(&mut b.rng));
        let x = input(&mut b, "x", &[n, h, w, c], q1.clone());
        let v = input(&mut b, "v", &small, q2.clone());
        let inputs = if seed % 2 == 0 { [Some(x), Some(v)] } else { [Some(v), Some(x)] };
        let a = act(&mut b.rng);
        let qo = qp_near(&mut b.rng, q1.scale() * q2.scale() * 10000.0 / 64.0);
        let op = Op::Binary(Binary { kind: BinaryKind::Mul, activation: a });
        let out = b.node(op, &inputs, Some((DType::I8, qo)));
        let (g, inputs) = b.finish(&[out]);
        fast_nodes +=
            fast_against_reference(&g, inputs, &format!("channel mul seed {seed}: {small:?} x [{n},{h},{w},{c}]"));
    }
    for seed in 0..80u64 {
        let mut b = Builder::new(&format!("fast_pad_{seed}"));
        let rank = int(&mut b.rng, 1, 4) as usize;
        let dims: Vec<usize> = (0..rank).map(|_| int(&mut b.rng, 1, 6) as usize).collect();
        let paddings: Vec<[usize; 2]> =
            (0..rank).map(|_| [int(&mut b.rng, 0, 3) as usize, int(&mut b.rng, 0, 3) as usize]).collect();
        let q = qp(&mut b.rng);
        let x = input(&mut b, "x", &dims, q.clone());
        let mut ins = vec![Some(x)];
        if seed % 2 == 1 {
            let v = int(&mut b.rng, -128, 127) as i8 as u8;
            let t = Tensor::constant("value", DType::I8, Shape::fixed(&[]), vec![v].into()).with_quant(q.clone());
            ins.push(Some(b.raw_const(t)));
        }
        let out = b.node(Op::Pad(Pad { paddings: paddings.clone() }), &ins, Some((DType::I8, q)));
        let (g, inputs) = b.finish(&[out]);
        fast_nodes += fast_against_reference(&g, inputs, &format!("pad seed {seed}: {dims:?} {paddings:?}"));
    }
    assert_eq!(fast_nodes, 260, "every case must run the fast kernel");
}

/// A session's planned arena: after the first run, a run of a model whose ops all have
/// in-place kernels allocates nothing, and gives the reference kernels' bytes every time.
#[test]
fn sessions_allocate_nothing_after_the_first_run() {
    let mut models: Vec<(String, qlite::ir::Graph)> = ["mlp.tflite", "cnn.tflite"]
        .iter()
        .map(|f| {
            let bytes = std::fs::read(crate::common::fixture(&format!("digits/tf_int8/{f}"))).unwrap();
            (f.to_string(), qlite_tflite::read_model(bytes::Bytes::from(bytes)).unwrap())
        })
        .collect();
    // A MobileNet-style tail: convolution, depthwise, pointwise, global average.
    let mut b = Builder::new("session_mobilenet_tail");
    let qi = qp(&mut b.rng);
    let x = input(&mut b, "x", &[1, 12, 12, 8], qi.clone());
    let mut cur = (x, qi);
    for (oc, k, depthwise) in [(24usize, 3usize, false), (24, 3, true), (40, 1, false)] {
        let (xt, q) = cur.clone();
        let in_c = b.g.tensor(xt).unwrap().shape.to_fixed().unwrap()[3];
        let op_pad = Padding::Same;
        let (w, ws, depth, op) = if depthwise {
            let (w, ws) = weights(&mut b, &[1, k, k, in_c], 3, true);
            let op = Op::DepthwiseConv2d(DepthwiseConv2d {
                padding: op_pad,
                stride: [1, 1],
                dilation: [1, 1],
                depth_multiplier: 1,
                activation: Activation::Relu6,
            });
            (w, ws, k * k, op)
        } else {
            let (w, ws) = weights(&mut b, &[oc, k, k, in_c], 0, true);
            let op =
                Op::Conv2d(Conv2d { padding: op_pad, stride: [1, 1], dilation: [1, 1], activation: Activation::Relu });
            (w, ws, k * k * in_c, op)
        };
        let units = if depthwise { in_c } else { oc };
        let bias = bias(&mut b, units, q.scale(), &ws);
        let qo = qp_near(&mut b.rng, typical_out(q.scale(), &ws, depth));
        let y = b.node(op, &[Some(xt), Some(w), Some(bias)], Some((DType::I8, qo.clone())));
        cur = (y, qo);
    }
    let (last, q) = cur;
    let out = b.node(Op::Mean(Mean { axes: vec![1, 2], keep_dims: false }), &[Some(last)], Some((DType::I8, q)));
    let (g, tail_inputs) = b.finish(&[out]);
    models.push(("mobilenet tail".into(), g));
    for (name, g) in &models {
        let inputs =
            if name == "mobilenet tail" { tail_inputs.clone() } else { qlite::roundtrip::random_inputs(g, 3).unwrap() };
        let reference = qlite::Interpreter::new(g).unwrap().run(inputs.clone()).unwrap();
        qlite::isa::for_each_tier(|t| {
            let interp = qlite::Interpreter::new(g).unwrap().isa(t).kernels(qlite::Kernels::Fast);
            let mut session = interp.session();
            session.run(&inputs).unwrap();
            let first = session.arena_bytes();
            for run in 0..3 {
                let ((), allocations) = crate::alloc::allocations_during(|| session.run(&inputs).unwrap());
                assert_eq!(allocations, 0, "{name} at {t}: run {run} allocated");
                let got: Vec<qlite::Array> = session.outputs().unwrap().into_iter().cloned().collect();
                assert_eq!(got, reference, "{name} at {t}: run {run}");
            }
            assert_eq!(session.arena_bytes(), first, "{name} at {t}: the arena grew after the first run");
            assert!(session.slots() < g.nodes().len(), "{name}: slots are shared ({} slots)", session.slots());
        });
    }
}

/// The fast hybrid (dynamic-range) FULLY_CONNECTED against the reference: symmetric and
/// asymmetric input quantization, per-channel and per-tensor weights, batches, kept leading
/// dimensions, biases, activations, an all-zero input (which the reference short-cuts). The
/// outputs are floats, compared bit for bit.
#[test]
fn fast_hybrid_fully_connected_is_bit_exact_with_the_reference() {
    let mut fast_nodes = 0;
    for seed in 0..200u64 {
        let mut b = Builder::new(&format!("fast_hybrid_fc_{seed}"));
        let depth = int(&mut b.rng, 1, if seed % 2 == 0 { 40 } else { 300 }) as usize;
        let units = int(&mut b.rng, 1, 130) as usize;
        let keep = seed % 5 == 0;
        let dims: Vec<usize> = if keep { vec![2, 2, depth] } else { vec![int(&mut b.rng, 1, 3) as usize, depth] };
        let x = if seed % 11 == 0 {
            let n = dims.iter().product();
            let t = Tensor::activation("x", DType::F32, Shape::fixed(&dims));
            b.input_with(t, Array::f32(dims.clone(), vec![0.0; n]).unwrap())
        } else {
            b.input("x", &dims, -3.0, if seed % 3 == 0 { 0.5 } else { 3.0 })
        };
        let (w, _) = weights(&mut b, &[units, depth], 0, seed % 3 != 1);
        let bias = (seed % 4 != 0).then(|| b.konst("bias", &[units]));
        let op = Op::FullyConnected(FullyConnected {
            activation: act(&mut b.rng),
            keep_num_dims: keep,
            asymmetric_inputs: seed % 2 == 1,
        });
        let out = b.node(op, &[Some(x), Some(w), bias], None);
        let (g, inputs) = b.finish(&[out]);
        let reference = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
        let bits = |a: &[Array]| -> Vec<u32> {
            a.iter().flat_map(|a| a.as_f32().unwrap().iter().map(|v| v.to_bits())).collect()
        };
        qlite::isa::for_each_tier(|t| {
            let fast = qlite::Interpreter::new(&g).unwrap().isa(t).kernels(qlite::Kernels::Fast);
            fast_nodes += fast.fast_nodes();
            let got = fast.run(inputs.clone()).unwrap();
            assert_eq!(bits(&got), bits(&reference), "seed {seed} at {t}: depth {depth}, units {units}");
        });
    }
    assert_eq!(fast_nodes, 200 * qlite::Isa::available().len(), "every case must run the fast kernel");
}

/// Depthwise convolutions with 1, 2, 4 or 8 channels and stride 1 across, which the fast
/// kernel runs several pixels per vector; and 16·k channels, which it requantizes four
/// vectors at a time: against the reference, both paddings, odd widths (partial vectors).
#[test]
fn fast_depthwise_lane_layouts_are_bit_exact_with_the_reference() {
    for seed in 0..80u64 {
        let mut b = Builder::new(&format!("fast_dw_lanes_{seed}"));
        let ic = [1usize, 2, 4, 8, 16, 32, 48, 64][seed as usize % 8];
        let (h, w_) = (int(&mut b.rng, 3, 13) as usize, int(&mut b.rng, 3, 13) as usize);
        let k = int(&mut b.rng, 1, 3) as usize;
        let stride = [int(&mut b.rng, 1, 2) as usize, if seed % 3 == 0 { 2 } else { 1 }];
        let padding = if seed % 2 == 0 { Padding::Same } else { Padding::Valid };
        let qi = qp(&mut b.rng);
        let x = input(&mut b, "x", &[1 + (seed % 2) as usize, h, w_, ic], qi.clone());
        let (w, ws) = weights(&mut b, &[1, k, k, ic], 3, true);
        let bias = bias(&mut b, ic, qi.scale(), &ws);
        let qo = qp_near(&mut b.rng, typical_out(qi.scale(), &ws, k * k));
        let op = Op::DepthwiseConv2d(DepthwiseConv2d {
            padding,
            stride,
            dilation: [1, 1],
            depth_multiplier: 1,
            activation: act(&mut b.rng),
        });
        let out = b.node(op, &[Some(x), Some(w), Some(bias)], Some((DType::I8, qo)));
        let (g, inputs) = b.finish(&[out]);
        let case = format!("seed {seed}: {ic} channels, {h}x{w_}, k {k}, {stride:?}");
        assert_eq!(fast_against_reference(&g, inputs, &case), 1, "{case}");
    }
}

/// The `vpdpbusd` depthwise (kernels up to 8 wide: two groups of taps past 4) at its edges, against the reference: tall
/// kernels and vertical dilations (up to and past the ring of laid-out rows it keeps),
/// horizontal dilations and strides to 3, padding wider than the image, 16·k channels and
/// tails, images narrower than the kernel's reach, batches.
#[test]
fn fast_depthwise_row_layouts_are_bit_exact_with_the_reference() {
    for seed in 0..200u64 {
        let mut b = Builder::new(&format!("fast_dw_rows_{seed}"));
        let n = int(&mut b.rng, 1, 2) as usize;
        let (h, w_) = (int(&mut b.rng, 1, 20) as usize, int(&mut b.rng, 1, 20) as usize);
        let ic = [16usize, 32, 48, 64, 17, 40, 80, 3][seed as usize % 8];
        let (kh, kw) = (int(&mut b.rng, 1, 6) as usize, int(&mut b.rng, 1, 8) as usize);
        let stride = [int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 1, 3) as usize];
        let dilation = [int(&mut b.rng, 1, 4) as usize, int(&mut b.rng, 1, 3) as usize];
        let fits = (kh - 1) * dilation[0] < h && (kw - 1) * dilation[1] < w_;
        let padding = if fits && seed % 3 == 0 { Padding::Valid } else { Padding::Same };
        let qi = qp(&mut b.rng);
        let x = input(&mut b, "x", &[n, h, w_, ic], qi.clone());
        let (w, ws) = weights(&mut b, &[1, kh, kw, ic], 3, true);
        let bias = bias(&mut b, ic, qi.scale(), &ws);
        let qo = qp_near(&mut b.rng, typical_out(qi.scale(), &ws, kh * kw));
        let op = Op::DepthwiseConv2d(DepthwiseConv2d {
            padding,
            stride,
            dilation,
            depth_multiplier: 1,
            activation: act(&mut b.rng),
        });
        let out = b.node(op, &[Some(x), Some(w), Some(bias)], Some((DType::I8, qo)));
        let (g, inputs) = b.finish(&[out]);
        let case = format!(
            "seed {seed}: {n}x{h}x{w_}x{ic}, kernel {kh}x{kw}, stride {stride:?}, dilation {dilation:?}, {padding:?}"
        );
        assert_eq!(fast_against_reference(&g, inputs, &case), 1, "{case}");
    }
}

/// The fast MAX/AVERAGE_POOL_2D against the reference with channel counts across the
/// vector widths (the random-op pools keep 1–5 channels): 64-channel blocks and their tails,
/// both paddings, strides, activations.
#[test]
fn fast_pools_are_bit_exact_with_the_reference() {
    for seed in 0..120u64 {
        let mut b = Builder::new(&format!("fast_pool_{seed}"));
        let (h, w) = (int(&mut b.rng, 1, 9) as usize, int(&mut b.rng, 1, 9) as usize);
        let c = [1usize, 7, 16, 63, 64, 65, 130][seed as usize % 7];
        let kind = if seed % 2 == 0 { PoolKind::Max } else { PoolKind::Average };
        let filter = [int(&mut b.rng, 1, 3.min(h) as i64) as usize, int(&mut b.rng, 1, 3.min(w) as i64) as usize];
        let stride = [int(&mut b.rng, 1, 2) as usize, int(&mut b.rng, 1, 2) as usize];
        let padding = pick(&mut b.rng, &[Padding::Same, Padding::Valid]);
        let q = qp(&mut b.rng);
        let x = input(&mut b, "x", &[1 + (seed % 2) as usize, h, w, c], q.clone());
        let a = act(&mut b.rng);
        let out = b.node(
            Op::Pool2d(Pool2d { kind, filter, stride, padding, activation: a }),
            &[Some(x)],
            Some((DType::I8, q)),
        );
        let (g, inputs) = b.finish(&[out]);
        let case = format!("seed {seed}: {kind:?} {c} channels {h}x{w} {filter:?} {stride:?}");
        assert_eq!(fast_against_reference(&g, inputs, &case), 1, "{case}");
    }
}

/// A session's edges: an output that is a graph input (passed through), an output index out
/// of range, the wrong number of inputs, new input values on each run.
#[test]
fn session_passes_inputs_through_and_reports_misuse() {
    let mut b = Builder::new("session_edges");
    let x = b.input("x", &[4], -2.0, 2.0);
    let y = b.node(Op::Unary(Unary { kind: UnaryKind::Relu }), &[Some(x)], None);
    let (g, inputs) = b.finish(&[y, x]);
    let interp = qlite::Interpreter::new(&g).unwrap().kernels(qlite::Kernels::Fast);
    let mut session = interp.session();
    for scale in [1.0f32, -3.0] {
        let xs: Vec<f32> = inputs[0].as_f32().unwrap().iter().map(|v| v * scale).collect();
        let input = Array::f32(vec![4], xs.clone()).unwrap();
        session.run(std::slice::from_ref(&input)).unwrap();
        let relu: Vec<f32> = xs.iter().map(|v| v.max(0.0)).collect();
        assert_eq!(session.output(0).unwrap().as_f32().unwrap(), &relu[..]);
        assert_eq!(session.output(1).unwrap(), &input, "the passed-through input of this run");
    }
    let err = session.output(2).unwrap_err().to_string();
    assert!(err.contains("output 2") && err.contains("2 outputs"), "{err}");
    let err = session.run(&[]).unwrap_err().to_string();
    assert!(err.contains("expected 1 inputs, got 0"), "{err}");
}

/// Dynamic-range kernels quantize their float input row by row. Inputs built on the rounding
/// boundaries of that quantization (half-way points nudged by a few ulps, row lengths that
/// leave a tail after the eight-wide part): LiteRT's x86 build quantizes the eight-wide part
/// with NEON's `trunc(x·inv ± 0.5)` and the tail with round-half-away, and qlite must do the
/// same, or single values move by one step. FULLY_CONNECTED (symmetric and asymmetric inputs),
/// per-channel CONV_2D and DEPTHWISE_CONV_2D (asymmetric inputs), batches of two.
#[test]
fn hybrid_input_quantization_on_rounding_boundaries_matches_litert() {
    for seed in 0..24u64 {
        let mut b = Builder::new(&format!("hybrid_ties_{seed}"));
        let kind = seed % 4;
        let c = [13usize, 37, 8, 21][(seed / 4) as usize % 4];
        let dims: Vec<usize> = if kind < 2 { vec![2, c] } else { vec![2, 3, 5, c] };
        let row: usize = dims[1..].iter().product();
        // Each row: its extremes fix the scale, every other value sits near a half step.
        let (lo, hi) = (-b.rng.uniform(0.5, 3.0), b.rng.uniform(0.5, 3.0));
        let scale = (hi - lo) / 255.0;
        let mut vals = Vec::with_capacity(2 * row);
        for _ in 0..2 {
            for i in 0..row {
                let v = match i {
                    0 => lo,
                    1 => hi,
                    _ => {
                        let k = int(&mut b.rng, (lo / scale) as i64, (hi / scale) as i64 - 1) as f32;
                        let mut v = (k + 0.5) * scale;
                        for _ in 0..int(&mut b.rng, 0, 3) {
                            v = if b.rng.uniform(0.0, 1.0) < 0.5 { v.next_up() } else { v.next_down() };
                        }
                        v.clamp(lo, hi)
                    }
                };
                vals.push(v);
            }
        }
        let t = Tensor::activation("x", DType::F32, Shape::fixed(&dims));
        let x = b.input_with(t, Array::f32(dims.clone(), vals).unwrap());
        let out = match kind {
            0 | 1 => {
                let units = 7;
                let (w, _) = weights(&mut b, &[units, c], 0, true);
                let op = Op::FullyConnected(FullyConnected {
                    activation: Activation::None,
                    keep_num_dims: false,
                    asymmetric_inputs: kind == 1,
                });
                b.node(op, &[Some(x), Some(w), None], None)
            }
            2 => {
                let (w, _) = weights(&mut b, &[5, 1, 1, c], 0, true);
                let op = Op::Conv2d(Conv2d {
                    padding: Padding::Valid,
                    stride: [1, 1],
                    dilation: [1, 1],
                    activation: Activation::None,
                });
                b.node(op, &[Some(x), Some(w), None], None)
            }
            _ => {
                let (w, _) = weights(&mut b, &[1, 1, 1, c], 3, true);
                let op = Op::DepthwiseConv2d(DepthwiseConv2d {
                    padding: Padding::Valid,
                    stride: [1, 1],
                    dilation: [1, 1],
                    depth_multiplier: 1,
                    activation: Activation::None,
                });
                b.node(op, &[Some(x), Some(w), None], None)
            }
        };
        let (g, inputs) = b.finish(&[out]);
        let y = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
        let bytes = qlite_tflite::write_model(&g).unwrap();
        export_case(&format!("hybrid_ties_{seed}"), &bytes, &inputs, &y, "hybrid");
    }
}

/// Float MAX_POOL_2D / AVERAGE_POOL_2D on the fast path (channels innermost) give the reference
/// kernels' values exactly, at every tier: the same taps in the same order per channel.
#[test]
fn fast_float_pools_equal_the_reference() {
    for seed in 0..120u64 {
        let mut b = Builder::new(&format!("fast_float_pool_{seed}"));
        let (n, h, w_) = spatial(&mut b.rng);
        let c = int(&mut b.rng, 1, 40) as usize;
        let filter = [int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 1, 3) as usize];
        let stride = [int(&mut b.rng, 1, 3) as usize, int(&mut b.rng, 1, 3) as usize];
        let padding = if filter[0] > h || filter[1] > w_ {
            Padding::Same
        } else {
            pick(&mut b.rng, &[Padding::Same, Padding::Valid])
        };
        let kind = if seed % 2 == 0 { PoolKind::Max } else { PoolKind::Average };
        let x = b.input("x", &[n, h, w_, c], -3.0, 3.0);
        let activation = act(&mut b.rng);
        let y = b.node(Op::Pool2d(Pool2d { kind, filter, stride, padding, activation }), &[Some(x)], None);
        let (g, inputs) = b.finish(&[y]);
        let reference = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
        qlite::isa::for_each_tier(|t| {
            let fast = qlite::Interpreter::new(&g).unwrap().isa(t).kernels(qlite::Kernels::Fast);
            let got = fast.run(inputs.clone()).unwrap();
            assert_eq!(got, reference, "seed {seed} at {t}");
            assert_eq!(fast.fast_nodes(), 1, "seed {seed}: the pool runs fast");
        });
    }
}

/// Broadcasting ADD / SUB / MUL on the fast path, int8 (the 256×256 table) and float32, and
/// the int8 element-wise unary ops and requantizations as 256-entry tables: the reference
/// kernels' values exactly, at every tier, on random shapes (one operand's axes of size 1,
/// or missing, anywhere).
#[test]
fn fast_broadcast_binary_and_int8_tables_equal_the_reference() {
    let mut fast_nodes = 0;
    for seed in 0..160u64 {
        let mut b = Builder::new(&format!("fast_broadcast_{seed}"));
        let rank = int(&mut b.rng, 1, 4) as usize;
        let dims: Vec<usize> = (0..rank).map(|_| int(&mut b.rng, 1, 7) as usize).collect();
        // The other operand: each axis kept or made 1, leading axes sometimes dropped.
        let mut other: Vec<usize> =
            dims.iter().map(|&d| if b.rng.next_u64().is_multiple_of(3) { 1 } else { d }).collect();
        let drop = int(&mut b.rng, 0, rank as i64 - 1) as usize;
        if seed % 4 == 0 {
            other.drain(..drop);
        }
        let (a_dims, b_dims) = if seed % 2 == 0 { (dims.clone(), other) } else { (other, dims.clone()) };
        let kind = pick(&mut b.rng, &[BinaryKind::Add, BinaryKind::Sub, BinaryKind::Mul]);
        let a = act(&mut b.rng);
        let out = if seed % 3 == 0 {
            let x = b.input("x", &a_dims, -2.0, 2.0);
            let y = b.input("y", &b_dims, -2.0, 2.0);
            b.node(Op::Binary(Binary { kind, activation: a }), &[Some(x), Some(y)], None)
        } else {
            let (q1, q2) = (qp(&mut b.rng), qp(&mut b.rng));
            let typical = match kind {
                BinaryKind::Mul => q1.scale() * q2.scale() * 10000.0 / 64.0,
                _ => q1.scale().max(q2.scale()) * 2.0,
            };
            let x = input(&mut b, "x", &a_dims, q1);
            let y = input(&mut b, "y", &b_dims, q2);
            let qo = qp_near(&mut b.rng, typical);
            b.node(Op::Binary(Binary { kind, activation: a }), &[Some(x), Some(y)], Some((DType::I8, qo)))
        };
        let (g, inputs) = b.finish(&[out]);
        fast_nodes += fast_against_reference(&g, inputs, &format!("seed {seed}: {a_dims:?} {kind:?} {b_dims:?}"));
    }
    let kinds = [
        UnaryKind::Logistic,
        UnaryKind::Tanh,
        UnaryKind::HardSwish,
        UnaryKind::Relu,
        UnaryKind::Relu6,
        UnaryKind::Abs,
        UnaryKind::Exp,
        UnaryKind::Elu,
        UnaryKind::Sqrt,
        UnaryKind::Rsqrt,
        UnaryKind::Gelu,
    ];
    for seed in 0..120u64 {
        let mut b = Builder::new(&format!("fast_table_{seed}"));
        let dims: Vec<usize> = (0..int(&mut b.rng, 1, 4)).map(|_| int(&mut b.rng, 1, 9) as usize).collect();
        let q = qp(&mut b.rng);
        let x = input(&mut b, "x", &dims, q.clone());
        let qo = qp(&mut b.rng);
        let op =
            if seed % 6 == 5 { Op::Quantize } else { Op::Unary(Unary { kind: kinds[seed as usize % kinds.len()] }) };
        let out = b.node(op, &[Some(x)], Some((DType::I8, qo)));
        let (g, inputs) = b.finish(&[out]);
        // Parameters a kernel refuses (HARD_SWISH's scale ratio, as LiteRT) stay errors in both.
        if qlite::Interpreter::new(&g).map(|i| i.run(inputs.clone())).map_or(true, |r| r.is_err()) {
            continue;
        }
        fast_nodes += fast_against_reference(&g, inputs, &format!("table seed {seed}"));
    }
    assert!(fast_nodes >= 260, "{fast_nodes} cases ran fast");
}

/// Float spatial MEAN and element-wise unary ops on the fast path: MEAN equal to the reference
/// (the same sums in the same order), LOGISTIC within the fast kernels' float bound, the ReLUs,
/// ABS and NEG exact, at every tier.
#[test]
fn fast_float_mean_and_logistic_match_the_reference() {
    for seed in 0..80u64 {
        let mut b = Builder::new(&format!("fast_float_mean_{seed}"));
        let (n, h, w_) = spatial(&mut b.rng);
        let c = int(&mut b.rng, 1, 40) as usize;
        let x = b.input("x", &[n, h, w_, c], -30.0, 30.0);
        let y = if seed % 2 == 0 {
            b.node(Op::Mean(Mean { axes: vec![2, 1], keep_dims: seed % 4 == 0 }), &[Some(x)], None)
        } else {
            let kinds = [
                UnaryKind::Logistic,
                UnaryKind::Relu,
                UnaryKind::Relu6,
                UnaryKind::ReluN1To1,
                UnaryKind::Abs,
                UnaryKind::Neg,
            ];
            b.node(Op::Unary(Unary { kind: kinds[(seed / 2) as usize % kinds.len()] }), &[Some(x)], None)
        };
        let (g, inputs) = b.finish(&[y]);
        let reference = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
        qlite::isa::for_each_tier(|t| {
            let fast = qlite::Interpreter::new(&g).unwrap().isa(t).kernels(qlite::Kernels::Fast);
            let got = fast.run(inputs.clone()).unwrap();
            if seed % 2 == 0 {
                assert_eq!(got, reference, "seed {seed} at {t}");
            } else if let Err(e) = qlite::compare_all(&got, &reference, crate::common::FAST_FLOAT_TOL) {
                panic!("seed {seed} at {t}: {e}");
            }
            assert_eq!(fast.fast_nodes(), 1, "seed {seed}: runs fast");
        });
    }
}

/// The float path of a Keras-style block (stem convolution, swish, depthwise, squeeze-excite:
/// spatial MEAN, 1×1 convolutions, LOGISTIC, broadcast MUL; residual ADD, PAD, pooling, a
/// reshape whose batch is known only at run time, FULLY_CONNECTED, SOFTMAX) in a session: after
/// the first run, no run allocates, at every tier, and the outputs stay within the fast
/// kernels' float bound of the reference kernels.
#[test]
fn float_sessions_with_a_dynamic_batch_allocate_nothing_after_the_first_run() {
    use qlite::ir::Dim;
    let mut b = Builder::new("float_session_block");
    let x = b.input("x", &[1, 16, 16, 3], -1.0, 1.0);
    let conv = |b: &mut Builder, x: TensorId, cin: usize, cout: usize, k: usize, name: &str| {
        let w = b.konst(&format!("{name}_w"), &[cout, k, k, cin]);
        let bias = b.konst(&format!("{name}_b"), &[cout]);
        let op = Op::Conv2d(Conv2d {
            padding: Padding::Same,
            stride: [1, 1],
            dilation: [1, 1],
            activation: Activation::None,
        });
        b.node(op, &[Some(x), Some(w), Some(bias)], None)
    };
    let un = |b: &mut Builder, kind: UnaryKind, x: TensorId| b.node(Op::Unary(Unary { kind }), &[Some(x)], None);
    let bin = |b: &mut Builder, kind: BinaryKind, x: TensorId, y: TensorId| {
        b.node(Op::Binary(Binary { kind, activation: Activation::None }), &[Some(x), Some(y)], None)
    };
    let c = conv(&mut b, x, 3, 16, 3, "stem");
    let s = un(&mut b, UnaryKind::Logistic, c);
    let c = bin(&mut b, BinaryKind::Mul, c, s);
    let dw_w = b.konst("dw_w", &[1, 3, 3, 16]);
    let dw_b = b.konst("dw_b", &[16]);
    let dw = Op::DepthwiseConv2d(DepthwiseConv2d {
        padding: Padding::Same,
        stride: [1, 1],
        dilation: [1, 1],
        depth_multiplier: 1,
        activation: Activation::Relu6,
    });
    let d = b.node(dw, &[Some(c), Some(dw_w), Some(dw_b)], None);
    let m = b.node(Op::Mean(Mean { axes: vec![1, 2], keep_dims: true }), &[Some(d)], None);
    let e = conv(&mut b, m, 16, 4, 1, "se_reduce");
    let e = un(&mut b, UnaryKind::Relu, e);
    let e = conv(&mut b, e, 4, 16, 1, "se_expand");
    let gate = un(&mut b, UnaryKind::Logistic, e);
    let d = bin(&mut b, BinaryKind::Mul, d, gate);
    let r = bin(&mut b, BinaryKind::Add, d, c);
    let p = b.node(Op::Pad(Pad { paddings: vec![[0, 0], [1, 1], [1, 1], [0, 0]] }), &[Some(r)], None);
    let pool = Op::Pool2d(Pool2d {
        kind: PoolKind::Max,
        filter: [2, 2],
        stride: [2, 2],
        padding: Padding::Valid,
        activation: Activation::None,
    });
    let p = b.node(pool, &[Some(p)], None);
    let flat = b.node(Op::Reshape(Reshape { shape: vec![-1, 9 * 9 * 16] }), &[Some(p)], None);
    let fw = b.konst("fc_w", &[10, 9 * 9 * 16]);
    let fc = Op::FullyConnected(FullyConnected {
        activation: Activation::None,
        keep_num_dims: false,
        asymmetric_inputs: false,
    });
    let y = b.node(fc, &[Some(flat), Some(fw), None], None);
    let y = b.node(Op::Softmax(Softmax { beta: 1.0 }), &[Some(y)], None);
    let (mut g, inputs) = b.finish(&[y]);
    // The batch of every activation known only at run time, as Keras exports it.
    for t in g.tensor_ids() {
        let tensor = g.tensor_mut(t).unwrap();
        if !tensor.is_const() && tensor.shape.rank() > 0 {
            let mut dims = tensor.shape.dims().to_vec();
            dims[0] = Dim::Dynamic;
            tensor.shape = qlite::ir::Shape::new(dims);
        }
    }
    qlite::ir::verify(&g).unwrap();
    let reference = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
    qlite::isa::for_each_tier(|t| {
        let interp = qlite::Interpreter::new(&g).unwrap().isa(t).kernels(qlite::Kernels::Fast);
        assert!(interp.fast_nodes() >= 12, "at {t}: {} nodes fast", interp.fast_nodes());
        let mut session = interp.session();
        session.run(&inputs).unwrap();
        for run in 0..3 {
            let ((), allocations) = crate::alloc::allocations_during(|| session.run(&inputs).unwrap());
            // The portable tier's float GEMM is `matrixmultiply`, which allocates its packing
            // buffers on every call; every x86 vector tier allocates nothing.
            if t != qlite::isa::Isa::Portable {
                assert_eq!(allocations, 0, "at {t}: run {run} allocated");
            }
            let got: Vec<qlite::Array> = session.outputs().unwrap().into_iter().cloned().collect();
            if let Err(e) = qlite::compare_all(&got, &reference, crate::common::FAST_FLOAT_TOL) {
                panic!("at {t}: run {run}: {e}");
            }
        }
    });
}

/// `fold-pad` on int8: a PAD of the zero point (keeping its input's parameters) before a VALID
/// convolution or depthwise convolution, where it is exactly what SAME padding adds, folds into
/// the layer with the same output bytes; a PAD of another value stays.
#[test]
fn int8_zero_point_pads_fold_into_the_convolution() {
    use qlite::ir::PassManager;
    use qlite::ir::passes::FoldPad;
    for seed in 0..40u64 {
        let mut b = Builder::new(&format!("int8_fold_pad_{seed}"));
        let q = qp(&mut b.rng);
        let (h, c) = (int(&mut b.rng, 5, 9) as usize, int(&mut b.rng, 1, 6) as usize);
        let x = input(&mut b, "x", &[1, h, h, c], q.clone());
        // SAME for a 3×3 stride-2 window splits as (0, 1) on odd-free sizes: what Keras's
        // ZeroPadding2D(((0, 1), (0, 1))) + VALID writes; or (1, 1) at stride 1.
        let stride = if seed % 2 == 0 { 2 } else { 1 };
        let pads = qlite::ir::Padding::same_pads(qlite::ir::Dim::Fixed(h), 3, stride, 1).unwrap();
        let variant = seed % 3;
        let mut pad_in = vec![Some(x)];
        let out_q = q.clone();
        if variant == 1 {
            let v = Tensor::constant("v", DType::I8, Shape::fixed(&[]), vec![q.zero_point() as i8 as u8].into())
                .with_quant(q.clone());
            pad_in.push(Some(b.raw_const(v)));
        } else if variant == 2 {
            // Another value: not what SAME padding adds.
            let other = if q.zero_point() == 127 { 0 } else { q.zero_point() + 1 };
            let v = Tensor::constant("v", DType::I8, Shape::fixed(&[]), vec![other as i8 as u8].into())
                .with_quant(q.clone());
            pad_in.push(Some(b.raw_const(v)));
        }
        let padded = b.node(
            Op::Pad(Pad { paddings: vec![[0, 0], pads, pads, [0, 0]] }),
            &pad_in,
            Some((DType::I8, out_q.clone())),
        );
        let depthwise = (seed / 3) % 2 == 0;
        let (w, ws) =
            if depthwise { weights(&mut b, &[1, 3, 3, c], 3, true) } else { weights(&mut b, &[4, 3, 3, c], 0, true) };
        let units = if depthwise { c } else { 4 };
        let bias = bias(&mut b, units, out_q.scale(), &ws);
        let qo = qp_near(&mut b.rng, typical_out(out_q.scale(), &ws, 9 * if depthwise { 1 } else { c }));
        let op = if depthwise {
            Op::DepthwiseConv2d(DepthwiseConv2d {
                padding: Padding::Valid,
                stride: [stride, stride],
                dilation: [1, 1],
                depth_multiplier: 1,
                activation: Activation::None,
            })
        } else {
            Op::Conv2d(Conv2d {
                padding: Padding::Valid,
                stride: [stride, stride],
                dilation: [1, 1],
                activation: Activation::None,
            })
        };
        let y = b.node(op, &[Some(padded), Some(w), Some(bias)], Some((DType::I8, qo)));
        let (g, inputs) = b.finish(&[y]);
        let want = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
        let mut folded = g.clone();
        PassManager::new().verify_each(true).with(FoldPad).run(&mut folded).unwrap();
        let pads_left = folded.nodes().iter().filter(|n| n.op.name() == "Pad").count();
        assert_eq!(pads_left, usize::from(variant >= 2), "seed {seed} variant {variant}");
        assert_eq!(qlite::Interpreter::new(&folded).unwrap().run(inputs).unwrap(), want, "seed {seed}");
    }
}

/// The float depthwise kernel accumulates rows in tiles of output columns (2048 floats of
/// sums): rows wider than a tile, with every stride, dilation and padding, match the reference.
#[test]
fn fast_float_depthwise_is_exact_across_column_tiles() {
    for (seed, (w, c)) in [(130usize, 40usize), (301, 17), (97, 160)].into_iter().enumerate() {
        let mut b = Builder::new(&format!("fast_dw_tiles_{seed}"));
        let stride = [1 + seed % 2, 1 + (seed + 1) % 2];
        let dilation = [1, 1 + seed % 2];
        let padding = if seed == 1 { Padding::Valid } else { Padding::Same };
        let x = b.input("x", &[1, 4, w, c], -1.0, 1.0);
        let wt = b.konst("w", &[1, 3, 3, c]);
        let bias = b.konst("b", &[c]);
        let op = Op::DepthwiseConv2d(DepthwiseConv2d {
            padding,
            stride,
            dilation,
            depth_multiplier: 1,
            activation: Activation::Relu6,
        });
        let y = b.node(op, &[Some(x), Some(wt), Some(bias)], None);
        let (g, inputs) = b.finish(&[y]);
        let reference = qlite::Interpreter::new(&g).unwrap().run(inputs.clone()).unwrap();
        qlite::isa::for_each_tier(|t| {
            let fast = qlite::Interpreter::new(&g).unwrap().isa(t).kernels(qlite::Kernels::Fast);
            assert_eq!(fast.fast_nodes(), 1);
            // The same additions in the same order: equal, not merely close.
            assert_eq!(fast.run(inputs.clone()).unwrap(), reference, "case {seed} at {t}");
        });
    }
}

/// An int8 MUL / ADD / SUB of `x` and an element-wise unary op of the same `x` (swish: `x ·
/// sigmoid(x)`, and other pairs) runs as one 256-entry table on `x`: the same bytes as the
/// reference kernels at every tier, and LiteRT's.
#[test]
fn fast_unary_pair_tables_match_the_reference() {
    for seed in 0..40u64 {
        let case = format!("rand_unary_pair_{seed:03}");
        let mut b = Builder::new(&case);
        let dims = [int(&mut b.rng, 1, 2) as usize, int(&mut b.rng, 1, 6) as usize, int(&mut b.rng, 1, 6) as usize, 8];
        let q = qp(&mut b.rng);
        let x = input(&mut b, "x", &dims, q.clone());
        let (unary, uq) = match seed % 3 {
            0 => (UnaryKind::Logistic, QuantParams::per_tensor(1.0 / 256.0, -128)),
            1 => (UnaryKind::Tanh, QuantParams::per_tensor(1.0 / 128.0, 0)),
            _ => (UnaryKind::Relu, qp(&mut b.rng)),
        };
        let s = b.node(Op::Unary(Unary { kind: unary }), &[Some(x)], Some((DType::I8, uq.clone())));
        let kind = pick(&mut b.rng, &[BinaryKind::Mul, BinaryKind::Mul, BinaryKind::Add, BinaryKind::Sub]);
        let typical =
            if kind == BinaryKind::Mul { q.scale() * uq.scale() * 100.0 } else { q.scale().max(uq.scale()) * 2.0 };
        let qo = qp_near(&mut b.rng, typical);
        let activation = act(&mut b.rng);
        let y = b.node(Op::Binary(Binary { kind, activation }), &[Some(x), Some(s)], Some((DType::I8, qo)));
        let (g, inputs) = b.finish(&[y]);
        let fast = qlite::Interpreter::new(&g).unwrap().kernels(qlite::Kernels::Fast);
        assert_eq!(fast.fast_nodes(), 2, "{case}: the unary table and the pair table");
        let want = qlite::run(&g, inputs.clone()).unwrap();
        fast_against_reference(&g, inputs.clone(), &case);
        export_case(&case, &qlite_tflite::write_model(&g).unwrap(), &inputs, &want, "exact");
    }
}
