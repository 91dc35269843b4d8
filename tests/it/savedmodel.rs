//! TensorFlow SavedModel and frozen GraphDef import: Keras's own outputs, LiteRT on the
//! converted models, int8 from a SavedModel, signatures, and bad input.

use crate::common::{FRAMEWORK_TOL, assert_agrees, export_case, fixture};
use qlite::{ConvertOptions, Data, QuantConfig, QuantMode, Registry};

#[test]
fn keras_exports_match_keras_and_run_in_litert() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let x = qlite::read_npy_file(&fixture("digits/x_test.npy")).unwrap();
    let mut text = String::new();
    for (name, path, expected) in [
        ("mlp", fixture("savedmodel/mlp"), "savedmodel/mlp_expected.npy"),
        ("cnn", fixture("savedmodel/cnn"), "savedmodel/cnn_expected.npy"),
        ("mlp_frozen", fixture("savedmodel/mlp_frozen.pb"), "savedmodel/mlp_expected.npy"),
        ("ops", fixture("savedmodel/ops"), "savedmodel/ops_expected.npy"),
    ] {
        let want = qlite::read_npy_file(&fixture(expected)).unwrap();
        let g = qlite::load(&reg, &path).unwrap();
        // A dynamic batch stays dynamic: the whole test split runs at once.
        assert_eq!(g.tensor(g.inputs()[0]).unwrap().shape.to_string(), "[?,64]", "{name}");
        let y = qlite::run(&g, vec![x.clone()]).unwrap();
        assert_agrees(&y[0], &want, FRAMEWORK_TOL, &format!("{name}: qlite against Keras"));
        let out = dir.path().join(format!("{name}.tflite"));
        qlite::convert(&reg, &path, &out, &ConvertOptions::default()).unwrap();
        let t = qlite::load(&reg, &out).unwrap();
        assert_eq!(t.tensor(t.inputs()[0]).unwrap().shape.to_string(), "[?,64]", "{name}: shape_signature -1");
        let yt = qlite::run(&t, vec![x.clone()]).unwrap();
        assert_agrees(&yt[0], &want, FRAMEWORK_TOL, &format!("{name}: the converted model against Keras"));
        // LiteRT must agree (float tolerance) on the first samples.
        let rows = qlite::Array::stack_rows(&(0..16).map(|i| x.row(i).unwrap()).collect::<Vec<_>>()).unwrap();
        let y16 = qlite::run(&t, vec![rows.clone()]).unwrap();
        export_case(&format!("savedmodel_{name}"), &std::fs::read(&out).unwrap(), &[rows], &y16, "float");
        text.push_str(&format!("== {name}\n{}\n", qlite::ir::print_graph(&t)));
    }
    insta::assert_snapshot!("savedmodel_converted_ir", text);
}

#[test]
fn int8_from_a_savedmodel_keeps_accuracy_and_is_exact_in_litert() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let x = qlite::read_npy_file(&fixture("digits/x_test.npy")).unwrap();
    let Data::I64(labels) = qlite::read_npy_file(&fixture("digits/y_test.npy")).unwrap().into_data() else {
        panic!("labels")
    };
    let top1 = |y: &qlite::Array| {
        let v = y.as_f32().unwrap();
        let hits = v
            .chunks(10)
            .zip(&labels)
            .filter(|(r, l)| r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as i64 == **l)
            .count();
        hits as f64 / labels.len() as f64
    };
    for name in ["mlp", "cnn"] {
        let src = fixture(&format!("savedmodel/{name}"));
        let float = top1(&qlite::run(&qlite::load(&reg, &src).unwrap(), vec![x.clone()]).unwrap()[0]);
        let out = dir.path().join(format!("{name}_int8.tflite"));
        let o = ConvertOptions {
            quant: QuantConfig::new(QuantMode::Int8),
            calibration: Some(fixture("digits/x_calib.npy")),
            ..Default::default()
        };
        qlite::convert(&reg, &src, &out, &o).unwrap();
        let q = qlite::load(&reg, &out).unwrap();
        let y = qlite::run(&q, vec![x.clone()]).unwrap();
        let acc = top1(&y[0]);
        // Measured: the MLP keeps every sample, the CNN loses one (0.28 points); the floor
        // allows one sample more.
        assert!(acc >= float - 0.0056, "{name}: int8 top-1 {acc} vs float {float}");
        let rows = qlite::Array::stack_rows(&(0..16).map(|i| x.row(i).unwrap()).collect::<Vec<_>>()).unwrap();
        let y16 = qlite::run(&q, vec![rows.clone()]).unwrap();
        export_case(&format!("savedmodel_{name}_int8"), &std::fs::read(&out).unwrap(), &[rows], &y16, "exact");
    }
}

