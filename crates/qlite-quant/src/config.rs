//! Typed quantization configuration.

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The post-training modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantMode {
    /// Leave the model in float32.
    #[default]
    None,
    /// float16 weight buffers, dequantized once by DEQUANTIZE ops.
    Float16,
    /// int8 weights, float activations (hybrid kernels).
    Dynamic,
    /// Full integer: int8 weights and activations, calibrated.
    Int8,
    /// 16x8: int16 symmetric activations, int8 weights, int64 biases, calibrated (TFLite's
    /// `EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`). Ops without an int16
    /// kernel in LiteRT stay float between DEQUANTIZE / QUANTIZE.
    #[serde(rename = "int16x8")]
    Int16x8,
}

impl QuantMode {
    pub fn name(self) -> &'static str {
        match self {
            QuantMode::None => "none",
            QuantMode::Float16 => "float16",
            QuantMode::Dynamic => "dynamic",
            QuantMode::Int8 => "int8",
            QuantMode::Int16x8 => "int16x8",
        }
    }

    /// The modes that calibrate and quantize activations (int8, int16x8).
    pub fn is_full_integer(self) -> bool {
        matches!(self, QuantMode::Int8 | QuantMode::Int16x8)
    }

    /// The integer type of activations in a full-integer mode.
    pub fn activation_dtype(self) -> qlite_ir::DType {
        if self == QuantMode::Int16x8 { qlite_ir::DType::I16 } else { qlite_ir::DType::I8 }
    }
}

/// Type of the model's inputs and outputs in int8 mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoType {
    /// Float I/O through QUANTIZE / DEQUANTIZE at the edges (TensorFlow's default).
    #[default]
    Float32,
    /// The int8 tensors are the model's inputs and outputs.
    Int8,
    /// uint8 I/O (zero point + 128), converted by QUANTIZE ops at the edges.
    Uint8,
    /// int16x8 only: the int16 tensors are the model's inputs and outputs.
    Int16,
}

/// How calibration turns observed values into ranges.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "method")]
pub enum CalibrationMethod {
    /// Global minimum and maximum over all samples (TensorFlow's converter).
    #[default]
    MinMax,
    /// Clip to the given percentile of the values on each side (e.g. 99.99).
    Percentile { percentile: f64 },
    /// The clipping range that minimizes the expected quantization error.
    Mse,
    /// Per tensor, whichever of minmax, percentile (99.99) and MSE gives the quantized model
    /// the lowest output error on the calibration samples (a greedy search from minmax).
    Auto,
}

impl CalibrationMethod {
    pub fn name(&self) -> String {
        match self {
            CalibrationMethod::MinMax => "minmax".into(),
            CalibrationMethod::Percentile { percentile } => format!("percentile({percentile})"),
            CalibrationMethod::Mse => "mse".into(),
            CalibrationMethod::Auto => "auto".into(),
        }
    }

    /// Whether the method needs a second pass (histograms over the min/max range).
    pub fn needs_histogram(&self) -> bool {
        !matches!(self, CalibrationMethod::MinMax)
    }
}

/// Everything a quantized conversion needs besides the model and the calibration table.
#[derive(Debug, Clone, Default)]
pub struct QuantConfig {
    pub mode: QuantMode,
    pub io_type: IoType,
    pub method: CalibrationMethod,
    /// Ops whose name or output tensor name matches stay in float (int8 mode).
    pub exclude: Vec<Exclude>,
    /// int8 mode: ops whose name or output tensor name matches run on int16 activations (16x8
    /// kernels, int8 weights), requantized from and to their int8 neighbours; ops without an
    /// int16 kernel stay int8. Mixed precision promotes layers this way before keeping any in
    /// float.
    pub int16: Vec<Exclude>,
    /// Cross-layer equalization of the float model before calibration (consecutive conv /
    /// depthwise / FC layers joined by a ReLU or nothing get balanced per-channel weight
    /// ranges).
    pub equalize: bool,
    /// Dynamic mode: hybrid FULLY_CONNECTED quantizes each input row asymmetrically (the
    /// default, as TF's converter does: it measures better on every fixture; `--symmetric-inputs`
    /// opts out).
    pub asymmetric_inputs: bool,
    /// Dynamic mode: weights with fewer elements stay float (TensorFlow: 1024).
    pub dynamic_min_elements: usize,
}

impl QuantConfig {
    pub fn new(mode: QuantMode) -> Self {
        QuantConfig { mode, dynamic_min_elements: 1024, asymmetric_inputs: true, ..Default::default() }
    }
}

/// An `--exclude` pattern: an exact node / tensor name, or a regular expression.
#[derive(Debug, Clone)]
pub struct Exclude {
    pub pattern: String,
    regex: Option<Regex>,
}

impl Exclude {
    /// Parse; a pattern that is not a valid regex is matched literally.
    pub fn new(pattern: &str) -> Self {
        let regex = Regex::new(&format!("^(?:{pattern})$")).ok();
        Exclude { pattern: pattern.to_string(), regex }
    }

    /// An exact node or tensor name (no regular expression).
    pub fn exact(name: &str) -> Self {
        Exclude { pattern: name.to_string(), regex: None }
    }

    pub fn matches(&self, name: &str) -> bool {
        name == self.pattern || self.regex.as_ref().is_some_and(|r| r.is_match(name))
    }
}
