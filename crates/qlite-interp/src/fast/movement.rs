//! PAD / PADV2 by rows.

use super::*;

/// int8, int16 and float32 PAD (and PADV2 with a constant value): whole rows of the innermost axis copied, the
/// rest filled with the value (the zero point for PAD), as the reference kernel fills it.
#[derive(Debug, Clone)]
pub struct PackedPad {
    pub(crate) paddings: Vec<[usize; 2]>,
    pub(crate) value: i8,
    /// float32 PAD (zeros) or PADV2 with a constant value.
    pub(crate) value_f32: Option<f32>,
    /// int16 (16x8) PAD: the zero point (0), or PADV2's constant.
    pub(crate) value_i16: Option<i16>,
}

impl PackedPad {
    pub(crate) fn new(g: &Graph, n: &Node, consts: &[Option<Arc<Array>>]) -> Option<Self> {
        let Op::Pad(p) = &n.op else { return None };
        let x = g.tensor(n.input(0)?)?;
        let out = g.tensor(*n.outputs.first()?)?;
        if p.paddings.len() != x.shape.rank() || p.paddings.is_empty() || x.dtype != out.dtype {
            return None;
        }
        if x.dtype == DType::F32 {
            let value = match n.input(1) {
                None => 0.0,
                Some(v) => match consts.get(v.index())?.as_deref()?.data() {
                    Data::F32(d) if d.len() == 1 => d[0],
                    _ => return None,
                },
            };
            return Some(PackedPad { paddings: p.paddings.clone(), value: 0, value_f32: Some(value), value_i16: None });
        }
        if x.dtype == DType::I16 {
            let value = match n.input(1) {
                None => i16::try_from(x.quant.as_ref().map_or(0, |q| q.zero_point())).ok()?,
                Some(v) => match consts.get(v.index())?.as_deref()?.data() {
                    Data::I16(d) if d.len() == 1 => d[0],
                    _ => return None,
                },
            };
            return Some(PackedPad { paddings: p.paddings.clone(), value: 0, value_f32: None, value_i16: Some(value) });
        }
        if x.dtype != DType::I8 {
            return None;
        }
        let value = match n.input(1) {
            None => i8::try_from(x.quant.as_ref().map_or(0, |q| q.zero_point())).ok()?,
            Some(v) => match consts.get(v.index())?.as_deref()?.data() {
                Data::I8(d) if d.len() == 1 => d[0],
                _ => return None,
            },
        };
        Some(PackedPad { paddings: p.paddings.clone(), value, value_f32: None, value_i16: None })
    }

    pub(crate) fn run(&self, xs: &[usize], xv: &[i8], out: &mut Option<Array>) -> Option<()> {
        if self.value_f32.is_some() || self.value_i16.is_some() {
            return None;
        }
        let os = self.out_shape(xs, xv.len())?;
        let y = Array::reuse_i8(out, &os)?;
        self.fill(xs, &os, xv, y, self.value)
    }

    pub(crate) fn run_i16(&self, xs: &[usize], xv: &[i16], out: &mut Option<Array>) -> Option<()> {
        let value = self.value_i16?;
        let os = self.out_shape(xs, xv.len())?;
        let y = Array::reuse_i16(out, &os)?;
        self.fill(xs, &os, xv, y, value)
    }

    pub(crate) fn run_f32(&self, xs: &[usize], xv: &[f32], out: &mut Option<Array>) -> Option<()> {
        let value = self.value_f32?;
        let os = self.out_shape(xs, xv.len())?;
        let y = Array::reuse_f32(out, &os)?;
        self.fill(xs, &os, xv, y, value)
    }

    /// The padded shape (in a fixed array: a run allocates nothing), `None` beyond the IR's
    /// rank or the interpreter's size limit (the reference kernel then reports it).
    pub(crate) fn out_shape(&self, xs: &[usize], len: usize) -> Option<PadShape> {
        if xs.len() != self.paddings.len() || checked_len(xs)? != len || xs.len() > qlite_ir::MAX_RANK {
            return None;
        }
        let mut dims = [0usize; qlite_ir::MAX_RANK];
        for ((o, &d), p) in dims.iter_mut().zip(xs).zip(&self.paddings) {
            *o = d.checked_add(p[0])?.checked_add(p[1])?;
        }
        let os = PadShape { dims, rank: xs.len() };
        (checked_len(&os)? <= MAX_FAST_ELEMENTS).then_some(os)
    }

    pub(crate) fn fill<T: Copy>(&self, xs: &[usize], os: &[usize], xv: &[T], y: &mut [T], value: T) -> Option<()> {
        // Trailing axes without padding join the innermost padded one: a row is then one long
        // copy (an image padded in height and width copies whole rows of pixels, not a pixel's
        // few channels at a time).
        let mut rank = xs.len();
        while rank > 1 && self.paddings[rank - 1] == [0, 0] {
            rank -= 1;
        }
        let tail: usize = xs[rank..].iter().product();
        let (inner_in, inner_out) = (xs[rank - 1] * tail, os[rank - 1] * tail);
        let before = self.paddings[rank - 1][0] * tail;
        if inner_out == 0 {
            return Some(());
        }
        let rows = y.len() / inner_out;
        let mut idx = [0usize; qlite_ir::MAX_RANK];
        for r in 0..rows {
            let row = &mut y[r * inner_out..(r + 1) * inner_out];
            // The input row this output row reads, if every outer index is inside the input.
            let mut src = Some(0usize);
            for (a, &i) in idx[..rank - 1].iter().enumerate() {
                let lo = self.paddings[a][0];
                src = match src {
                    Some(s) if i >= lo && i - lo < xs[a] => Some(s * xs[a] + (i - lo)),
                    _ => None,
                };
            }
            match src {
                Some(s) => {
                    row[..before].fill(value);
                    row[before..before + inner_in].copy_from_slice(&xv[s * inner_in..(s + 1) * inner_in]);
                    row[before + inner_in..].fill(value);
                }
                None => row.fill(value),
            }
            for a in (0..rank - 1).rev() {
                idx[a] += 1;
                if idx[a] < os[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        Some(())
    }
}

/// A padded shape without a heap allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PadShape {
    dims: [usize; qlite_ir::MAX_RANK],
    rank: usize,
}

impl std::ops::Deref for PadShape {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.dims[..self.rank]
    }
}
