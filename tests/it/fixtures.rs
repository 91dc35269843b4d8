//! The TensorFlow-made fixtures: read, snapshot, run against LiteRT, re-export.

use crate::common::{export_case, fixture};
use qlite::{Array, Registry};

fn first_rows(a: &Array, n: usize) -> Array {
    let rows: Vec<Array> = (0..n).map(|i| a.row(i).unwrap()).collect();
    Array::stack_rows(&rows).unwrap()
}

#[test]
fn tensorflow_models_read_run_and_reexport() {
    let reg = Registry::default();
    let x = qlite::read_npy_file(&fixture("digits/x_test.npy")).unwrap();
    let x = first_rows(&x, 40);
    for name in ["mlp", "cnn"] {
        let path = fixture(&format!("digits/{name}.tflite"));
        let tf_bytes = std::fs::read(&path).unwrap();
        let g = qlite::load(&reg, &path).unwrap();
        insta::assert_snapshot!(format!("tf_{name}_ir"), qlite::ir::print_graph(&g));
        let summary = qlite::inspect::inspect_file(&reg, &path).unwrap();
        insta::assert_snapshot!(format!("tf_{name}_inspect"), qlite::inspect::render_text(&summary));

        // TensorFlow's file in LiteRT vs qlite's interpreter.
        let y = qlite::run_batched(&g, vec![x.clone()]).unwrap();
        export_case(&format!("tf_{name}"), &tf_bytes, std::slice::from_ref(&x), &y, "float");

        // qlite's re-export: LiteRT must give the same outputs; qlite gives identical ones.
        let ours = qlite::export_bytes(&reg, &g, &path).unwrap();
        let g2 = qlite::load_bytes(&reg, &path, ours.clone()).unwrap();
        assert_eq!(qlite::export_bytes(&reg, &g2, &path).unwrap(), ours, "{name}: re-export is not byte-stable");
        let y2 = qlite::run_batched(&g2, vec![x.clone()]).unwrap();
        assert_eq!(y, y2);
        export_case(&format!("tf_{name}_reexported"), &ours, std::slice::from_ref(&x), &y2, "float");
    }
}

/// TensorFlow's own post-training modes: every fixture is read, snapshotted and run on the
/// whole test split; LiteRT's reference kernels must give the very same bytes (int8, uint8 I/O)
/// or the same floats within tolerance (dynamic range, float16).
#[test]
fn tensorflow_quantized_models_match_litert() {
    let reg = Registry::default();
    let x = qlite::read_npy_file(&fixture("digits/x_test.npy")).unwrap();
    for mode in ["tf_int8", "tf_int8_uint8io", "tf_dynamic", "tf_float16"] {
        for name in ["mlp", "cnn"] {
            let path = fixture(&format!("digits/{mode}/{name}.tflite"));
            let bytes = std::fs::read(&path).unwrap();
            let g = qlite::load(&reg, &path).unwrap();
            insta::assert_snapshot!(format!("{mode}_{name}_ir"), qlite::ir::print_graph(&g));
            let summary = qlite::inspect::inspect_file(&reg, &path).unwrap();
            insta::assert_snapshot!(format!("{mode}_{name}_inspect"), qlite::inspect::render_text(&summary));
            let (inputs, _) = qlite::quantize_inputs(&g, vec![x.clone()]).unwrap();
            let y = qlite::run_batched(&g, inputs.clone()).unwrap();
            let compare = match mode {
                "tf_dynamic" => "hybrid",
                "tf_float16" => "float",
                _ => "exact",
            };
            export_case(&format!("{mode}_{name}"), &bytes, &inputs, &y, compare);
            // qlite's re-export of TensorFlow's quantized file runs identically.
            let ours = qlite::export_bytes(&reg, &g, &path).unwrap();
            let g2 = qlite::load_bytes(&reg, &path, ours.clone()).unwrap();
            assert_eq!(qlite::run_batched(&g2, inputs.clone()).unwrap(), y, "{mode}/{name}");
            export_case(&format!("{mode}_{name}_reexported"), &ours, &inputs, &y, compare);
        }
    }
}

#[test]
fn digits_models_are_accurate() {
    // The models were trained to ~96-98 %: a broken kernel shows up as a collapse.
    let reg = Registry::default();
    let x = qlite::read_npy_file(&fixture("digits/x_test.npy")).unwrap();
    let qlite::Data::I64(labels) = qlite::read_npy_file(&fixture("digits/y_test.npy")).unwrap().into_data() else {
        panic!("labels are int64")
    };
    for name in ["mlp", "cnn"] {
        let g = qlite::load(&reg, &fixture(&format!("digits/{name}.tflite"))).unwrap();
        let y = qlite::run_batched(&g, vec![x.clone()]).unwrap();
        let p = y[0].as_f32().unwrap();
        let correct = p
            .chunks(10)
            .zip(&labels)
            .filter(|(r, l)| r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|m| m.0 as i64) == Some(**l))
            .count();
        let acc = correct as f64 / labels.len() as f64;
        assert!(acc > 0.94, "{name}: accuracy {acc}");
    }
}

#[test]
fn loading_does_not_copy_weights() {
    let reg = Registry::default();
    let path = fixture("digits/cnn.tflite");
    let bytes: bytes::Bytes = std::fs::read(&path).unwrap().into();
    let (lo, hi) = (bytes.as_ptr() as usize, bytes.as_ptr() as usize + bytes.len());
    let g = qlite::load_bytes(&reg, &path, bytes.clone()).unwrap();
    let mut consts = 0;
    for t in g.tensors() {
        if let Some(d) = &t.data {
            let p = d.as_ptr() as usize;
            assert!(p >= lo && p + d.len() <= hi, "constant {:?} was copied out of the file", t.name);
            consts += 1;
        }
    }
    assert!(consts >= 8);
}

#[test]
fn written_constants_are_16_byte_aligned() {
    let reg = Registry::default();
    let path = fixture("digits/mlp.tflite");
    let g = qlite::load(&reg, &path).unwrap();
    let ours: bytes::Bytes = qlite::export_bytes(&reg, &g, &path).unwrap();
    let base = ours.as_ptr() as usize;
    let g2 = qlite::load_bytes(&reg, &path, ours.clone()).unwrap();
    for t in g2.tensors() {
        if let Some(d) = &t.data {
            assert_eq!((d.as_ptr() as usize - base) % 16, 0, "{:?} is not 16-byte aligned in the file", t.name);
        }
    }
    let info = qlite_tflite::file_info(&ours).unwrap();
    assert_eq!(info.min_runtime_version.as_deref(), Some("1.5.0"));
    assert_eq!(info.metadata, vec!["min_runtime_version".to_string()]);
}
