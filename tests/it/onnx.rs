//! ONNX import: fixtures against onnxruntime's outputs, layout cleanup, LiteRT, bad input.

use crate::common::{FRAMEWORK_TOL, assert_agrees, export_case, export_case_with_reference, fixture};
use prost::Message;
use qlite::{Array, ConvertOptions, Registry};
use qlite_onnx::proto;

#[test]
fn fixtures_match_onnxruntime_and_litert_without_inner_transposes() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for name in ["mlp", "cnn", "torch_style_cnn", "resnet_style", "activations", "grouped_lrn", "gemm_trans_a"] {
        let model = fixture(&format!("onnx/{name}.onnx"));
        let x = qlite::read_npy_file(&fixture(&format!("onnx/{name}_input.npy"))).unwrap();
        let want = qlite::read_npy_file(&fixture(&format!("onnx/{name}_expected.npy"))).unwrap();
        // The imported graph, run as is (NCHW with layout Transposes).
        let g = qlite::load(&reg, &model).unwrap();
        let y = qlite::run_batched(&g, vec![x.clone()]).unwrap();
        assert_agrees(&y[0], &want, FRAMEWORK_TOL, &format!("{name}: the imported graph against onnxruntime"));
        // Converted: cleanup removes the layout Transposes; LiteRT must agree.
        let out = dir.path().join(format!("{name}.tflite"));
        qlite::convert(&reg, &model, &out, &ConvertOptions::default()).unwrap();
        let t = qlite::load(&reg, &out).unwrap();
        // With NCHW I/O a Transpose may remain at an input (after data movement such as a
        // Pad) or at an output (not for one channel, where it is a Reshape); none inside.
        let transposes: Vec<_> = t.nodes().iter().filter(|n| n.op.name() == "Transpose").collect();
        let at_input = |mut x: qlite::ir::TensorId| loop {
            if t.inputs().contains(&x) {
                return true;
            }
            match t.producer(x).map(|p| &t.nodes()[p.index()]) {
                Some(p) if matches!(p.op.name(), "Pad" | "Reshape") => x = p.input(0).unwrap(),
                _ => return false,
            }
        };
        let inner = transposes
            .iter()
            .filter(|n| !at_input(n.input(0).unwrap()) && !t.outputs().contains(&n.outputs[0]))
            .count();
        assert_eq!(inner, 0, "{name}: Transposes left inside the converted graph");
        let summary = qlite::inspect::inspect_file(&reg, &out).unwrap();
        assert_eq!(summary.transposes, transposes.len());
        let yt = qlite::run_batched(&t, vec![x.clone()]).unwrap();
        assert_agrees(&yt[0], &want, FRAMEWORK_TOL, &format!("{name}: the converted model against onnxruntime"));
        // LiteRT's reference LRN kernel sums one channel fewer than TensorFlow's window (and
        // ONNX's, and LiteRT's default kernel): hold it to qlite's emulation of that kernel.
        let has_lrn = t.nodes().iter().any(|n| matches!(n.op, qlite::ir::Op::LocalResponseNorm(_)));
        let reference = has_lrn.then(|| {
            let r = qlite::Interpreter::new(&t).unwrap().litert_reference_lrn(true).run(vec![x.clone()]).unwrap();
            let differs = qlite::compare(&r[0], &want, qlite::Tolerance::close(1e-3, 0.0)).is_err();
            assert!(differs, "{name}: the reference-window emulation should differ");
            r
        });
        export_case_with_reference(
            &format!("onnx_{name}"),
            &std::fs::read(&out).unwrap(),
            &[x],
            &yt,
            reference.as_deref(),
            "float",
        );
        text.push_str(&format!("== {name}\n{}\n", qlite::ir::print_graph(&t)));
        // Names: the signature keeps the ONNX input and output names.
        assert_eq!(t.input_name(0), g.input_name(0));
        assert_eq!(t.output_name(0), g.output_name(0));
    }
    insta::assert_snapshot!("onnx_converted_ir", text);
}

