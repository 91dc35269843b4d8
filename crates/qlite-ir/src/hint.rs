//! Memory hints between the crates that load constants and the ones that copy them out.
//!
//! Loaders hand out constants that point into memory-mapped files. Once a writer has copied a
//! large constant into its output, the mapped pages it read are dead weight in this process's
//! resident memory; the facade installs a hook that lets the kernel drop them (they are
//! re-read from the file if anything touches them again). Without a hook this does nothing.

use std::sync::OnceLock;

static RELEASE: OnceLock<fn(&[u8])> = OnceLock::new();

/// Install the release hook (the first call wins; later calls are ignored).
pub fn set_release_hook(hook: fn(&[u8])) {
    let _ = RELEASE.set(hook);
}

/// A writer has copied `data` and will not read it again.
pub fn constant_consumed(data: &[u8]) {
    if let Some(hook) = RELEASE.get() {
        hook(data);
    }
}
