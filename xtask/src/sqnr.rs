//! `cargo xtask sqnr [MODEL...]`: qlite's quantization against TensorFlow's converter on Keras
//! architectures with random weights (`xtask/bench/sqnr_vs_tf.py`): the same float model and
//! calibration images, output SQNR on held-out images. Needs TensorFlow (`QLITE_TF_PYTHON`, or
//! the fixtures venv, created on first use); not run by CI.

use super::{R, cargo, root, run};
use std::path::PathBuf;
use std::process::Command;

pub fn sqnr(models: &[String]) -> R {
    run(cargo().args(["build", "--quiet", "--release", "-p", "qlite-cli"]))?;
    let py = match std::env::var_os("QLITE_TF_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => super::venv(&root().join(".venv-fixtures"), &root().join("xtask/requirements-fixtures.txt"))?,
    };
    let out = root().join("target").join("sqnr");
    run(Command::new(py)
        .arg(root().join("xtask/bench/sqnr_vs_tf.py"))
        .arg(&out)
        .arg(root().join("target/release/qlite"))
        .args(models))
}
