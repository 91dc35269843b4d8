//! `qlite demo`: the README's main job on the bundled digits models.
//!
//! The float MLP and CNN in fixtures/digits were trained on scikit-learn's digits and
//! converted by TensorFlow's converter. The demo converts each with qlite to float32, float16,
//! dynamic-range int8 and full-integer int8 (calibrated on the bundled calibration split),
//! and evaluates every file on the bundled test split: size, top-1, agreement and SQNR against
//! the float model, latency in qlite's interpreter (fast kernels, a session).

use qlite::{CalibrationMethod, ConvertOptions, Data, QuantConfig, QuantMode, Registry};
use std::path::Path;
use std::time::Instant;

const MLP: &[u8] = include_bytes!("../../../fixtures/digits/mlp.tflite");
const CNN: &[u8] = include_bytes!("../../../fixtures/digits/cnn.tflite");
const X_TEST: &[u8] = include_bytes!("../../../fixtures/digits/x_test.npy");
const Y_TEST: &[u8] = include_bytes!("../../../fixtures/digits/y_test.npy");
const X_CALIB: &[u8] = include_bytes!("../../../fixtures/digits/x_calib.npy");

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
    let calib = tmp.path().join("x_calib.npy");
    std::fs::write(&calib, X_CALIB).map_err(|e| format!("{}: {e}", calib.display()))?;
    println!("qlite demo: scikit-learn digits (8x8), {} test samples, 200 calibration samples", labels.len());
    for (name, bytes) in [("mlp", MLP), ("cnn", CNN)] {
        let src = tmp.path().join(format!("{name}_tensorflow.tflite"));
        std::fs::write(&src, bytes).map_err(|e| format!("{}: {e}", src.display()))?;
        let float = qlite::load(reg, &src).map_err(|e| e.to_string())?;
        println!(
            "\n{} ({} parameters; float32 file by TensorFlow's converter, {} bytes)",
            if name == "mlp" { "MLP 64-512-256-10" } else { "CNN conv-depthwise-pool-conv-pool-dense" },
            float.tensors().iter().filter(|t| t.is_const()).map(|t| t.shape.num_elements().unwrap_or(0)).sum::<usize>(),
            bytes.len()
        );
        println!(
            "  {:<9} {:>10} {:>7} {:>10} {:>8} {:>10} {:>10} {:>12}",
            "mode", "size", "ratio", "convert", "top-1", "agree", "SQNR", "latency"
        );
        let mut float_size = 0.0;
        for mode in [QuantMode::None, QuantMode::Float16, QuantMode::Dynamic, QuantMode::Int8] {
            let mut quant = QuantConfig::new(mode);
            quant.method = CalibrationMethod::MinMax;
            let opts = ConvertOptions {
                quant,
                calibration: (mode == QuantMode::Int8).then(|| calib.clone()),
                ..Default::default()
            };
            let label = if mode == QuantMode::None { "float32" } else { mode.name() };
            let out = dir.join(format!("digits_{name}_{label}.tflite"));
            let t = Instant::now();
            let r = qlite::convert(reg, &src, &out, &opts).map_err(|e| e.to_string())?;
            let convert_ms = t.elapsed().as_secs_f64() * 1e3;
            let g = qlite::load(reg, &out).map_err(|e| e.to_string())?;
            let e = qlite::quantize::evaluate(&g, &x, &labels, Some(&float)).map_err(|e| e.to_string())?;
            if mode == QuantMode::None {
                float_size = r.output_bytes as f64;
            }
            let sqnr = e.sqnr_db.unwrap_or(f64::INFINITY);
            println!(
                "  {:<9} {:>8.1}Ki {:>6.2}x {:>8.1}ms {:>7.2}% {:>9.2}% {:>10} {:>9.1} µs",
                label,
                r.output_bytes as f64 / 1024.0,
                r.output_bytes as f64 / float_size.max(1.0),
                convert_ms,
                100.0 * e.top1,
                100.0 * e.agreement.unwrap_or(1.0),
                if sqnr >= 999.0 { "exact".to_string() } else { format!("{sqnr:.1} dB") },
                e.mean_latency_us
            );
        }
    }
    if let Some(d) = out_dir {
        println!("\nconverted models written to {}", d.display());
    }
    println!(
        "\nconvert = import, passes, calibration (int8) and atomic write; latency = qlite's interpreter (fast int8 kernels, a session), one sample, mean"
    );
    Ok(())
}
