//! Pooling and reductions: MAX_POOL_2D, AVERAGE_POOL_2D, MEAN, SUM.

use super::*;
use qlite_ir::op::{Mean, Pool2d, PoolKind};

pub(crate) struct Pool;

impl Family for Pool {
    fn codes(&self) -> Codes {
        &[
            (B::AVERAGE_POOL_2D, &["1.5.0", "1.14.0", "2.3.0"]),
            (B::MAX_POOL_2D, &["1.5.0", "1.14.0", "2.3.0"]),
            (B::MEAN, &["1.6.0", "1.14.0", "2.4.0"]),
            (B::SUM, &["1.10.0", "1.15.0"]),
        ]
    }

    fn read(&self, cx: &mut ReadCx<'_, '_>) -> Result<Option<Op>, String> {
        let op = cx.op;
        Ok(Some(match cx.code {
            B::MAX_POOL_2D | B::AVERAGE_POOL_2D => {
                let o = op.builtin_options_as_pool_2_doptions().ok_or_else(|| missing("Pool2DOptions"))?;
                Op::Pool2d(Pool2d {
                    kind: if cx.code == B::MAX_POOL_2D { PoolKind::Max } else { PoolKind::Average },
                    filter: [
                        positive(o.filter_height(), "filter_height")?,
                        positive(o.filter_width(), "filter_width")?,
                    ],
                    stride: [positive(o.stride_h(), "stride_h")?, positive(o.stride_w(), "stride_w")?],
                    padding: pad_of(o.padding())?,
                    activation: act(o.fused_activation_function())?,
                })
            }
            _ => {
                // MEAN / SUM (x, axes): the axes become the op's, sorted and unique.
                let keep_dims = op.builtin_options_as_reducer_options().is_some_and(|o| o.keep_dims());
                let rank = cx.rank0()?;
                let raw = cx.ints(1, "axes")?;
                let mut axes = raw.iter().map(|&a| norm_axis(a, rank, "axis")).collect::<Result<Vec<_>, _>>()?;
                axes.sort_unstable();
                axes.dedup();
                cx.inputs.truncate(1);
                if cx.code == B::SUM { Op::Sum(Mean { axes, keep_dims }) } else { Op::Mean(Mean { axes, keep_dims }) }
            }
        }))
    }

    fn builtin(&self, n: &Node) -> Option<B> {
        match &n.op {
            Op::Pool2d(p) => Some(match p.kind {
                PoolKind::Max => B::MAX_POOL_2D,
                PoolKind::Average => B::AVERAGE_POOL_2D,
            }),
            Op::Mean(_) => Some(B::MEAN),
            Op::Sum(_) => Some(B::SUM),
            _ => None,
        }
    }

    fn version(&self, v: &VersionCx<'_>) -> i32 {
        use DType::*;
        match (&v.n.op, v.dtype(0)) {
            (Op::Sum(_), Some(I8)) => 2,
            (Op::Sum(_), _) => 1,
            (_, Some(I16)) => 3,
            (_, Some(I8)) => 2,
            _ => 1,
        }
    }

    fn options(&self, fbb: &mut FlatBufferBuilder<'_>, n: &Node, _g: &qlite_ir::Graph) -> Options {
        use fb::BuiltinOptions as O;
        match &n.op {
            Op::Pool2d(o) => {
                let args = fb::Pool2DOptionsArgs {
                    padding: codes::padding(o.padding),
                    stride_w: o.stride[1] as i32,
                    stride_h: o.stride[0] as i32,
                    filter_width: o.filter[1] as i32,
                    filter_height: o.filter[0] as i32,
                    fused_activation_function: fused(n),
                };
                (O::Pool2DOptions, Some(fb::Pool2DOptions::create(fbb, &args).as_union_value()))
            }
            Op::Mean(m) | Op::Sum(m) => {
                let args = fb::ReducerOptionsArgs { keep_dims: m.keep_dims };
                (O::ReducerOptions, Some(fb::ReducerOptions::create(fbb, &args).as_union_value()))
            }
            _ => (O::NONE, None),
        }
    }

    fn aux(&self, n: &Node, _g: &Graph, base: &str) -> Result<Aux, WriteError> {
        match &n.op {
            Op::Mean(m) | Op::Sum(m) => {
                aux_vector(n, base, "axes", &m.axes.iter().map(|&a| a as i64).collect::<Vec<_>>())
            }
            _ => Ok(Aux::default()),
        }
    }
}
