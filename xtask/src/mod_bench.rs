//! `cargo xtask bench`: numbers for the notes. No timing is asserted anywhere; this only
//! measures and prints.

use super::{R, cargo, root};
use qlite::ir::op::{Activation, FullyConnected};
use qlite::ir::{DType, Graph, Node, Op, Shape, Tensor};
use std::process::Command;

/// A fully connected layer whose weights are `mb` megabytes of f32.
fn big_model(mb: usize) -> Graph {
    let depth = 4096;
    let units = mb * 1_000_000 / 4 / depth;
    let mut g = Graph::new("big");
    let x = g.add_tensor(Tensor::activation("x", DType::F32, Shape::fixed(&[1, depth])));
    let mut rng = qlite::sample::Rng::new(1);
    let w = qlite::ir::tensor::f32_bytes(&rng.vec(units * depth, -0.01, 0.01));
    let w = g.add_tensor(Tensor::constant("w", DType::F32, Shape::fixed(&[units, depth]), w));
    let y = g.add_tensor(Tensor::activation("y", DType::F32, Shape::fixed(&[1, units])));
    g.add_node(Node::new(
        "fc",
        Op::FullyConnected(FullyConnected {
            activation: Activation::None,
            keep_num_dims: false,
            asymmetric_inputs: false,
        }),
        vec![Some(x), Some(w), None],
        vec![y],
    ));
    g.set_inputs(vec![x]);
    g.set_outputs(vec![y]);
    g
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn bench() -> R {
    let dir = root().join("target").join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let reg = qlite::Registry::default();
    let big = dir.join("big_100mb.tflite");
    if !big.exists() {
        qlite::save(&reg, &big_model(100), &big).map_err(|e| e.to_string())?;
    }
    let size = std::fs::metadata(&big).map_err(|e| e.to_string())?.len();
    super::run(cargo().args(["build", "--quiet", "--release", "-p", "qlite-cli"]))?;
    let exe = root().join("target/release/qlite");
    // Runs the release binary with --stats; returns (elapsed ms, peak RSS MiB) medians.
    let measure = |args: &[&str]| -> Result<(f64, f64), String> {
        let (mut times, mut rss) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let out = Command::new(&exe).arg("--stats").args(args).output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("qlite {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
            }
            for w in String::from_utf8_lossy(&out.stderr).split_whitespace() {
                if let Some(v) = w.strip_prefix("elapsed_ms=") {
                    times.push(v.parse::<f64>().unwrap_or(f64::NAN));
                }
                if let Some(v) = w.strip_prefix("peak_rss_kib=") {
                    rss.push(v.parse::<f64>().unwrap_or(f64::NAN) / 1024.0);
                }
            }
        }
        Ok((median(times), median(rss)))
    };
    let big_s = big.to_string_lossy().into_owned();
    println!("bench (release binary, whole process, median of 5; elapsed includes reading, writing and fsync)");
    let (t, m) = measure(&["inspect", &big_s])?;
    println!(
        "  inspect {:.1} MB .tflite: {t:.2} ms, peak RSS {m:.1} MiB (weights mapped, not copied)",
        size as f64 / 1e6
    );
    let big_out = dir.join("big_out.tflite").to_string_lossy().into_owned();
    let (t, m) = measure(&["convert", &big_s, "-o", &big_out])?;
    println!(
        "  convert {:.1} MB .tflite -> .tflite: {t:.1} ms, peak RSS {m:.1} MiB (the output is built in memory)",
        size as f64 / 1e6
    );
    for name in ["mlp", "cnn"] {
        let src = root().join(format!("fixtures/digits/{name}.tflite")).to_string_lossy().into_owned();
        let out = dir.join(format!("{name}.tflite")).to_string_lossy().into_owned();
        let (t, m) = measure(&["convert", &src, "-o", &out])?;
        println!("  convert digits {name} (TF-made .tflite -> qlite .tflite): {t:.2} ms, peak RSS {m:.1} MiB");
    }
    let x = root().join("fixtures/digits/x_test.npy").to_string_lossy().into_owned();
    let cnn = root().join("fixtures/digits/cnn.tflite").to_string_lossy().into_owned();
    let (t, _) = measure(&["run", &cnn, "-i", &x])?;
    println!("  run digits cnn on 360 samples (reference float kernels): {t:.1} ms");
    Ok(())
}