#[test]
fn dynamic_batch_and_input_shape_override() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cnn.tflite");
    let model = fixture("onnx/torch_style_cnn.onnx");
    qlite::convert(&reg, &model, &out, &ConvertOptions::default()).unwrap();
    let g = qlite::load(&reg, &out).unwrap();
    let s = &g.tensor(g.inputs()[0]).unwrap().shape;
    assert_eq!(s.to_string(), "[?,1,8,8]", "a symbolic batch stays dynamic (shape_signature -1)");
    let mut o = ConvertOptions::default();
    o.input_shapes.insert("input".into(), [4, 1, 8, 8].map(qlite::ir::Dim::Fixed).to_vec());
    qlite::convert(&reg, &model, &out, &o).unwrap();
    let g = qlite::load(&reg, &out).unwrap();
    assert_eq!(g.tensor(g.inputs()[0]).unwrap().shape.to_string(), "[4,1,8,8]");
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> proto::NodeProto {
    proto::NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_node")),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn value(name: &str, dims: &[i64]) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(proto::type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(proto::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| proto::tensor_shape_proto::Dimension {
                            // A negative size in these tests: a dynamic dim ("N").
                            value: Some(if d < 0 {
                                proto::tensor_shape_proto::dimension::Value::DimParam("N".into())
                            } else {
                                proto::tensor_shape_proto::dimension::Value::DimValue(d)
                            }),
                            denotation: None,
                        })
                        .collect(),
                }),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

fn model(nodes: Vec<proto::NodeProto>, inits: Vec<proto::TensorProto>) -> Vec<u8> {
    model_io(nodes, inits, &[1, 4], &[1, 4])
}

fn model_io(nodes: Vec<proto::NodeProto>, inits: Vec<proto::TensorProto>, x: &[i64], y: &[i64]) -> Vec<u8> {
    let m = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        graph: Some(proto::GraphProto {
            node: nodes,
            name: Some("g".into()),
            initializer: inits,
            input: vec![value("x", x)],
            output: vec![value("y", y)],
            ..Default::default()
        }),
        ..Default::default()
    };
    m.encode_to_vec()
}

fn f32_init(name: &str, dims: &[i64], n: usize) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        raw_data: Some(vec![0u8; n * 4].into()),
        ..Default::default()
    }
}

fn i64_init(name: &str, dims: &[i64], v: &[i64]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(7),
        raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into()),
        ..Default::default()
    }
}

