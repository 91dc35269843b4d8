//! FULLY_CONNECTED: int8, hybrid (dynamic-range) and float32.

use super::*;

/// An int8 FULLY_CONNECTED with constant weights.
#[derive(Debug, Clone)]
pub struct PackedFc {
    pub(crate) m: Matrix,
    pub(crate) keep_num_dims: bool,
    /// `−z_in · Σ_d w[o][d] − depth · w_off · z_in + bias[o]`: all but `Σ w·x` and `w_off · Σ x`.
    pub(crate) row_const: Vec<i32>,
    pub(crate) w_off: i32,
    /// `s_in · s_w[o] / s_out` in double, as the reference computes it.
    pub(crate) scales: Vec<f64>,
    pub(crate) zp_out: i32,
    pub(crate) lo: i32,
    pub(crate) hi: i32,
}

impl PackedFc {
    pub(crate) fn new(op: &FullyConnected, c: Common) -> Option<Self> {
        let &[units, depth] = c.w_shape else { return None };
        let per_channel = c.wq.scales().len() != 1;
        if (per_channel && c.wq.scales().len() != units) || c.bias.is_some_and(|b| b.len() != units) {
            return None;
        }
        let m = Matrix::new(c.w, units, depth)?;
        let w_off = if per_channel { 0 } else { -(c.wq.zero_point() as i32) };
        let scales: Vec<f64> = (0..units)
            .map(|o| {
                let s_w = if per_channel { c.wq.scales()[o] } else { c.wq.scale() };
                c.s_in as f64 * s_w as f64 / c.out.scale as f64
            })
            .collect();
        if scales.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let n_w_off_z = (depth as i32).wrapping_mul(w_off).wrapping_mul(c.z_in);
        let row_const = (0..units)
            .map(|o| {
                c.z_in
                    .wrapping_neg()
                    .wrapping_mul(m.sum_w[o])
                    .wrapping_sub(n_w_off_z)
                    .wrapping_add(c.bias.map_or(0, |b| b[o]))
            })
            .collect();
        let (lo, hi) = c.out.range(op.activation);
        Some(PackedFc { m, keep_num_dims: op.keep_num_dims, row_const, w_off, scales, zp_out: c.out.zp, lo, hi })
    }

    pub(crate) fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>, s: &mut Scratch) -> Option<()> {
        let (units, depth) = (self.m.units, self.m.depth);
        if !xv.len().is_multiple_of(depth) {
            return None;
        }
        fc_out_shape(xs, xv.len() / depth, units, self.keep_num_dims, &mut s.shape)?;
        let y = Array::reuse_i8(out, &s.shape)?;
        for (xr, yr) in xv.chunks_exact(depth).zip(y.chunks_exact_mut(units.max(1))) {
            // Symmetric weights (always, per channel) have no `w_off · Σ x` term.
            let x_term = match self.w_off {
                0 => 0,
                w_off => w_off.wrapping_mul(xr.iter().fold(0i32, |a, &v| a.wrapping_add(v as i32))),
            };
            self.m.dots_plus(xr, &mut s.xu, &mut s.acc, Some(&self.row_const), x_term);
            requantize_double(&s.acc[..units], &self.scales, self.zp_out, self.lo, self.hi, yr);
        }
        Some(())
    }
}

/// A FULLY_CONNECTED's output shape into `shape`: the input's with the last dimension
/// replaced (keep_num_dims), else `[batches, units]`.
pub(crate) fn fc_out_shape(
    xs: &[usize],
    batches: usize,
    units: usize,
    keep: bool,
    shape: &mut Vec<usize>,
) -> Option<()> {
    shape.clear();
    if keep {
        shape.extend_from_slice(xs);
        *shape.last_mut()? = units;
    } else {
        shape.extend_from_slice(&[batches, units]);
    }
    Some(())
}

/// A hybrid (dynamic-range) FULLY_CONNECTED: float input and output, constant symmetric int8
/// weights. Each input row is quantized as the reference does (symmetric, or asymmetric when
/// the op says so), multiplied on the int8 dot products, and scaled back with the reference's
/// float operations in the reference's order — so the floats are the same bits.
#[derive(Debug, Clone)]
pub struct PackedHybridFc {
    pub(crate) m: Matrix,
    pub(crate) keep_num_dims: bool,
    pub(crate) asymmetric: bool,
    /// Per output unit (per-channel weights), or one (per-tensor).
    pub(crate) w_scales: Vec<f32>,
    pub(crate) bias: Option<Vec<f32>>,
    pub(crate) activation: qlite_ir::op::Activation,
}

impl PackedHybridFc {
    pub(crate) fn new(g: &Graph, n: &Node, op: &FullyConnected, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let t = |i: usize| n.input(i).and_then(|t| g.tensor(t));
        let c = |i: usize| n.input(i).and_then(|t| consts.get(t.index())).and_then(|a| a.as_deref());
        let out = n.outputs.first().and_then(|o| g.tensor(*o))?;
        if t(0)?.dtype != DType::F32 || out.dtype != DType::F32 || t(1)?.dtype != DType::I8 {
            return None;
        }
        let wq = t(1)?.quant.as_ref()?;
        let wa = c(1)?;
        let (Data::I8(w), &[units, depth]) = (wa.data(), wa.shape()) else { return None };
        if wq.zero_points().iter().any(|&z| z != 0) || (wq.scales().len() != 1 && wq.scales().len() != units) {
            return None; // the reference kernel reports it
        }
        let bias = match n.input(2) {
            Some(_) => match c(2)?.data() {
                Data::F32(b) if b.len() == units => Some(b.clone()),
                _ => return None,
            },
            None => None,
        };
        Some(PackedHybridFc {
            m: Matrix::new(w, units, depth)?,
            keep_num_dims: op.keep_num_dims,
            asymmetric: op.asymmetric_inputs,
            w_scales: wq.scales().to_vec(),
            bias,
            activation: op.activation,
        })
    }

