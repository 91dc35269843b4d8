//! The one comparison of two arrays that every oracle uses (the tests, the ONNX backend runner,
//! and — mirrored line for line — `xtask/conformance/check.py`; both are held to the shared
//! cases in `xtask/conformance/compare-cases.json`).
//!
//! The rules:
//! - dtypes and shapes must be equal (nothing is truncated to the shorter side);
//! - integers and booleans are compared exactly, whatever the tolerance;
//! - floats must satisfy `|ours − want| ≤ atol + rtol · max(|ours|, |want|)` element by element
//!   (`Tolerance::EXACT` is rtol = atol = 0: equal values);
//! - non-finite values must match in position and value: NaN only against NaN, +inf only
//!   against +inf, −inf only against −inf. [`Tolerance::allow_nonfinite`] relaxes that for a
//!   caller that really means it; nothing in the project does.
//!
//! A failure names the worst element (its index in the array's shape and both values) and how
//! many elements are out of tolerance.

use crate::array::{Array, Data};
use std::fmt;

/// How close two float arrays must be. Integer arrays are always compared exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
    /// Accept any non-finite value where the other side is non-finite too (off by default).
    pub nonfinite_any: bool,
}

impl Tolerance {
    /// Equal values (and equal non-finite values).
    pub const EXACT: Tolerance = Tolerance { rtol: 0.0, atol: 0.0, nonfinite_any: false };

    /// `|a − b| ≤ atol + rtol · max(|a|, |b|)`.
    pub const fn close(rtol: f64, atol: f64) -> Tolerance {
        Tolerance { rtol, atol, nonfinite_any: false }
    }

    /// Let a non-finite value match any other non-finite value (NaN against ±inf, +inf
    /// against −inf). Only for callers that compare something undefined on purpose.
    pub const fn allow_nonfinite(mut self) -> Tolerance {
        self.nonfinite_any = true;
        self
    }
}

/// How close two arrays that agree are.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Agreement {
    /// Largest `|ours − want|` over the finite elements.
    pub max_abs: f64,
    /// Largest `|ours − want| / max(|ours|, |want|)` over the finite, non-zero elements.
    pub max_rel: f64,
}

/// Why two arrays do not agree.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    DType {
        ours: String,
        want: String,
    },
    Shape {
        ours: Vec<usize>,
        want: Vec<usize>,
    },
    Values {
        /// Elements out of tolerance.
        count: usize,
        total: usize,
        /// The worst element: its index in the shape and both values.
        index: Vec<usize>,
        ours: String,
        want: String,
        /// `|ours − want|` there (infinite for a non-finite mismatch or an integer pair that
        /// differs by more than f64 holds).
        error: f64,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::DType { ours, want } => write!(f, "dtype {ours}, expected {want}"),
            Mismatch::Shape { ours, want } => write!(f, "shape {ours:?}, expected {want:?}"),
            Mismatch::Values { count, total, index, ours, want, error } => write!(
                f,
                "{count} of {total} elements differ; worst at {index:?}: {ours} vs expected {want} (|diff| {error:.3e})"
            ),
        }
    }
}

impl std::error::Error for Mismatch {}

/// Elements as f64 (exact for every dtype but i64 beyond 2^53, compared as integers below).
fn as_f64(d: &Data) -> Vec<f64> {
    match d {
        Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Data::F16(v) => v.iter().map(|x| f64::from(x.to_f32())).collect(),
        Data::BF16(v) => v.iter().map(|x| f64::from(x.to_f32())).collect(),
        Data::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Data::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Data::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Data::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
        Data::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
    }
}

fn is_float(d: &Data) -> bool {
    matches!(d, Data::F32(_) | Data::F16(_) | Data::BF16(_))
}

/// The index of flat element `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = i % d;
            i /= d;
        }
    }
    idx
}

