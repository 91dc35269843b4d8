#![no_main]
//! TensorFlow protobuf and tensor-bundle bytes: a frozen GraphDef through the importer (and the
//! interpreter), a SavedModel proto decode, and the LevelDB-format table reader.

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let opts = qlite_savedmodel::ImportOptions::default();
    if let Ok(g) = qlite_savedmodel::import_graph_def(bytes::Bytes::copy_from_slice(data), &opts) {
        common::run_small(&g);
    }
    let _ = <qlite_savedmodel::proto::SavedModel as prost::Message>::decode(data);
    let _ = qlite_savedmodel::bundle::read_table(data, std::path::Path::new("fuzz.index"));
    let _ = qlite_savedmodel::bundle::snappy_decompress(data, 1 << 20);
});
