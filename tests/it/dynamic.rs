//! Models with a dynamic batch as TensorFlow's converter writes them by default: the shape
//! arithmetic of Flatten / Reshape / Dense on 3-D inputs (`SHAPE → STRIDED_SLICE / GATHER /
//! REDUCE_PROD → PACK / CONCATENATION → RESHAPE`) is folded at read time; the whole batch runs
//! in one call, equal to TensorFlow Lite's reference kernels; the re-export keeps the dynamic
//! batch and runs in LiteRT, resized. The model crops (Cropping2D: STRIDED_SLICE of the
//! activations), and its SavedModel export imports equal to Keras.

use crate::common::{FRAMEWORK_TOL, assert_agrees, export_case, fixture};
use qlite::{Registry, Tolerance};

const MODES: [&str; 6] = ["float32", "float16", "dynamic", "int8", "int8_io_int8", "int8_io_uint8"];

/// float within 1e-5 relative of LiteRT's reference kernels; integer models exactly.
fn tolerance(mode: &str) -> Tolerance {
    if mode.starts_with("int8") { Tolerance::EXACT } else { Tolerance::close(1e-5, 1e-6) }
}

#[test]
fn tf_converter_default_output_loads_runs_and_reexports() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for mode in MODES {
        let path = fixture(&format!("tflite_dynamic/{mode}.tflite"));
        let x = qlite::read_npy_file(&fixture(&format!("tflite_dynamic/{mode}_input.npy"))).unwrap();
        let want = qlite::read_npy_file(&fixture(&format!("tflite_dynamic/{mode}_expected.npy"))).unwrap();
        let g = qlite::load(&reg, &path).unwrap();
        assert_eq!(g.tensor(g.inputs()[0]).unwrap().shape.to_string(), "[?,9,9,1]", "{mode}");
        // The batch of 8 runs in one call, on both kernel sets.
        for kernels in [qlite::Kernels::Reference, qlite::Kernels::Fast] {
            let y = qlite::Interpreter::new(&g).unwrap().kernels(kernels).run(vec![x.clone()]).unwrap();
            assert_agrees(&y[0], &want, tolerance(mode), &format!("{mode} ({kernels:?}) against TensorFlow Lite"));
        }
        // No shape arithmetic is left, and inspect says what was folded.
        let ops: Vec<&str> = g.nodes().iter().map(|n| n.op.name()).collect();
        assert!(ops.contains(&"Reshape"), "{mode}: {ops:?}");
        let summary = qlite::inspect::inspect_file(&reg, &path).unwrap();
        assert!(summary.folded_ops.iter().any(|o| o == "SHAPE"), "{mode}: {:?}", summary.folded_ops);
        assert!(summary.ops.iter().all(|o| o.format_op.is_some()), "{mode}: every node matched its operator");
        // Round trip and re-export: the batch stays dynamic, the outputs stay the same.
        let r = qlite::roundtrip::roundtrip_file(&reg, &path, 0).unwrap();
        assert!(r.differences.is_empty() && r.stable_bytes, "{mode}: {:?}", r.differences);
        let out = dir.path().join(format!("{mode}.tflite"));
        qlite::convert(&reg, &path, &out, &qlite::ConvertOptions::default()).unwrap();
        let t = qlite::load(&reg, &out).unwrap();
        assert_eq!(t.tensor(t.inputs()[0]).unwrap().shape.to_string(), "[?,9,9,1]", "{mode}: shape_signature -1");
        let yt = qlite::run(&t, vec![x.clone()]).unwrap();
        assert_agrees(&yt[0], &want, tolerance(mode), &format!("{mode}: the re-export against TensorFlow Lite"));
        let compare = match mode {
            "float32" | "float16" => "float",
            "dynamic" => "hybrid",
            _ => "exact",
        };
        export_case(&format!("tflite_dynamic_{mode}"), &std::fs::read(&out).unwrap(), &[x], &yt, compare);
        if mode == "int8" {
            text = qlite::inspect::render_text(&summary);
        }
    }
    insta::assert_snapshot!("tflite_dynamic_int8_inspect", text);
}

#[test]
fn keras_savedmodel_with_cropping_and_a_dynamic_batch_matches_keras() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("tflite_dynamic/savedmodel");
    let x = qlite::read_npy_file(&fixture("tflite_dynamic/keras_input.npy")).unwrap();
    let want = qlite::read_npy_file(&fixture("tflite_dynamic/keras_expected.npy")).unwrap();
    let g = qlite::load(&reg, &src).unwrap();
    assert_eq!(g.tensor(g.inputs()[0]).unwrap().shape.to_string(), "[?,9,9,1]");
    assert!(g.nodes().iter().any(|n| n.op.name() == "StridedSlice"), "Cropping2D is a StridedSlice");
    let y = qlite::run(&g, vec![x.clone()]).unwrap();
    assert_agrees(&y[0], &want, FRAMEWORK_TOL, "the SavedModel against Keras");
    let out = dir.path().join("sm.tflite");
    qlite::convert(&reg, &src, &out, &qlite::ConvertOptions::default()).unwrap();
    let t = qlite::load(&reg, &out).unwrap();
    let yt = qlite::run(&t, vec![x.clone()]).unwrap();
    assert_agrees(&yt[0], &want, FRAMEWORK_TOL, "the converted SavedModel against Keras");
    export_case("tflite_dynamic_savedmodel", &std::fs::read(&out).unwrap(), &[x], &yt, "float");
}
