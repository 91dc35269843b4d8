//! Shapes with static and dynamic dimensions.

use std::fmt;

/// Largest rank the IR accepts. TFLite kernels handle at most 6 dimensions.
pub const MAX_RANK: usize = 8;

/// One dimension of a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Known size.
    Fixed(usize),
    /// Known only at run time (e.g. the batch dimension).
    Dynamic,
}

impl Dim {
    pub fn fixed(self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(n),
            Dim::Dynamic => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Dynamic => f.write_str("?"),
        }
    }
}

/// A tensor shape. Rank 0 is a scalar.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<Dim>);

impl Shape {
    pub fn new(dims: Vec<Dim>) -> Self {
        Shape(dims)
    }

    /// A fully static shape.
    pub fn fixed(dims: &[usize]) -> Self {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    pub fn scalar() -> Self {
        Shape(Vec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    pub fn dim(&self, i: usize) -> Option<Dim> {
        self.0.get(i).copied()
    }

    pub fn is_static(&self) -> bool {
        self.0.iter().all(|d| matches!(d, Dim::Fixed(_)))
    }

    /// All dimensions, when every one is known.
    pub fn to_fixed(&self) -> Option<Vec<usize>> {
        self.0.iter().map(|d| d.fixed()).collect()
    }

    /// Number of elements: `None` when a dimension is dynamic or the product overflows.
    pub fn num_elements(&self) -> Option<usize> {
        self.0.iter().try_fold(1usize, |acc, d| d.fixed().and_then(|n| acc.checked_mul(n)))
    }

    /// Number of bytes for `elem_size`-byte elements, with checked arithmetic.
    pub fn num_bytes(&self, elem_size: usize) -> Option<usize> {
        self.num_elements()?.checked_mul(elem_size)
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(v: Vec<Dim>) -> Self {
        Shape(v)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Element count of a fully known shape, checked.
pub fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(Shape::fixed(&[2, 3, 4]).num_elements(), Some(24));
        assert_eq!(Shape::scalar().num_elements(), Some(1));
        assert_eq!(Shape::new(vec![Dim::Dynamic, Dim::Fixed(3)]).num_elements(), None);
        assert_eq!(Shape::fixed(&[usize::MAX, 2]).num_elements(), None);
        assert_eq!(Shape::fixed(&[usize::MAX / 2, 1]).num_bytes(4), None);
        assert_eq!(format!("{}", Shape::new(vec![Dim::Dynamic, Dim::Fixed(3)])), "[?,3]");
    }
}
