//! Affine quantization parameters.

use crate::dtype::DType;
use std::fmt;

/// `real = scale * (q - zero_point)`, per tensor (one scale) or per channel along `axis`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantParams {
    scales: Vec<f32>,
    zero_points: Vec<i64>,
    axis: Option<usize>,
}

/// Why a set of quantization parameters is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("quantization has no scales")]
    Empty,
    #[error("quantization has {scales} scales but {zero_points} zero points")]
    LengthMismatch { scales: usize, zero_points: usize },
    #[error("quantization scale #{index} is {value}: scales must be finite and > 0")]
    BadScale { index: usize, value: f32 },
    #[error("quantization zero point #{index} is {value}, outside the {dtype} range")]
    ZeroPointRange { index: usize, value: i64, dtype: DType },
    #[error("dtype {0} cannot carry affine quantization")]
    NotQuantizable(DType),
    #[error("quantization axis {axis} is outside rank {rank}")]
    AxisRange { axis: usize, rank: usize },
    #[error("per-channel quantization along axis {axis} has {count} scales but the dimension is {dim}")]
    ChannelCount { axis: usize, count: usize, dim: usize },
    #[error("{count} scales need a quantization axis")]
    MissingAxis { count: usize },
}

impl QuantParams {
    /// Per-tensor parameters. Validated against a dtype with [`QuantParams::validate`].
    pub fn per_tensor(scale: f32, zero_point: i64) -> Self {
        QuantParams { scales: vec![scale], zero_points: vec![zero_point], axis: None }
    }

    /// Per-channel parameters along `axis`.
    pub fn per_channel(scales: Vec<f32>, zero_points: Vec<i64>, axis: usize) -> Self {
        QuantParams { scales, zero_points, axis: Some(axis) }
    }

    /// Build from raw parts (as stored in a file); call [`QuantParams::validate`] before use.
    pub fn from_parts(scales: Vec<f32>, zero_points: Vec<i64>, axis: Option<usize>) -> Self {
        QuantParams { scales, zero_points, axis }
    }

    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
    pub fn zero_points(&self) -> &[i64] {
        &self.zero_points
    }
    pub fn axis(&self) -> Option<usize> {
        self.axis
    }
    pub fn is_per_channel(&self) -> bool {
        self.axis.is_some()
    }
    /// The single scale of a per-tensor parameter set (or the first channel's).
    pub fn scale(&self) -> f32 {
        self.scales.first().copied().unwrap_or(1.0)
    }
    pub fn zero_point(&self) -> i64 {
        self.zero_points.first().copied().unwrap_or(0)
    }

    /// Check every invariant for a tensor of `dtype` with the given dims
    /// (`None` for a dynamic dimension).
    pub fn validate(&self, dtype: DType, dims: &[Option<usize>]) -> Result<(), QuantError> {
        let Some((lo, hi)) = dtype.int_range() else {
            return Err(QuantError::NotQuantizable(dtype));
        };
        if self.scales.is_empty() {
            return Err(QuantError::Empty);
        }
        if self.scales.len() != self.zero_points.len() {
            return Err(QuantError::LengthMismatch { scales: self.scales.len(), zero_points: self.zero_points.len() });
        }
        for (index, &value) in self.scales.iter().enumerate() {
            if !(value.is_finite() && value > 0.0) {
                return Err(QuantError::BadScale { index, value });
            }
        }
        for (index, &value) in self.zero_points.iter().enumerate() {
            if value < lo || value > hi {
                return Err(QuantError::ZeroPointRange { index, value, dtype });
            }
        }
        match self.axis {
            Some(axis) => {
                let rank = dims.len();
                if axis >= rank {
                    return Err(QuantError::AxisRange { axis, rank });
                }
                if let Some(Some(dim)) = dims.get(axis)
                    && self.scales.len() != 1
                    && self.scales.len() != *dim
                {
                    return Err(QuantError::ChannelCount { axis, count: self.scales.len(), dim: *dim });
                }
            }
            None if self.scales.len() != 1 => {
                return Err(QuantError::MissingAxis { count: self.scales.len() });
            }
            None => {}
        }
        Ok(())
    }

    /// Scale and zero point that apply to channel `c` (per-tensor params ignore `c`).
    pub fn channel(&self, c: usize) -> (f32, i64) {
        if self.scales.len() == 1 {
            (self.scale(), self.zero_point())
        } else {
            (self.scales.get(c).copied().unwrap_or(1.0), self.zero_points.get(c).copied().unwrap_or(0))
        }
    }
}

impl fmt::Display for QuantParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(axis) = self.axis {
            write!(f, "q(axis={axis}, scales=[")?;
            for (i, s) in self.scales.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{s:e}")?;
            }
            f.write_str("], zps=[")?;
            for (i, z) in self.zero_points.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{z}")?;
            }
            f.write_str("])")
        } else {
            write!(f, "q(scale={:e}, zp={})", self.scale(), self.zero_point())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let d = [Some(3usize), Some(4)];
        assert!(QuantParams::per_tensor(0.5, -128).validate(DType::I8, &d).is_ok());
        assert_eq!(
            QuantParams::per_tensor(0.5, 128).validate(DType::I8, &d),
            Err(QuantError::ZeroPointRange { index: 0, value: 128, dtype: DType::I8 })
        );
        assert!(matches!(
            QuantParams::per_tensor(f32::NAN, 0).validate(DType::I8, &d),
            Err(QuantError::BadScale { .. })
        ));
        assert!(matches!(QuantParams::per_tensor(-1.0, 0).validate(DType::I8, &d), Err(QuantError::BadScale { .. })));
        assert!(matches!(QuantParams::per_tensor(0.0, 0).validate(DType::U8, &d), Err(QuantError::BadScale { .. })));
        assert_eq!(
            QuantParams::per_channel(vec![1.0; 3], vec![0; 2], 0).validate(DType::I8, &d),
            Err(QuantError::LengthMismatch { scales: 3, zero_points: 2 })
        );
        assert_eq!(
            QuantParams::per_channel(vec![1.0; 3], vec![0; 3], 2).validate(DType::I8, &d),
            Err(QuantError::AxisRange { axis: 2, rank: 2 })
        );
        assert_eq!(
            QuantParams::per_channel(vec![1.0; 3], vec![0; 3], 1).validate(DType::I8, &d),
            Err(QuantError::ChannelCount { axis: 1, count: 3, dim: 4 })
        );
        assert!(QuantParams::per_channel(vec![1.0; 3], vec![0; 3], 0).validate(DType::I8, &d).is_ok());
        assert_eq!(
            QuantParams::per_tensor(1.0, 0).validate(DType::F32, &d),
            Err(QuantError::NotQuantizable(DType::F32))
        );
    }
}
