//! File access: memory-mapped reads and atomic writes.

use bytes::Bytes;
use std::io::Write;
use std::path::Path;

/// Map a file read-only and hand out its bytes without copying.
///
/// Empty files are returned as empty bytes (mapping zero bytes is an error on some systems).
pub fn map_file(path: &Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(Bytes::new());
    }
    map(&file)
}

#[allow(unsafe_code)]
fn map(file: &std::fs::File) -> std::io::Result<Bytes> {
    // SAFETY: the map is read-only and private to this process. If another process truncates
    // or rewrites the file while it is mapped, reads may fault or see new bytes; every reader
    // of these bytes validates them anyway, and this is the documented trade-off of mapping
    // model files instead of copying them.
    let mmap = unsafe { memmap2::Mmap::map(file)? };
    Ok(Bytes::from_owner(mmap))
}

/// Write `data` to `path` so that the file appears whole or not at all: a temporary file in
/// the same directory is written, flushed to disk, then renamed over `path`.
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
