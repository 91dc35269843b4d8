//! Convolutions: CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV (and MediaPipe's
//! `Convolution2DTransposeBias` custom op, which is TRANSPOSE_CONV with a bias).

use super::*;
use qlite_ir::Dim;
use qlite_ir::op::{Conv2d, DepthwiseConv2d, TransposeConv2d};

pub(crate) struct Conv;

impl Family for Conv {
    fn codes(&self) -> Codes {
        &[
            (B::CONV_2D, &["1.5.0", "1.14.0", "1.14.0", "2.3.0", "2.4.0", "2.9.0", "2.11.0", "2.15.0"]),
            (B::DEPTHWISE_CONV_2D, &["1.5.0", "1.12.0", "1.14.0", "2.2.0", "2.3.0", "2.3.0", "2.11.0"]),
            (B::TRANSPOSE_CONV, &["1.9.0", "2.2.0", "2.3.0"]),
        ]
    }

    fn read(&self, cx: &mut ReadCx<'_, '_>) -> Result<Option<Op>, String> {
        let (g, op) = (cx.g, cx.op);
        Ok(Some(match cx.code {
            B::CONV_2D => {
                let o = op.builtin_options_as_conv_2_doptions().ok_or_else(|| missing("Conv2DOptions"))?;
                Op::Conv2d(Conv2d {
                    padding: pad_of(o.padding())?,
                    stride: [positive(o.stride_h(), "stride_h")?, positive(o.stride_w(), "stride_w")?],
                    dilation: [
                        positive(o.dilation_h_factor(), "dilation_h")?,
                        positive(o.dilation_w_factor(), "dilation_w")?,
                    ],
                    activation: act(o.fused_activation_function())?,
                })
            }
            B::DEPTHWISE_CONV_2D => {
                let o = op
                    .builtin_options_as_depthwise_conv_2_doptions()
                    .ok_or_else(|| missing("DepthwiseConv2DOptions"))?;
                // Old files may store depth_multiplier 0; the runtime derives it from the shapes.
                let derived = match (cx.input(0).and_then(|t| g.tensor(t)), cx.input(1).and_then(|t| g.tensor(t))) {
                    (Some(x), Some(w)) => match (x.shape.dim(3), w.shape.dim(3)) {
                        (Some(Dim::Fixed(c)), Some(Dim::Fixed(oc))) if c > 0 && oc % c == 0 => Some(oc / c),
                        _ => None,
                    },
                    _ => None,
                };
                let dm = derived.unwrap_or(o.depth_multiplier().max(1) as usize);
                Op::DepthwiseConv2d(DepthwiseConv2d {
                    padding: pad_of(o.padding())?,
                    stride: [positive(o.stride_h(), "stride_h")?, positive(o.stride_w(), "stride_w")?],
                    dilation: [
                        positive(o.dilation_h_factor(), "dilation_h")?,
                        positive(o.dilation_w_factor(), "dilation_w")?,
                    ],
                    depth_multiplier: dm,
                    activation: act(o.fused_activation_function())?,
                })
            }
            _ => {
                // TRANSPOSE_CONV (output_shape, weights, x[, bias]) → IR (x, weights[, bias]).
                let o =
                    op.builtin_options_as_transpose_conv_options().ok_or_else(|| missing("TransposeConvOptions"))?;
                let shape = cx.ints(0, "output_shape")?;
                let &[_, h, w, _] = shape.as_slice() else {
                    return Err(format!("output_shape {shape:?} is not [N, H, W, C]"));
                };
                let dim = |v: i64| usize::try_from(v).ok().filter(|&v| (1..=1 << 20).contains(&v));
                let (Some(h), Some(w)) = (dim(h), dim(w)) else {
                    return Err(format!("output size {h}x{w} must be between 1 and 2^20"));
                };
                let (weights, x, bias) = (cx.input(1), cx.input(2), cx.input(3));
                *cx.inputs = vec![x, weights];
                if bias.is_some() {
                    cx.inputs.push(bias);
                }
                Op::TransposeConv2d(TransposeConv2d {
                    padding: pad_of(o.padding())?,
                    stride: [positive(o.stride_h(), "stride_h")?, positive(o.stride_w(), "stride_w")?],
                    output: [h, w],
                    activation: act(o.fused_activation_function())?,
                })
            }
        }))
    }