#[test]
fn bad_savedmodels_give_clear_errors() {
    let reg = Registry::default();
    let copy = |name: &str| {
        let d = tempfile::tempdir().unwrap();
        let src = fixture(&format!("savedmodel/{name}"));
        for e in walk(&src) {
            let rel = e.strip_prefix(&src).unwrap();
            let to = d.path().join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&e, &to).unwrap();
        }
        d
    };
    fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() { out.extend(walk(&e)) } else { out.push(e) }
        }
        out
    }
    let shard = "variables/variables.data-00000-of-00001";
    let index = "variables/variables.index";
    let mut text = String::new();
    let mut case = |what: &str, d: &tempfile::TempDir, sig: Option<&str>| {
        let out = d.path().join("out.tflite");
        let o = ConvertOptions { signature: sig.map(str::to_string), ..Default::default() };
        let e = qlite::convert(&reg, d.path(), &out, &o).unwrap_err();
        assert!(!out.exists(), "{what}: output written");
        text.push_str(&format!("{what}: {}\n", e.to_string().replace(d.path().to_str().unwrap(), "<dir>")));
    };
    let d = copy("mlp");
    std::fs::remove_dir_all(d.path().join("variables")).unwrap();
    case("missing variables", &d, None);
    let d = copy("mlp");
    std::fs::write(d.path().join(shard), b"short").unwrap();
    case("variable bytes past the end of the shard", &d, None);
    let d = copy("mlp");
    let mut b = std::fs::read(d.path().join(index)).unwrap();
    b[20] ^= 0x40;
    std::fs::write(d.path().join(index), b).unwrap();
    case("corrupt index block", &d, None);
    let d = copy("mlp");
    let mut b = std::fs::read(d.path().join(shard)).unwrap();
    b[100] ^= 0x01;
    std::fs::write(d.path().join(shard), b).unwrap();
    case("CRC32C mismatch", &d, None);
    let d = copy("mlp");
    case("signature that does not exist", &d, Some("predict"));
    let d = copy("mlp");
    std::fs::write(d.path().join("saved_model.pb"), b"\x0a\xff\xff\xff\x0fnot protobuf").unwrap();
    case("saved_model.pb is not protobuf", &d, None);
    let d = tempfile::tempdir().unwrap();
    case("directory without saved_model.pb", &d, None);
    // A frozen graph whose ops are renamed: every unknown op is listed.
    let pb = std::fs::read(fixture("savedmodel/mlp_frozen.pb")).unwrap();
    let mut gd = prost::Message::decode(&pb[..]).map(|g: qlite_savedmodel::proto::GraphDef| g).unwrap();
    for n in gd.node.iter_mut() {
        if n.op == "Relu" {
            n.op = "Lgamma".into();
        }
        if n.op == "Softmax" {
            n.op = "PyFunc".into();
        }
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("renamed.pb");
    std::fs::write(&p, prost::Message::encode_to_vec(&gd)).unwrap();
    let e = qlite::convert(&reg, &p, &d.path().join("o.tflite"), &ConvertOptions::default()).unwrap_err();
    text.push_str(&format!("unknown ops: {}\n", e.to_string().replace(d.path().to_str().unwrap(), "<dir>")));
    insta::assert_snapshot!("savedmodel_errors", text);
}

