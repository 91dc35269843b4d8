//! File access: memory-mapped reads and atomic writes (`qlite-io`, shared by every crate).

pub use qlite_io::{finish, map_file, temp_beside, trim_freed_memory, write_atomic};