    pub(crate) fn run(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>, s: &mut Scratch) -> Option<()> {
        let (units, depth) = (self.m.units, self.m.depth);
        if !xv.len().is_multiple_of(depth) {
            return None;
        }
        fc_out_shape(xs, xv.len() / depth, units, self.keep_num_dims, &mut s.shape)?;
        let y = Array::reuse_f32(out, &s.shape)?;
        for yr in y.chunks_exact_mut(units.max(1)) {
            match &self.bias {
                Some(b) => yr.copy_from_slice(b),
                None => yr.fill(0.0),
            }
        }
        // The reference skips the products when the whole input is zero.
        if !xv.iter().all(|&v| v == 0.0) {
            let per_channel = self.w_scales.len() > 1;
            for (row, yr) in xv.chunks_exact(depth).zip(y.chunks_exact_mut(units.max(1))) {
                let (mut sf, zp) = if self.asymmetric {
                    crate::kernels::asymmetric_quantize_into(row, &mut s.q)
                } else {
                    (crate::kernels::symmetric_quantize_into(row, &mut s.q), 0)
                };
                if !per_channel {
                    sf *= self.w_scales[0];
                }
                self.m.dots(&s.q, &mut s.xu, &mut s.acc);
                for (o, (yo, &dot)) in yr.iter_mut().zip(s.acc.iter()).enumerate() {
                    let dot = if self.asymmetric { dot.wrapping_sub(self.m.sum_w[o].wrapping_mul(zp)) } else { dot };
                    let scale = if per_channel { sf * self.w_scales[o] } else { sf };
                    *yo += dot as f32 * scale;
                }
            }
        }
        use qlite_ir::op::Activation;
        match self.activation {
            Activation::None => {}
            Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
            a => y.iter_mut().for_each(|v| *v = a.apply(*v)),
        }
        Some(())
    }
}

/// Float FULLY_CONNECTED as one SGEMM over the [units, depth] weights.
#[derive(Debug, Clone)]
pub struct PackedFloatFc {
    pub(crate) activation: qlite_ir::Activation,
    pub(crate) keep_num_dims: bool,
    /// The interpreter's own constant ([units, depth] row-major is already the layout the
    /// GEMM reads): shared, not copied.
    pub(crate) w: Arc<Array>,
    /// The weights packed for the GEMM (bias and activation fused), when they are at most
    /// [`PACK_LIMIT`] bytes: a second copy of larger ones would cost more memory than the GEMV
    /// saves time (those run on `matrixmultiply`, reading the constant itself).
    pub(crate) packed: Option<super::gemm_f32::PackedW>,
    pub(crate) units: usize,
    pub(crate) depth: usize,
    pub(crate) bias: Option<Vec<f32>>,
}

/// Largest float FULLY_CONNECTED weights packed for the GEMM.
const PACK_LIMIT: usize = 64 << 20;

impl PackedFloatFc {
    pub(crate) fn new(g: &Graph, n: &Node, op: &FullyConnected, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let x = g.tensor(n.input(0)?)?;
        let out = g.tensor(*n.outputs.first()?)?;
        if x.dtype != DType::F32 || out.dtype != DType::F32 {
            return None;
        }
        let (wv, ws, bias) = float_params(n, consts)?;
        let [units, depth] = ws[..] else { return None };
        let packed = (wv.len().saturating_mul(4) <= PACK_LIMIT)
            .then(|| super::gemm_f32::PackedW::new(wv, units, depth))
            .flatten();
        Some(PackedFloatFc {
            activation: op.activation,
            keep_num_dims: op.keep_num_dims,
            w: Arc::clone(consts.get(n.input(1)?.index())?.as_ref()?),
            packed,
            units,
            depth,
            bias,
        })
    }

    pub(crate) fn run(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>, par: Parallel) -> Option<()> {
        let (units, depth) = (self.units, self.depth);
        if depth == 0 || !xv.len().is_multiple_of(depth) || (self.keep_num_dims && xs.last() != Some(&depth)) {
            return None;
        }
        let batches = xv.len() / depth;
        // The op's output shape: [batches, units], or the input's leading dims when kept (in a
        // fixed array: a run allocates nothing).
        let mut dims = [0usize; qlite_ir::MAX_RANK];
        let lead: &[usize] = if self.keep_num_dims { &xs[..xs.len() - 1] } else { std::slice::from_ref(&batches) };
        if lead.len() >= qlite_ir::MAX_RANK {
            return None;
        }
        dims[..lead.len()].copy_from_slice(lead);
        dims[lead.len()] = units;
        let os = &dims[..lead.len() + 1];
        if checked_len(os)? != batches.checked_mul(units)? || batches * units > MAX_FAST_ELEMENTS {
            return None;
        }
        let y = Array::reuse_f32(out, os)?;
        if let Some(p) = &self.packed {
            if batches == 1 && par.threads() > 1 {
                return super::gemm_f32::gemv_split(xv, p, self.bias.as_deref(), self.activation, y, par);
            }
            return super::gemm_f32::gemm_bias_act(batches, xv, depth, p, self.bias.as_deref(), self.activation, y);
        }
        let Data::F32(w) = self.w.data() else { return None };
        sgemm(batches, depth, units, xv, (depth, 1), w, (1, depth), y)?;
        bias_act(y, units, self.bias.as_deref(), self.activation);
        Some(())
    }
}
