//! QUANTIZE (and requantize), DEQUANTIZE (of int8, float16 and sparse weights) and DENSIFY.

use super::*;

pub(crate) struct Quantize;

impl Family for Quantize {
    fn codes(&self) -> Codes {
        &[
            (B::QUANTIZE, &["1.14.0", "1.15.0", "2.7.0", "2.21.0", "2.21.0", "2.21.0"]),
            (B::DEQUANTIZE, &["1.13.1", "1.14.0", "1.15.0", "2.2.0", "2.7.0", "2.18.0", "2.21.0", "2.22.0"]),
            (B::DENSIFY, &["2.2.0"]),
        ]
    }

    fn read(&self, cx: &mut ReadCx<'_, '_>) -> Result<Option<Op>, String> {
        Ok(Some(match cx.code {
            B::QUANTIZE => Op::Quantize,
            B::DEQUANTIZE => Op::Dequantize,
            _ => Op::Densify,
        }))
    }

    fn builtin(&self, n: &Node) -> Option<B> {
        match &n.op {
            Op::Quantize => Some(B::QUANTIZE),
            Op::Dequantize => Some(B::DEQUANTIZE),
            Op::Densify => Some(B::DENSIFY),
            _ => None,
        }
    }

    fn version(&self, v: &VersionCx<'_>) -> i32 {
        use DType::*;
        match &v.n.op {
            Op::Quantize => {
                let per_channel_out =
                    v.n.outputs
                        .first()
                        .and_then(|t| v.g.tensor(*t))
                        .and_then(|t| t.quant.as_ref())
                        .is_some_and(|q| q.scales().len() > 1);
                if per_channel_out {
                    3
                } else if v.out_dtype() == Some(I16) {
                    2
                } else {
                    1
                }
            }
            Op::Dequantize => match v.dtype(0) {
                Some(I16) | Some(F16) => 3,
                Some(I8) if v.per_channel(0) => 5,
                Some(I8) => 2,
                _ => 1,
            },
            _ => 1,
        }
    }

    fn options(&self, fbb: &mut FlatBufferBuilder<'_>, n: &Node, _g: &qlite_ir::Graph) -> Options {
        match &n.op {
            Op::Quantize => empty_options!(fbb, QuantizeOptions, QuantizeOptionsArgs),
            Op::Dequantize => empty_options!(fbb, DequantizeOptions, DequantizeOptionsArgs),
            _ => empty_options!(fbb, DensifyOptions, DensifyOptionsArgs),
        }
    }
}
