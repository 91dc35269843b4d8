#![no_main]
//! .tflite bytes → reader (flatbuffers verifier, range checks, IR verify) → interpreter.

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = qlite_tflite::file_info(data);
    // What `inspect` shows of a file it cannot import.
    let _ = qlite_tflite::describe(data);
    // What `qlite check` reads, against every target.
    for t in qlite::check::Target::ALL {
        let _ = qlite::check::check_tflite(data, t);
    }
    if let Ok(g) = qlite_tflite::read_model(bytes::Bytes::copy_from_slice(data)) {
        common::run_small(&g);
        // What was read must write.
        let _ = qlite_tflite::write_model(&g);
    }
});
