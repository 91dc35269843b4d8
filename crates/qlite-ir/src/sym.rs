//! Shape arithmetic over symbolic dimensions, shared by every reader.
//!
//! A model that keeps its batch dynamic computes a reshape's target at run time: TensorFlow's
//! converter writes `SHAPE → STRIDED_SLICE → PACK → RESHAPE` for a Keras Flatten, tf2onnx and
//! PyTorch write `Shape → Gather/Slice → Unsqueeze → Concat → Reshape`, a SavedModel holds
//! `Shape → StridedSlice → Pack → Reshape`. The readers evaluate such chains at import over
//! [`SymDim`]s — a known integer, or a dimension known only at run time named by where it
//! comes from — and turn the reshape into a constant target with at most one `-1`. Nothing of
//! the chain is left in the graph.

use crate::shape::{Dim, Shape};

/// One integer of a shape vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymDim {
    Known(i64),
    /// Known only at run time: dimension `axis` of the tensor numbered `tensor` (the reader's
    /// numbering). Two equal `Var`s are the same size.
    Var {
        tensor: usize,
        axis: usize,
    },
    /// Known only at run time, computed from other dims (a product with a `Var`).
    Runtime,
}

impl SymDim {
    pub fn known(self) -> Option<i64> {
        match self {
            SymDim::Known(v) => Some(v),
            SymDim::Var { .. } | SymDim::Runtime => None,
        }
    }
}

/// A value of shape arithmetic: an integer scalar or a 1-D integer vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymVal {
    Scalar(SymDim),
    Vector(Vec<SymDim>),
}

impl SymVal {
    /// The integers, when every one is known.
    pub fn known(&self) -> Option<Vec<i64>> {
        match self {
            SymVal::Scalar(d) => Some(vec![d.known()?]),
            SymVal::Vector(v) => v.iter().map(|d| d.known()).collect(),
        }
    }

    /// The value as a vector (a scalar is one element).
    pub fn elements(&self) -> Vec<SymDim> {
        match self {
            SymVal::Scalar(d) => vec![*d],
            SymVal::Vector(v) => v.clone(),
        }
    }

    pub fn from_ints(v: &[i64]) -> SymVal {
        SymVal::Vector(v.iter().map(|&x| SymDim::Known(x)).collect())
    }
}

/// Shape arithmetic that cannot be followed (the message says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SymError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, SymError> {
    Err(SymError(m.into()))
}

/// SHAPE / Shape of a tensor numbered `tensor`: its fixed dims known, its dynamic ones named.
pub fn shape_of(shape: &Shape, tensor: usize) -> Vec<SymDim> {
    shape
        .dims()
        .iter()
        .enumerate()
        .map(|(axis, d)| match d {
            Dim::Fixed(n) => SymDim::Known(*n as i64),
            Dim::Dynamic => SymDim::Var { tensor, axis },
        })
        .collect()
}

/// One axis of a strided slice, with TensorFlow's masks (ONNX's Slice is this without masks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SliceAxis {
    pub begin: i64,
    pub end: i64,
    pub stride: i64,
    /// Ignore `begin`: start at the first element (the last for a negative stride).
    pub begin_mask: bool,
    /// Ignore `end`: run to the end.
    pub end_mask: bool,
    /// Take the single element at `begin` as a scalar.
    pub shrink: bool,
}

/// A strided slice of a 1-D vector, as TensorFlow's STRIDED_SLICE (and ONNX's Slice: begin and
/// end clamped into range, negative values counted from the end).
pub fn strided_slice(v: &[SymDim], s: SliceAxis) -> Result<SymVal, SymError> {
    let len = v.len() as i64;
    let norm = |x: i64| if x < 0 { x.saturating_add(len) } else { x };
    if s.shrink {
        let i = norm(s.begin);
        return match usize::try_from(i).ok().and_then(|i| v.get(i)) {
            Some(d) => Ok(SymVal::Scalar(*d)),
            None => err(format!("index {} is outside a shape of {len} values", s.begin)),
        };
    }
    if s.stride == 0 {
        return err("stride 0");
    }
    let (b, e) = if s.stride > 0 {
        (
            if s.begin_mask { 0 } else { norm(s.begin).clamp(0, len) },
            if s.end_mask { len } else { norm(s.end).clamp(0, len) },
        )
    } else {
        (
            if s.begin_mask { len - 1 } else { norm(s.begin).clamp(-1, len - 1) },
            if s.end_mask { -1 } else { norm(s.end).clamp(-1, len - 1) },
        )
    };
    let mut out = Vec::new();
    let mut i = b;
    while (s.stride > 0 && i < e) || (s.stride < 0 && i > e) {
        if let Some(d) = usize::try_from(i).ok().and_then(|i| v.get(i)) {
            out.push(*d);
        }
        i = i.saturating_add(s.stride);
    }
    Ok(SymVal::Vector(out))
}

