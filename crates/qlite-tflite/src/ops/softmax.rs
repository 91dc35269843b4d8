//! Normalizations along the last axis: SOFTMAX, LOG_SOFTMAX, LOCAL_RESPONSE_NORMALIZATION.

use super::*;
use qlite_ir::op::LocalResponseNorm;

pub(crate) struct Softmax;

impl Family for Softmax {
    fn codes(&self) -> Codes {
        &[
            (B::SOFTMAX, &["1.5.0", "1.14.0", "2.3.0", "2.23.0"]),
            (B::LOG_SOFTMAX, &["1.14.0", "1.14.0"]),
            (B::LOCAL_RESPONSE_NORMALIZATION, &[]),
        ]
    }

    fn read(&self, cx: &mut ReadCx<'_, '_>) -> Result<Option<Op>, String> {
        let op = cx.op;
        Ok(Some(match cx.code {
            B::SOFTMAX => {
                let beta = op.builtin_options_as_softmax_options().map_or(1.0, |o| o.beta());
                if !beta.is_finite() {
                    return Err(format!("softmax beta {beta} is not finite"));
                }
                Op::Softmax(qlite_ir::op::Softmax { beta })
            }
            B::LOG_SOFTMAX => Op::LogSoftmax,
            _ => {
                let o = op
                    .builtin_options_as_local_response_normalization_options()
                    .ok_or_else(|| missing("LocalResponseNormalizationOptions"))?;
                let (bias, alpha, beta) = (o.bias(), o.alpha(), o.beta());
                if o.radius() < 0 || ![bias, alpha, beta].iter().all(|v| v.is_finite()) {
                    return Err(format!(
                        "LocalResponseNormalizationOptions radius {} bias {bias} alpha {alpha} beta {beta} are invalid",
                        o.radius()
                    ));
                }
                Op::LocalResponseNorm(LocalResponseNorm { radius: o.radius() as usize, bias, alpha, beta })
            }
        }))
    }

    fn builtin(&self, n: &Node) -> Option<B> {
        match &n.op {
            Op::Softmax(_) => Some(B::SOFTMAX),
            Op::LogSoftmax => Some(B::LOG_SOFTMAX),
            Op::LocalResponseNorm(_) => Some(B::LOCAL_RESPONSE_NORMALIZATION),
            _ => None,
        }
    }

    fn version(&self, v: &VersionCx<'_>) -> i32 {
        use DType::*;
        match (&v.n.op, v.dtype(0)) {
            (Op::LocalResponseNorm(_), _) => 1,
            (Op::Softmax(_), Some(I16)) => 3,
            (_, Some(I8)) => 2,
            _ => 1,
        }
    }

    fn options(&self, fbb: &mut FlatBufferBuilder<'_>, n: &Node, _g: &qlite_ir::Graph) -> Options {
        use fb::BuiltinOptions as O;
        match &n.op {
            Op::Softmax(s) => {
                let args = fb::SoftmaxOptionsArgs { beta: s.beta };
                (O::SoftmaxOptions, Some(fb::SoftmaxOptions::create(fbb, &args).as_union_value()))
            }
            Op::LogSoftmax => empty_options!(fbb, LogSoftmaxOptions, LogSoftmaxOptionsArgs),
            Op::LocalResponseNorm(l) => {
                let args = fb::LocalResponseNormalizationOptionsArgs {
                    radius: l.radius as i32,
                    bias: l.bias,
                    alpha: l.alpha,
                    beta: l.beta,
                };
                (
                    O::LocalResponseNormalizationOptions,
                    Some(fb::LocalResponseNormalizationOptions::create(fbb, &args).as_union_value()),
                )
            }
            _ => (O::NONE, None),
        }
    }
}
