//! RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR (align_corners, half_pixel_centers).

use super::*;
use qlite_ir::op::ResizeMode;

pub(crate) struct Resize;

impl Family for Resize {
    fn codes(&self) -> Codes {
        &[
            (B::RESIZE_NEAREST_NEIGHBOR, &["1.13.1", "1.14.0", "2.3.0", "2.4.0"]),
            (B::RESIZE_BILINEAR, &["1.7.0", "1.14.0", "2.2.0", "2.5.0"]),
        ]
    }

    fn read(&self, cx: &mut ReadCx<'_, '_>) -> Result<Option<Op>, String> {
        let op = cx.op;
        let size = cx.ints(1, "size")?;
        let &[h, w] = size.as_slice() else { return Err(format!("size has {} values, not 2", size.len())) };
        let dim = |v: i64| usize::try_from(v).ok().filter(|&v| (1..=1 << 20).contains(&v));
        let (Some(h), Some(w)) = (dim(h), dim(w)) else {
            return Err(format!("resize to {h}x{w}: sizes must be between 1 and 2^20"));
        };
        let (mode, (align_corners, half_pixel_centers)) = if cx.code == B::RESIZE_BILINEAR {
            let o = op.builtin_options_as_resize_bilinear_options();
            (ResizeMode::Bilinear, o.map_or((false, false), |o| (o.align_corners(), o.half_pixel_centers())))
        } else {
            let o = op.builtin_options_as_resize_nearest_neighbor_options();
            (ResizeMode::NearestNeighbor, o.map_or((false, false), |o| (o.align_corners(), o.half_pixel_centers())))
        };
        cx.inputs.truncate(1);
        Ok(Some(Op::Resize(qlite_ir::op::Resize { mode, size: [h, w], align_corners, half_pixel_centers })))
    }

    fn builtin(&self, n: &Node) -> Option<B> {
        match &n.op {
            Op::Resize(r) => Some(match r.mode {
                ResizeMode::NearestNeighbor => B::RESIZE_NEAREST_NEIGHBOR,
                ResizeMode::Bilinear => B::RESIZE_BILINEAR,
            }),
            _ => None,
        }
    }

    /// op_version.cc: int16 4; then bilinear: half_pixel_centers 3, nearest: align_corners or
    /// half_pixel_centers 3; int8 2.
    fn version(&self, v: &VersionCx<'_>) -> i32 {
        let Op::Resize(r) = &v.n.op else { return 1 };
        let x = v.dtype(0);
        let v3 = match r.mode {
            ResizeMode::Bilinear => r.half_pixel_centers,
            ResizeMode::NearestNeighbor => r.align_corners || r.half_pixel_centers,
        };
        if x == Some(DType::I16) {
            4
        } else if v3 {
            3
        } else if x == Some(DType::I8) {
            2
        } else {
            1
        }
    }

    fn options(&self, fbb: &mut FlatBufferBuilder<'_>, n: &Node, _g: &qlite_ir::Graph) -> Options {
        use fb::BuiltinOptions as O;
        match &n.op {
            Op::Resize(r) if r.mode == ResizeMode::Bilinear => {
                let args = fb::ResizeBilinearOptionsArgs {
                    align_corners: r.align_corners,
                    half_pixel_centers: r.half_pixel_centers,
                };
                (O::ResizeBilinearOptions, Some(fb::ResizeBilinearOptions::create(fbb, &args).as_union_value()))
            }
            Op::Resize(r) => {
                let args = fb::ResizeNearestNeighborOptionsArgs {
                    align_corners: r.align_corners,
                    half_pixel_centers: r.half_pixel_centers,
                };
                (
                    O::ResizeNearestNeighborOptions,
                    Some(fb::ResizeNearestNeighborOptions::create(fbb, &args).as_union_value()),
                )
            }
            _ => (O::NONE, None),
        }
    }

    fn aux(&self, n: &Node, _g: &Graph, base: &str) -> Result<Aux, WriteError> {
        let Op::Resize(r) = &n.op else { return Ok(Aux::default()) };
        aux_vector(n, base, "size", &[r.size[0] as i64, r.size[1] as i64])
    }
}
