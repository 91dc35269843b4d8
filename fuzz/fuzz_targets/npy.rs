#![no_main]
//! .npy bytes → array; what was read writes and reads back to the same bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(a) = qlite::npy::read_npy(data) {
        let back = qlite::npy::write_npy(&a);
        let b = qlite::npy::read_npy(&back).expect("qlite's own .npy must read back");
        // Bytes, not values: NaN must survive too.
        assert_eq!((a.shape(), a.dtype(), a.to_le_bytes()), (b.shape(), b.dtype(), b.to_le_bytes()));
    }
});