/// PyTorch's `x.view(x.size(0), x.size(1), x.size(2) * x.size(3))` with a dynamic batch:
/// `Shape → Gather → Mul → Unsqueeze → Concat → Reshape`. The integer arithmetic on shape
/// values is folded (the batch stays one run-time dim); the file keeps the dynamic batch and
/// LiteRT runs a batch of 3.
#[test]
fn shape_arithmetic_with_mul_folds_into_the_reshape() {
    let gather = |i: &str, o: &str| {
        let mut n = node("Gather", &["s", i], &[o]);
        n.name = Some(format!("gather_{o}"));
        n
    };
    let unsq = |i: &str, o: &str| {
        let mut n = node("Unsqueeze", &[i, "axis0"], &[o]);
        n.name = Some(format!("unsqueeze_{o}"));
        n
    };
    let mut concat = node("Concat", &["b1", "c1", "hw1"], &["target"]);
    concat.attribute.push(proto::AttributeProto {
        name: Some("axis".into()),
        r#type: Some(2),
        i: Some(0),
        ..Default::default()
    });
    let nodes = vec![
        node("Shape", &["x"], &["s"]),
        gather("i0", "b"),
        gather("i1", "c"),
        gather("i2", "h"),
        gather("i3", "w"),
        node("Mul", &["h", "w"], &["hw"]),
        unsq("b", "b1"),
        unsq("c", "c1"),
        unsq("hw", "hw1"),
        concat,
        node("Reshape", &["x", "target"], &["r"]),
        node("Relu", &["r"], &["y"]),
    ];
    let inits = vec![
        i64_init("i0", &[], &[0]),
        i64_init("i1", &[], &[1]),
        i64_init("i2", &[], &[2]),
        i64_init("i3", &[], &[3]),
        i64_init("axis0", &[1], &[0]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("flatten.onnx");
    std::fs::write(&p, model_io(nodes, inits, &[-1, 3, 4, 5], &[-1, 3, 20])).unwrap();
    let reg = Registry::default();
    let out = dir.path().join("flatten.tflite");
    qlite::convert(&reg, &p, &out, &ConvertOptions::default()).unwrap();
    let t = qlite::load(&reg, &out).unwrap();
    let ops: Vec<&str> = t.nodes().iter().map(|n| n.op.name()).collect();
    assert_eq!(ops, ["Reshape", "Relu"]);
    assert_eq!(t.tensor(t.outputs()[0]).unwrap().shape.to_string(), "[?,3,20]");
    let v: Vec<f32> = (0..3 * 60).map(|i| (i as f32 * 0.37).sin()).collect();
    let x = Array::f32(vec![3, 3, 4, 5], v.clone()).unwrap();
    let y = qlite::run(&t, vec![x.clone()]).unwrap();
    let want: Vec<f32> = v.iter().map(|&a| a.max(0.0)).collect();
    assert_eq!(y[0], Array::f32(vec![3, 3, 20], want).unwrap());
    export_case("onnx_dynamic_flatten_mul", &std::fs::read(&out).unwrap(), &[x], &y, "float");
}

/// A stride-2 convolution with explicit pads [1, 1, 1, 1] on a height and width known only at
/// run time: SAME would pad (0, 1) at an even size, so the pads stay explicit (they were taken
/// for SAME when the unknown sizes were read as 1). Kept dynamic with `--input-shape x=1,1,?,?`,
/// the conversion equals the one at a fixed 8x8, and LiteRT runs it resized.
#[test]
fn explicit_pads_on_run_time_sizes_stay_explicit() {
    let int_attr = |name: &str, v: &[i64]| proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(7),
        ints: v.to_vec(),
        ..Default::default()
    };
    let mut conv = node("Conv", &["x", "w"], &["y"]);
    conv.attribute =
        vec![int_attr("pads", &[1, 1, 1, 1]), int_attr("strides", &[2, 2]), int_attr("kernel_shape", &[3, 3])];
    let mut w = f32_init("w", &[2, 1, 3, 3], 18);
    let wv: Vec<f32> = (0..18).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.1).collect();
    w.raw_data = Some(wv.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("conv.onnx");
    std::fs::write(&p, model_io(vec![conv], vec![w], &[1, 1, -1, -1], &[1, 2, -1, -1])).unwrap();
    let reg = Registry::default();
    let convert = |dims: Vec<qlite::ir::Dim>, out: &str| {
        let mut o = ConvertOptions::default();
        o.input_shapes.insert("x".into(), dims);
        let out = dir.path().join(out);
        qlite::convert(&reg, &p, &out, &o).unwrap();
        out
    };
    use qlite::ir::Dim::{Dynamic, Fixed};
    let dynamic = convert(vec![Fixed(1), Fixed(1), Dynamic, Dynamic], "dynamic.tflite");
    let fixed = convert(vec![Fixed(1), Fixed(1), Fixed(8), Fixed(8)], "fixed.tflite");
    let (gd, gf) = (qlite::load(&reg, &dynamic).unwrap(), qlite::load(&reg, &fixed).unwrap());
    assert_eq!(gd.tensor(gd.inputs()[0]).unwrap().shape.to_string(), "[1,1,?,?]");
    let v: Vec<f32> = (0..64).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.25).collect();
    let x = Array::f32(vec![1, 1, 8, 8], v).unwrap();
    let (yd, yf) = (qlite::run(&gd, vec![x.clone()]).unwrap(), qlite::run(&gf, vec![x.clone()]).unwrap());
    assert_eq!(yd[0].shape(), &[1, 2, 4, 4]);
    assert_eq!(yd, yf, "the run-time-size conversion computes what the fixed one does");
    export_case("onnx_conv_explicit_pads_runtime_size", &std::fs::read(&dynamic).unwrap(), &[x], &yd, "float");
}

