//! ONNX → IR: Constants, identities, casts and shapes (Shape, ConstantOfShape; shape arithmetic is
//! folded, not kept).

use super::*;

impl Importer {
    /// The graph family's ops; `Ok(None)`: `op_type` is not one of them.
    pub(super) fn graph_op(&mut self, n: &NodeProto, op_type: &str, _name: &str) -> R<Option<bool>> {
        let first = n.input.first().cloned().unwrap_or_default();
        match op_type {
            "Identity" | "Dropout" => {
                let v = self.vals.get(&first).cloned().ok_or_else(|| format!("input {first:?} names no tensor"))?;
                self.alias(n, v);
            }
            "Constant" => {
                let a = n.attribute.first().ok_or("Constant without a value")?;
                let c = match (a.name.as_deref(), &a.t) {
                    (Some("value"), Some(t)) => tensor_value(t, &Ctx { model_dir: None }).map_err(|e| e.to_string())?,
                    (Some("value_float"), _) => f32_const(&[a.f.unwrap_or(0.0)], vec![]),
                    (Some("value_floats"), _) => f32_const(&a.floats, vec![a.floats.len()]),
                    (Some("value_int"), _) => {
                        ConstVal { dtype: DType::I64, dims: vec![], data: i64_bytes(&[a.i.unwrap_or(0)]) }
                    }
                    (Some("value_ints"), _) => ints_const(&a.ints),
                    _ => return Ok(Some(false)),
                };
                self.alias(n, Val::Const(c));
            }
            "Shape" => {
                let dims: Vec<SymDim> = match self.constant(&first) {
                    Some(c) => c.dims.iter().map(|&d| SymDim::Known(d as i64)).collect(),
                    None => {
                        let x = self.input(n, 0)?;
                        sym::shape_of(&self.shape_of(x), x.index())
                    }
                };
                // Opset 15's start / end: a slice of the shape.
                let len = dims.len() as i64;
                let (start, end) = (attr_i(n, "start", 0), attr_i(n, "end", len));
                let axis = SliceAxis { begin: start, end, stride: 1, ..Default::default() };
                let v = sym::strided_slice(&dims, axis).map_err(|e| e.to_string())?;
                self.alias(
                    n,
                    match sym_const(&v) {
                        Some(c) => Val::Const(c),
                        None => Val::Sym(v),
                    },
                );
            }
            "Cast" if self.is_sym(&first) => {
                let v = self.shape_value(&first).ok_or("missing shape value")?;
                self.alias(n, Val::Sym(v));
            }
            "Cast" => {
                let Some(c) = self.constant(&first) else { return Ok(Some(false)) };
                let to = attr_i(n, "to", 1);
                use proto::tensor_proto::DataType as D;
                let v = match (D::try_from(to as i32), c.i64s(), c.f32s()) {
                    (Ok(D::Int64 | D::Int32), Some(v), _) => ints_const(&v),
                    (Ok(D::Int64 | D::Int32), None, Some(f)) => {
                        ints_const(&f.iter().map(|&x| x as i64).collect::<Vec<_>>())
                    }
                    (Ok(D::Float), Some(v), _) => {
                        f32_const(&v.iter().map(|&x| x as f32).collect::<Vec<_>>(), c.dims.clone())
                    }
                    (Ok(D::Float), None, Some(f)) => f32_const(&f, c.dims.clone()),
                    _ => return Ok(Some(false)),
                };
                let dims = c.dims.clone();
                self.alias(n, Val::Const(ConstVal { dims, ..v }));
            }
            "ConstantOfShape" => {
                let dims = self.const_ints(n, 0, "shape")?.ok_or("ConstantOfShape needs a shape")?;
                let dims: Vec<usize> = dims
                    .iter()
                    .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
                    .collect::<R<_>>()?;
                let lim = &self.limits;
                let count = qlite_ir::shape::checked_product(&dims)
                    .filter(|&c| c as u64 <= lim.max_elements && (c as u64).saturating_mul(8) <= lim.max_tensor_bytes)
                    .ok_or_else(|| {
                        format!(
                            "ConstantOfShape {dims:?} is over the limits ({} elements, {} bytes; raise them with --max-elements / --max-tensor-bytes)",
                            lim.max_elements, lim.max_tensor_bytes
                        )
                    })?;
                let value = attr(n, "value")
                    .and_then(|a| a.t.as_ref())
                    .map(|t| tensor_value(t, &Ctx { model_dir: None }))
                    .transpose()
                    .map_err(|e| e.to_string())?;
                let c = match value {
                    Some(v) if v.dtype == DType::I64 => ConstVal {
                        dtype: DType::I64,
                        dims,
                        data: i64_bytes(&vec![v.i64s().and_then(|x| x.first().copied()).unwrap_or(0); count]),
                    },
                    Some(v) => f32_const(&vec![v.f32s().and_then(|x| x.first().copied()).unwrap_or(0.0); count], dims),
                    None => f32_const(&vec![0.0; count], dims),
                };
                self.alias(n, Val::Const(c));
            }
            _ => return Ok(None),
        }
        Ok(Some(true))
    }
}
