#![no_main]
//! ONNX ModelProto bytes → importer (no model directory: external data is refused) →
//! interpreter.

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let opts = qlite_onnx::ImportOptions::default();
    // What `inspect` shows of a file it cannot import as it stands.
    let _ = qlite_onnx::describe(bytes::Bytes::copy_from_slice(data));
    if let Ok(g) = qlite_onnx::import(bytes::Bytes::copy_from_slice(data), &opts) {
        common::run_small(&g);
    }
});
