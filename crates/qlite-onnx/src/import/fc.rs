//! ONNX → IR: MatMul and Gemm: FULLY_CONNECTED with a constant B, BATCH_MATMUL with two run-time
//! operands.

use super::*;

impl Importer {
    /// The fc family's ops; `Ok(None)`: `op_type` is not one of them.
    pub(super) fn fc_op(&mut self, n: &NodeProto, op_type: &str, name: &str) -> R<Option<bool>> {
        match op_type {
            // Both operands at run time (attention scores, values): BATCH_MATMUL.
            "MatMul" if n.input.get(1).is_some_and(|s| self.constant(s).is_none()) => {
                let (a, b) = (self.input(n, 0)?, self.input(n, 1)?);
                if self.shape_of(a).rank() < 2 || self.shape_of(b).rank() < 2 {
                    return Ok(Some(false));
                }
                let y = self.push(
                    name,
                    Op::BatchMatMul(BatchMatMul { adj_x: false, adj_y: false }),
                    vec![Some(a), Some(b)],
                )?;
                self.output(n, y);
            }
            "Gemm" | "MatMul" => {
                let mut x = self.input(n, 0)?;
                let bname = n.input.get(1).cloned().unwrap_or_default();
                let Some(b) = self.constant(&bname).filter(|c| c.dims.len() == 2) else { return Ok(Some(false)) };
                if b.dtype != DType::F32 {
                    return Err("weights must be float".into());
                }
                let (trans_a, trans_b) =
                    if op_type == "Gemm" { (attr_i(n, "transA", 0), attr_i(n, "transB", 0)) } else { (0, 0) };
                if trans_a != 0 {
                    if self.shape_of(x).rank() != 2 {
                        return Err(format!("Gemm input must be 2-D, got {}", self.shape_of(x)));
                    }
                    x = self.transpose(&format!("{name}/transpose_a"), x, vec![1, 0])?;
                }
                let alpha = if op_type == "Gemm" { attr_f(n, "alpha", 1.0) } else { 1.0 };
                let beta = if op_type == "Gemm" { attr_f(n, "beta", 1.0) } else { 1.0 };
                // FULLY_CONNECTED wants [units, depth].
                let bv = || b.f32s().unwrap_or_default();
                let (units, depth, w): (usize, usize, Vec<f32>) = if trans_b != 0 && alpha == 1.0 {
                    (b.dims[0], b.dims[1], Vec::new())
                } else if trans_b != 0 {
                    (b.dims[0], b.dims[1], bv().iter().map(|v| v * alpha).collect())
                } else {
                    let (k, m) = (b.dims[0], b.dims[1]);
                    let bv = bv();
                    let mut t = vec![0f32; k * m];
                    for r in 0..k {
                        for c in 0..m {
                            t[c * k + r] = bv[r * m + c] * alpha;
                        }
                    }
                    (m, k, t)
                };
                let xr = self.shape_of(x).rank();
                if op_type == "Gemm" && xr != 2 {
                    return Err(format!("Gemm input must be 2-D, got {}", self.shape_of(x)));
                }
                // transB = 1 with alpha = 1 (PyTorch's nn.Linear) is already FULLY_CONNECTED's
                // layout: keep the initializer's bytes (memory-mapped), no copy.
                let data = if trans_b != 0 && alpha == 1.0 {
                    b.data.clone()
                } else {
                    // Read for the last time: the file's mapped pages can go.
                    qlite_ir::hint::constant_consumed(&b.data);
                    f32_bytes(&w)
                };
                drop(w);
                let wt = self.new_const(&bname, DType::F32, &[units, depth], data);
                let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
                    Some(cn) => {
                        let c = self.constant(cn).and_then(|c| c.f32s()).ok_or("Gemm C must be a float constant")?;
                        let full: Vec<f32> = if c.len() == units {
                            c.iter().map(|v| v * beta).collect()
                        } else if c.len() == 1 {
                            vec![c[0] * beta; units]
                        } else {
                            return Ok(Some(false));
                        };
                        Some(self.new_const(cn, DType::F32, &[units], f32_bytes(&full)))
                    }
                    None => None,
                };
                let op = Op::FullyConnected(FullyConnected {
                    activation: Activation::None,
                    keep_num_dims: xr > 2,
                    asymmetric_inputs: false,
                });
                let y = self.push(name, op, vec![Some(x), Some(wt), bias])?;
                if let Some(o) = n.output.first() {
                    self.convs.insert(o.clone(), (self.g.nodes().len() - 1, wt, bias, 0));
                }
                self.output(n, y);
            }
            _ => return Ok(None),
        }
        Ok(Some(true))
    }
}
