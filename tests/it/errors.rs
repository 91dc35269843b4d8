//! Bad input: every malformed file gives a typed error naming the problem, never a panic.
//! The messages are snapshotted.

// The catalogue of malformed files (hand-built .tflite, ONNX, safetensors, .npy) lives in
// fixtures/malformed/ (`cargo xtask malformed`) and is checked by `malformed.rs`.

#[test]
fn every_truncation_of_a_real_model_is_an_error_not_a_panic() {
    let valid = std::fs::read(crate::common::fixture("digits/cnn.tflite")).unwrap();
    for len in (0..valid.len()).step_by(97) {
        assert!(qlite_tflite::read_model(valid[..len].to_vec().into()).is_err(), "prefix of {len} bytes was accepted");
    }
    // Flipping bytes must never panic (errors or, rarely, a still-valid model are fine).
    let mut rng = qlite::sample::Rng::new(3);
    for _ in 0..400 {
        let mut v = valid.clone();
        for _ in 0..4 {
            let i = (rng.next_u64() as usize) % v.len();
            v[i] = rng.next_u64() as u8;
        }
        if let Ok(g) = qlite_tflite::read_model(v.into()) {
            let _ =
                qlite::Interpreter::new(&g).map(|i| i.run(qlite::roundtrip::random_inputs(&g, 1).unwrap_or_default()));
        }
    }
}

#[test]
fn integer_models_with_unusable_quantization_are_refused_at_load() {
    use crate::common::Builder;
    use qlite::ir::op::*;
    use qlite::ir::{DType, QuantParams, Shape, Tensor};
    use qlite::{Array, Data};
    let int8_input = |b: &mut Builder, q: QuantParams| {
        let t = Tensor::activation("x", DType::I8, Shape::fixed(&[1, 4])).with_quant(q);
        b.input_with(t, Array::new(vec![1, 4], Data::I8(vec![1, 2, 3, 4])).unwrap())
    };
    let mut text = String::new();
    // ADD whose output scale is so small that the output multiplier is not below 1.
    let mut b = Builder::new("bad_add");
    let x = int8_input(&mut b, QuantParams::per_tensor(1.0, 0));
    let y = int8_input(&mut b, QuantParams::per_tensor(1.0, 0));
    let o = b.node(
        Op::Binary(Binary { kind: BinaryKind::Add, activation: Activation::None }),
        &[Some(x), Some(y)],
        Some((DType::I8, QuantParams::per_tensor(1e-9, 0))),
    );
    let (g, _) = b.finish(&[o]);
    text.push_str(&format!("add: {}\n", qlite::Interpreter::new(&g).unwrap_err()));
    // int8 softmax with the wrong output parameters.
    let mut b = Builder::new("bad_softmax");
    let x = int8_input(&mut b, QuantParams::per_tensor(0.1, 0));
    let o = b.node(Op::Softmax(Softmax { beta: 1.0 }), &[Some(x)], Some((DType::I8, QuantParams::per_tensor(0.1, 0))));
    let (g, _) = b.finish(&[o]);
    text.push_str(&format!("softmax: {}\n", qlite::Interpreter::new(&g).unwrap_err()));
    // Max pool whose output parameters differ from its input's.
    let mut b = Builder::new("bad_pool");
    let t = Tensor::activation("x", DType::I8, Shape::fixed(&[1, 2, 2, 1])).with_quant(QuantParams::per_tensor(0.1, 0));
    let x = b.input_with(t, Array::new(vec![1, 2, 2, 1], Data::I8(vec![1, 2, 3, 4])).unwrap());
    let op = Op::Pool2d(Pool2d {
        kind: PoolKind::Max,
        filter: [2, 2],
        stride: [1, 1],
        padding: Padding::Valid,
        activation: Activation::None,
    });
    let o = b.node(op, &[Some(x)], Some((DType::I8, QuantParams::per_tensor(0.2, 0))));
    let (g, _) = b.finish(&[o]);
    text.push_str(&format!("pool: {}\n", qlite::Interpreter::new(&g).unwrap_err()));
    // A run with the wrong input dtype names the input.
    let g = qlite::sample::tiny_graph();
    let e = qlite::run(&g, vec![Array::new(vec![1, 4], Data::I8(vec![0; 4])).unwrap()]).unwrap_err();
    text.push_str(&format!("input: {e}\n"));
    insta::assert_snapshot!("load_time_quant_errors", text);
}
