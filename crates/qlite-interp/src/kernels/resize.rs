//! RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR, for every dtype (nearest copies bytes; bilinear
//! follows the float and the integer reference arithmetic).

use super::*;

/// RESIZE_NEAREST_NEIGHBOR of any dtype (the bytes copied, as LiteRT's kernel copies them).
pub fn resize_nearest(op: &Resize, x: &Array) -> Result<Data, String> {
    let &[n, ih, iw, c] = x.shape() else { return Err("Resize needs a rank-4 input".into()) };
    let [oh, ow] = op.size;
    if ih == 0 || iw == 0 {
        return Err("Resize of an empty image".into());
    }
    let ys: Vec<usize> = (0..oh).map(|y| op.nearest(y, ih, oh)).collect();
    let xs: Vec<usize> = (0..ow).map(|v| op.nearest(v, iw, ow)).collect();
    let mut src = Vec::with_capacity(n * oh * ow * c);
    for b in 0..n {
        for &y in &ys {
            for &v in &xs {
                let base = ((b * ih + y) * iw + v) * c;
                src.extend(base..base + c);
            }
        }
    }
    Ok(x.data().gather(&src))
}

/// RESIZE_BILINEAR: float as reference_ops::ResizeBilinear (the same float operations in the
/// same order), integers as ResizeBilinearInteger (10-bit fixed-point positions, products in
/// 20 bits, rounded half away from zero).
pub fn resize_bilinear(op: &Resize, x: &Array) -> Result<Data, String> {
    let &[n, ih, iw, c] = x.shape() else { return Err("Resize needs a rank-4 input".into()) };
    let [oh, ow] = op.size;
    if ih == 0 || iw == 0 || oh == 0 || ow == 0 {
        return Err("Resize of an empty image".into());
    }
    let at = |b: usize, y: usize, v: usize, k: usize| ((b * ih + y) * iw + v) * c + k;
    match x.data() {
        Data::F32(v) => {
            let scale = |i: usize, o: usize| {
                if op.align_corners && o > 1 { (i - 1) as f32 / (o - 1) as f32 } else { i as f32 / o as f32 }
            };
            let axis = |o: usize, s: f32, size: usize| -> Vec<(f32, usize, usize)> {
                (0..o)
                    .map(|p| {
                        let sv = if op.half_pixel_centers { (p as f32 + 0.5) * s - 0.5 } else { p as f32 * s };
                        let lo = (sv.floor() as i32).max(0) as usize;
                        let hi = (sv.ceil() as i32).min(size as i32 - 1).max(0) as usize;
                        (sv, lo, hi)
                    })
                    .collect()
            };
            let (ys, xs) = (axis(oh, scale(ih, oh), ih), axis(ow, scale(iw, ow), iw));
            let mut out = Vec::with_capacity(n * oh * ow * c);
            for b in 0..n {
                for &(iy, y0, y1) in &ys {
                    for &(ix, x0, x1) in &xs {
                        let (dy, dx) = (iy - y0 as f32, ix - x0 as f32);
                        for k in 0..c {
                            out.push(
                                v[at(b, y0, x0, k)] * (1.0 - dy) * (1.0 - dx)
                                    + v[at(b, y1, x0, k)] * dy * (1.0 - dx)
                                    + v[at(b, y0, x1, k)] * (1.0 - dy) * dx
                                    + v[at(b, y1, x1, k)] * dy * dx,
                            );
                        }
                    }
                }
            }
            Ok(Data::F32(out))
        }
        d => {
            let vals: Vec<i64> = match d {
                Data::I8(v) => v.iter().map(|&q| q as i64).collect(),
                Data::U8(v) => v.iter().map(|&q| q as i64).collect(),
                Data::I16(v) => v.iter().map(|&q| q as i64).collect(),
                d => return Err(format!("RESIZE_BILINEAR of {} is not supported", d.dtype())),
            };
            let scale10 = |i: usize, o: usize| -> i64 {
                let (i, o) = (i as i64, o as i64);
                if op.align_corners && o > 1 {
                    ((1 << 10) * (i - 1) + (o - 1) / 2) / (o - 1)
                } else {
                    ((1 << 10) * i + o / 2) / o
                }
            };
            let axis = |o: usize, s: i64, size: usize| -> Vec<(i64, usize, usize)> {
                (0..o as i64)
                    .map(|p| {
                        let sv = if op.half_pixel_centers { p * s + s / 2 - (1 << 9) } else { p * s };
                        // C++ integer division truncates toward zero.
                        let lo = (sv / (1 << 10)).max(0) as usize;
                        let hi = ((sv + (1 << 10) - 1) / (1 << 10)).min(size as i64 - 1).max(0) as usize;
                        (sv, lo, hi)
                    })
                    .collect()
            };
            let (ys, xs) = (axis(oh, scale10(ih, oh), ih), axis(ow, scale10(iw, ow), iw));
            let mut out = Vec::with_capacity(n * oh * ow * c);
            for b in 0..n {
                for &(iy, y0, y1) in &ys {
                    for &(ix, x0, x1) in &xs {
                        let fy = iy - (1 << 10) * y0 as i64;
                        let fx = ix - (1 << 10) * x0 as i64;
                        for k in 0..c {
                            let o20 = vals[at(b, y0, x0, k)] * ((1 << 10) - fy) * ((1 << 10) - fx)
                                + vals[at(b, y1, x0, k)] * fy * ((1 << 10) - fx)
                                + vals[at(b, y0, x1, k)] * ((1 << 10) - fy) * fx
                                + vals[at(b, y1, x1, k)] * fy * fx;
                            let round = if o20 > 0 { 1 << 19 } else { -(1 << 19) };
                            out.push((o20 + round) / (1 << 20));
                        }
                    }
                }
            }
            Ok(match d {
                Data::I8(_) => Data::I8(out.into_iter().map(|v| v as i8).collect()),
                Data::U8(_) => Data::U8(out.into_iter().map(|v| v as u8).collect()),
                _ => Data::I16(out.into_iter().map(|v| v as i16).collect()),
            })
        }
    }
}
