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

use bytes::Bytes;
use std::io::Write;
use std::path::Path;

/// Does this look like a safetensors file (plausible header length, then a JSON object)?
pub fn sniff(head: &[u8]) -> bool {
    head.len() >= 9
        && head[8] == b'{'
        && u64::from_le_bytes([head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7]]) < 100_000_000
}

/// Map a file read-only (empty files give empty bytes).
#[allow(unsafe_code)]
pub fn map_file(path: &Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: read-only private map; see qlite::io::map_file for the trade-off.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    Ok(Bytes::from_owner(map))
}

/// Temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new().prefix(".qlite-").suffix(".tmp").tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
