//! TensorFlow SavedModel (and frozen GraphDef) → qlite IR.

// Library code never unwraps: values derived from a file are checked and errors returned.
#![deny(clippy::unwrap_used, clippy::expect_used)]

#[allow(clippy::all, missing_debug_implementations)]
#[rustfmt::skip]
pub mod proto {
    include!("generated/tensorflow.rs");
}

pub mod bundle;
mod import;

pub use import::{ImportOptions, import_graph_def, import_saved_model};

use bytes::Bytes;
use std::path::Path;

/// What can go wrong reading a SavedModel or GraphDef.
#[derive(Debug, thiserror::Error)]
pub enum SmError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cannot decode {what}: {message}")]
    Decode { what: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

/// Map a file read-only (empty files give empty bytes), through `qlite_io` so the pages of the
/// weights shards can be released once written out.
pub fn map_file(path: &Path) -> Result<Bytes, SmError> {
    qlite_io::map_file(path).map_err(|source| SmError::Io { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    #[test]
    fn snappy_literals_and_overlapping_copies() {
        use super::bundle::snappy_decompress;
        // "abc", then a 9-byte copy from 3 back (overlapping): "abcabcabcabc".
        let ok = [0x0c, 0x08, b'a', b'b', b'c', 0x15, 0x03];
        assert_eq!(snappy_decompress(&ok, 100).as_deref(), Some(&b"abcabcabcabc"[..]));
        // A copy reaching before the start, a length lie, a limit: refused.
        assert_eq!(snappy_decompress(&[0x0c, 0x08, b'a', b'b', b'c', 0x15, 0x09], 100), None);
        assert_eq!(snappy_decompress(&[0x0d, 0x08, b'a', b'b', b'c', 0x15, 0x03], 100), None);
        assert_eq!(snappy_decompress(&ok, 11), None);
        assert_eq!(snappy_decompress(&[0x04, 0xf8, 0xff, 0xff, 0xff, 0xff], 100), None);
    }

    #[test]
    fn crc32c_known_values() {
        // RFC 3720 test vectors.
        assert_eq!(super::bundle::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(super::bundle::crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        assert_eq!(super::bundle::crc32c(b"123456789"), 0xe306_9283);
    }
}
