//! The reference kernels, one module per op family, float and integer side by side. Plain,
//! readable loops: the integer kernels are bit-exact with TensorFlow Lite's reference kernels
//! (the double-rounding build, `OpResolverType.BUILTIN_REF`), the float kernels follow LiteRT's
//! reference arithmetic, and the fast kernels (`fast/`) are checked against both. Which
//! upstream kernel each function follows is named in its doc comment.
//!
//! Naming: float kernels end in `_f32`; integer kernels take `i32` values and an [`OutQ`];
//! `hybrid_*` are the dynamic-range kernels (float activations, int8 weights); data movement
//! serves every dtype.

mod conv;
mod elementwise;
mod fc;
mod movement;
mod pool;
mod quantize;
mod resize;
mod softmax;

pub use conv::*;
pub use elementwise::*;
pub use fc::*;
pub use movement::*;
pub use pool::*;
pub use quantize::*;
pub use resize::*;
pub use softmax::*;

use crate::array::{Array, Data, map_data};
use crate::fixedpoint::*;
use qlite_ir::op::{
    Activation, BatchMatMul, Binary, BinaryKind, Concatenation, Conv2d, DepthwiseConv2d, FullyConnected, Gather,
    LocalResponseNorm, Mean, MirrorMode, MirrorPad, Pad, Pool2d, PoolKind, Resize, Softmax, StridedSlice, Transpose,
    TransposeConv2d, UnaryKind,
};
use qlite_ir::{DType, QuantParams};

/// Row-major strides.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// For each element of `out`, the flat index of the broadcast source element in `input`.
pub fn broadcast_indices(out: &[usize], input: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let rank = out.len();
    let in_strides = strides(input);
    // Stride 0 on broadcast (size-1 or missing) dimensions.
    let mut eff = vec![0usize; rank];
    for k in 0..input.len() {
        let o = rank - input.len() + k;
        if input[k] != 1 {
            eff[o] = in_strides[k];
        }
    }
    let mut idx = vec![0usize; rank];
    let mut res = Vec::with_capacity(n);
    let mut src = 0usize;
    for _ in 0..n {
        res.push(src);
        for k in (0..rank).rev() {
            idx[k] += 1;
            src += eff[k];
            if idx[k] < out[k] {
                break;
            }
            src -= eff[k] * idx[k];
            idx[k] = 0;
        }
    }
    res
}

/// Visit every index of `shape` in row-major order.
fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    let n: usize = shape.iter().product();
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        f(&idx);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Per-tensor (scale, zero point) of a tensor, or an error naming it.
pub fn per_tensor(q: Option<&QuantParams>, what: &str) -> Result<(f32, i32), String> {
    let q = q.ok_or_else(|| format!("{what} has no quantization parameters"))?;
    if q.scales().len() != 1 {
        return Err(format!("{what} must be quantized per tensor"));
    }
    Ok((q.scale(), q.zero_point() as i32))
}

/// `CalculateActivationRangeQuantized`.
pub fn activation_range(act: Activation, dtype: DType, scale: f32, zp: i32) -> (i32, i32) {
    let (lo, hi) = dtype.int_range().map_or((-128, 127), |(a, b)| (a as i32, b as i32));
    let quantize = |f: f32| zp.saturating_add(round_half_away(f / scale) as i32);
    match act {
        Activation::None => (lo, hi),
        Activation::Relu => (lo.max(quantize(0.0)), hi),
        Activation::Relu6 => (lo.max(quantize(0.0)), hi.min(quantize(6.0))),
        Activation::ReluN1To1 => (lo.max(quantize(-1.0)), hi.min(quantize(1.0))),
    }
}

/// Multipliers for conv-like ops (`PopulateConvolutionQuantizationParams`): per channel, in
/// double: `s_in · s_w[c] / s_out`.
pub(crate) fn per_channel_multipliers(s_in: f32, w: &QuantParams, s_out: f32, channels: usize) -> Vec<(i32, i32)> {
    (0..channels)
        .map(|c| {
            let s_w = if w.scales().len() == 1 { w.scale() } else { w.scales().get(c).copied().unwrap_or(0.0) };
            quantize_multiplier(s_in as f64 * s_w as f64 / s_out as f64)
        })
        .collect()
}

/// The accumulator of an integer convolution or FULLY_CONNECTED: int32 for 8-bit activations
/// (it wraps, as LiteRT's does; the bias is int32), int64 for 16-bit activations with an int64
/// bias (16x8), whose requantization is the int64 `MultiplyByQuantizedMultiplier` (a 16-bit
/// multiplier, one rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acc {
    I32,
    I64,
}

impl Acc {
    /// `acc + bias`, rescaled by the fixed-point multiplier `(m, shift)`.
    #[inline]
    pub fn requantize(self, acc: i64, bias: i64, m: i32, shift: i32) -> i32 {
        match self {
            Acc::I32 => mbqm((acc as i32).wrapping_add(bias as i32), m, shift),
            Acc::I64 => mbqm64(acc.wrapping_add(bias), m, shift),
        }
    }
}

/// Output quantization of an integer op.
#[derive(Debug, Clone, Copy)]
pub struct OutQ {
    pub dtype: DType,
    pub scale: f32,
    pub zp: i32,
}

impl OutQ {
    pub fn range(&self, act: Activation) -> (i32, i32) {
        activation_range(act, self.dtype, self.scale, self.zp)
    }
}
