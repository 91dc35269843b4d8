//! File access for every qlite crate: memory-mapped reads and atomic writes, in one place.
//!
//! Every map is registered, so the page-release hook (`qlite_ir::hint`) sees the mapped ONNX
//! external data and SavedModel shards as well as model files; every output is written to a
//! temporary file in the destination's directory and renamed, with the permissions a plain
//! `create` would give (the umask applied, or the replaced file's own).

use bytes::Bytes;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

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
    let mmap = Arc::new(unsafe { memmap2::Mmap::map(file)? });
    qlite_ir::hint::set_release_hook(release_mapped);
    if let Ok(mut maps) = LIVE_MAPS.lock() {
        maps.retain(|m| m.strong_count() > 0);
        maps.push(Arc::downgrade(&mmap));
    }
    Ok(Bytes::from_owner(MapOwner(mmap)))
}

/// Keeps a mapping alive for as long as any `Bytes` slice of it exists.
struct MapOwner(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The file mappings handed out by [`map_file`], so [`release_mapped`] can tell a slice of a
/// mapped file from heap memory.
static LIVE_MAPS: Mutex<Vec<Weak<memmap2::Mmap>>> = Mutex::new(Vec::new());

/// Constants smaller than this are not worth a system call (DenseNet-121's weights are mostly
/// 32 KiB to 1 MiB: a 1 MiB floor kept its whole file resident, 2.4× the file at the peak).
const RELEASE_MIN: usize = 16 << 10;

/// Round inward to the page size (4 KiB when the system does not say).
fn release_align() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        #[cfg(unix)]
        #[allow(unsafe_code)]
        // SAFETY: sysconf only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        #[cfg(not(unix))]
        let page = 4096;
        usize::try_from(page).ok().filter(|p| p.is_power_of_two()).unwrap_or(4096)
    })
}

/// The release hook (see `qlite_ir::hint`): drop the resident pages wholly inside `data` when
/// it lies in a file mapping. Heap memory is never touched.
#[allow(unsafe_code)]
fn release_mapped(data: &[u8]) {
    use std::sync::atomic::Ordering;
    if CONSUMED.fetch_add(data.len(), Ordering::Relaxed) + data.len() >= TRIM_EVERY {
        CONSUMED.store(0, Ordering::Relaxed);
        trim_freed_memory();
    }
    if data.len() < RELEASE_MIN {
        return;
    }
    let Ok(maps) = LIVE_MAPS.lock() else { return };
    let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
    for m in maps.iter().filter_map(Weak::upgrade) {
        let base = m.as_ptr() as usize;
        if start < base || end > base + m.len() {
            continue;
        }
        let align = release_align();
        let lo = start.next_multiple_of(align);
        let hi = end / align * align;
        #[cfg(unix)]
        if hi > lo {
            // SAFETY: the mapping is read-only and private and has never been written, so
            // MADV_DONTNEED only drops clean pages: a later read faults them in again from
            // the file with the same contents. Failure (e.g. an unsupported platform) just
            // leaves the pages resident.
            let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo - base, hi - lo) };
        }
        return;
    }
}

/// Give the heap's free pages back to the system (glibc's `malloc_trim`; elsewhere nothing).
///
/// glibc raises its mmap threshold each time a large block is freed; after that, blocks the
/// size of a model's weights come from the heap, and freed ones stay resident. A conversion
/// drops weights as it goes (reordered, folded, copied into the output), so the facade trims
/// between its phases and the release hook trims while the writer drops constants: ResNet-50
/// from ONNX peaks at 1.3× the file instead of 2.6×. Allocation itself is left as it is
/// (pinning the threshold instead made every large per-run buffer a fresh mapping: the
/// reference kernels ran 4× slower).
#[allow(unsafe_code)]
pub fn trim_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes handed to the release hook since the last trim.
static CONSUMED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Trim after this many bytes of constants were consumed (the writer drops each one after
/// consuming it, so a trim frees the ones before).
const TRIM_EVERY: usize = 4 << 20;

/// Write `data` to `path` so that the file appears whole or not at all: a temporary file in
/// the same directory is written, then renamed over `path` (see [`finish`]).
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(data)?;
    finish(tmp, path)
}

/// A temporary file in `path`'s directory, to be filled and then [`finish`]ed onto `path`. It
/// is created with the mode `path` would get from a plain create (0666 less the umask), or the
/// mode of the file it will replace; it is removed if dropped unfinished.
pub fn temp_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut b = tempfile::Builder::new();
    b.prefix(".qlite-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The mode is passed to open(2), which applies the umask, as for any created file.
        let mode = std::fs::metadata(path).map_or(0o666, |m| m.permissions().mode() & 0o7777);
        b.permissions(std::fs::Permissions::from_mode(mode));
    }
    b.tempfile_in(dir)
}

/// Rename a filled [`temp_beside`] file onto `path`: readers see the old file or the whole new
/// one, never a part, and an error or a kill before this leaves no output behind.
///
/// No fsync: like `cp` and TensorFlow's converter, the file reaches the disk when the kernel
/// writes it back. Forcing it out first cost more than the rest of a conversion (VGG-19's
/// 575 MB: 1.2 s of 2.4 s here) and only matters if the machine loses power before that
/// write-back, which can leave the new file incomplete.
pub fn finish(tmp: tempfile::NamedTempFile, path: &Path) -> std::io::Result<()> {
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn outputs_get_the_mode_a_plain_create_gives() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let ours = dir.path().join("ours");
        write_atomic(&ours, b"y").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ours), mode(&plain), "the umask applies as for std::fs::write");
        // Replacing a file keeps its mode.
        std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&ours, b"z").unwrap();
        assert_eq!(mode(&ours), 0o640);
        assert_eq!(std::fs::read(&ours).unwrap(), b"z");
    }

    #[test]
    fn released_pages_of_a_mapped_file_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        let data: Vec<u8> = (0..(3usize << 20) + 12345).map(|i| (i * 7 + i / 4096) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mapped = map_file(&path).unwrap();
        let slice = mapped.slice(1000..mapped.len() - 77);
        assert_eq!(&slice[..], &data[1000..data.len() - 77]);
        qlite_ir::hint::constant_consumed(&slice);
        // Dropped pages fault in again from the file.
        assert_eq!(&slice[..], &data[1000..data.len() - 77]);
        // Heap memory is left alone.
        let heap = data.clone();
        qlite_ir::hint::constant_consumed(&heap);
        assert_eq!(heap, data);
    }
}
