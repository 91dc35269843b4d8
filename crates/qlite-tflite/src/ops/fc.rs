//! FULLY_CONNECTED and BATCH_MATMUL.

use super::*;
use qlite_ir::op::{BatchMatMul, FullyConnected};

pub(crate) struct Fc;

impl Family for Fc {
    fn codes(&self) -> Codes {
        &[
            (
                B::FULLY_CONNECTED,
                &[
                    "1.5.0", "1.10.0", "1.14.0", "1.14.0", "2.0.0", "2.1.0", "2.3.0", "2.3.0", "2.3.0", "2.11.0",
                    "2.15.0", "2.17.0", "2.18.0", "2.21.0",
                ],
            ),
            (B::BATCH_MATMUL, &["2.3.0", "2.3.0", "2.4.0", "2.5.0"]),
        ]
    }

    fn read(&self, cx: &mut ReadCx<'_, '_>) -> Result<Option<Op>, String> {
        let op = cx.op;
        Ok(Some(if cx.code == B::FULLY_CONNECTED {
            let o = op.builtin_options_as_fully_connected_options().ok_or_else(|| missing("FullyConnectedOptions"))?;
            if o.weights_format() != fb::FullyConnectedOptionsWeightsFormat::DEFAULT {
                return Err("shuffled weights format is not supported".into());
            }
            Op::FullyConnected(FullyConnected {
                activation: act(o.fused_activation_function())?,
                keep_num_dims: o.keep_num_dims(),
                asymmetric_inputs: o.asymmetric_quantize_inputs(),
            })
        } else {
            let o = op.builtin_options_as_batch_mat_mul_options();
            Op::BatchMatMul(BatchMatMul { adj_x: o.is_some_and(|o| o.adj_x()), adj_y: o.is_some_and(|o| o.adj_y()) })
        }))
    }

    fn builtin(&self, n: &Node) -> Option<B> {
        match &n.op {
            Op::FullyConnected(_) => Some(B::FULLY_CONNECTED),
            Op::BatchMatMul(_) => Some(B::BATCH_MATMUL),
            _ => None,
        }
    }

    fn version(&self, v: &VersionCx<'_>) -> i32 {
        use DType::*;
        let (x, w) = (v.dtype(0), v.dtype(1));
        match &v.n.op {
            Op::FullyConnected(o) => {
                if x == Some(F32) && w == Some(I8) && v.out_dtype() == Some(F32) && v.per_channel(1) {
                    12
                } else if x == Some(I16) && w == Some(I16) {
                    7
                } else if v.n.input(2).is_none() {
                    6
                } else if o.keep_num_dims {
                    5
                } else if x == Some(I8) && w == Some(I8) {
                    4
                } else if x == Some(F32) && w == Some(I8) {
                    if o.asymmetric_inputs { 9 } else { 3 }
                } else {
                    1
                }
            }
            _ => match x {
                Some(I16) => 3,
                Some(I8) => 2,
                _ => 1,
            },
        }
    }

    fn options(&self, fbb: &mut FlatBufferBuilder<'_>, n: &Node, _g: &qlite_ir::Graph) -> Options {
        use fb::BuiltinOptions as O;
        match &n.op {
            Op::FullyConnected(o) => {
                let args = fb::FullyConnectedOptionsArgs {
                    fused_activation_function: fused(n),
                    keep_num_dims: o.keep_num_dims,
                    asymmetric_quantize_inputs: o.asymmetric_inputs,
                    ..Default::default()
                };
                (O::FullyConnectedOptions, Some(fb::FullyConnectedOptions::create(fbb, &args).as_union_value()))
            }
            Op::BatchMatMul(o) => {
                let args =
                    fb::BatchMatMulOptionsArgs { adj_x: o.adj_x, adj_y: o.adj_y, asymmetric_quantize_inputs: false };
                (O::BatchMatMulOptions, Some(fb::BatchMatMulOptions::create(fbb, &args).as_union_value()))
            }
            _ => (O::NONE, None),
        }
    }
}