/// GATHER / Gather of a vector by constant indices (negative counted from the end). A scalar
/// index gives a scalar.
pub fn gather(v: &[SymDim], indices: &[i64], scalar: bool) -> Result<SymVal, SymError> {
    let len = v.len() as i64;
    let picked = indices
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + len } else { i };
            usize::try_from(j)
                .ok()
                .and_then(|j| v.get(j).copied())
                .ok_or_else(|| SymError(format!("index {i} is outside a shape of {len} values")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match (scalar, picked.as_slice()) {
        (true, [d]) => Ok(SymVal::Scalar(*d)),
        (true, _) => err("a scalar gather needs one index"),
        _ => Ok(SymVal::Vector(picked)),
    }
}

/// PACK / Concat / Unsqueeze-then-Concat along axis 0: the elements of every part in order.
pub fn concat(parts: &[SymVal]) -> SymVal {
    SymVal::Vector(parts.iter().flat_map(SymVal::elements).collect())
}

/// REDUCE_PROD / ONNX `Mul` of shape values: known when every factor is, else a run-time dim.
pub fn product(v: &[SymDim]) -> Result<SymDim, SymError> {
    let mut p: i64 = 1;
    for d in v {
        match d.known() {
            Some(x) => p = p.checked_mul(x).ok_or_else(|| SymError("a shape product overflows".into()))?,
            None => return Ok(SymDim::Runtime),
        }
    }
    Ok(SymDim::Known(p))
}

/// Integer arithmetic on shape values (TFLite MUL/ADD/SUB/FLOOR_DIV, ONNX Mul/Add/Sub/Div,
/// TensorFlow Mul/AddV2/Sub/FloorDiv on the output of Shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymOp {
    Add,
    Sub,
    Mul,
    /// Division rounding toward negative infinity (TensorFlow FloorDiv, TFLite FLOOR_DIV).
    FloorDiv,
    /// Division rounding toward zero (ONNX integer Div).
    TruncDiv,
    Max,
    Min,
}

/// `a (op) b` elementwise, a scalar or a one-element vector broadcast against the other. Known
/// values compute (checked: overflow and division by zero are errors); `x·1`, `x+0`, `x−0` and
/// `x/1` keep a run-time dim's identity, `x·0` is 0, anything else with a run-time dim is a
/// run-time dim.
pub fn binary(op: SymOp, a: &SymVal, b: &SymVal) -> Result<SymVal, SymError> {
    let (x, y) = (a.elements(), b.elements());
    let n = match (x.len(), y.len()) {
        (p, q) if p == q => p,
        (1, q) => q,
        (p, 1) => p,
        (p, q) => return Err(SymError(format!("shape values of {p} and {q} elements do not broadcast"))),
    };
    let pick = |v: &[SymDim], i: usize| if v.len() == 1 { v[0] } else { v[i] };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(one_binary(op, pick(&x, i), pick(&y, i))?);
    }
    Ok(match (a, b) {
        (SymVal::Scalar(_), SymVal::Scalar(_)) => SymVal::Scalar(out[0]),
        _ => SymVal::Vector(out),
    })
}

fn one_binary(op: SymOp, a: SymDim, b: SymDim) -> Result<SymDim, SymError> {
    let overflow = || SymError(format!("shape arithmetic overflows ({op:?})"));
    match (a.known(), b.known()) {
        (Some(p), Some(q)) => {
            let v = match op {
                SymOp::Add => p.checked_add(q),
                SymOp::Sub => p.checked_sub(q),
                SymOp::Mul => p.checked_mul(q),
                SymOp::FloorDiv | SymOp::TruncDiv if q == 0 => {
                    return Err(SymError("shape arithmetic divides by zero".into()));
                }
                SymOp::FloorDiv => p.checked_div(q).map(|d| if p % q != 0 && (p < 0) != (q < 0) { d - 1 } else { d }),
                SymOp::TruncDiv => p.checked_div(q),
                SymOp::Max => Some(p.max(q)),
                SymOp::Min => Some(p.min(q)),
            };
            v.map(SymDim::Known).ok_or_else(overflow)
        }
        (None, Some(q)) => Ok(match (op, q) {
            (SymOp::Mul | SymOp::FloorDiv | SymOp::TruncDiv, 1) | (SymOp::Add | SymOp::Sub, 0) => a,
            (SymOp::Mul, 0) => SymDim::Known(0),
            _ => SymDim::Runtime,
        }),
        (Some(p), None) => Ok(match (op, p) {
            (SymOp::Mul, 1) | (SymOp::Add, 0) => b,
            (SymOp::Mul, 0) => SymDim::Known(0),
            _ => SymDim::Runtime,
        }),
        (None, None) => Ok(SymDim::Runtime),
    }
}

