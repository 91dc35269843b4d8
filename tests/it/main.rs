//! qlite's integration tests: one binary (see ARCHITECTURE.md). Every test that builds or
//! reads a model also exports it, with inputs and qlite's outputs, for the LiteRT
//! conformance check (`cargo xtask conformance`) when QLITE_CONFORMANCE_DIR is set.

mod alloc;
mod check;
mod cli;
mod common;
mod diff;
mod dynamic;
mod errors;
mod fixtures;
mod int16x8;
mod malformed;
mod mixed;
mod offset_buffers;
mod onnx;
mod opaque;
mod ops;
mod oracle;
mod pass_dags;
mod passes;
mod prod_ops;
mod quantize;
mod random_ops;
mod report;
mod safetensors;
mod savedmodel;
mod sparse;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;
