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
    // HARD_SWISH whose input scale is more than 128 times its output scale (LiteRT's Prepare
    // refuses it).
    let mut b = Builder::new("bad_hard_swish");
    let x = int8_input(&mut b, QuantParams::per_tensor(1.0, 0));
    let op = Op::Unary(Unary { kind: UnaryKind::HardSwish });
    let o = b.node(op, &[Some(x)], Some((DType::I8, QuantParams::per_tensor(1e-3, 0))));
    let (g, _) = b.finish(&[o]);
    text.push_str(&format!("hard_swish: {}\n", qlite::Interpreter::new(&g).unwrap_err()));
    // A run with the wrong input dtype names the input.
    let g = qlite::sample::tiny_graph();
    let e = qlite::run(&g, vec![Array::new(vec![1, 4], Data::I8(vec![0; 4])).unwrap()]).unwrap_err();
    text.push_str(&format!("input: {e}\n"));
    insta::assert_snapshot!("load_time_quant_errors", text);
}

/// Hostile but well-formed graphs: the interpreter refuses them when it is created or returns
/// an error when run; it never panics.
#[test]
fn hostile_well_formed_graphs_never_crash_the_interpreter() {
    use qlite::ir::op::*;
    use qlite::ir::{DType, Graph, Node, Shape, Tensor};
    use qlite::{Array, Data};
    type Case = (&'static str, Graph, Vec<Array>);
    let f32_in = |g: &mut Graph, dims: &[usize]| {
        let t = g.add_tensor(Tensor::activation("x", DType::F32, Shape::fixed(dims)));
        g.set_inputs(vec![t]);
        t
    };
    let zeros = |dims: &[usize]| Array::new(dims.to_vec(), Data::F32(vec![0.0; dims.iter().product()])).unwrap();
    let konst = |g: &mut Graph, name: &str, dims: &[usize]| {
        let n: usize = dims.iter().product();
        g.add_tensor(Tensor::constant(name, DType::F32, Shape::fixed(dims), vec![0u8; n * 4].into()))
    };
    let conv = |stride: usize, dilation: usize, x_dims: &[usize], w_dims: &[usize], y_dims: &[usize]| {
        let mut g = Graph::new("conv");
        let x = f32_in(&mut g, x_dims);
        let w = konst(&mut g, "w", w_dims);
        let y = g.add_tensor(Tensor::activation("y", DType::F32, Shape::fixed(y_dims)));
        let op = Conv2d {
            padding: Padding::Same,
            stride: [stride, stride],
            dilation: [dilation, dilation],
            activation: Activation::None,
        };
        g.add_node(Node::new("c", Op::Conv2d(op), vec![Some(x), Some(w), None], vec![y]));
        g.set_outputs(vec![y]);
        (g, vec![zeros(x_dims)])
    };
    let mut cases: Vec<Case> = Vec::new();
    let (g, i) = conv(1 << 40, 1, &[1, 4, 4, 1], &[1, 3, 3, 1], &[1, 1, 1, 1]);
    cases.push(("huge stride", g, i));
    let (g, i) = conv(1, 1 << 40, &[1, 4, 4, 1], &[1, 3, 3, 1], &[1, 4, 4, 1]);
    cases.push(("huge dilation", g, i));
    let (g, i) = conv(0, 1, &[1, 4, 4, 1], &[1, 3, 3, 1], &[1, 4, 4, 1]);
    cases.push(("zero stride", g, i));
    let (g, i) = conv(1, 1, &[1, 0, 4, 1], &[1, 3, 3, 1], &[1, 0, 4, 1]);
    cases.push(("zero-sized height", g, i));
    let (g, i) = conv(1, 1, &[1, 4, 4, 0], &[2, 3, 3, 0], &[1, 4, 4, 2]);
    cases.push(("zero input channels", g, i));
    let (g, i) = conv(1, 1, &[1, 4, 4, 1], &[1, 3, 3, 1], &[1, 9, 9, 1]);
    cases.push(("output shape disagrees with inference", g, i));
    // Depthwise with multiplier 0.
    let mut g = Graph::new("dw");
    let x = f32_in(&mut g, &[1, 4, 4, 2]);
    let w = konst(&mut g, "w", &[1, 3, 3, 2]);
    let y = g.add_tensor(Tensor::activation("y", DType::F32, Shape::fixed(&[1, 4, 4, 2])));
    let op = DepthwiseConv2d {
        padding: Padding::Same,
        stride: [1, 1],
        dilation: [1, 1],
        depth_multiplier: 0,
        activation: Activation::None,
    };
    g.add_node(Node::new("d", Op::DepthwiseConv2d(op), vec![Some(x), Some(w), None], vec![y]));
    g.set_outputs(vec![y]);
    cases.push(("depth multiplier 0", g, vec![zeros(&[1, 4, 4, 2])]));
    // Aliasing: one node writes the tensor it reads; two nodes write one tensor.
    let mut g = Graph::new("alias");
    let x = f32_in(&mut g, &[1, 4]);
    g.add_node(Node::new("r", Op::Unary(Unary { kind: UnaryKind::Relu }), vec![Some(x)], vec![x]));
    g.set_outputs(vec![x]);
    cases.push(("node writes its own input", g, vec![zeros(&[1, 4])]));
    let mut g = Graph::new("twice");
    let x = f32_in(&mut g, &[1, 4]);
    let y = g.add_tensor(Tensor::activation("y", DType::F32, Shape::fixed(&[1, 4])));
    g.add_node(Node::new("a", Op::Unary(Unary { kind: UnaryKind::Relu }), vec![Some(x)], vec![y]));
    g.add_node(Node::new("b", Op::Unary(Unary { kind: UnaryKind::Tanh }), vec![Some(x)], vec![y]));
    g.set_outputs(vec![y]);
    cases.push(("two nodes write one tensor", g, vec![zeros(&[1, 4])]));
    // Pool with a zero filter, and a huge pad.
    let mut g = Graph::new("pool");
    let x = f32_in(&mut g, &[1, 4, 4, 1]);
    let y = g.add_tensor(Tensor::activation("y", DType::F32, Shape::fixed(&[1, 4, 4, 1])));
    let op = Pool2d {
        kind: PoolKind::Max,
        filter: [0, 0],
        stride: [1, 1],
        padding: Padding::Same,
        activation: Activation::None,
    };
    g.add_node(Node::new("p", Op::Pool2d(op), vec![Some(x)], vec![y]));
    g.set_outputs(vec![y]);
    cases.push(("pool filter 0", g, vec![zeros(&[1, 4, 4, 1])]));
    let mut g = Graph::new("pad");
    let x = f32_in(&mut g, &[1, 4]);
    let y = g.add_tensor(Tensor::activation("y", DType::F32, Shape::fixed(&[1, 1 << 40])));
    g.add_node(Node::new("p", Op::Pad(Pad { paddings: vec![[0, 0], [0, (1 << 40) - 4]] }), vec![Some(x)], vec![y]));
    g.set_outputs(vec![y]);
    cases.push(("pad to 2^40 elements", g, vec![zeros(&[1, 4])]));
    // Transpose with a repeated axis.
    let mut g = Graph::new("transpose");
    let x = f32_in(&mut g, &[2, 3]);
    let y = g.add_tensor(Tensor::activation("y", DType::F32, Shape::fixed(&[2, 2])));
    g.add_node(Node::new("t", Op::Transpose(Transpose { perm: vec![0, 0] }), vec![Some(x)], vec![y]));
    g.set_outputs(vec![y]);
    cases.push(("transpose repeats an axis", g, vec![zeros(&[2, 3])]));

    let mut text = String::new();
    for (name, g, inputs) in cases {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match qlite::Interpreter::new(&g) {
            Err(e) => format!("refused at load: {e}"),
            Ok(i) => match i.kernels(qlite::Kernels::Fast).run(inputs) {
                Err(e) => format!("error at run: {e}"),
                Ok(y) => format!("ran: {:?}", y.iter().map(|a| a.shape().to_vec()).collect::<Vec<_>>()),
            },
        }));
        let outcome = outcome.unwrap_or_else(|_| panic!("{name}: the interpreter panicked"));
        text.push_str(&format!("{name}: {outcome}\n"));
    }
    insta::assert_snapshot!("hostile_graphs", text);
}
