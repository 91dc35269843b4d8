//! File access: memory-mapped reads and atomic writes (`qlite-io`, shared by every crate).

pub use qlite_io::{finish, keep_large_blocks_mapped, map_file, temp_beside, write_atomic};