#[test]
fn bad_onnx_models_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("w.bin"), [0u8; 16]).unwrap();
    let external = |loc: &str| proto::TensorProto {
        name: Some("w".into()),
        dims: vec![4],
        data_type: Some(1),
        data_location: Some(1),
        external_data: vec![proto::StringStringEntryProto { key: Some("location".into()), value: Some(loc.into()) }],
        ..Default::default()
    };
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path().join("w.bin"), dir.path().join("link.bin")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not a protobuf", b"\x08\x07this is not protobuf at all \xff\xff\xff".to_vec()),
        ("node input names no tensor", model(vec![node("Relu", &["nope"], &["y"])], vec![])),
        (
            "unsupported ops are all named",
            model(
                vec![
                    node("Hardmax", &["x"], &["a"]),
                    node("Relu", &["a"], &["b"]),
                    node("NonMaxSuppression", &["b"], &["y"]),
                ],
                vec![],
            ),
        ),
        (
            "initializer length disagrees with shape",
            model(vec![node("Add", &["x", "w"], &["y"])], vec![f32_init("w", &[1, 4], 3)]),
        ),
        (
            "raw_data and typed data",
            model(
                vec![node("Add", &["x", "w"], &["y"])],
                vec![proto::TensorProto { float_data: vec![1.0; 4], ..f32_init("w", &[1, 4], 4) }],
            ),
        ),
        (
            "external data escaping the directory",
            model(vec![node("Add", &["x", "w"], &["y"])], vec![external("../w.bin")]),
        ),
        ("external data through a symlink", model(vec![node("Add", &["x", "w"], &["y"])], vec![external("link.bin")])),
        (
            "cycle",
            model(
                vec![node("Relu", &["b"], &["a"]), node("Relu", &["a"], &["b"]), node("Relu", &["b"], &["y"])],
                vec![],
            ),
        ),
        ("output never produced", model(vec![node("Relu", &["x"], &["z"])], vec![])),
        (
            // Zero padding equals -inf padding only for inputs known to be >= 0 (after a ReLU).
            "max pool with padding SAME cannot express, on a signed input",
            model_io(
                vec![proto::NodeProto {
                    attribute: [("kernel_shape", vec![3, 3]), ("pads", vec![1, 1, 1, 1]), ("strides", vec![2, 2])]
                        .into_iter()
                        .map(|(k, v)| proto::AttributeProto {
                            name: Some(k.into()),
                            ints: v,
                            r#type: Some(7),
                            ..Default::default()
                        })
                        .collect(),
                    ..node("MaxPool", &["x"], &["y"])
                }],
                vec![],
                &[1, 1, 4, 4],
                &[1, 1, 2, 2],
            ),
        ),
        (
            "a dynamic-batch reshape target with two run-time dims",
            model_io(
                vec![
                    node("Shape", &["x"], &["s"]),
                    proto::NodeProto {
                        attribute: vec![proto::AttributeProto {
                            name: Some("axis".into()),
                            i: Some(0),
                            r#type: Some(2),
                            ..Default::default()
                        }],
                        ..node("Concat", &["s", "s"], &["t"])
                    },
                    node("Reshape", &["x", "t"], &["y"]),
                ],
                vec![],
                &[-1, 4],
                &[-1, 4, -1, 4],
            ),
        ),
        (
            "run-time shape arithmetic used as data",
            model_io(vec![node("Shape", &["x"], &["s"]), node("Mul", &["s", "s"], &["y"])], vec![], &[-1, 4], &[2]),
        ),
    ];
    let reg = Registry::default();
    let mut text = String::new();
    for (name, bytes) in cases {
        let p = dir.path().join("m.onnx");
        std::fs::write(&p, &bytes).unwrap();
        let out = dir.path().join("out.tflite");
        let e = qlite::convert(&reg, &p, &out, &ConvertOptions::default()).unwrap_err();
        assert!(!out.exists());
        text.push_str(&format!("{name}: {}\n", e.to_string().replace(dir.path().to_str().unwrap(), "<tmp>")));
    }
    insta::assert_snapshot!("onnx_errors", text);
}

/// `--io-layout nhwc`: NHWC inputs, the same outputs as onnxruntime on the NCHW input, and no
/// Transpose left (the input's transpose cancels against the convolution's).
#[test]
fn nhwc_io_layout() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("onnx/torch_style_cnn.onnx");
    let x = qlite::read_npy_file(&fixture("onnx/torch_style_cnn_input.npy")).unwrap();
    let want = qlite::read_npy_file(&fixture("onnx/torch_style_cnn_expected.npy")).unwrap();
    let s = x.shape().to_vec();
    assert_eq!(s.len(), 4);
    let v = x.as_f32().unwrap();
    let mut t = vec![0f32; v.len()];
    for n in 0..s[0] {
        for c in 0..s[1] {
            for h in 0..s[2] {
                for w in 0..s[3] {
                    t[((n * s[2] + h) * s[3] + w) * s[1] + c] = v[((n * s[1] + c) * s[2] + h) * s[3] + w];
                }
            }
        }
    }
    let x_nhwc = Array::f32(vec![s[0], s[2], s[3], s[1]], t).unwrap();
    let out = dir.path().join("nhwc.tflite");
    let opts = ConvertOptions { nhwc_io: true, ..ConvertOptions::default() };
    qlite::convert(&reg, &model, &out, &opts).unwrap();
    let summary = qlite::inspect::inspect_file(&reg, &out).unwrap();
    assert_eq!(summary.transposes, 0);
    assert_eq!(summary.inputs[0].shape, format!("[?,{},{},{}]", s[2], s[3], s[1]));
    let g = qlite::load(&reg, &out).unwrap();
    let y = qlite::run_batched(&g, vec![x_nhwc.clone()]).unwrap();
    assert_agrees(&y[0], &want, FRAMEWORK_TOL, "the NHWC model against onnxruntime");
    export_case("onnx_torch_style_cnn_nhwc_io", &std::fs::read(&out).unwrap(), &[x_nhwc], &y, "float");
    // A format that is NHWC already refuses the option.
    let e = qlite::convert(&reg, &fixture("digits/cnn.tflite"), &dir.path().join("x.tflite"), &opts).unwrap_err();
    assert!(e.to_string().contains("NHWC already"), "{e}");
}

