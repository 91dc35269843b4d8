//! ONNX → IR: Resize and Upsample, in the coordinate modes that are TFLite's.

use super::*;

impl Importer {
    /// The resize family's ops; `Ok(None)`: `op_type` is not one of them.
    pub(super) fn resize_op(&mut self, n: &NodeProto, op_type: &str, name: &str) -> R<Option<bool>> {
        match op_type {
            "Resize" | "Upsample" => {
                let x = self.input(n, 0)?;
                let xs = self.shape_of(x);
                if xs.rank() != 4 {
                    return Ok(Some(false));
                }
                let (Some(ih), Some(iw)) = (xs.dim(2).and_then(|d| d.fixed()), xs.dim(3).and_then(|d| d.fixed()))
                else {
                    // TFLite resizes to a size: a scale of a height or width known only at run
                    // time has none until the input shape is fixed.
                    return Err(format!(
                        "the input's height and width are known only at run time ({xs}); TFLite resizes to a fixed size"
                    ));
                };
                // The output size: `sizes`, else the scales (an input from opset 9, an attribute
                // before). Only exact integer sizes map: TFLite resizes to a size, not a scale.
                let sizes_input = if op_type == "Resize" && self.opset >= 11 { 3 } else { usize::MAX };
                let scales_input = match (op_type, self.opset) {
                    ("Resize", o) if o >= 11 => 2,
                    ("Resize", _) | ("Upsample", 9) => 1,
                    _ => usize::MAX,
                };
                let sizes = self.const_ints(n, sizes_input, "sizes")?;
                let scales: Option<Vec<f32>> = match n.input.get(scales_input).filter(|s| !s.is_empty()) {
                    Some(sname) => match self.constant(sname) {
                        Some(c) => c.f32s().filter(|v| !v.is_empty()),
                        None => return Ok(Some(false)),
                    },
                    None => attr(n, "scales").map(|a| a.floats.clone()).filter(|v| !v.is_empty()),
                };
                let (oh, ow) = match (&sizes, &scales) {
                    (Some(sz), _) if sz.len() == 4 => {
                        if sz[0] != xs.dim(0).and_then(|d| d.fixed()).map_or(sz[0], |v| v as i64)
                            || Some(sz[1] as usize) != xs.dim(1).and_then(|d| d.fixed())
                        {
                            return Ok(Some(false));
                        }
                        (sz[2], sz[3])
                    }
                    (_, Some(sc)) if sc.len() == 4 && sc[0] == 1.0 && sc[1] == 1.0 => {
                        let (h, w) = (ih as f32 * sc[2], iw as f32 * sc[3]);
                        if h.fract() != 0.0 || w.fract() != 0.0 {
                            return Ok(Some(false));
                        }
                        (h as i64, w as i64)
                    }
                    _ => return Ok(Some(false)),
                };
                if !(1..=1 << 20).contains(&oh) || !(1..=1 << 20).contains(&ow) {
                    return Err(format!("resize to {oh}x{ow}: sizes must be between 1 and 2^20"));
                }
                let mode = attr_s(n, "mode").unwrap_or_else(|| "nearest".into());
                let ctm = if op_type == "Upsample" || self.opset < 11 {
                    "asymmetric".to_string()
                } else {
                    attr_s(n, "coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into())
                };
                let nearest_mode = if op_type == "Upsample" || self.opset < 11 {
                    "floor".to_string()
                } else {
                    attr_s(n, "nearest_mode").unwrap_or_else(|| "round_prefer_floor".into())
                };
                // TensorFlow's three coordinate rules, as ONNX spells them.
                let both_gt1 = oh > 1 && ow > 1;
                let flags = match (mode.as_str(), ctm.as_str(), nearest_mode.as_str()) {
                    ("linear" | "bilinear", "asymmetric", _) => Some((ResizeMode::Bilinear, false, false)),
                    ("linear" | "bilinear", "align_corners", _) => Some((ResizeMode::Bilinear, true, false)),
                    ("linear" | "bilinear", "half_pixel", _) => Some((ResizeMode::Bilinear, false, true)),
                    ("linear" | "bilinear", "pytorch_half_pixel", _) if both_gt1 => {
                        Some((ResizeMode::Bilinear, false, true))
                    }
                    ("nearest", "asymmetric", "floor") => Some((ResizeMode::NearestNeighbor, false, false)),
                    ("nearest", "align_corners", "round_prefer_ceil") => {
                        Some((ResizeMode::NearestNeighbor, true, false))
                    }
                    ("nearest", "half_pixel", "round_prefer_ceil") | ("nearest", "tf_half_pixel_for_nn", "floor") => {
                        Some((ResizeMode::NearestNeighbor, false, true))
                    }
                    _ => None,
                };
                let Some((rmode, align_corners, half_pixel_centers)) = flags else { return Ok(Some(false)) };
                let t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
                let op = Op::Resize(Resize {
                    mode: rmode,
                    size: [oh as usize, ow as usize],
                    align_corners,
                    half_pixel_centers,
                });
                let y = self.push(&format!("{name}/nhwc"), op, vec![Some(t)])?;
                let y = self.transpose(name, y, vec![0, 3, 1, 2])?;
                self.output(n, y);
            }
            _ => return Ok(None),
        }
        Ok(Some(true))
    }
}
