//! The `qlite` binary: one clear line on failure, no partial output files.

use crate::common::fixture;
use std::process::Command;

fn qlite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qlite"))
}

fn stderr_of(args: &[&str]) -> (bool, String) {
    let out = qlite().args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.tflite");
    std::fs::write(&bad, b"not a model at all, just text").unwrap();
    let missing = dir.path().join("missing.tflite");
    let out = dir.path().join("out.tflite");
    let mut text = String::new();
    for args in [
        vec!["inspect", missing.to_str().unwrap()],
        vec!["convert", bad.to_str().unwrap(), "-o", out.to_str().unwrap()],
        vec!["run", fixture("digits/mlp.tflite").to_str().unwrap(), "-i", bad.to_str().unwrap()],
        vec![
            "convert",
            fixture("digits/mlp.tflite").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--passes",
            "dce,nope",
        ],
        vec![
            "convert",
            fixture("digits/mlp.tflite").to_str().unwrap(),
            "-o",
            dir.path().join("out.onnx").to_str().unwrap(),
        ],
        // Resource limits from the command line.
        vec!["--max-elements", "100", "inspect", fixture("digits/mlp.tflite").to_str().unwrap()],
        vec![
            "convert",
            fixture("digits/cnn.tflite").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--max-nodes",
            "3",
        ],
        vec!["run", fixture("digits/cnn.tflite").to_str().unwrap(), "-i", bad.to_str().unwrap(), "--max-rank", "2"],
    ] {
        let (ok, err) = stderr_of(&args);
        assert!(!ok, "{args:?} succeeded");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
        // Paths differ per run: keep the snapshot to the message shape.
        text.push_str(
            &err.replace(dir.path().to_str().unwrap(), "<tmp>").replace(fixture("").to_str().unwrap(), "<fixtures>/"),
        );
    }
    insta::assert_snapshot!("cli_errors", text);
    // A failed conversion leaves nothing behind: no output, no temp file.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("bad.tflite")], "{left:?}");
}

#[test]
fn run_stacks_a_batch_and_convert_writes_a_readable_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mlp.tflite");
    let st = qlite()
        .args(["convert", fixture("digits/mlp.tflite").to_str().unwrap(), "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let y = dir.path().join("y.npy");
    let st = qlite()
        .args([
            "run",
            out.to_str().unwrap(),
            "-i",
            fixture("digits/x_test.npy").to_str().unwrap(),
            "-o",
            y.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let y = qlite::read_npy_file(&y).unwrap();
    assert_eq!(y.shape(), &[360, 10]);
    let sums: Vec<f32> = y.as_f32().unwrap().chunks(10).map(|r| r.iter().sum()).collect();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-4), "softmax rows sum to 1");
}

#[test]
fn inspect_json_and_roundtrip_and_demo() {
    let out = qlite().args(["inspect", "--json", fixture("digits/cnn.tflite").to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "tflite");
    assert_eq!(v["ops"][1]["format_op"], "CONV_2D");
    assert_eq!(v["inputs"][0]["shape"], "[1,64]");
    let out = qlite()
        .args([
            "roundtrip",
            fixture("digits/mlp.tflite").to_str().unwrap(),
            fixture("digits/cnn.tflite").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = qlite().arg("demo").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("MLP 64-512-256-10") && text.contains("CNN") && text.matches("int8").count() >= 2, "{text}");
}

/// SIGKILL in the middle of writing a large output leaves no partial file under the output
/// name: the data goes to a temporary file that is renamed only once complete and synced.
#[cfg(unix)]
#[test]
fn a_conversion_killed_while_writing_leaves_no_partial_output() {
    use qlite::ir::op::{Activation, FullyConnected};
    use qlite::ir::{DType, Graph, Node, Op, Shape, Tensor};
    let dir = tempfile::tempdir().unwrap();
    // A 192 MiB model (zeros: cheap to make, as slow to write as any other bytes).
    let (units, depth) = (12288usize, 4096usize);
    let mut g = Graph::new("big");
    let x = g.add_tensor(Tensor::activation("x", DType::F32, Shape::fixed(&[1, depth])));
    let w = g.add_tensor(Tensor::constant(
        "w",
        DType::F32,
        Shape::fixed(&[units, depth]),
        vec![0u8; units * depth * 4].into(),
    ));
    let y = g.add_tensor(Tensor::activation("y", DType::F32, Shape::fixed(&[1, units])));
    let op = FullyConnected { activation: Activation::None, keep_num_dims: false, asymmetric_inputs: false };
    g.add_node(Node::new("fc", Op::FullyConnected(op), vec![Some(x), Some(w), None], vec![y]));
    g.set_inputs(vec![x]);
    g.set_outputs(vec![y]);
    let src = dir.path().join("big.tflite");
    qlite::save(&qlite::Registry::default(), &g, &src).unwrap();
    drop(g);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("converted.tflite");
    let mut killed_mid_write = false;
    for _attempt in 0..5 {
        let _ = std::fs::remove_file(&out);
        let mut child = qlite()
            .args(["convert", src.to_str().unwrap(), "-o", out.to_str().unwrap(), "--quantize", "float16"])
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the temporary file exists and has data, then kill.
        let start = std::time::Instant::now();
        let mut writing = false;
        while start.elapsed() < std::time::Duration::from_secs(60) {
            let tmp = std::fs::read_dir(&out_dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .find(|e| e.file_name().to_string_lossy().starts_with(".qlite-"));
            if tmp.is_some_and(|e| e.metadata().is_ok_and(|m| m.len() > 0)) {
                writing = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if writing && !status.success() {
            killed_mid_write = true;
            assert!(!out.exists(), "a partial output exists under the output name after SIGKILL");
            break;
        }
    }
    assert!(killed_mid_write, "never caught the conversion while it was writing");
}

/// `qlite bench --json --profile`: the fields the issue names plus the session's arena, no
/// allocation per run on an int8 model, one timed row per node; a bad `--kernels` is one line.
#[test]
fn bench_reports_latency_arena_and_per_node_times() {
    let model = fixture("digits/tf_int8/cnn.tflite");
    let out =
        qlite().args(["bench", model.to_str().unwrap(), "--iterations", "20", "--json", "--profile"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["iterations"], 20);
    assert_eq!(v["kernels"], "fast");
    let (median, min) = (v["median_us"].as_f64().unwrap(), v["min_us"].as_f64().unwrap());
    assert!(min > 0.0 && min <= median, "min {min}, median {median}");
    assert_eq!(v["allocations_per_run"].as_f64(), Some(0.0), "{v}");
    assert!(v["arena_bytes"].as_u64().unwrap() > 0);
    assert!(v["fast_nodes"].as_u64().unwrap() >= 4, "{v}");
    // What it ran on: the tier, and whether AMX-INT8 could run here (probed, never assumed).
    assert_eq!(v["isa"], qlite::Isa::process_default().name());
    assert!(v["amx"].as_str().unwrap().starts_with("AMX-INT8: "), "{v}");
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 10, "every node of the CNN is timed");
    assert!(nodes.iter().any(|n| n["op"] == "DepthwiseConv2d"), "{nodes:?}");
    let (ok, err) = stderr_of(&["bench", model.to_str().unwrap(), "--kernels", "fastest"]);
    assert!(!ok && err.contains("fastest"), "{err}");
}

/// `qlite inspect | head`: a reader that closes the pipe ends qlite quietly, with no panic.
#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    let mut child = qlite()
        .args(["inspect", "--json"])
        .arg(crate::common::fixture("digits/cnn.tflite"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}
