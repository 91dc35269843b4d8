//! `cargo xtask keras-apps [MODEL...]`: keras.applications architectures with random weights
//! (MobileNetV2, MobileNetV3Small, EfficientNetB0, DenseNet121, NASNetMobile, ConvNeXtTiny) at a
//! small input size, through qlite (`xtask/bench/keras_apps.py`): the SavedModel imported by
//! qlite must equal Keras; TF's converter's files and qlite's own conversions, run by qlite,
//! must equal LiteRT's reference kernels. Needs TensorFlow (`QLITE_TF_PYTHON`, or the fixtures
//! venv, created on first use) and the oracle venv; the models are made on demand into
//! `target/keras-apps`, not committed, and the check is not run by CI (TensorFlow is not
//! installed there).

use super::{R, cargo, oracle_python, root, run};
use std::path::PathBuf;
use std::process::Command;

pub fn keras_apps(models: &[String]) -> R {
    run(cargo().args(["build", "--quiet", "--release", "-p", "qlite-cli"]))?;
    let py = match std::env::var_os("QLITE_TF_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => super::venv(&root().join(".venv-fixtures"), &root().join("xtask/requirements-fixtures.txt"))?,
    };
    let oracle = oracle_python()?;
    run(Command::new(py)
        .arg(root().join("xtask/bench/keras_apps.py"))
        .arg(root().join("target").join("keras-apps"))
        .arg(root().join("target/release/qlite"))
        .arg(oracle)
        .args(models))
}