/// The constant target of a RESHAPE of `input` (the shape of the tensor numbered
/// `input_tensor`) to `target`: every known value kept, and the run-time dims turned into one
/// `-1`. A `Var` of the input's own shape that the target repeats cancels, so
/// `[batch, -1]` of `[batch, 4, 4, 8]` is `[-1, 128]`. Fails when more than one value stays
/// unknown.
pub fn reshape_target(input: &[SymDim], target: &[SymDim]) -> Result<Vec<i64>, SymError> {
    let unknown: Vec<usize> =
        (0..target.len()).filter(|&i| !matches!(target[i], SymDim::Known(v) if v != -1)).collect();
    if unknown.len() <= 1 {
        return Ok(target.iter().map(|d| d.known().unwrap_or(-1)).collect());
    }
    // Cancel the target's Vars against the input's: the rest of the input must be known.
    let mut rest: Vec<SymDim> = input.to_vec();
    let mut out: Vec<Option<i64>> = target.iter().map(|d| d.known().filter(|&v| v != -1)).collect();
    let mut cancelled = Vec::new();
    for &i in &unknown {
        if let SymDim::Var { .. } = target[i]
            && let Some(p) = rest.iter().position(|d| *d == target[i])
        {
            rest.remove(p);
            cancelled.push(i);
        }
    }
    let open: Vec<usize> = unknown.iter().copied().filter(|i| !cancelled.contains(i)).collect();
    let (Some(rest_known), [slot]) = (rest.iter().map(|d| d.known()).collect::<Option<Vec<i64>>>(), open.as_slice())
    else {
        return err(format!("the reshape target {} has {} values known only at run time", show(target), unknown.len()));
    };
    let total: i64 = rest_known.iter().product();
    let known: i64 = out.iter().flatten().product();
    if known == 0 || total % known != 0 {
        return err(format!("the reshape target {} does not divide the input {}", show(target), show(input)));
    }
    out[*slot] = Some(total / known);
    // The cancelled Vars stay run-time: one of them becomes the -1 (they are one dim each).
    if cancelled.len() != 1 {
        return err(format!("the reshape target {} has {} values known only at run time", show(target), unknown.len()));
    }
    Ok(out.iter().map(|d| d.unwrap_or(-1)).collect())
}

