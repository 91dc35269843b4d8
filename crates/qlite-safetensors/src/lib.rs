//! safetensors for qlite: read any file zero-copy over a memory map (validated by the
//! reference `safetensors` crate), write deterministic files, turn weights into runnable graphs
//! (an architecture sidecar, or binding by name to another model's graph), export a graph's
//! constants, and convert big checkpoints to f16 / bf16 / int8 streamed.

// Library code never unwraps: values derived from a file are checked and errors returned.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod arch;
pub mod convert;
pub mod format;
pub mod ir;

pub use format::{StError, StFile, StTensor, read, write};

/// Does this look like a safetensors file (plausible header length, then a JSON object)?
pub fn sniff(head: &[u8]) -> bool {
    head.len() >= 9
        && head[8] == b'{'
        && u64::from_le_bytes([head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7]]) < 100_000_000
}

pub use qlite_io::{map_file, write_atomic};
