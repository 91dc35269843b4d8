//! The oracles' own checks: the one comparison helper against the verdicts it shares with
//! `check.py`, and sabotages that show the harness fails when it should.

use crate::common::{Builder, fast_and_sessions_agree};
use qlite::{Array, Data, Tolerance};

fn values(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| match x.as_str() {
            Some("nan") => f64::NAN,
            Some("inf") => f64::INFINITY,
            Some("-inf") => f64::NEG_INFINITY,
            Some(s) => panic!("unknown value {s:?}"),
            None => x.as_f64().unwrap(),
        })
        .collect()
}

fn array(dtype: &str, v: Vec<f64>, shape: Option<&serde_json::Value>) -> Array {
    let shape: Vec<usize> = match shape {
        Some(s) => s.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect(),
        None => vec![v.len()],
    };
    let data = match dtype {
        "float32" => Data::F32(v.iter().map(|&x| x as f32).collect()),
        "int8" => Data::I8(v.iter().map(|&x| x as i8).collect()),
        "uint8" => Data::U8(v.iter().map(|&x| x as u8).collect()),
        "int32" => Data::I32(v.iter().map(|&x| x as i32).collect()),
        other => panic!("compare-cases.json: dtype {other} is not handled here"),
    };
    Array::new(shape, data).unwrap()
}

/// `xtask/conformance/compare-cases.json` holds pairs and the verdict the comparison must give;
/// `check.py --self-test` (run before every conformance check) holds its Python twin to the same
/// file, so the Rust tests and the LiteRT check cannot drift apart.
#[test]
fn the_comparison_helper_gives_the_shared_verdicts() {
    let path = crate::common::root().join("xtask/conformance/compare-cases.json");
    let cases: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert!(cases.len() >= 20, "the shared comparison cases are missing");
    for c in &cases {
        let dtype = c["dtype"].as_str().unwrap();
        let ours = array(dtype, values(&c["ours"]), c.get("ours_shape"));
        let want_dtype = c.get("want_dtype").and_then(|d| d.as_str()).unwrap_or(dtype);
        let want = array(want_dtype, values(&c["want"]), c.get("want_shape"));
        let tol = Tolerance::close(c["rtol"].as_f64().unwrap(), c["atol"].as_f64().unwrap());
        let got = qlite::compare(&ours, &want, tol);
        assert_eq!(got.is_ok(), c["agree"].as_bool().unwrap(), "{}: {got:?}", c["name"]);
    }
}

/// Sabotage: a kernel that produces NaN where the reference gives numbers must fail the
/// check every exported case goes through (here, outputs replaced by NaN and truncated).
#[test]
fn the_case_check_refuses_nan_and_truncated_outputs() {
    let mut b = Builder::new("sabotage");
    let x = b.input("x", &[1, 4], -1.0, 1.0);
    let y =
        b.node(qlite::ir::Op::Unary(qlite::ir::op::Unary { kind: qlite::ir::op::UnaryKind::Relu }), &[Some(x)], None);
    let (g, inputs) = b.finish(&[y]);
    let good = qlite::run(&g, inputs.clone()).unwrap();
    fast_and_sessions_agree("sabotage_good", &g, &inputs, &good);
    let nan = vec![Array::f32(vec![1, 4], vec![f32::NAN; 4]).unwrap()];
    let short = vec![Array::f32(vec![1, 3], good[0].as_f32().unwrap()[..3].to_vec()).unwrap()];
    for (what, bad) in [("nan", nan), ("truncated", short)] {
        let r = std::panic::catch_unwind(|| fast_and_sessions_agree(what, &g, &inputs, &bad));
        assert!(r.is_err(), "{what} outputs passed the case check");
    }
}
