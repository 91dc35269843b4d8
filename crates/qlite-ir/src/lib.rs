//! qlite's intermediate representation.
//!
//! Data types, shapes and quantization parameters; the [`Graph`] of [`Tensor`]s and
//! [`Node`]s applying one closed [`Op`] enum (NHWC layout); shape inference; the verifier; a
//! deterministic text printer; and the [`Pass`] / [`PassManager`] machinery with the generic
//! cleanup passes. This crate does no I/O and knows no file format.

// Library code never unwraps: values derived from a file are checked and errors returned.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod dtype;
pub mod edit;
pub mod graph;
pub mod hint;
pub mod layout;
pub mod limits;
pub mod op;
pub mod pass;
pub mod passes;
pub mod print;
pub mod quant;
pub mod shape;
pub mod sparse;
pub mod sym;
pub mod tensor;
pub mod verify;

pub use dtype::DType;
pub use edit::{Applied, Budget, Editor, NodeKey, Patch};
pub use graph::{Graph, Node, NodeId, Signature, TensorId};
pub use limits::{LimitError, Limits};
pub use op::*;
pub use pass::{Pass, PassError, PassInfo, PassManager, PipelineError};
pub use print::print_graph;
pub use quant::{QuantError, QuantParams};
pub use shape::{Dim, MAX_RANK, Shape};
pub use sparse::{SparseForm, SparseLevel};
pub use tensor::Tensor;
pub use verify::{VerifyError, verify, verify_exportable};