/// A dynamic batch in the two forms exporters write a flatten (PyTorch's `view(size(0), -1)`
/// and tf2onnx's Shape → Slice → Concat): the shape arithmetic folds into a constant reshape
/// target; the whole batch runs at once, equal to onnxruntime; the converted model keeps the
/// batch dynamic and runs in LiteRT, resized.
#[test]
fn dynamic_batch_shape_arithmetic_folds() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    for name in ["dynamic_flatten_torch", "dynamic_flatten_tf2onnx"] {
        let model = fixture(&format!("onnx/{name}.onnx"));
        let x = qlite::read_npy_file(&fixture(&format!("onnx/{name}_input.npy"))).unwrap();
        let want = qlite::read_npy_file(&fixture(&format!("onnx/{name}_expected.npy"))).unwrap();
        let g = qlite::load(&reg, &model).unwrap();
        assert_eq!(g.tensor(g.inputs()[0]).unwrap().shape.to_string(), "[?,3,8,8]");
        let reshape = g.nodes().iter().find_map(|n| match &n.op {
            qlite::ir::Op::Reshape(r) => Some(r.shape.clone()),
            _ => None,
        });
        assert_eq!(reshape, Some(vec![-1, 256]), "{name}");
        let y = qlite::run(&g, vec![x.clone()]).unwrap();
        assert_agrees(&y[0], &want, FRAMEWORK_TOL, &format!("{name} against onnxruntime"));
        let out = dir.path().join(format!("{name}.tflite"));
        qlite::convert(&reg, &model, &out, &ConvertOptions::default()).unwrap();
        let t = qlite::load(&reg, &out).unwrap();
        assert_eq!(t.tensor(t.inputs()[0]).unwrap().shape.to_string(), "[?,3,8,8]", "{name}: shape_signature -1");
        let yt = qlite::run(&t, vec![x.clone()]).unwrap();
        assert_agrees(&yt[0], &want, FRAMEWORK_TOL, &format!("{name}: converted, against onnxruntime"));
        export_case(&format!("onnx_{name}"), &std::fs::read(&out).unwrap(), &[x], &yt, "float");
    }
}

/// ONNX's Resize and Upsample in every form qlite maps onto RESIZE_BILINEAR and
/// RESIZE_NEAREST_NEIGHBOR, and ConvTranspose (pads, output_padding, SAME_UPPER) onto
/// TRANSPOSE_CONV: equal to onnxruntime, the layout transposes only at the NCHW input
/// and output of the converted file, and LiteRT must agree with it.
#[test]
fn resize_forms_match_onnxruntime() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    for (name, kind) in [
        ("torch_nearest", "ResizeNearestNeighbor"),
        ("torch_bilinear", "ResizeBilinear"),
        ("align_corners", "ResizeBilinear"),
        ("half_pixel_linear", "ResizeBilinear"),
        ("half_pixel_nearest", "ResizeNearestNeighbor"),
        ("upsample9", "ResizeNearestNeighbor"),
        ("conv_transpose", "TransposeConv2d"),
        ("conv_transpose_same", "TransposeConv2d"),
    ] {
        let model = fixture(&format!("onnx/resize_{name}.onnx"));
        let x = qlite::read_npy_file(&fixture(&format!("onnx/resize_{name}_input.npy"))).unwrap();
        let want = qlite::read_npy_file(&fixture(&format!("onnx/resize_{name}_expected.npy"))).unwrap();
        let g = qlite::load(&reg, &model).unwrap();
        assert!(g.nodes().iter().any(|n| n.op.name() == kind), "{name}: no {kind}");
        let y = qlite::run(&g, vec![x.clone()]).unwrap();
        assert_agrees(&y[0], &want, FRAMEWORK_TOL, &format!("{name} against onnxruntime"));
        let out = dir.path().join(format!("{name}.tflite"));
        qlite::convert(&reg, &model, &out, &ConvertOptions::default()).unwrap();
        let t = qlite::load(&reg, &out).unwrap();
        let transposes = t.nodes().iter().filter(|n| n.op.name() == "Transpose").count();
        assert!(transposes <= 2, "{name}: {transposes} transposes");
        let yt = qlite::run(&t, vec![x.clone()]).unwrap();
        assert_agrees(&yt[0], &want, FRAMEWORK_TOL, &format!("{name}: converted, against onnxruntime"));
        export_case(&format!("onnx_resize_{name}"), &std::fs::read(&out).unwrap(), &[x], &yt, "float");
    }
}

