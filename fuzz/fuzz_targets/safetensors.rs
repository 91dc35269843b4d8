#![no_main]
//! safetensors bytes → header checks and tensor table.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = qlite_safetensors::format::check_header(data);
    let _ = qlite_safetensors::format::metadata_keys(data);
    if let Ok(f) = qlite_safetensors::read(bytes::Bytes::copy_from_slice(data)) {
        let _ = format!("{f:?}");
    }
});
