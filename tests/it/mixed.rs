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
            "{model}: all int8 {:.2} dB, {} layer(s) kept float, {:.2} dB on validation, {held:.2} dB held out, {} bytes\n",
            m.all_quantized_db,
            m.kept.len(),
            m.achieved_db,
            r.output_bytes
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
}
