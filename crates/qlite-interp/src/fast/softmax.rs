//! int8 and int16 SOFTMAX with the reference kernel's tables.

use super::*;

/// An int8 SOFTMAX (output quantized 1/256, −128) with its exponentials tabulated: an int8
/// input's difference from its row maximum is one of 256 values, so the reference kernel's
/// fixed-point `exp` of each (and the term it adds to the sum) is computed once, when the
/// model is loaded; a run does the reference's sum, reciprocal and output arithmetic.
#[derive(Debug, Clone)]
pub struct PackedSoftmax {
    /// Indexed by `max − x` (0..=255): the Q0.31 exponential, or `None` below diff_min.
    pub(crate) exp: Vec<Option<i32>>,
    /// The same, rescaled to the sum's format (`SaturatingMultiplyByPOT(e, −12)`).
    pub(crate) term: Vec<i32>,
}

impl PackedSoftmax {
    const SCALED_DIFF_INTEGER_BITS: i32 = 5;
    const ACCUM_INTEGER_BITS: i32 = 12;

    pub(crate) fn new(g: &Graph, n: &Node, beta: f32) -> Option<Self> {
        use crate::fixedpoint::*;
        let x = n.input(0).and_then(|t| g.tensor(t))?;
        let out = n.outputs.first().and_then(|o| g.tensor(*o))?;
        if x.dtype != DType::I8 || out.dtype != DType::I8 {
            return None;
        }
        let (s_in, _) = per_tensor(x.quant.as_ref(), "input").ok()?;
        let (s_out, z_out) = per_tensor(out.quant.as_ref(), "output").ok()?;
        if z_out != -128 || (s_out - 1.0 / 256.0).abs() > 0.001 / 256.0 {
            return None; // the reference kernel reports it
        }
        // The reference's multiplier and cut-off (kernels::softmax_with).
        let bits = Self::SCALED_DIFF_INTEGER_BITS;
        let real = (beta as f64 * s_in as f64 * (1i64 << (31 - bits)) as f64).min((1i64 << 31) as f64 - 1.0);
        let (mult, left_shift) = quantize_multiplier(real);
        let max_input_rescaled =
            ((1i64 << bits) - 1) as f64 * (1i64 << (31 - bits)) as f64 / (1i64 << left_shift.clamp(0, 62)) as f64;
        let diff_min = -(max_input_rescaled.floor() as i32);
        let exp: Vec<Option<i32>> = (0..256)
            .map(|d: i32| {
                let diff = -d;
                (diff >= diff_min).then(|| exp_on_negative_values(mbqm_greater_than_one(diff, mult, left_shift), bits))
            })
            .collect();
        let term = exp.iter().map(|e| e.map_or(0, |e| sat_mul_pot(e, -Self::ACCUM_INTEGER_BITS))).collect();
        Some(PackedSoftmax { exp, term })
    }

    pub(crate) fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>) -> Option<()> {
        use crate::fixedpoint::*;
        let depth = *xs.last()?;
        let y = Array::reuse_i8(out, xs)?;
        if depth == 0 || y.len() != xv.len() || self.exp.len() != 256 || self.term.len() != 256 {
            return None;
        }
        for (row, yrow) in xv.chunks_exact(depth).zip(y.chunks_exact_mut(depth)) {
            let max = row.iter().copied().max().unwrap_or(0);
            let sum = row.iter().fold(0i32, |s, &v| s.wrapping_add(self.term[(max as i32 - v as i32) as usize]));
            let (recip, num_bits_over_unit) = get_reciprocal(sum, Self::ACCUM_INTEGER_BITS);
            let exponent = (num_bits_over_unit + 31 - 8).clamp(0, 31);
            for (o, &v) in yrow.iter_mut().zip(row) {
                *o = match self.exp[(max as i32 - v as i32) as usize] {
                    Some(e) => (rdbpot(srdhm(recip, e), exponent) - 128).clamp(-128, 127) as i8,
                    None => -128,
                };
            }
        }
        Some(())
    }
}

/// An int16 SOFTMAX (output 1/32768, 0): the reference's tables (`SoftmaxPrepare`: exp on
/// [−10, 0] and 1/(1 + x), 513 entries each) built once at load, each row computed into the
/// output directly.
#[derive(Debug, Clone)]
pub struct PackedSoftmax16 {
    t: crate::kernels::SoftmaxInt16,
}

impl PackedSoftmax16 {
    pub(crate) fn new(g: &Graph, n: &Node, beta: f32) -> Option<Self> {
        let x = n.input(0).and_then(|t| g.tensor(t))?;
        let out = n.outputs.first().and_then(|o| g.tensor(*o))?;
        if x.dtype != DType::I16 || out.dtype != DType::I16 {
            return None;
        }
        let (s_in, _) = per_tensor(x.quant.as_ref(), "input").ok()?;
        let (s_out, z_out) = per_tensor(out.quant.as_ref(), "output").ok()?;
        let unit = 1.0 / 32768.0;
        if z_out != 0 || (s_out - unit).abs() > 0.001 * unit {
            return None; // the reference kernel reports it
        }
        Some(PackedSoftmax16 { t: crate::kernels::SoftmaxInt16::new(beta, s_in) })
    }

    pub(crate) fn run(&self, xs: &[usize], xv: &[i16], out: &mut Option<Array>) -> Option<()> {
        let depth = *xs.last()?;
        let y = Array::reuse_i16(out, xs)?;
        if depth == 0 || y.len() != xv.len() {
            return None;
        }
        for (row, yrow) in xv.chunks_exact(depth).zip(y.chunks_exact_mut(depth)) {
            self.t.row(row, yrow);
        }
        Some(())
    }
}