    fn builtin(&self, n: &Node) -> Option<B> {
        match &n.op {
            Op::Conv2d(_) => Some(B::CONV_2D),
            Op::DepthwiseConv2d(_) => Some(B::DEPTHWISE_CONV_2D),
            Op::TransposeConv2d(_) => Some(B::TRANSPOSE_CONV),
            _ => None,
        }
    }

    fn version(&self, v: &VersionCx<'_>) -> i32 {
        use DType::*;
        let (x, w) = (v.dtype(0), v.dtype(1));
        match &v.n.op {
            Op::Conv2d(_) => {
                let tensor = |i: usize| v.n.input(i).and_then(|t| v.g.tensor(t));
                let grouped = match (tensor(0), tensor(1)) {
                    (Some(a), Some(b)) => a.shape.dim(3) != b.shape.dim(3),
                    _ => false,
                };
                if grouped {
                    6
                } else if x == Some(I16) && w == Some(I8) {
                    4
                } else if x == Some(I8) && w == Some(I8) {
                    3
                } else if x == Some(F32) && w == Some(I8) {
                    if v.per_channel(1) { 5 } else { 2 }
                } else {
                    1
                }
            }
            Op::DepthwiseConv2d(o) => {
                if x == Some(I16) {
                    5
                } else if x == Some(F32) && w == Some(I8) {
                    if v.per_channel(1) { 6 } else { 4 }
                } else if x == Some(I8) && w == Some(I8) {
                    3
                } else if o.dilation != [1, 1] {
                    2
                } else {
                    1
                }
            }
            Op::TransposeConv2d(o) => {
                if o.activation != Activation::None {
                    4
                } else if v.n.input(2).is_some() {
                    3
                } else if w == Some(I8) {
                    2
                } else {
                    1
                }
            }
            _ => 1,
        }
    }

    fn options(&self, fbb: &mut FlatBufferBuilder<'_>, n: &Node, _g: &qlite_ir::Graph) -> Options {
        use fb::BuiltinOptions as O;
        match &n.op {
            Op::Conv2d(o) => {
                let args = fb::Conv2DOptionsArgs {
                    padding: codes::padding(o.padding),
                    stride_w: o.stride[1] as i32,
                    stride_h: o.stride[0] as i32,
                    fused_activation_function: fused(n),
                    dilation_w_factor: o.dilation[1] as i32,
                    dilation_h_factor: o.dilation[0] as i32,
                    quantized_bias_type: fb::TensorType::FLOAT32,
                };
                (O::Conv2DOptions, Some(fb::Conv2DOptions::create(fbb, &args).as_union_value()))
            }
            Op::DepthwiseConv2d(o) => {
                let args = fb::DepthwiseConv2DOptionsArgs {
                    padding: codes::padding(o.padding),
                    stride_w: o.stride[1] as i32,
                    stride_h: o.stride[0] as i32,
                    depth_multiplier: o.depth_multiplier as i32,
                    fused_activation_function: fused(n),
                    dilation_w_factor: o.dilation[1] as i32,
                    dilation_h_factor: o.dilation[0] as i32,
                };
                (O::DepthwiseConv2DOptions, Some(fb::DepthwiseConv2DOptions::create(fbb, &args).as_union_value()))
            }
            Op::TransposeConv2d(o) => {
                let args = fb::TransposeConvOptionsArgs {
                    padding: codes::padding(o.padding),
                    stride_w: o.stride[1] as i32,
                    stride_h: o.stride[0] as i32,
                    fused_activation_function: codes::activation(o.activation),
                    ..Default::default()
                };
                (O::TransposeConvOptions, Some(fb::TransposeConvOptions::create(fbb, &args).as_union_value()))
            }
            _ => (O::NONE, None),
        }
    }

