//! `qlite check` and `convert --target`: snapshots of the verdicts, exit codes (0 supported,
//! 1 not, 2 error) and errors. The verdicts themselves are held to LiteRT and to TFLM's
//! runtime on every conformance model by `cargo xtask conformance` (targets.py).

use crate::common::fixture;
use std::process::Command;

/// `qlite ARGS` in fixtures/: (exit code, stdout, stderr).
fn qlite(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qlite")).args(args).current_dir(fixture("")).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_mode_of_the_digits_cnn_against_every_target() {
    let mut text = String::new();
    for model in [
        "digits/cnn.tflite",
        "digits/tf_int8/cnn.tflite",
        "digits/tf_dynamic/cnn.tflite",
        "digits/tf_float16/cnn.tflite",
        "tflite_dynamic/float32.tflite",
        "tflite_opaque/control_flow.tflite",
        "onnx/attention.onnx",
    ] {
        for target in ["litert", "tflm", "xnnpack"] {
            let (code, out, err) = qlite(&["check", model, "--target", target]);
            assert!(code == 0 || code == 1, "{model} {target}: {err}");
            assert_eq!(code == 0, out.contains("all supported"), "{model} {target}: {out}");
            text.push_str(&format!("$ qlite check {model} --target {target}  (exit {code})\n{out}\n"));
        }
    }
    insta::assert_snapshot!("check_targets", text);
}

#[test]
fn check_json_lists_every_unsupported_operator() {
    let (code, out, _) = qlite(&["check", "digits/tf_float16/cnn.tflite", "--target", "tflm", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["target"], "tflm");
    assert_eq!(v["operators"], 16);
    let ops = v["unsupported"].as_array().unwrap();
    assert_eq!(ops.len(), 8, "every float16 DEQUANTIZE: {out}");
    assert!(ops.iter().all(|o| o["op"] == "DEQUANTIZE"));
    // Several models: an array, exit 1 if any is unsupported.
    let (code, out, _) =
        qlite(&["check", "digits/tf_int8/cnn.tflite", "digits/tf_dynamic/cnn.tflite", "--target", "tflm", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(v[0]["unsupported"].as_array().unwrap().is_empty());
}

#[test]
fn convert_with_a_target_writes_nothing_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.tflite");
    let o = out.to_str().unwrap();
    // Dynamic range: hybrid kernels TFLM does not have.
    let (code, _, err) = qlite(&["convert", "digits/cnn.tflite", "-o", o, "--quantize", "dynamic", "--target", "tflm"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists(), "nothing is written");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no temporary file is left");
    let mut text = err.replace(dir.path().to_str().unwrap(), "<tmp>");
    // Full integer: TFLM runs it.
    let (code, stdout, err) = qlite(&[
        "convert",
        "digits/cnn.tflite",
        "-o",
        o,
        "--quantize",
        "int8",
        "--calibration",
        "digits/x_calib.npy",
        "--target",
        "tflm",
    ]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(out.exists());
    let (code, _, _) = qlite(&["check", o, "--target", "tflm"]);
    assert_eq!(code, 0);
    // Errors: exit 2 for check, one line each.
    for args in [
        vec!["check", "digits/cnn.tflite", "--target", "coral"],
        vec!["check", "digits/missing.tflite", "--target", "litert"],
        vec!["check", "malformed/tflite_truncated.tflite", "--target", "litert"],
    ] {
        let (code, out, err) = qlite(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        text.push_str(&err);
    }
    let (code, _, err) = qlite(&["convert", "digits/cnn.tflite", "-o", o, "--target", "coral"]);
    assert_ne!(code, 0);
    text.push_str(&err);
    insta::assert_snapshot!("check_errors", text);
}
