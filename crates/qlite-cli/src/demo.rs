//! `qlite demo`: the README's main job on the bundled digits models.
//!
//! The float MLP and CNN in fixtures/digits were trained on scikit-learn's digits and
//! converted by TensorFlow's converter. The demo imports each, converts it with qlite,
//! re-reads qlite's file and evaluates it on the bundled test split.

use qlite::{Array, Data, Registry};
use std::path::Path;
use std::time::Instant;

const MLP: &[u8] = include_bytes!("../../../fixtures/digits/mlp.tflite");
const CNN: &[u8] = include_bytes!("../../../fixtures/digits/cnn.tflite");
const X_TEST: &[u8] = include_bytes!("../../../fixtures/digits/x_test.npy");
const Y_TEST: &[u8] = include_bytes!("../../../fixtures/digits/y_test.npy");

fn argmax_rows(y: &Array) -> Vec<usize> {
    let (Some(v), Some(&cols)) = (y.as_f32(), y.shape().last()) else { return vec![] };
    v.chunks(cols.max(1))
        .map(|r| r.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0)
        .collect()
}

pub fn run(reg: &Registry, out_dir: Option<&Path>) -> Result<(), String> {
    let x = qlite::npy::read_npy(X_TEST).map_err(|e| format!("bundled x_test.npy: {e}"))?;
    let labels: Vec<i64> =
        match qlite::npy::read_npy(Y_TEST).map_err(|e| format!("bundled y_test.npy: {e}"))?.into_data() {
            Data::I64(v) => v,
            _ => return Err("bundled y_test.npy is not int64".into()),
        };
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let dir = out_dir.unwrap_or(tmp.path());
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("qlite demo: scikit-learn digits (8x8), {} test samples", labels.len());
    println!(
        "{:<14} {:>10} {:>10} {:>8} {:>12} {:>14}",
        "model", "size", "convert", "top-1", "run/sample", "max |Δ| vs TF"
    );
    for (name, bytes) in [("float32 MLP", MLP), ("float32 CNN", CNN)] {
        let src = Path::new(name).with_extension("tflite");
        let tf_graph = qlite::load_bytes(reg, &src, bytes.to_vec().into()).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let mut g = tf_graph.clone();
        qlite::run_passes(&mut g, &qlite::ConvertOptions::default()).map_err(|e| e.to_string())?;
        let out = dir.join(format!("digits_{}.tflite", name.split(' ').nth(1).unwrap_or("model").to_lowercase()));
        let size = qlite::save(reg, &g, &out).map_err(|e| e.to_string())?;
        let convert_ms = t0.elapsed().as_secs_f64() * 1e3;
        let ours = qlite::load(reg, &out).map_err(|e| e.to_string())?;
        let t1 = Instant::now();
        let y = qlite::run_batched(&ours, vec![x.clone()]).map_err(|e| e.to_string())?;
        let per_sample_us = t1.elapsed().as_secs_f64() * 1e6 / labels.len().max(1) as f64;
        let y_tf = qlite::run_batched(&tf_graph, vec![x.clone()]).map_err(|e| e.to_string())?;
        let pred = argmax_rows(&y[0]);
        let correct = pred.iter().zip(&labels).filter(|(p, l)| **p as i64 == **l).count();
        let max_diff = match (y[0].as_f32(), y_tf[0].as_f32()) {
            (Some(a), Some(b)) => a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max),
            _ => f32::NAN,
        };
        println!(
            "{:<14} {:>8.1}Ki {:>8.2}ms {:>7.2}% {:>10.1}µs {:>14.2e}",
            name,
            size as f64 / 1024.0,
            convert_ms,
            100.0 * correct as f64 / labels.len().max(1) as f64,
            per_sample_us,
            max_diff
        );
    }
    if let Some(d) = out_dir {
        println!("converted models written to {}", d.display());
    }
    println!("(quantized rows arrive with the quantization pipeline)");
    Ok(())
}
