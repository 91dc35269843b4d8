//! Error statistics between a float tensor and its quantized counterpart.

use serde::Serialize;

/// Streaming accumulator of the differences between reference and test values.
#[derive(Debug, Clone, Default)]
pub struct ErrorStats {
    sum_ref_sq: f64,
    sum_err_sq: f64,
    dot: f64,
    sum_test_sq: f64,
    max_abs: f64,
    count: u64,
}

impl ErrorStats {
    pub fn add(&mut self, reference: &[f32], test: &[f32]) {
        for (&r, &t) in reference.iter().zip(test) {
            let (r, t) = (r as f64, t as f64);
            self.sum_ref_sq += r * r;
            self.sum_test_sq += t * t;
            self.sum_err_sq += (r - t) * (r - t);
            self.dot += r * t;
            self.max_abs = self.max_abs.max((r - t).abs());
            self.count += 1;
        }
    }

    /// Fold in another accumulation (another sample's); sums add, so merging the samples'
    /// statistics in sample order gives the same numbers however they were computed.
    pub fn merge(&mut self, o: &ErrorStats) {
        self.sum_ref_sq += o.sum_ref_sq;
        self.sum_test_sq += o.sum_test_sq;
        self.sum_err_sq += o.sum_err_sq;
        self.dot += o.dot;
        self.max_abs = self.max_abs.max(o.max_abs);
        self.count += o.count;
    }

    /// Signal-to-quantization-noise ratio in dB (infinite when identical).
    pub fn sqnr_db(&self) -> f64 {
        if self.sum_err_sq == 0.0 {
            return f64::INFINITY;
        }
        10.0 * (self.sum_ref_sq / self.sum_err_sq).log10()
    }

    pub fn cosine(&self) -> f64 {
        let d = (self.sum_ref_sq * self.sum_test_sq).sqrt();
        if d == 0.0 { if self.sum_err_sq == 0.0 { 1.0 } else { 0.0 } } else { self.dot / d }
    }

    pub fn max_abs(&self) -> f64 {
        self.max_abs
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn layer(&self, name: &str, op: &str) -> LayerError {
        LayerError {
            tensor: name.to_string(),
            op: op.to_string(),
            sqnr_db: finite_or(self.sqnr_db(), 999.0),
            cosine: self.cosine(),
            max_abs: self.max_abs,
            values: self.count,
        }
    }
}

fn finite_or(v: f64, cap: f64) -> f64 {
    if v.is_finite() { v } else { cap }
}

/// One row of the per-layer error report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerError {
    /// The source model's tensor name.
    pub tensor: String,
    /// The op producing it.
    pub op: String,
    /// 999 stands for "identical".
    pub sqnr_db: f64,
    pub cosine: f64,
    pub max_abs: f64,
    pub values: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqnr_of_known_noise() {
        let mut s = ErrorStats::default();
        s.add(&[1.0, -1.0, 1.0, -1.0], &[1.1, -0.9, 1.1, -0.9]);
        // signal power 1, noise power 0.01 → 20 dB
        assert!((s.sqnr_db() - 20.0).abs() < 1e-4, "{}", s.sqnr_db());
        assert!(s.cosine() > 0.99);
        assert!((s.max_abs() - 0.1).abs() < 1e-6);
        let mut same = ErrorStats::default();
        same.add(&[1.0], &[1.0]);
        assert_eq!(same.layer("t", "Op").sqnr_db, 999.0);
    }
}