    /// TRANSPOSE_CONV's output_shape [N, H, W, O]: a constant, or with a dynamic batch computed
    /// at run time as TF's converter does (SHAPE of the input, its first entry, then H, W, O).
    fn aux(&self, n: &Node, g: &Graph, base: &str) -> Result<Aux, WriteError> {
        let Op::TransposeConv2d(t) = &n.op else { return Ok(Aux::default()) };
        let out = n.outputs.first().and_then(|o| g.tensor(*o)).ok_or_else(|| WriteError::Unsupported {
            node: n.name.clone(),
            message: "TransposeConv2d has no output".into(),
        })?;
        let d = out.shape.dims();
        let hwo = vec![
            to_i32(n, t.output[0] as i64)?,
            to_i32(n, t.output[1] as i64)?,
            to_i32(n, d[3].fixed().unwrap_or(0) as i64)?,
        ];
        let tensor = |what: &str, shape: i32, data: Option<Vec<i32>>| AuxTensor {
            name: format!("{base}/{what}"),
            shape: vec![shape],
            data,
        };
        if let Some(batch) = d[0].fixed() {
            let mut data = vec![to_i32(n, batch as i64)?];
            data.extend(hwo);
            return Ok(Aux { tensors: vec![tensor("output_shape", 4, Some(data))], ops: Vec::new() });
        }
        let tensors = vec![
            tensor("output_shape", 4, None),
            tensor("output_shape/input_shape", 4, None),
            tensor("output_shape/begin", 1, Some(vec![0])),
            tensor("output_shape/end", 1, Some(vec![1])),
            tensor("output_shape/strides", 1, Some(vec![1])),
            tensor("output_shape/batch", 1, None),
            tensor("output_shape/hwo", 3, Some(hwo)),
        ];
        let ops = vec![
            AuxOp { code: B::SHAPE, inputs: vec![Ok(0)], outputs: vec![1] },
            AuxOp { code: B::STRIDED_SLICE, inputs: vec![Err(1), Err(2), Err(3), Err(4)], outputs: vec![5] },
            AuxOp { code: B::CONCATENATION, inputs: vec![Err(5), Err(6)], outputs: vec![0] },
        ];
        Ok(Aux { tensors, ops })
    }

    /// TRANSPOSE_CONV's order: output_shape, weights, input[, bias].
    fn inputs(&self, n: &Node, mut node: Vec<i32>, aux: &[i32]) -> Vec<i32> {
        match (&n.op, aux.first()) {
            (Op::TransposeConv2d(_), Some(&shape)) => {
                let at = |i: usize| node.get(i).copied().unwrap_or(-1);
                let mut v = vec![shape, at(1), at(0)];
                if n.input(2).is_some() {
                    v.push(at(2));
                }
                v
            }
            _ => {
                node.extend_from_slice(aux);
                node
            }
        }
    }
}

/// MediaPipe's `Convolution2DTransposeBias` (its segmentation models) is TRANSPOSE_CONV with a
/// bias: its custom options are the raw `TfLiteTransposeConvParams` (padding 1 = SAME, 2 =
/// VALID, then the width and height strides, little-endian int32) and its output size is the
/// output tensor's. `Ok(None)` for any other custom op.
pub(crate) fn mediapipe_transpose_conv(
    g: &Graph,
    op: &fb::Operator<'_>,
    custom_code: Option<&str>,
    outputs: &[TensorId],
) -> Result<Option<Op>, String> {
    if custom_code != Some("Convolution2DTransposeBias") {
        return Ok(None);
    }
    let raw = op.custom_options().map(|v| v.bytes().to_vec()).unwrap_or_default();
    if raw.len() < 12 {
        return Err(format!("custom options of {} bytes, expected 12 (padding, stride_w, stride_h)", raw.len()));
    }
    let int = |k: usize| i32::from_le_bytes([raw[4 * k], raw[4 * k + 1], raw[4 * k + 2], raw[4 * k + 3]]);
    let padding = match int(0) {
        1 => qlite_ir::Padding::Same,
        2 => qlite_ir::Padding::Valid,
        p => return Err(format!("padding {p} (1 = SAME, 2 = VALID)")),
    };
    let out = outputs.first().and_then(|t| g.tensor(*t)).ok_or("the output is missing")?;
    let (Some(h), Some(w)) = (out.shape.dim(1).and_then(|d| d.fixed()), out.shape.dim(2).and_then(|d| d.fixed()))
    else {
        return Err(format!("the output {} needs a static height and width", out.shape));
    };
    Ok(Some(Op::TransposeConv2d(TransposeConv2d {
        padding,
        stride: [positive(int(2), "stride_h")?, positive(int(1), "stride_w")?],
        output: [h, w],
        activation: Activation::None,
    })))
}
