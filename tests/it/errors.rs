//! Bad input: every malformed file gives a typed error naming the problem, never a panic.
//! The messages are snapshotted.

use qlite_tflite::fb;

/// (shape, type, buffer, name, scales, zero points)
type RawTensor = (Vec<i32>, fb::TensorType, u32, &'static str, Vec<f32>, Vec<i64>);

/// A hand-built .tflite whose every field a test can break. The default is a valid
/// 4 → 2 fully connected model.
#[derive(Clone)]
struct Raw {
    version: u32,
    subgraphs: usize,
    tensors: Vec<RawTensor>,
    buffers: Vec<Option<Vec<u8>>>,
    opcodes: Vec<i32>,
    /// (opcode index, inputs, outputs)
    ops: Vec<(u32, Vec<i32>, Vec<i32>)>,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            version: 3,
            subgraphs: 1,
            tensors: vec![
                (vec![1, 4], fb::TensorType::FLOAT32, 0, "x", vec![], vec![]),
                (vec![2, 4], fb::TensorType::FLOAT32, 1, "w", vec![], vec![]),
                (vec![1, 2], fb::TensorType::FLOAT32, 0, "y", vec![], vec![]),
            ],
            buffers: vec![None, Some(vec![0u8; 32])],
            opcodes: vec![fb::BuiltinOperator::FULLY_CONNECTED.0],
            ops: vec![(0, vec![0, 1, -1], vec![2])],
            inputs: vec![0],
            outputs: vec![2],
        }
    }
}