/// Compare `ours` with `want` under `tol` (see the module docs for the rules).
pub fn compare(ours: &Array, want: &Array, tol: Tolerance) -> Result<Agreement, Mismatch> {
    if ours.dtype() != want.dtype() {
        return Err(Mismatch::DType { ours: ours.dtype().to_string(), want: want.dtype().to_string() });
    }
    if ours.shape() != want.shape() {
        return Err(Mismatch::Shape { ours: ours.shape().to_vec(), want: want.shape().to_vec() });
    }
    let worst = |count: usize, i: usize, a: String, b: String, error: f64| Mismatch::Values {
        count,
        total: ours.len(),
        index: unravel(i, ours.shape()),
        ours: a,
        want: b,
        error,
    };
    // i64 beyond 2^53 does not survive f64: compare those as integers.
    if let (Data::I64(a), Data::I64(b)) = (ours.data(), want.data()) {
        let bad: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        let Some(&w) = bad.iter().max_by_key(|&&i| a[i].abs_diff(b[i])) else {
            return Ok(Agreement::default());
        };
        return Err(worst(bad.len(), w, a[w].to_string(), b[w].to_string(), a[w].abs_diff(b[w]) as f64));
    }
    let float = is_float(ours.data());
    let (rtol, atol) = if float { (tol.rtol, tol.atol) } else { (0.0, 0.0) };
    let (a, b) = (as_f64(ours.data()), as_f64(want.data()));
    let mut agreement = Agreement::default();
    let mut count = 0;
    // The worst element: any non-finite mismatch first, then the largest excess over the
    // tolerance.
    let mut worst_at: Option<(usize, f64)> = None;
    for i in 0..a.len() {
        let (x, y) = (a[i], b[i]);
        let excess = if !x.is_finite() || !y.is_finite() {
            let same = (x.is_nan() && y.is_nan()) || x == y;
            let both_nonfinite = !x.is_finite() && !y.is_finite();
            if same || (tol.nonfinite_any && both_nonfinite) { None } else { Some(f64::INFINITY) }
        } else {
            let err = (x - y).abs();
            let scale = x.abs().max(y.abs());
            agreement.max_abs = agreement.max_abs.max(err);
            if scale > 0.0 {
                agreement.max_rel = agreement.max_rel.max(err / scale);
            }
            let allowed = atol + rtol * scale;
            (err > allowed).then_some(err - allowed)
        };
        if let Some(e) = excess {
            count += 1;
            if worst_at.is_none_or(|(_, w)| e > w) {
                worst_at = Some((i, e));
            }
        }
    }
    match worst_at {
        None => Ok(agreement),
        Some((i, _)) => {
            let show = |v: f64| if float { format!("{v:?}") } else { format!("{}", v as i64) };
            Err(worst(count, i, show(a[i]), show(b[i]), (a[i] - b[i]).abs()))
        }
    }
}

/// [`compare`] over two lists of arrays (a model's outputs): the counts must be equal and
/// every pair must agree; the error names the output.
pub fn compare_all(ours: &[Array], want: &[Array], tol: Tolerance) -> Result<Agreement, String> {
    if ours.len() != want.len() {
        return Err(format!("{} outputs, expected {}", ours.len(), want.len()));
    }
    let mut all = Agreement::default();
    for (k, (o, w)) in ours.iter().zip(want).enumerate() {
        let a = compare(o, w, tol).map_err(|e| format!("output {k}: {e}"))?;
        all.max_abs = all.max_abs.max(a.max_abs);
        all.max_rel = all.max_rel.max(a.max_rel);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &[f32]) -> Array {
        Array::f32(vec![v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn nan_and_truncation_fail() {
        let t = Tolerance::close(1e-4, 0.0);
        // The defects the old rel_err let through: all-NaN output, truncated output.
        assert!(compare(&f(&[f32::NAN, f32::NAN]), &f(&[1.0, 2.0]), t).is_err());
        assert!(compare(&f(&[1.0]), &f(&[1.0, 2.0]), t).is_err());
        assert!(compare(&f(&[f32::INFINITY]), &f(&[f32::NEG_INFINITY]), t).is_err());
        assert!(compare(&f(&[f32::NAN]), &f(&[f32::INFINITY]), t).is_err());
        assert!(compare(&f(&[f32::NAN, f32::INFINITY]), &f(&[f32::NAN, f32::INFINITY]), t).is_ok());
        assert!(compare(&f(&[f32::NAN]), &f(&[f32::INFINITY]), t.allow_nonfinite()).is_ok());
    }

    #[test]
    fn the_worst_element_is_named_by_its_index() {
        let a = Array::f32(vec![2, 2], vec![1.0, 2.0, 3.0, 9.0]).unwrap();
        let b = Array::f32(vec![2, 2], vec![1.0, 2.5, 3.0, 4.0]).unwrap();
        let e = compare(&a, &b, Tolerance::close(1e-5, 0.0)).unwrap_err();
        assert_eq!(e.to_string(), "2 of 4 elements differ; worst at [1, 1]: 9.0 vs expected 4.0 (|diff| 5.000e0)");
    }

    #[test]
    fn integers_ignore_the_tolerance() {
        let a = Array::new(vec![3], Data::I8(vec![1, 2, 3])).unwrap();
        let b = Array::new(vec![3], Data::I8(vec![1, 2, 4])).unwrap();
        assert!(compare(&a, &b, Tolerance::close(1.0, 1.0)).is_err());
        let big = Array::new(vec![1], Data::I64(vec![1 << 60])).unwrap();
        let big1 = Array::new(vec![1], Data::I64(vec![(1 << 60) + 1])).unwrap();
        assert!(compare(&big, &big1, Tolerance::EXACT).is_err());
        assert!(compare(&a, &f(&[1.0, 2.0, 3.0]), Tolerance::EXACT).is_err());
    }
}
