//! ONNX → IR: Normalizations: LayerNormalization (decomposed as TF's converter does), LRN, Softmax
//! and LogSoftmax.

use super::*;

impl Importer {
    /// The norm family's ops; `Ok(None)`: `op_type` is not one of them.
    pub(super) fn norm_op(&mut self, n: &NodeProto, op_type: &str, name: &str) -> R<Option<bool>> {
        match op_type {
            // LayerNormalization (opset 17), the form transformers export: over the axes from
            // `axis` on, `(x − mean) · rsqrt(mean((x − mean)²) + ε) · γ + β` in the IR's ops
            // (TFLite has no layer norm op; TF's converter writes the same decomposition).
            "LayerNormalization" => {
                if n.output.len() > 1 && n.output[1..].iter().any(|o| !o.is_empty()) {
                    return Ok(Some(false));
                }
                let x = self.input(n, 0)?;
                let xs = self.shape_of(x);
                let rank = xs.rank();
                let axis = norm_axis(attr_i(n, "axis", -1), rank)?;
                let eps = attr_f(n, "epsilon", 1e-5);
                let axes: Vec<usize> = (axis..rank).collect();
                let normalized: Vec<usize> = axes
                    .iter()
                    .map(|&a| xs.dim(a).and_then(|d| d.fixed()))
                    .collect::<Option<_>>()
                    .ok_or("LayerNormalization needs static normalized axes")?;
                let get = |i: usize| -> R<Option<Vec<f32>>> {
                    match n.input.get(i).filter(|s| !s.is_empty()) {
                        None => Ok(None),
                        Some(s) => self
                            .constant(s)
                            .and_then(|c| c.f32s())
                            .map(Some)
                            .ok_or_else(|| format!("LayerNormalization input {i} must be a float constant")),
                    }
                };
                let (Some(gamma), beta) = (get(1)?, get(2)?) else {
                    return Err("LayerNormalization needs a scale".into());
                };
                let bin = |kind| Op::Binary(Binary { kind, activation: Activation::None });
                let mean = self.push(
                    &format!("{name}/mean"),
                    Op::Mean(Mean { axes: axes.clone(), keep_dims: true }),
                    vec![Some(x)],
                )?;
                let centered =
                    self.push(&format!("{name}/centered"), bin(BinaryKind::Sub), vec![Some(x), Some(mean)])?;
                let sq = self.push(
                    &format!("{name}/squared"),
                    bin(BinaryKind::SquaredDifference),
                    vec![Some(x), Some(mean)],
                )?;
                let var =
                    self.push(&format!("{name}/variance"), Op::Mean(Mean { axes, keep_dims: true }), vec![Some(sq)])?;
                let e = self.new_const(&format!("{name}/epsilon"), DType::F32, &[], f32_bytes(&[eps]));
                let ve = self.push(&format!("{name}/variance_eps"), bin(BinaryKind::Add), vec![Some(var), Some(e)])?;
                let inv =
                    self.push(&format!("{name}/rsqrt"), Op::Unary(Unary { kind: UnaryKind::Rsqrt }), vec![Some(ve)])?;
                let norm =
                    self.push(&format!("{name}/normalized"), bin(BinaryKind::Mul), vec![Some(centered), Some(inv)])?;
                let g = self.new_const(&format!("{name}/scale"), DType::F32, &normalized, f32_bytes(&gamma));
                let mut y = self.push(&format!("{name}/scaled"), bin(BinaryKind::Mul), vec![Some(norm), Some(g)])?;
                if let Some(beta) = beta {
                    let b = self.new_const(&format!("{name}/bias"), DType::F32, &normalized, f32_bytes(&beta));
                    y = self.push(name, bin(BinaryKind::Add), vec![Some(y), Some(b)])?;
                }
                self.output(n, y);
            }
            "LRN" => {
                let size = attr_i(n, "size", 0);
                // ONNX's window is [c - floor((size-1)/2), c + ceil((size-1)/2)]: symmetric, as
                // TFLite's radius is, only for an odd size.
                if size < 1 || size % 2 == 0 {
                    return Ok(Some(false));
                }
                let x = self.input(n, 0)?;
                if self.shape_of(x).rank() != 4 {
                    return Ok(Some(false));
                }
                let op = LocalResponseNorm {
                    radius: ((size - 1) / 2) as usize,
                    bias: attr_f(n, "bias", 1.0),
                    alpha: attr_f(n, "alpha", 1e-4) / size as f32,
                    beta: attr_f(n, "beta", 0.75),
                };
                let t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
                let y = self.push(&format!("{name}/nhwc"), Op::LocalResponseNorm(op), vec![Some(t)])?;
                let back = self.transpose(name, y, vec![0, 3, 1, 2])?;
                self.output(n, back);
            }
            "LogSoftmax" => {
                // Over the last axis only (opset 13's default, or an explicit last axis).
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                let default = if self.opset >= 13 { -1 } else { 1 };
                let axis = norm_axis(attr_i(n, "axis", default), rank)?;
                if axis + 1 != rank {
                    return Ok(Some(false));
                }
                let y = self.push(name, Op::LogSoftmax, vec![Some(x)])?;
                self.output(n, y);
            }
            "Softmax" => {
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                let default = if self.opset >= 13 { -1 } else { 1 };
                let axis = norm_axis(attr_i(n, "axis", default), rank)?;
                if axis + 1 == rank {
                    let y = self.push(name, Op::Softmax(Softmax { beta: 1.0 }), vec![Some(x)])?;
                    self.output(n, y);
                } else if self.opset >= 13 {
                    // Move the axis last, softmax, move it back.
                    let mut perm: Vec<usize> = (0..rank).filter(|&i| i != axis).collect();
                    perm.push(axis);
                    let mut inv = vec![0; rank];
                    for (i, &p) in perm.iter().enumerate() {
                        inv[p] = i;
                    }
                    let t = self.transpose(&format!("{name}/to_last"), x, perm)?;
                    let s = self.push(&format!("{name}/softmax"), Op::Softmax(Softmax { beta: 1.0 }), vec![Some(t)])?;
                    let y = self.transpose(name, s, inv)?;
                    self.output(n, y);
                } else {
                    // Before opset 13: softmax over the flattened dims from `axis` on.
                    let xs = self.shape_of(x);
                    let inner = (axis..rank).try_fold(1usize, |a, i| xs.dim(i).and_then(|d| d.fixed()).map(|v| a * v));
                    let Some(inner) = inner else { return Ok(Some(false)) };
                    let back: Option<Vec<i64>> =
                        (0..rank).map(|i| xs.dim(i).and_then(|d| d.fixed()).map(|v| v as i64)).collect();
                    let back = back.unwrap_or_else(|| {
                        let mut v: Vec<i64> =
                            (0..rank).map(|i| xs.dim(i).and_then(|d| d.fixed()).map_or(-1, |v| v as i64)).collect();
                        if v.iter().filter(|&&d| d == -1).count() > 1 {
                            v.clear();
                        }
                        v
                    });
                    if back.is_empty() {
                        return Ok(Some(false));
                    }
                    let flat = self.push(
                        &format!("{name}/flatten"),
                        Op::Reshape(Reshape { shape: vec![-1, inner as i64] }),
                        vec![Some(x)],
                    )?;
                    let s =
                        self.push(&format!("{name}/softmax"), Op::Softmax(Softmax { beta: 1.0 }), vec![Some(flat)])?;
                    let y = self.push(name, Op::Reshape(Reshape { shape: back }), vec![Some(s)])?;
                    self.output(n, y);
                }
            }
            _ => return Ok(None),
        }
        Ok(Some(true))
    }
}
