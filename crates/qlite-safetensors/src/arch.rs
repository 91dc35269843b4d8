//! The architecture sidecar: a small TOML file, written by hand, that turns a weights-only
//! safetensors checkpoint into a runnable graph.
//!
//! ```toml
//! name = "mlp"                       # optional
//! [input]
//! name = "x"
//! shape = [1, 64]                    # NHWC for images: [1, 28, 28, 1]
//!
//! [[layers]]
//! type = "dense"                     # y = x · Wᵀ + b
//! weight = "fc1.weight"              # [out, in], PyTorch's Linear layout
//! bias = "fc1.bias"                  # optional
//! activation = "relu"                # none | relu | relu6 (optional)
//!
//! [[layers]]
//! type = "conv2d"                    # weight [out, in/groups, kh, kw] (PyTorch), or layout = "ohwi"
//! weight = "conv.weight"
//! bias = "conv.bias"
//! stride = [1, 1]                    # optional
//! dilation = [1, 1]                  # optional
//! padding = "same"                   # same | valid | [pad_h, pad_w] (zero padding, both sides)
//!
//! [[layers]]
//! type = "depthwise_conv2d"          # weight [channels*multiplier, 1, kh, kw] (PyTorch, groups = channels)
//!
//! # also: max_pool2d / avg_pool2d (size, stride, padding = same | valid), global_avg_pool,
//! # relu, relu6, sigmoid, tanh, softmax, flatten (PyTorch's C,H,W order for 4-D inputs)
//! ```

