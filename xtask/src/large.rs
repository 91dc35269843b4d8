//! `cargo xtask large-model`: a model over 2 GiB, written by qlite with its constants after the
//! flatbuffer (TFLite's buffer-offset mode), read back by qlite, and loaded and run by LiteRT;
//! both outputs must agree within 1e-5 relative. The file (≈2.5 GiB) is deleted afterwards
//! unless `--keep` is given.

use super::{R, cargo, oracle_python, root, run};
use qlite::ir::op::{Activation, FullyConnected};
use qlite::ir::{DType, Graph, Node, Op, Shape, Tensor};
use std::process::Command;
use std::time::Instant;

/// Width of the model's input and of every other activation.
const NARROW: usize = 4096;
/// Width of the wide activations: each weight matrix is NARROW × WIDE floats (512 MiB).
const WIDE: usize = 32768;
/// Weight matrices: five of 512 MiB.
const LAYERS: usize = 5;

/// Deterministic weights of about ±1/√fan_in, cheap to make (no RNG pass over 2.5 GiB).
fn weights(layer: usize, rows: usize, cols: usize) -> bytes::Bytes {
    let scale = 1.0 / (cols as f32).sqrt();
    let mut v = Vec::with_capacity(rows * cols * 4);
    for r in 0..rows {
        let mut h = (layer as u32).wrapping_mul(0x9e37_79b9) ^ (r as u32).wrapping_mul(0x85eb_ca6b);
        for _ in 0..cols {
            h ^= h << 13;
            h ^= h >> 17;
            h ^= h << 5;
            let x = (h >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
            v.extend_from_slice(&(x * scale * 1.7).to_le_bytes());
        }
    }
    v.into()
}

fn graph() -> Graph {
    let mut g = Graph::new("large");
    let mut x = g.add_tensor(Tensor::activation("x", DType::F32, Shape::fixed(&[1, NARROW])));
    g.set_inputs(vec![x]);
    for l in 0..LAYERS {
        let (rows, cols) = if l % 2 == 0 { (WIDE, NARROW) } else { (NARROW, WIDE) };
        let w = g.add_tensor(Tensor::constant(
            format!("w{l}"),
            DType::F32,
            Shape::fixed(&[rows, cols]),
            weights(l, rows, cols),
        ));
        let y = g.add_tensor(Tensor::activation(format!("h{l}"), DType::F32, Shape::fixed(&[1, rows])));
        let activation = if l + 1 < LAYERS { Activation::Relu } else { Activation::None };
        g.add_node(Node::new(
            format!("fc{l}"),
            Op::FullyConnected(FullyConnected { activation, keep_num_dims: false, asymmetric_inputs: false }),
            vec![Some(x), Some(w), None],
            vec![y],
        ));
        x = y;
    }
    g.set_outputs(vec![x]);
    g
}

pub fn large_model(keep: bool) -> R {
    let dir = root().join("target").join("large-model");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let model = dir.join("large.tflite");
    run(cargo().args(["build", "--quiet", "--release", "-p", "qlite-cli"]))?;
    let qlite = root().join("target/release/qlite");

    let t = Instant::now();
    let g = graph();
    let made = t.elapsed();
    let t = Instant::now();
    let n = qlite::save(&qlite::Registry::default(), &g, &model).map_err(|e| e.to_string())?;
    let wrote = t.elapsed();
    drop(g);
    eprintln!(
        "large-model: {n} bytes ({:.2} GiB) made in {:.1} s, written in {:.1} s",
        n as f64 / (1u64 << 30) as f64,
        made.as_secs_f64(),
        wrote.as_secs_f64()
    );
    if (n as u64) <= 1 << 31 {
        return Err(format!("the model is {n} bytes, not over 2 GiB"));
    }
    let x = dir.join("x.npy");
    let a = qlite::Array::f32(vec![1, NARROW], (0..NARROW).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect())
        .map_err(|e| e.to_string())?;
    qlite::write_npy_file(&x, &a).map_err(|e| e.to_string())?;
    let y = dir.join("y.npy");
    let res = (|| {
        run(Command::new(&qlite).arg("inspect").arg(&model))?;
        run(Command::new(&qlite).arg("run").arg(&model).arg("--input").arg(&x).arg("--output").arg(&y))?;
        run(Command::new(oracle_python()?).arg(root().join("xtask/large/check.py")).arg(&model).arg(&x).arg(&y))
    })();
    if !keep {
        let _ = std::fs::remove_file(&model);
    }
    res
}