/// Self-attention: MatMul of two run-time tensors is BATCH_MATMUL (the projections, with
/// constant weights, FULLY_CONNECTED), then a residual and LayerNormalization (decomposed: MEAN,
/// SQUARED_DIFFERENCE, RSQRT, ...) and an MLP whose Erf-spelled GELU becomes one GELU; equal to
/// onnxruntime, and LiteRT to the converted file.
#[test]
fn attention_matmuls_match_onnxruntime() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("onnx/attention.onnx");
    let x = qlite::read_npy_file(&fixture("onnx/attention_input.npy")).unwrap();
    let want = qlite::read_npy_file(&fixture("onnx/attention_expected.npy")).unwrap();
    let g = qlite::load(&reg, &model).unwrap();
    assert_eq!(g.nodes().iter().filter(|n| n.op.name() == "BatchMatMul").count(), 2);
    assert!(g.nodes().iter().any(|n| n.op.name() == "Rsqrt"), "LayerNormalization is decomposed");
    let y = qlite::run(&g, vec![x.clone()]).unwrap();
    assert_agrees(&y[0], &want, FRAMEWORK_TOL, "attention against onnxruntime");
    let out = dir.path().join("attention.tflite");
    qlite::convert(&reg, &model, &out, &ConvertOptions::default()).unwrap();
    let t = qlite::load(&reg, &out).unwrap();
    assert!(t.nodes().iter().any(|n| n.op.name() == "Gelu"), "x·0.5·(1 + erf(x/√2)) is one GELU");
    assert!(t.nodes().iter().all(|n| n.op.name() != "Erf"));
    let yt = qlite::run(&t, vec![x.clone()]).unwrap();
    assert_agrees(&yt[0], &want, FRAMEWORK_TOL, "converted, against onnxruntime");
    export_case("onnx_attention", &std::fs::read(&out).unwrap(), &[x], &yt, "float");
}

/// A valid ONNX file qlite cannot import as it stands (a Resize whose input's height and width
/// are known only at run time) is still described by `inspect`, from what the file declares,
/// with the reason and the remedy; with the dimensions fixed it converts.
#[test]
fn inspect_describes_an_onnx_file_with_run_time_spatial_sizes() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let scales = proto::TensorProto {
        name: Some("scales".into()),
        dims: vec![4],
        data_type: Some(1),
        float_data: vec![1.0, 1.0, 2.0, 2.0],
        ..Default::default()
    };
    let mut resize = node("Resize", &["x", "", "scales"], &["y"]);
    for (k, v) in [("mode", "nearest"), ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor")] {
        resize.attribute.push(proto::AttributeProto {
            name: Some(k.into()),
            r#type: Some(proto::attribute_proto::AttributeType::String as i32),
            s: Some(v.as_bytes().to_vec()),
            ..Default::default()
        });
    }
    let path = dir.path().join("upsample.onnx");
    std::fs::write(&path, model_io(vec![resize], vec![scales], &[-1, 3, -1, -1], &[-1, 3, -1, -1])).unwrap();
    let s = qlite::inspect::inspect_file(&reg, &path).unwrap();
    let why = s.not_imported.clone().expect("the import fails as it stands");
    assert!(why.contains("Resize") && why.contains("--input-shape"), "{why}");
    assert_eq!(s.inputs[0].shape, "[N,3,N,N]");
    assert_eq!(s.ops.len(), 1);
    insta::assert_snapshot!("inspect_onnx_not_imported", qlite::inspect::render_text(&s));
    let mut o = ConvertOptions::default();
    o.input_shapes.insert("x".into(), [1, 3, 4, 5].map(qlite::ir::Dim::Fixed).to_vec());
    let out = dir.path().join("upsample.tflite");
    qlite::convert(&reg, &path, &out, &o).unwrap();
    let g = qlite::load(&reg, &out).unwrap();
    assert_eq!(g.tensor(g.outputs()[0]).unwrap().shape.to_string(), "[1,3,8,10]");
}
