//! Constants after the flatbuffer (TFLite's "buffer offset" mode, the only way to write models
//! over 2 GiB): written, read back, streamed through the facade, and run in LiteRT.
//! `cargo xtask large-model` checks a real 2 GiB+ file the same way.

use crate::common::{export_case, fixture};
use qlite::Array;
use qlite_tflite::{BufferPlacement, fb};

/// (flatbuffer offset of each offset buffer, size) in buffer order, and the metadata names.
fn layout(bytes: &[u8]) -> (Vec<(u64, u64)>, Vec<String>) {
    let m = flatbuffers::root::<fb::Model>(bytes).unwrap();
    let ranges = m.buffers().unwrap().iter().filter(|b| b.offset() > 1).map(|b| (b.offset(), b.size())).collect();
    let names = m.metadata().unwrap().iter().map(|md| md.name().unwrap_or("").to_string()).collect();
    (ranges, names)
}

#[test]
fn constants_after_the_flatbuffer_read_back_and_run_in_litert() {
    for (name, path, compare) in
        [("cnn_float", "digits/cnn.tflite", "float"), ("cnn_int8", "digits/tf_int8/cnn.tflite", "exact")]
    {
        let g = qlite::load(&qlite::Registry::default(), &fixture(path)).unwrap();
        let inside = qlite_tflite::write_model_with(&g, BufferPlacement::Inside).unwrap();
        assert_eq!(qlite_tflite::write_model(&g).unwrap(), inside, "{name}: a small model keeps its data inside");
        assert!(layout(&inside).0.is_empty());

        let outside = qlite_tflite::write_model_with(&g, BufferPlacement::Outside).unwrap();
        let (ranges, metadata) = layout(&outside);
        assert!(metadata.contains(&"buffer_location".to_string()), "{name}: {metadata:?}");
        let consts = g.tensors().iter().filter(|t| t.data.as_ref().is_some_and(|d| !d.is_empty())).count();
        assert!(ranges.len() >= consts, "{name}: {} offset buffers for {consts} constants", ranges.len());
        // The flatbuffer first, then each constant 16-aligned, in order, inside the file; 16
        // zero bytes at least after the last one.
        let mut end = 0;
        for &(off, size) in &ranges {
            assert!(off.is_multiple_of(16) && off >= end, "{name}: buffer at {off} after {end}");
            end = off + size;
        }
        assert!(outside.len() as u64 >= end + 16 && outside.len().is_multiple_of(16));
        assert!(outside[end as usize..].iter().all(|&b| b == 0));
        // The flatbuffer part is small: the data lives after it.
        let data: u64 = ranges.iter().map(|r| r.1).sum();
        assert!(ranges[0].0 < outside.len() as u64 - data, "{name}");

        let g2 = qlite_tflite::read_model(outside.clone()).unwrap();
        for (a, b) in g.tensors().iter().zip(g2.tensors()) {
            assert_eq!(a.data, b.data, "{name}: {}", a.name);
        }
        // Written again from what was read: the same bytes, in either placement.
        assert_eq!(qlite_tflite::write_model_with(&g2, BufferPlacement::Outside).unwrap(), outside);
        assert_eq!(qlite_tflite::write_model(&g2).unwrap(), inside);

        // The facade streams the same file.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.tflite");
        let mut w = std::fs::File::create(&p).unwrap();
        let n = qlite_tflite::write_model_to(&g, BufferPlacement::Outside, &mut w).unwrap();
        drop(w);
        assert_eq!(std::fs::read(&p).unwrap(), &outside[..]);
        assert_eq!(n, outside.len() as u64);

        let x: Array = qlite::read_npy_file(&fixture("digits/x_test.npy")).unwrap();
        let x = Array::stack_rows(&(0..4).map(|i| x.row(i).unwrap()).collect::<Vec<_>>()).unwrap();
        let y = qlite::run_batched(&g, vec![x.clone()]).unwrap();
        assert_eq!(qlite::run_batched(&g2, vec![x.clone()]).unwrap(), y);
        export_case(&format!("offset_buffers_{name}"), &outside, &[x], &y, compare);
    }
}

/// Constants inside the flatbuffer (`Buffer.data`) are byte vectors after every table, each
/// 16-aligned in the file, in buffer order: the writer streams them after building the tables
/// (no copy into a builder). The in-memory, streamed and owned writers give the same bytes.
#[test]
fn constants_inside_follow_the_tables_aligned_and_streamed() {
    for path in ["digits/cnn.tflite", "digits/tf_int8/cnn.tflite", "digits/mlp.tflite"] {
        let g = qlite::load(&qlite::Registry::default(), &fixture(path)).unwrap();
        let bytes = qlite_tflite::write_model_with(&g, BufferPlacement::Inside).unwrap();
        let m = flatbuffers::root::<fb::Model>(&bytes).unwrap();
        let base = bytes.as_ptr() as usize;
        // Every non-empty buffer but the metadata's (min_runtime_version, kept among the tables).
        let metadata: Vec<usize> = m.metadata().unwrap().iter().map(|md| md.buffer() as usize).collect();
        let mut ranges: Vec<(usize, usize)> = m
            .buffers()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(i, _)| !metadata.contains(i))
            .filter_map(|(_, b)| b.data())
            .filter(|d| !d.is_empty())
            .map(|d| (d.bytes().as_ptr() as usize - base, d.len()))
            .collect();
        let consts = g.tensors().iter().filter(|t| t.data.as_ref().is_some_and(|d| !d.is_empty())).count();
        assert!(consts > 0 && ranges.len() >= consts, "{path}: {} vectors for {consts} constants", ranges.len());
        let in_order = ranges.clone();
        ranges.sort();
        assert_eq!(ranges, in_order, "{path}: constants in buffer order");
        let mut end = 0;
        for &(off, len) in &ranges {
            assert!(off.is_multiple_of(16) && off >= end + 4, "{path}: constant at {off} after {end}");
            end = off + len;
        }
        // Nothing but the constants (and their length prefixes and padding) after the first:
        // the tables come before them all.
        let data: usize = ranges.iter().map(|r| r.1).sum();
        let first = ranges[0].0;
        assert!(bytes.len() - first < data + 20 * ranges.len() + 32, "{path}: tables among the constants");
        assert!(bytes[end..].iter().all(|&b| b == 0) && bytes.len() >= end + 16, "{path}");

        let mut streamed = Vec::new();
        let n = qlite_tflite::write_model_to(&g, BufferPlacement::Inside, &mut streamed).unwrap();
        assert_eq!((n as usize, &streamed[..]), (bytes.len(), &bytes[..]), "{path}: streamed");
        let mut owned = Vec::new();
        qlite_tflite::write_model_owned(g.clone(), BufferPlacement::Inside, &mut owned).unwrap();
        assert!(owned == bytes, "{path}: owned");
        let g2 = qlite_tflite::read_model(bytes.clone()).unwrap();
        for (a, b) in g.tensors().iter().zip(g2.tensors()) {
            assert_eq!(a.data, b.data, "{path}: {}", a.name);
        }
    }
}
