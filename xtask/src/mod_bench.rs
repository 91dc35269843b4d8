//! `cargo xtask bench`: numbers for the notes. No timing is asserted anywhere; this only
//! measures and prints.

use super::{R, cargo, root};
use qlite::ir::op::{Activation, FullyConnected};
use qlite::ir::{DType, Graph, Node, Op, Shape, Tensor};
use std::process::Command;
use std::time::Instant;

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
        Op::FullyConnected(FullyConnected { activation: Activation::None, keep_num_dims: false }),
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
    println!("bench: inspect of a {:.1} MB .tflite (release build, 5 runs)", size as f64 / 1e6);
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let out = Command::new(&exe).args(["inspect", "--stats"]).arg(&big).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("qlite inspect failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        for w in err.split_whitespace() {
            if let Some(v) = w.strip_prefix("elapsed_ms=") {
                times.push(v.parse::<f64>().unwrap_or(f64::NAN));
            }
            if let Some(v) = w.strip_prefix("peak_rss_kib=") {
                rss.push(v.parse::<f64>().unwrap_or(f64::NAN));
            }
        }
    }
    println!(
        "  inspect: median {:.2} ms, peak RSS median {:.1} MiB (file {:.1} MiB: weights are mapped, not copied)",
        median(times),
        median(rss) / 1024.0,
        size as f64 / 1048576.0
    );
    for name in ["mlp", "cnn"] {
        let src = root().join(format!("fixtures/digits/{name}.tflite"));
        let out = dir.join(format!("{name}.tflite"));
        let mut t = Vec::new();
        for _ in 0..50 {
            let s = Instant::now();
            qlite::convert(&reg, &src, &out, &qlite::ConvertOptions::default()).map_err(|e| e.to_string())?;
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
        println!("  convert digits {name} (.tflite -> .tflite, debug-or-release as built): median {:.3} ms", median(t));
    }
    Ok(())
}
