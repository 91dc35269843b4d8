//! ONNX → qlite IR.
//!
//! The importer keeps ONNX's NCHW meaning: convolutions and pools (which the IR runs in NHWC)
//! are wrapped in Transposes, and the layout pass (`qlite_ir::passes::SinkTransposes`) then moves
//! those through elementwise ops and cancels them, so a CNN ends up with Transposes only at its
//! I/O. Weights are read zero-copy (`raw_data` is a slice of the model bytes); external data is
//! resolved only inside the model's directory. Every unsupported op is reported in one error.

// Library code never unwraps: values derived from a file are checked and errors returned.
#![deny(clippy::unwrap_used, clippy::expect_used)]

#[allow(clippy::all, missing_debug_implementations)]
#[rustfmt::skip]
pub mod proto {
    include!("generated/onnx.rs");
}

mod describe;
mod import;

pub use describe::{DeclaredNode, DeclaredValue, Description, describe};

pub use import::{ImportOptions, OnnxError, import, read_tensor_proto};

/// Does this look like an ONNX model? (ModelProto starts with ir_version, field 1 varint.)
pub fn sniff(head: &[u8]) -> bool {
    head.first() == Some(&0x08) && head.get(1).is_some_and(|&v| (1..=20).contains(&v))
}