impl Raw {
    fn build(&self) -> Vec<u8> {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let buffers: Vec<_> = self
            .buffers
            .iter()
            .map(|b| {
                let data = b.as_ref().map(|d| fbb.create_vector(d));
                fb::Buffer::create(&mut fbb, &fb::BufferArgs { data, ..Default::default() })
            })
            .collect();
        let buffers = fbb.create_vector(&buffers);
        let tensors: Vec<_> = self
            .tensors
            .iter()
            .map(|(shape, ty, buffer, name, scales, zps)| {
                let shape = Some(fbb.create_vector(shape));
                let name = Some(fbb.create_string(name));
                let scale = Some(fbb.create_vector(scales));
                let zero_point = Some(fbb.create_vector(zps));
                let quantization = Some(fb::QuantizationParameters::create(
                    &mut fbb,
                    &fb::QuantizationParametersArgs { scale, zero_point, ..Default::default() },
                ));
                fb::Tensor::create(
                    &mut fbb,
                    &fb::TensorArgs { shape, type_: *ty, buffer: *buffer, name, quantization, ..Default::default() },
                )
            })
            .collect();
        let tensors = fbb.create_vector(&tensors);
        let ops: Vec<_> = self
            .ops
            .iter()
            .map(|(oc, ins, outs)| {
                let inputs = Some(fbb.create_vector(ins));
                let outputs = Some(fbb.create_vector(outs));
                let opts = fb::FullyConnectedOptions::create(&mut fbb, &Default::default()).as_union_value();
                fb::Operator::create(
                    &mut fbb,
                    &fb::OperatorArgs {
                        opcode_index: *oc,
                        inputs,
                        outputs,
                        builtin_options_type: fb::BuiltinOptions::FullyConnectedOptions,
                        builtin_options: Some(opts),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let operators = Some(fbb.create_vector(&ops));
        let inputs = Some(fbb.create_vector(&self.inputs));
        let outputs = Some(fbb.create_vector(&self.outputs));
        let sg = fb::SubGraph::create(
            &mut fbb,
            &fb::SubGraphArgs {
                tensors: Some(tensors),
                inputs,
                outputs,
                operators,
                name: None,
                debug_metadata_index: -1,
            },
        );
        let sgs: Vec<_> = (0..self.subgraphs).map(|_| sg).collect();
        let subgraphs = Some(fbb.create_vector(&sgs));
        let codes: Vec<_> = self
            .opcodes
            .iter()
            .map(|&c| {
                fb::OperatorCode::create(
                    &mut fbb,
                    &fb::OperatorCodeArgs {
                        deprecated_builtin_code: c.min(127) as i8,
                        custom_code: None,
                        version: 1,
                        builtin_code: fb::BuiltinOperator(c),
                    },
                )
            })
            .collect();
        let operator_codes = Some(fbb.create_vector(&codes));
        let model = fb::Model::create(
            &mut fbb,
            &fb::ModelArgs {
                version: self.version,
                operator_codes,
                subgraphs,
                buffers: Some(buffers),
                ..Default::default()
            },
        );
        fbb.finish(model, Some("TFL3"));
        fbb.finished_data().to_vec()
    }
}

fn read(bytes: Vec<u8>) -> String {
    match qlite_tflite::read_model(bytes.into()) {
        Ok(_) => "OK (no error)".to_string(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_tflite_files_give_clear_errors() {
    let valid = Raw::default().build();
    assert!(qlite_tflite::read_model(valid.clone().into()).is_ok(), "the base model is valid");
    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut case = |name: &'static str, f: &dyn Fn(&mut Raw)| {
        let mut r = Raw::default();
        f(&mut r);
        cases.push((name, read(r.build())));
    };
    case("buffer index out of range", &|r| r.tensors[1].2 = 7);
    case("op input tensor index out of range", &|r| r.ops[0].1[1] = 42);
    case("op output tensor index negative", &|r| r.ops[0].2[0] = -5);
    case("opcode index out of range", &|r| r.ops[0].0 = 3);
    case("subgraph input out of range", &|r| r.inputs[0] = 99);
    case("no subgraph", &|r| r.subgraphs = 0);
    case("two subgraphs", &|r| r.subgraphs = 2);
    case("schema version 2", &|r| r.version = 2);
    case("shape x dtype != buffer length", &|r| r.buffers[1] = Some(vec![0u8; 31]));
    case("element count overflows", &|r| r.tensors[1].0 = vec![i32::MAX, i32::MAX, i32::MAX, i32::MAX, i32::MAX]);
    case("negative dimension", &|r| r.tensors[1].0 = vec![2, -4]);
    case("NaN scale", &|r| {
        r.tensors[1].1 = fb::TensorType::INT8;
        r.buffers[1] = Some(vec![0u8; 8]);
        r.tensors[1].4 = vec![f32::NAN];
        r.tensors[1].5 = vec![0];
    });
    case("negative scale", &|r| {
        r.tensors[1].1 = fb::TensorType::INT8;
        r.buffers[1] = Some(vec![0u8; 8]);
        r.tensors[1].4 = vec![-0.5];
        r.tensors[1].5 = vec![0];
    });
    case("zero point outside int8", &|r| {
        r.tensors[1].1 = fb::TensorType::INT8;
        r.buffers[1] = Some(vec![0u8; 8]);
        r.tensors[1].4 = vec![0.5];
        r.tensors[1].5 = vec![300];
    });
    case("scale without zero point", &|r| {
        r.tensors[1].1 = fb::TensorType::INT8;
        r.buffers[1] = Some(vec![0u8; 8]);
        r.tensors[1].4 = vec![0.5];
    });
    case("cycle", &|r| {
        // y = fc(x2, w); x2 = fc(y, w'): each reads the other's output.
        r.tensors.push((vec![1, 4], fb::TensorType::FLOAT32, 0, "x2", vec![], vec![]));
        r.tensors.push((vec![4, 2], fb::TensorType::FLOAT32, 2, "w2", vec![], vec![]));
        r.buffers.push(Some(vec![0u8; 32]));
        r.ops = vec![(0, vec![3, 1, -1], vec![2]), (0, vec![2, 4, -1], vec![3])];
    });
    case("op writes a constant", &|r| r.ops[0].2[0] = 1);
    case("op reads its own output", &|r| r.ops[0].1[0] = 2);
    case("shape disagrees with inference", &|r| r.tensors[2].0 = vec![1, 3]);
    case("unsupported ops are all named", &|r| {
        r.opcodes = vec![fb::BuiltinOperator::GATHER.0, 250, fb::BuiltinOperator::FULLY_CONNECTED.0];
        r.tensors.push((vec![1, 2], fb::TensorType::FLOAT32, 0, "z", vec![], vec![]));
        r.tensors.push((vec![1, 2], fb::TensorType::FLOAT32, 0, "z2", vec![], vec![]));
        r.ops = vec![(2, vec![0, 1, -1], vec![2]), (0, vec![2], vec![3]), (1, vec![3], vec![4])];
        r.outputs = vec![4];
    });
    case("string tensor", &|r| r.tensors[0].1 = fb::TensorType::STRING);

    let mut raw: Vec<(&str, Vec<u8>)> = vec![
        ("empty file", vec![]),
        ("3 bytes", vec![1, 2, 3]),
        ("wrong identifier", {
            let mut v = valid.clone();
            v[4..8].copy_from_slice(b"ONNX");
            v
        }),
        ("truncated", valid[..valid.len() / 2].to_vec()),
        ("identifier but garbage", {
            let mut v = vec![0xffu8; 64];
            v[4..8].copy_from_slice(b"TFL3");
            v
        }),
    ];
    let mut text = String::new();
    for (name, bytes) in raw.drain(..) {
        text.push_str(&format!("{name}: {}\n", read(bytes)));
    }
    for (name, msg) in &cases {
        assert!(!msg.starts_with("OK"), "{name} was accepted");
        text.push_str(&format!("{name}: {msg}\n"));
    }
    insta::assert_snapshot!("tflite_errors", text);
}

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