use crate::format::{StError, StFile, StTensor};
use crate::ir::to_ir;
use half::{bf16, f16};
use qlite_ir::op::*;
use qlite_ir::tensor::f32_bytes;
use qlite_ir::{DType, Graph, Node, Shape, Tensor, TensorId};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Arch {
    name: Option<String>,
    input: InputSpec,
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSpec {
    name: String,
    shape: Vec<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Pad {
    Named(String),
    Explicit([usize; 2]),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    #[serde(rename = "type")]
    kind: String,
    weight: Option<String>,
    bias: Option<String>,
    activation: Option<String>,
    stride: Option<[usize; 2]>,
    dilation: Option<[usize; 2]>,
    padding: Option<Pad>,
    size: Option<[usize; 2]>,
    layout: Option<String>,
    name: Option<String>,
}

fn err(i: usize, kind: &str, m: impl std::fmt::Display) -> StError {
    StError::Arch(format!("layer {i} ({kind}): {m}"))
}

/// float32 values of a weight tensor (F32, F16 or BF16), with its shape.
fn weight_values(file: &BTreeMap<&str, &StTensor>, name: &str) -> Result<(Vec<f32>, Vec<usize>), String> {
    let t = file.get(name).ok_or_else(|| format!("the weights have no tensor {name:?}"))?;
    let v = match to_ir(t.dtype) {
        Some(DType::F32) => qlite_ir::tensor::read_f32s(&t.data),
        Some(DType::F16) => t.data.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Some(DType::BF16) => t.data.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        _ => {
            return Err(format!(
                "tensor {name:?} is {}: only F32, F16 and BF16 weights can be built into a model",
                t.dtype
            ));
        }
    };
    Ok((v, t.shape.clone()))
}

fn activation(s: Option<&str>) -> Result<Activation, String> {
    Ok(match s.unwrap_or("none") {
        "none" | "linear" => Activation::None,
        "relu" => Activation::Relu,
        "relu6" => Activation::Relu6,
        other => return Err(format!("unknown activation {other:?} (none, relu, relu6)")),
    })
}

/// OIHW → OHWI (or [C*M,1,kh,kw] → [1,kh,kw,C*M] for depthwise).
fn to_ohwi(v: &[f32], s: &[usize]) -> Vec<f32> {
    let (o, i, h, w) = (s[0], s[1], s[2], s[3]);
    let mut out = vec![0f32; v.len()];
    for a in 0..o {
        for b in 0..i {
            for y in 0..h {
                for x in 0..w {
                    out[((a * h + y) * w + x) * i + b] = v[((a * i + b) * h + y) * w + x];
                }
            }
        }
    }
    out
}

struct Builder {
    g: Graph,
    cur: TensorId,
    n: usize,
}

impl Builder {
    fn shape(&self, t: TensorId) -> Shape {
        self.g.tensor(t).map(|t| t.shape.clone()).unwrap_or_default()
    }

    fn konst(&mut self, name: &str, dims: &[usize], v: &[f32]) -> TensorId {
        self.g.add_tensor(Tensor::constant(name, DType::F32, Shape::fixed(dims), f32_bytes(v)))
    }

    fn push(&mut self, name: &str, op: Op, inputs: Vec<Option<TensorId>>) -> Result<TensorId, String> {
        let ins: Vec<_> =
            inputs.iter().map(|i| i.and_then(|t| self.g.tensor(t)).map(|t| (t.dtype, &t.shape))).collect();
        let inf = op.infer(&ins).map_err(|e| e.0)?.remove(0);
        self.n += 1;
        let out = self.g.add_tensor(Tensor::activation(name, inf.dtype.unwrap_or(DType::F32), inf.shape));
        self.g.add_node(Node::new(name, op, inputs, vec![out]));
        self.cur = out;
        Ok(out)
    }
}

/// Build a graph from a sidecar and the weights it names.
pub fn build(arch_toml: &str, weights: &StFile) -> Result<Graph, StError> {
    let arch: Arch = toml::from_str(arch_toml).map_err(|e| StError::Arch(format!("invalid architecture file: {e}")))?;
    let file: BTreeMap<&str, &StTensor> = weights.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    if arch.input.shape.is_empty() || arch.input.shape.contains(&0) || arch.input.shape.len() > 6 {
        return Err(StError::Arch(format!("input shape {:?} must have 1 to 6 non-zero dimensions", arch.input.shape)));
    }
    let mut g = Graph::new(arch.name.clone().unwrap_or_else(|| "model".into()));
    let x = g.add_tensor(Tensor::activation(arch.input.name.clone(), DType::F32, Shape::fixed(&arch.input.shape)));
    g.set_inputs(vec![x]);
    let mut b = Builder { g, cur: x, n: 0 };
    for (i, l) in arch.layers.iter().enumerate() {
        let kind = l.kind.as_str();
        let name = l.name.clone().unwrap_or_else(|| format!("{kind}_{i}"));
        let e = |m: String| err(i, kind, m);
        let need_weight = || l.weight.as_deref().ok_or_else(|| err(i, kind, "needs `weight`"));
        let bias = |b: &mut Builder, units: usize| -> Result<Option<TensorId>, StError> {
            match &l.bias {
                Some(bn) => {
                    let (v, s) = weight_values(&file, bn).map_err(e)?;
                    if s != [units] {
                        return Err(err(i, kind, format!("bias {bn:?} has shape {s:?}, expected [{units}]")));
                    }
                    Ok(Some(b.konst(bn, &s, &v)))
                }
                None => Ok(None),
            }
        };
        let spatial_pad = |b: &mut Builder| -> Result<Padding, StError> {
            match &l.padding {
                None => Ok(Padding::Valid),
                Some(Pad::Named(p)) if p == "same" => Ok(Padding::Same),
                Some(Pad::Named(p)) if p == "valid" => Ok(Padding::Valid),
                Some(Pad::Named(p)) => {
                    Err(err(i, kind, format!("unknown padding {p:?} (same, valid or [pad_h, pad_w])")))
                }
                Some(Pad::Explicit([ph, pw])) => {
                    if b.shape(b.cur).rank() != 4 {
                        return Err(err(i, kind, "explicit padding needs a 4-D NHWC input"));
                    }
                    let p = Op::Pad(qlite_ir::op::Pad { paddings: vec![[0, 0], [*ph, *ph], [*pw, *pw], [0, 0]] });
                    let cur = b.cur;
                    b.push(&format!("{name}/pad"), p, vec![Some(cur)]).map_err(e)?;
                    Ok(Padding::Valid)
                }
            }
        };
        let cur = b.cur;
        match kind {
            "dense" => {
                let wn = need_weight()?;
                let (v, s) = weight_values(&file, wn).map_err(e)?;
                if s.len() != 2 {
                    return Err(e(format!("weight {wn:?} must be [out, in], got {s:?}")));
                }
                let w = b.konst(wn, &s, &v);
                let bias = bias(&mut b, s[0])?;
                let act = activation(l.activation.as_deref()).map_err(e)?;
                let op = Op::FullyConnected(FullyConnected {
                    activation: act,
                    keep_num_dims: false,
                    asymmetric_inputs: false,
                });
                b.push(&name, op, vec![Some(cur), Some(w), bias]).map_err(e)?;
            }
            "conv2d" | "depthwise_conv2d" => {
                let wn = need_weight()?;
                let (v, s) = weight_values(&file, wn).map_err(e)?;
                if s.len() != 4 {
                    return Err(e(format!("weight {wn:?} must be 4-D, got {s:?}")));
                }
                let ohwi = l.layout.as_deref() == Some("ohwi");
                let (wv, ws) = if ohwi { (v, s.clone()) } else { (to_ohwi(&v, &s), vec![s[0], s[2], s[3], s[1]]) };
                let pad = spatial_pad(&mut b)?;
                let cur = b.cur;
                let stride = l.stride.unwrap_or([1, 1]);
                let dilation = l.dilation.unwrap_or([1, 1]);
                let act = activation(l.activation.as_deref()).map_err(e)?;
                if kind == "conv2d" {
                    let w = b.konst(wn, &ws, &wv);
                    let bias = bias(&mut b, ws[0])?;
                    let op = Op::Conv2d(Conv2d { padding: pad, stride, dilation, activation: act });
                    b.push(&name, op, vec![Some(cur), Some(w), bias]).map_err(e)?;
                } else {
                    // [C*M, 1, kh, kw] → OHWI [C*M, kh, kw, 1] → depthwise [1, kh, kw, C*M].
                    if ws[3] != 1 {
                        return Err(e(format!(
                            "depthwise weight {wn:?} must have 1 input channel per group, got {s:?}"
                        )));
                    }
                    let (cm, kh, kw) = (ws[0], ws[1], ws[2]);
                    let mut dw = vec![0f32; wv.len()];
                    for o in 0..cm {
                        for k in 0..kh * kw {
                            dw[k * cm + o] = wv[o * kh * kw + k];
                        }
                    }
                    let c = b
                        .shape(cur)
                        .dim(3)
                        .and_then(|d| d.fixed())
                        .ok_or_else(|| e("needs a 4-D NHWC input".into()))?;
                    if c == 0 || cm % c != 0 {
                        return Err(e(format!("{cm} output channels are not a multiple of the {c} input channels")));
                    }
                    let w = b.konst(wn, &[1, kh, kw, cm], &dw);
                    let bias = bias(&mut b, cm)?;
                    let op = Op::DepthwiseConv2d(DepthwiseConv2d {
                        padding: pad,
                        stride,
                        dilation,
                        depth_multiplier: cm / c,
                        activation: act,
                    });
                    b.push(&name, op, vec![Some(cur), Some(w), bias]).map_err(e)?;
                }
            }
            "max_pool2d" | "avg_pool2d" => {
                let size = l.size.ok_or_else(|| e("needs `size = [h, w]`".into()))?;
                let padding = match &l.padding {
                    None => Padding::Valid,
                    Some(Pad::Named(p)) if p == "same" => Padding::Same,
                    Some(Pad::Named(p)) if p == "valid" => Padding::Valid,
                    _ => return Err(e("pooling padding must be same or valid".into())),
                };
                let op = Op::Pool2d(Pool2d {
                    kind: if kind == "max_pool2d" { PoolKind::Max } else { PoolKind::Average },
                    filter: size,
                    stride: l.stride.unwrap_or(size),
                    padding,
                    activation: Activation::None,
                });
                b.push(&name, op, vec![Some(cur)]).map_err(e)?;
            }
            "global_avg_pool" => {
                b.push(&name, Op::Mean(Mean { axes: vec![1, 2], keep_dims: false }), vec![Some(cur)]).map_err(e)?;
            }
            "relu" | "relu6" | "sigmoid" | "tanh" => {
                let k = match kind {
                    "relu" => UnaryKind::Relu,
                    "relu6" => UnaryKind::Relu6,
                    "sigmoid" => UnaryKind::Logistic,
                    _ => UnaryKind::Tanh,
                };
                b.push(&name, Op::Unary(Unary { kind: k }), vec![Some(cur)]).map_err(e)?;
            }
            "softmax" => {
                b.push(&name, Op::Softmax(Softmax { beta: 1.0 }), vec![Some(cur)]).map_err(e)?;
            }
            "flatten" => {
                let s = b.shape(cur);
                let mut x = cur;
                if s.rank() == 4 {
                    x = b
                        .push(
                            &format!("{name}/nchw"),
                            Op::Transpose(Transpose { perm: vec![0, 3, 1, 2] }),
                            vec![Some(cur)],
                        )
                        .map_err(e)?;
                }
                let batch = s.dim(0).and_then(|d| d.fixed()).unwrap_or(1) as i64;
                b.push(&name, Op::Reshape(Reshape { shape: vec![batch, -1] }), vec![Some(x)]).map_err(e)?;
            }
            other => {
                return Err(e(format!(
                    "unknown layer type {other:?} (dense, conv2d, depthwise_conv2d, max_pool2d, avg_pool2d, global_avg_pool, relu, relu6, sigmoid, tanh, softmax, flatten)"
                )));
            }
        }
    }
    let out = b.cur;
    if out == x {
        return Err(StError::Arch("the architecture has no layers".into()));
    }
    let mut g = b.g;
    g.set_outputs(vec![out]);
    qlite_ir::verify(&g).map_err(|e| StError::Arch(e.to_string()))?;
    Ok(g)
}
