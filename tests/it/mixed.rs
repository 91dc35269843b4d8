//! Mixed precision under an SQNR budget: the budget is searched on a validation split and must
//! hold on held-out data, in qlite and in LiteRT (the held-out run is a conformance case).

use crate::common::{export_case, fixture};
use qlite::Array;

fn rows(a: &Array, r: std::ops::Range<usize>) -> Array {
    Array::stack_rows(&r.map(|i| a.row(i).unwrap()).collect::<Vec<_>>()).unwrap()
}

/// Output SQNR of `q` against `f` on `x` (qlite's interpreter).
fn sqnr(f: &qlite::ir::Graph, q: &qlite::ir::Graph, x: &Array) -> f64 {
    let want = qlite::run_batched(f, vec![x.clone()]).unwrap();
    let (xq, _) = qlite::quantize_inputs(q, vec![x.clone()]).unwrap();
    let got = qlite::dequantize_outputs(q, qlite::run_batched(q, xq).unwrap()).unwrap();
    let mut s = qlite::quant::ErrorStats::default();
    s.add(want[0].as_f32().unwrap(), got[0].as_f32().unwrap());
    s.sqnr_db()
}

#[test]
fn the_budget_holds_on_held_out_data_in_qlite_and_litert() {
    let dir = tempfile::tempdir().unwrap();
    let x = qlite::read_npy_file(&fixture("digits/x_test.npy")).unwrap();
    let (validation, held_out) = (rows(&x, 0..180), rows(&x, 180..x.shape()[0]));
    let vpath = dir.path().join("validation.npy");
    qlite::write_npy_file(&vpath, &validation).unwrap();
    let reg = qlite::Registry::default();
    let mut table = String::new();
    for (model, target) in [("mlp", 46.0), ("cnn", 42.0)] {
        let src = fixture(&format!("digits/{model}.tflite"));
        let out = dir.path().join(format!("{model}_mixed.tflite"));
        let mut opts = qlite::ConvertOptions::default();
        opts.quant.mode = qlite::QuantMode::Int8;
        opts.calibration = Some(fixture("digits/x_calib.npy"));
        opts.min_sqnr = Some(target);
        opts.validation = Some(vpath.clone());
        let r = qlite::convert(&reg, &src, &out, &opts).unwrap();
        let m = r.mixed.unwrap();
        assert_eq!(m.measured_on, "validation set");
        assert!(m.all_quantized_db < target, "{model}: the budget needs mixed precision");
        assert!(m.met && m.achieved_db >= target && !m.kept.is_empty(), "{model}: {m:?}");
        // int8 mode promotes to int16 before keeping layers in float: the weightless layers
        // promoted stay int16.
        assert!(m.kept.iter().any(|k| k.precision == "int16"), "{model}: no layer promoted to int16");
        let f = qlite::load(&reg, &src).unwrap();
        let q = qlite::load(&reg, &out).unwrap();
        let held = sqnr(&f, &q, &held_out);
        assert!(held >= target, "{model}: {held:.2} dB on held-out data for a {target} dB budget");
        // LiteRT gives the outputs the held-out SQNR was measured on.
        let y = qlite::run_batched(&q, vec![held_out.clone()]).unwrap();
        export_case(
            &format!("mixed_precision_{model}"),
            &std::fs::read(&out).unwrap(),
            std::slice::from_ref(&held_out),
            &y,
            "float",
        );
        table.push_str(&format!(
            "{model}: all int8 {:.2} dB, {:.2} dB on validation, {held:.2} dB held out, {} bytes\n{}",
            m.all_quantized_db,
            m.achieved_db,
            r.output_bytes,
            qlite::mixed::render_text(&m)
        ));
        if model == "mlp" {
            // Smaller than the float16 file of the same model.
            let mut o16 = qlite::ConvertOptions::default();
            o16.quant.mode = qlite::QuantMode::Float16;
            let f16 = qlite::convert(&reg, &src, &dir.path().join("f16.tflite"), &o16).unwrap();
            assert!(r.output_bytes < f16.output_bytes, "{} vs float16 {}", r.output_bytes, f16.output_bytes);
        }
    }
    eprintln!("{table}");
}