/// `[?, 4, 8]`-style text of a shape vector.
pub fn show(v: &[SymDim]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|d| match d {
            SymDim::Known(n) => n.to_string(),
            SymDim::Var { .. } | SymDim::Runtime => "?".into(),
        })
        .collect();
    format!("[{}]", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: SymDim = SymDim::Var { tensor: 3, axis: 0 };
    fn k(v: i64) -> SymDim {
        SymDim::Known(v)
    }

    #[test]
    fn keras_flatten_chain() {
        // SHAPE([?,4,4,8]) → STRIDED_SLICE[0:1] shrink → PACK(·, 128) → RESHAPE
        let s = shape_of(&Shape::new(vec![Dim::Dynamic, Dim::Fixed(4), Dim::Fixed(4), Dim::Fixed(8)]), 3);
        let batch =
            strided_slice(&s, SliceAxis { begin: 0, end: 1, stride: 1, shrink: true, ..Default::default() }).unwrap();
        assert_eq!(batch, SymVal::Scalar(B));
        let target = concat(&[batch, SymVal::Scalar(k(128))]);
        assert_eq!(reshape_target(&s, &target.elements()).unwrap(), vec![-1, 128]);
        // [batch, -1]: the batch cancels against the input's.
        assert_eq!(reshape_target(&s, &[B, k(-1)]).unwrap(), vec![-1, 128]);
        // Another tensor's run-time dim after the batch cancels: the only size that fits.
        assert_eq!(reshape_target(&s, &[B, SymDim::Var { tensor: 9, axis: 1 }]).unwrap(), vec![-1, 128]);
        let two = [B, SymDim::Var { tensor: 9, axis: 1 }, SymDim::Var { tensor: 9, axis: 2 }];
        assert!(reshape_target(&s, &two).unwrap_err().to_string().contains("3 values known only at run time"));
        assert!(reshape_target(&s, &[k(-1), k(-1)]).is_err());
        assert!(reshape_target(&s, &[B, k(-1), k(7)]).unwrap_err().to_string().contains("does not divide"));
        // TensorFlow's Tensordot: [prod(batch, 16), 6].
        let rows = product(&[B, k(16)]).unwrap();
        assert_eq!(rows, SymDim::Runtime);
        assert_eq!(reshape_target(&s, &[rows, k(6)]).unwrap(), vec![-1, 6]);
        assert_eq!(product(&[k(4), k(6)]).unwrap(), k(24));
        assert!(product(&[k(i64::MAX), k(2)]).is_err());
    }

    #[test]
    fn integer_arithmetic_on_shape_values() {
        // Keras 3's UpSampling2D: [batch, h·2, w, c] from Shape.
        let s = [B, k(4), k(5), k(3)];
        let h = SymVal::Scalar(s[1]);
        assert_eq!(binary(SymOp::Mul, &h, &SymVal::Scalar(k(2))).unwrap(), SymVal::Scalar(k(8)));
        // A run-time dim keeps its identity through ·1 and +0, and becomes anonymous otherwise.
        let b = SymVal::Scalar(B);
        assert_eq!(binary(SymOp::Mul, &b, &SymVal::Scalar(k(1))).unwrap(), b);
        assert_eq!(binary(SymOp::Add, &SymVal::Scalar(k(0)), &b).unwrap(), b);
        assert_eq!(binary(SymOp::Mul, &b, &SymVal::Scalar(k(3))).unwrap(), SymVal::Scalar(SymDim::Runtime));
        assert_eq!(binary(SymOp::Mul, &b, &SymVal::Scalar(k(0))).unwrap(), SymVal::Scalar(k(0)));
        // Vectors elementwise, a scalar broadcast.
        let v = SymVal::Vector(s.to_vec());
        let doubled = binary(SymOp::Mul, &v, &SymVal::Vector(vec![k(1), k(2), k(2), k(1)])).unwrap();
        assert_eq!(doubled, SymVal::Vector(vec![B, k(8), k(10), k(3)]));
        assert_eq!(
            binary(SymOp::FloorDiv, &SymVal::from_ints(&[7, -7]), &SymVal::Scalar(k(2))).unwrap(),
            SymVal::from_ints(&[3, -4])
        );
        assert_eq!(
            binary(SymOp::TruncDiv, &SymVal::from_ints(&[7, -7]), &SymVal::Scalar(k(2))).unwrap(),
            SymVal::from_ints(&[3, -3])
        );
        assert_eq!(
            binary(SymOp::FloorDiv, &SymVal::Scalar(k(7)), &SymVal::Scalar(k(-2))).unwrap(),
            SymVal::Scalar(k(-4))
        );
        assert!(binary(SymOp::FloorDiv, &h, &SymVal::Scalar(k(0))).is_err());
        assert!(binary(SymOp::Mul, &SymVal::Scalar(k(i64::MAX)), &SymVal::Scalar(k(2))).is_err());
        assert!(binary(SymOp::Add, &SymVal::from_ints(&[1, 2]), &SymVal::from_ints(&[1, 2, 3])).is_err());
    }

    #[test]
    fn slices_follow_tensorflow() {
        let v = [k(1), k(2), k(3), k(4)];
        let sl = |begin, end, stride| SliceAxis { begin, end, stride, ..Default::default() };
        assert_eq!(strided_slice(&v, sl(1, 3, 1)).unwrap(), SymVal::from_ints(&[2, 3]));
        assert_eq!(strided_slice(&v, sl(-1, -5, -1)).unwrap(), SymVal::from_ints(&[4, 3, 2, 1]));
        assert_eq!(strided_slice(&v, sl(0, 100, 2)).unwrap(), SymVal::from_ints(&[1, 3]));
        let masked = SliceAxis { begin: 3, end: 0, stride: 1, begin_mask: true, end_mask: true, shrink: false };
        assert_eq!(strided_slice(&v, masked).unwrap(), SymVal::from_ints(&[1, 2, 3, 4]));
        assert!(strided_slice(&v, sl(0, 1, 0)).is_err());
        assert_eq!(gather(&v, &[-1, 0], false).unwrap(), SymVal::from_ints(&[4, 1]));
        assert!(gather(&v, &[4], false).is_err());
    }
}
