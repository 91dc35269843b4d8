//! `qlite diff`: snapshots of what it reports, its exit codes (0 equivalent, 1 different,
//! 2 error) and its errors.

use crate::common::fixture;
use std::process::Command;

/// Run `qlite diff ARGS` in fixtures/ (so paths in the output are stable): (exit code,
/// stdout, stderr).
fn diff(args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_qlite")).arg("diff").args(args).current_dir(fixture("")).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_model_and_its_own_reexport_are_equivalent() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("cnn.tflite");
    let g = qlite::load(&qlite::Registry::default(), &fixture("digits/cnn.tflite")).unwrap();
    qlite::save(&qlite::Registry::default(), &g, &copy).unwrap();
    let (code, out, err) = diff(&["digits/cnn.tflite", copy.to_str().unwrap(), "--data", "digits/x_calib.npy"]);
    assert_eq!(code, 0, "{out}{err}");
    insta::assert_snapshot!("diff_equivalent", out.replace(dir.path().to_str().unwrap(), "<tmp>"));
}

#[test]
fn float_against_tf_int8_names_every_difference() {
    let (code, out, err) = diff(&["digits/cnn.tflite", "digits/tf_int8/cnn.tflite", "--data", "digits/x_calib.npy"]);
    assert_eq!(code, 1, "{err}");
    insta::assert_snapshot!("diff_float_vs_tf_int8", out);

    let (code, json, _) = diff(&["digits/cnn.tflite", "digits/tf_int8/cnn.tflite", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["equivalent"], false);
    assert_eq!(v["ops_a"], 8);
    // TF's converter names tensors its own way: the weights are matched where names agree,
    // and every difference is listed either way.
    let changed = v["weights_changed"].as_array().unwrap().len();
    let only = v["weights_only_a"].as_array().unwrap().len();
    assert!(changed + only >= 8, "{json}");
    assert!(v["layers"].as_array().unwrap().is_empty(), "no data, no layer comparison");
}

#[test]
fn float_against_qlite_int8_compares_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("int8.tflite");
    let mut opts = qlite::ConvertOptions::default();
    opts.quant.mode = qlite::QuantMode::Int8;
    opts.calibration = Some(fixture("digits/x_calib.npy"));
    qlite::convert(&qlite::Registry::default(), &fixture("digits/mlp.tflite"), &q, &opts).unwrap();
    let (code, json, err) = diff(&["digits/mlp.tflite", q.to_str().unwrap(), "--data", "digits/x_calib.npy", "--json"]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let g = qlite::load(&qlite::Registry::default(), &fixture("digits/mlp.tflite")).unwrap();
    // qlite keeps the source's tensor names: every layer of the float model is compared,
    // every weight is matched.
    assert_eq!(v["layers"].as_array().unwrap().len(), g.nodes().len(), "{json}");
    assert_eq!(v["weights_only_a"].as_array().unwrap().len(), 0, "{json}");
    let sqnr = v["outputs"][0]["sqnr_db"].as_f64().unwrap();
    assert!(sqnr > 25.0 && sqnr < 999.0, "output SQNR {sqnr}");
    let worst = v["layers"][0]["sqnr_db"].as_f64().unwrap();
    assert!(v["layers"].as_array().unwrap().iter().all(|l| l["sqnr_db"].as_f64().unwrap() >= worst));
}

#[test]
fn diff_errors_exit_2_with_one_line() {
    let mut text = String::new();
    for args in [
        vec!["digits/missing.tflite", "digits/cnn.tflite"],
        vec!["digits/cnn.tflite", "malformed/tflite_truncated.tflite"],
        // The digits MLP takes [1,64], the ONNX attention block [2,5,8]: no layer comparison on one data set.
        vec!["digits/mlp.tflite", "onnx/attention.onnx", "--data", "digits/x_calib.npy"],
        vec!["digits/cnn.tflite", "digits/cnn.tflite", "--data", "digits/y_test.npy"],
    ] {
        let (code, out, err) = diff(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        text.push_str(&err);
    }
    // Different inputs without data are a difference, not an error.
    let (code, out, _) = diff(&["digits/mlp.tflite", "onnx/attention.onnx"]);
    assert_eq!(code, 1);
    assert!(out.contains("signature: 2 difference(s)"), "{out}");
    insta::assert_snapshot!("diff_errors", text);
}
