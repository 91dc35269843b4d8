//! Post-training quantization of qlite graphs.
//!
//! - [`calib`]: streaming range statistics (min/max, histograms) and the plain-data
//!   [`CalibrationTable`]. Calibration values come in as data: this crate never runs a model.
//! - [`spec`]: the declarative per-op quantization spec (which input is a weight and on which
//!   axis, fixed output ranges, same-scale ops).
//! - [`params`]: TensorFlow's arithmetic for activation, weight and bias parameters.
//! - [`passes`]: the float16, dynamic-range and full-integer rewrites, as passes.
//! - [`report`]: per-layer error statistics (SQNR, cosine similarity, max-abs error).

// Library code never unwraps: values derived from a file are checked and errors returned.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod calib;
pub mod config;
pub mod params;
pub mod passes;
pub mod report;
pub mod spec;

pub use calib::{CalibrationTable, HistogramObserver, MinMaxObserver, Range};
pub use config::{CalibrationMethod, Exclude, IoType, QuantConfig, QuantMode};
pub use passes::{quantize_graph, quantize_pipeline};
pub use report::{ErrorStats, LayerError};

/// Why a graph could not be quantized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("the model is already quantized ({0}); quantize the float model instead")]
    AlreadyQuantized(String),
    #[error("tensor {0:?} has no calibration range: the calibration data never reached it")]
    MissingRange(String),
    #[error("node {node:?} ({op}): {message}")]
    Node { node: String, op: &'static str, message: String },
    #[error("{flag} {pattern:?} matches no op or tensor name")]
    ExcludeMatchesNothing { flag: &'static str, pattern: String },
    #[error("{0} quantization needs calibration data (--calibration X.npy) or a table (--calibration-table FILE)")]
    NoCalibration(&'static str),
    #[error("--int16 promotes layers of an int8 model to int16 activations: it needs --quantize int8, not {0}")]
    Int16NeedsInt8(&'static str),
    #[error("--io-type {io} does not fit --quantize {mode}: {hint}")]
    IoType { io: &'static str, mode: &'static str, hint: &'static str },
    #[error("cannot quantize ops qlite does not model: {0}")]
    Unsupported(String),
}

/// Quantization needs a spec and a kernel for every op: every opaque op is named at once.
pub fn check_supported(g: &qlite_ir::Graph) -> Result<(), QuantError> {
    let names: Vec<String> = g
        .nodes()
        .iter()
        .filter_map(|n| match &n.op {
            qlite_ir::Op::Opaque(o) => Some(format!("{} v{} (node {:?})", o.op_type, o.version, n.name)),
            _ => None,
        })
        .collect();
    if names.is_empty() { Ok(()) } else { Err(QuantError::Unsupported(names.join(", "))) }
}