#[test]
fn another_signature_can_be_chosen() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("serve.tflite");
    let o = ConvertOptions { signature: Some("serve".into()), ..Default::default() };
    qlite::convert(&reg, &fixture("savedmodel/mlp"), &out, &o).unwrap();
    let g = qlite::load(&reg, &out).unwrap();
    assert_eq!(g.signature().unwrap().key, "serve");
    // A tf.Module saved with two signatures.
    let o = ConvertOptions { signature: Some("logits_only".into()), ..Default::default() };
    qlite::convert(&reg, &fixture("savedmodel/ops"), &out, &o).unwrap();
    let g = qlite::load(&reg, &out).unwrap();
    assert_eq!(g.signature().unwrap().key, "logits_only");
    assert_eq!(g.output_name(0), Some("logits"));
}

/// Decoder and upsampling layers (Conv2DTranspose SAME and VALID with their biases folded,
/// UpSampling2D bilinear and nearest (Keras 3's repeat: shape arithmetic), resize nearest, depth/space moves, reflect pad, tile, squared
/// difference), Rescaling and Normalization (constants captured by value), LayerNormalization
/// and the exact gelu (fused from TF's erfc form when converting) from a Keras
/// `model.export()`: equal to Keras, and the converted file to LiteRT.
#[test]
fn keras_decoder_layers_match_keras() {
    let reg = qlite::Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("savedmodel_ops/savedmodel");
    let x = qlite::read_npy_file(&fixture("savedmodel_ops/input.npy")).unwrap();
    let want = qlite::read_npy_file(&fixture("savedmodel_ops/expected.npy")).unwrap();
    let g = qlite::load(&reg, &src).unwrap();
    let kinds: std::collections::BTreeSet<&str> = g.nodes().iter().map(|n| n.op.name()).collect();
    for k in [
        "TransposeConv2d",
        "ResizeBilinear",
        "ResizeNearestNeighbor",
        "DepthToSpace",
        "SpaceToDepth",
        "MirrorPad",
        "Tile",
        "SquaredDifference",
    ] {
        assert!(kinds.contains(k), "no {k} in {kinds:?}");
    }
    // Conv2DTranspose's BiasAdd is folded into the op.
    assert!(g.nodes().iter().filter(|n| n.op.name() == "TransposeConv2d").all(|n| n.input(2).is_some()));
    let y = qlite::run_batched(&g, vec![x.clone()]).unwrap();
    crate::common::assert_agrees(&y[0], &want, crate::common::FRAMEWORK_TOL, "the SavedModel against Keras");
    let out = dir.path().join("decoder.tflite");
    // The dynamic batch is kept: TRANSPOSE_CONV's output shape is computed at run time
    // (SHAPE -> STRIDED_SLICE -> CONCATENATION) and LiteRT runs the batch of 3.
    qlite::convert(&reg, &src, &out, &qlite::ConvertOptions::default()).unwrap();
    let (ops, _) = qlite_tflite::operator_details(&std::fs::read(&out).unwrap()).unwrap();
    let names: Vec<&str> = ops.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names.iter().filter(|&&n| n == "SHAPE").count(),
        2,
        "one run-time output shape per TRANSPOSE_CONV: {names:?}"
    );
    let t = qlite::load(&reg, &out).unwrap();
    assert!(t.inputs().iter().all(|&i| !t.tensors()[i.index()].shape.is_static()), "the batch stays dynamic");
    assert!(t.nodes().iter().any(|n| n.op.name() == "Gelu"), "the gelu is one GELU");
    let yt = qlite::run_batched(&t, vec![x.clone()]).unwrap();
    crate::common::assert_agrees(&yt[0], &want, crate::common::FRAMEWORK_TOL, "converted, against Keras");
    crate::common::export_case("savedmodel_keras_decoder", &std::fs::read(&out).unwrap(), &[x], &yt, "float");
}
