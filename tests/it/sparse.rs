//! Sparse weights as TensorFlow's sparsity mode writes them (SparsityParameters + DENSIFY):
//! read and expanded at import, run, written back sparse, and quantized (dense).

use crate::common::{assert_agrees, default_resolver_fails, export_case, fixture};
use qlite::Array;
use qlite::ir::{Graph, Op};

fn read(name: &str) -> (Vec<u8>, Graph) {
    let bytes = std::fs::read(fixture(&format!("tflite_sparse/{name}.tflite"))).unwrap();
    let g = qlite_tflite::read_model(bytes::Bytes::copy_from_slice(&bytes)).unwrap();
    (bytes, g)
}

/// (name, stored bytes) of every sparse constant.
fn sparse_tensors(g: &Graph) -> Vec<(String, usize)> {
    g.tensors().iter().filter_map(|t| Some((t.name.clone(), t.sparse.as_ref()?.values.len()))).collect()
}

/// LiteRT 2.3's default path cannot prepare an int8 FULLY_CONNECTED whose weights come from a
/// DENSIFY, on TF's converter's own file as on ours; the reference kernels run both.
const XNNPACK_SPARSE_INT8: &str = "failed to delegate FULLY_CONNECTED";
const WHY: &str = "XNNPACK refuses int8 FULLY_CONNECTED fed by DENSIFY, in TF's own file too";

fn batch() -> Array {
    qlite::read_npy_file(&fixture("tflite_sparse/input.npy")).unwrap()
}

#[test]
fn tf_sparse_models_run_and_are_written_back_sparse() {
    for (mode, compare) in [("float", "float"), ("int8", "exact")] {
        let (bytes, g) = read(mode);
        let sparse = sparse_tensors(&g);
        assert_eq!(sparse.len(), 3, "{mode}: the conv and both dense kernels are stored sparse");
        assert_eq!(g.nodes().iter().filter(|n| matches!(n.op, Op::Densify)).count(), 3);
        // Pruned to 20%: the stored values are far fewer than the dense bytes.
        let dense: usize =
            g.tensors().iter().filter(|t| t.sparse.is_some()).map(|t| t.data.as_ref().unwrap().len()).sum();
        let stored: usize = sparse.iter().map(|s| s.1).sum();
        assert!(stored * 3 < dense, "{mode}: {stored} stored bytes for {dense} dense");

        let x = batch();
        let y = qlite::run_batched(&g, vec![x.clone()]).unwrap();
        // The converter's file, as it is: LiteRT must agree with qlite on it.
        export_case(&format!("tflite_sparse_{mode}"), &bytes, std::slice::from_ref(&x), &y, compare);
        if mode == "int8" {
            default_resolver_fails(&format!("tflite_sparse_{mode}"), XNNPACK_SPARSE_INT8, WHY);
        }

        // Written back: still sparse, the same stored values, and the same outputs.
        let written = qlite_tflite::write_model(&g).unwrap();
        assert!(
            written.len() < bytes.len() + 1024,
            "{mode}: {} bytes written for a {}-byte file",
            written.len(),
            bytes.len()
        );
        let g2 = qlite_tflite::read_model(written.clone()).unwrap();
        assert_eq!(sparse_tensors(&g2), sparse, "{mode}");
        let y2 = qlite::run_batched(&g2, vec![x.clone()]).unwrap();
        assert_eq!(y, y2);
        export_case(&format!("tflite_sparse_{mode}_rewritten"), &written, &[x], &y2, compare);
        if mode == "int8" {
            default_resolver_fails(&format!("tflite_sparse_{mode}_rewritten"), XNNPACK_SPARSE_INT8, WHY);
        }
    }
}

#[test]
fn sparse_float_model_quantizes_to_dense_int8() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("int8.tflite");
    let mut opts = qlite::ConvertOptions::default();
    opts.quant.mode = qlite::QuantMode::Int8;
    opts.calibration = Some(fixture("tflite_sparse/calibration.npy"));
    qlite::convert(&qlite::Registry::default(), &fixture("tflite_sparse/float.tflite"), &out, &opts).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let g = qlite_tflite::read_model(bytes::Bytes::copy_from_slice(&bytes)).unwrap();
    assert!(g.nodes().iter().all(|n| !matches!(n.op, Op::Densify)), "quantized weights are dense constants");
    assert!(sparse_tensors(&g).is_empty());
    let x = batch();
    let y = qlite::run_batched(&g, vec![x.clone()]).unwrap();
    // Close to the float model (a loose check: the quality tables hold the real floors).
    let (_, gf) = read("float");
    let yf = qlite::run_batched(&gf, vec![x.clone()]).unwrap();
    assert_agrees(&y[0], &yf[0], qlite::Tolerance::close(0.1, 0.1), "int8 vs float");
    export_case("tflite_sparse_quantized_by_qlite", &bytes, &[x], &y, "exact");
}