#[test]
fn min_sqnr_errors() {
    let dir = tempfile::tempdir().unwrap();
    let reg = qlite::Registry::default();
    let mut opts = qlite::ConvertOptions { min_sqnr: Some(40.0), ..Default::default() };
    let e = qlite::convert(&reg, &fixture("digits/mlp.tflite"), &dir.path().join("m.tflite"), &opts).unwrap_err();
    assert!(e.to_string().contains("needs a quantization mode"), "{e}");
    opts.quant.mode = qlite::QuantMode::Dynamic;
    let e = qlite::convert(&reg, &fixture("digits/mlp.tflite"), &dir.path().join("m.tflite"), &opts).unwrap_err();
    assert!(e.to_string().contains("give --calibration or --validation"), "{e}");
    assert!(!dir.path().join("m.tflite").exists());
    // Budgets that mean nothing are refused before any work.
    opts.calibration = Some(fixture("digits/x_calib.npy"));
    for (min_sqnr, drop, want) in [
        (Some(f64::NAN), None, "finite number of dB"),
        (Some(f64::INFINITY), None, "finite number of dB"),
        (None, Some(-1.0), "between 0 and 100"),
        (None, Some(150.0), "between 0 and 100"),
        (Some(40.0), Some(1.0), "not both"),
    ] {
        opts.min_sqnr = min_sqnr;
        opts.max_accuracy_drop = drop;
        let e = qlite::convert(&reg, &fixture("digits/mlp.tflite"), &dir.path().join("m.tflite"), &opts).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
    opts.max_accuracy_drop = Some(1.0);
    opts.min_sqnr = None;
    let e = qlite::convert(&reg, &fixture("digits/mlp.tflite"), &dir.path().join("m.tflite"), &opts).unwrap_err();
    assert!(e.to_string().contains("--validation X.npy and --labels Y.npy"), "{e}");
    assert!(!dir.path().join("m.tflite").exists());
}

#[test]
fn an_accuracy_budget_keeps_top1_on_held_out_data() {
    let dir = tempfile::tempdir().unwrap();
    let x = qlite::read_npy_file(&fixture("digits/x_test.npy")).unwrap();
    let y = qlite::read_npy_file(&fixture("digits/y_test.npy")).unwrap();
    let qlite::Data::I64(labels) = y.data().clone() else { panic!("int64 labels") };
    let n = x.shape()[0];
    let (xv, xh) = (rows(&x, 0..180), rows(&x, 180..n));
    let (vx, vy) = (dir.path().join("vx.npy"), dir.path().join("vy.npy"));
    qlite::write_npy_file(&vx, &xv).unwrap();
    qlite::write_npy_file(&vy, &Array::new(vec![180], qlite::Data::I64(labels[..180].to_vec())).unwrap()).unwrap();
    let reg = qlite::Registry::default();
    let src = fixture("digits/cnn.tflite");
    let out = dir.path().join("cnn_acc.tflite");
    let opts = qlite::ConvertOptions {
        quant: qlite::QuantConfig::new(qlite::QuantMode::Int8),
        calibration: Some(fixture("digits/x_calib.npy")),
        max_accuracy_drop: Some(0.0),
        validation: Some(vx),
        labels: Some(vy),
        ..Default::default()
    };
    let r = qlite::convert(&reg, &src, &out, &opts).unwrap();
    let m = r.mixed.unwrap();
    let (f, a) = (m.float_top1.unwrap(), m.achieved_top1.unwrap());
    assert!(m.met && f - a <= 0.0, "{m:?}");
    assert!(m.all_quantized_top1.unwrap() < f, "all-int8 loses accuracy on the validation half: {m:?}");
    // Held out: at most one sample of 180 lost.
    let (fg, qg) = (qlite::load(&reg, &src).unwrap(), qlite::load(&reg, &out).unwrap());
    let e = qlite::quantize::evaluate(&qg, &xh, &labels[180..], Some(&fg)).unwrap();
    let ef = qlite::quantize::evaluate(&fg, &xh, &labels[180..], None).unwrap();
    // (`evaluate` gives top-1 as a fraction.)
    assert!(ef.top1 - e.top1 <= 1.0 / 180.0 + 1e-9, "held out: float {} vs mixed {}", ef.top1, e.top1);
    // The CLI needs the labelled validation data.
    let o = out.to_str().unwrap();
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_qlite"))
        .args(["convert", src.to_str().unwrap(), "-o", o, "--quantize", "int8", "--max-accuracy-drop", "1"])
        .output()
        .unwrap();
    assert!(!cli.status.success());
    assert!(String::from_utf8_lossy(&cli.stderr).contains("--validation"), "{}", String::from_utf8_lossy(&cli.stderr));
}
