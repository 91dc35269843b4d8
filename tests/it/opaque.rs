//! Operators qlite does not model: read, shown, written back unchanged (LiteRT gives the same
//! outputs on the re-export as on the original); only running and quantizing refuse, naming
//! every such op at once.

use crate::common::{export_reexport_case, fixture};
use qlite::ir::{Graph, Op, OpaqueSource, OpaqueValue};
use std::process::Command;

fn read(path: &str) -> (Vec<u8>, Graph) {
    let bytes = std::fs::read(fixture(path)).unwrap();
    let g = qlite_tflite::read_model(bytes::Bytes::copy_from_slice(&bytes)).unwrap();
    (bytes, g)
}

fn opaque(g: &Graph) -> Vec<(String, OpaqueSource)> {
    g.nodes()
        .iter()
        .filter_map(|n| match &n.op {
            Op::Opaque(o) => Some((o.op_type.clone(), o.source.clone().expect("a .tflite opaque op keeps its source"))),
            _ => None,
        })
        .collect()
}

/// Two captures of one options table agree: same fields, same values. A scalar is captured
/// with the bytes up to the next field, which depends on the writer's layout, so scalars are
/// compared on the bytes both captured (a field's own size is never more).
fn same_options(a: &OpaqueSource, b: &OpaqueSource) -> Result<(), String> {
    if (a.code, &a.custom_code, &a.custom_options, a.custom_options_format)
        != (b.code, &b.custom_code, &b.custom_options, b.custom_options_format)
    {
        return Err(format!("operator code or custom options differ: {a:?} vs {b:?}"));
    }
    if a.options.len() != b.options.len() {
        return Err(format!("{} options tables vs {}", a.options.len(), b.options.len()));
    }
    for (x, y) in a.options.iter().zip(&b.options) {
        if (x.slot, x.type_id, x.fields.len()) != (y.slot, y.type_id, y.fields.len()) {
            return Err(format!("options table {x:?} vs {y:?}"));
        }
        for (f, h) in x.fields.iter().zip(&y.fields) {
            let same = f.id == h.id
                && match (&f.value, &h.value) {
                    (OpaqueValue::Scalar(p), OpaqueValue::Scalar(q)) => {
                        let n = p.len().min(q.len());
                        p[..n] == q[..n]
                    }
                    (p, q) => p == q,
                };
            if !same {
                return Err(format!("field {f:?} vs {h:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn unmodelled_builtins_are_kept_and_litert_agrees_on_the_rewrite() {
    let (bytes, g) = read("tflite_opaque/builtins.tflite");
    let kept = opaque(&g);
    let names: Vec<&str> = kept.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(names, ["tflite:CUMSUM", "tflite:ARG_MAX", "tflite:BUCKETIZE", "tflite:GATHER_ND"]);
    // CUMSUM's two bools (exclusive, reverse) are both true; ARG_MAX's output type is INT32
    // (2); BUCKETIZE keeps its vector of four float boundaries.
    let field = |src: &OpaqueSource, id: u16| src.options[0].fields.iter().find(|f| f.id == id).unwrap().value.clone();
    let byte0 = |v: OpaqueValue| match v {
        OpaqueValue::Scalar(b) => b[0],
        other => panic!("{other:?}"),
    };
    assert_eq!((byte0(field(&kept[0].1, 0)), byte0(field(&kept[0].1, 1))), (1, 1));
    assert_eq!(byte0(field(&kept[1].1, 0)), 2);
    let boundaries: Vec<f32> = match field(&kept[2].1, 0) {
        OpaqueValue::Vector { elem_size: 4, bytes } => {
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(boundaries, [0.0, 0.5, 1.5, 3.0]);
    assert!(kept[3].1.options.iter().all(|t| t.fields.is_empty()));

    let written = qlite_tflite::write_model(&g).unwrap();
    let again = qlite_tflite::read_model(written.clone()).unwrap();
    let kept_again = opaque(&again);
    assert_eq!(kept.len(), kept_again.len());
    for ((n, a), (m, b)) in kept.iter().zip(&kept_again) {
        assert_eq!(n, m);
        same_options(a, b).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
    // Written twice, the bytes are the same: nothing drifts.
    assert_eq!(qlite_tflite::write_model(&again).unwrap(), written);

    let x = qlite::read_npy_file(&fixture("tflite_opaque/builtins_input.npy")).unwrap();
    export_reexport_case("tflite_opaque_builtins", &bytes, &written, &[x]);
}

#[test]
fn custom_ops_keep_their_name_and_custom_options_bytes() {
    let (_, g) = read("tflite_opaque/custom.tflite");
    let kept = opaque(&g);
    assert_eq!(kept.len(), 1);
    let (name, src) = &kept[0];
    assert_eq!(name, "tflite:CUSTOM(Dawsn)");
    assert_eq!(src.custom_code.as_deref(), Some("Dawsn"));
    assert!(!src.custom_options.is_empty(), "the converter writes the op's attributes as FlexBuffers");
    let again = qlite_tflite::read_model(qlite_tflite::write_model(&g).unwrap()).unwrap();
    let kept_again = opaque(&again);
    assert_eq!(kept_again.len(), 1);
    same_options(src, &kept_again[0].1).unwrap();
    assert_eq!(src.custom_options, kept_again[0].1.custom_options);
}

/// What a user sees: `inspect` and a plain `convert` work; `run` and quantization name every
/// op they cannot handle in one line.
#[test]
fn cli_inspects_and_converts_and_names_every_unmodelled_op() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("tflite_opaque/builtins.tflite");
    let input = fixture("tflite_opaque/builtins_input.npy");
    let out = dir.path().join("out.tflite");
    let qlite = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_qlite")).args(args).output().unwrap();

    let inspect = qlite(&["inspect", model.to_str().unwrap()]);
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let text = String::from_utf8_lossy(&inspect.stdout).into_owned();
    insta::assert_snapshot!("tflite_opaque_builtins_inspect", text);

    let convert = qlite(&["convert", model.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(convert.status.success(), "{}", String::from_utf8_lossy(&convert.stderr));
    assert!(out.exists());

    let mut errors = String::new();
    for args in [
        vec!["run", model.to_str().unwrap(), "--input", input.to_str().unwrap()],
        vec![
            "convert",
            model.to_str().unwrap(),
            "-o",
            dir.path().join("f16.tflite").to_str().unwrap(),
            "--quantize",
            "float16",
        ],
        vec![
            "convert",
            model.to_str().unwrap(),
            "-o",
            dir.path().join("int8.tflite").to_str().unwrap(),
            "--quantize",
            "int8",
            "--calibration",
            input.to_str().unwrap(),
        ],
    ] {
        let o = qlite(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr).replace(dir.path().to_str().unwrap(), "$TMP");
        let err = err.replace(fixture("").to_str().unwrap(), "$FIXTURES/");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for op in ["CUMSUM", "ARG_MAX", "BUCKETIZE", "GATHER_ND"] {
            assert!(err.contains(op), "{args:?}: {err}");
        }
        errors.push_str(&format!("$ qlite {}\n{err}\n", args[0]));
    }
    // A custom op asked to run: named, with the op's own name.
    let custom = fixture("tflite_opaque/custom.tflite");
    let o = qlite(&["run", custom.to_str().unwrap(), "--input", input.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("tflite:CUSTOM(Dawsn)"), "{err}");
    errors.push_str(&format!("$ qlite run custom.tflite\n{err}\n"));
    assert!(!dir.path().join("f16.tflite").exists() && !dir.path().join("int8.tflite").exists());
    insta::assert_snapshot!("tflite_opaque_refusals", errors);
}

/// MediaPipe's `Convolution2DTransposeBias` custom op (its selfie segmentation models) is read as
/// the TRANSPOSE_CONV with bias it is: a file made of one such op runs in qlite as the builtin
/// does, and is written back as the builtin (LiteRT: the same outputs as the custom op).
#[test]
fn mediapipe_transpose_conv_bias_is_a_transpose_conv() {
    use qlite::ir::op::TransposeConv2d;
    use qlite::ir::tensor::f32_bytes;
    use qlite::ir::{Activation, DType, Padding, Shape, Tensor};
    use qlite_tflite::fb;
    // The builtin form, through qlite's own writer, as the expected outputs.
    let mut b = crate::common::Builder::new("deconv");
    let x = b.input("x", &[1, 3, 4, 2], -1.0, 1.0);
    let wv: Vec<f32> = b.rng.vec(3 * 3 * 3 * 2, -0.5, 0.5);
    let w = b.raw_const(Tensor::constant("w", DType::F32, Shape::fixed(&[3, 3, 3, 2]), f32_bytes(&wv)));
    let bias = b.raw_const(Tensor::constant("b", DType::F32, Shape::fixed(&[3]), f32_bytes(&[0.1, -0.2, 0.3])));
    let op = TransposeConv2d { padding: Padding::Same, stride: [2, 2], output: [6, 8], activation: Activation::None };
    let y = b.node(qlite::ir::Op::TransposeConv2d(op), &[Some(x), Some(w), Some(bias)], None);
    let (g, inputs) = b.finish(&[y]);
    let want = qlite::run(&g, inputs.clone()).unwrap();

    // The same op as MediaPipe writes it: CUSTOM "Convolution2DTransposeBias", inputs (input,
    // weights, bias), options the raw TfLiteTransposeConvParams {padding 1 = SAME, 2, 2}.
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let empty = fb::Buffer::create(&mut fbb, &fb::BufferArgs::default());
    let wb = fbb.create_vector(&f32_bytes(&wv)[..]);
    let wbuf = fb::Buffer::create(&mut fbb, &fb::BufferArgs { data: Some(wb), ..Default::default() });
    let bb = fbb.create_vector(&f32_bytes(&[0.1, -0.2, 0.3])[..]);
    let bbuf = fb::Buffer::create(&mut fbb, &fb::BufferArgs { data: Some(bb), ..Default::default() });
    let buffers = fbb.create_vector(&[empty, wbuf, bbuf]);
    let mut tensors = Vec::new();
    for (shape, buffer, name) in
        [(&[1, 3, 4, 2][..], 0u32, "x"), (&[3, 3, 3, 2][..], 1, "w"), (&[3][..], 2, "b"), (&[1, 6, 8, 3][..], 0, "y")]
    {
        let shape = Some(fbb.create_vector(shape));
        let name = Some(fbb.create_string(name));
        tensors.push(fb::Tensor::create(
            &mut fbb,
            &fb::TensorArgs { shape, type_: fb::TensorType::FLOAT32, buffer, name, ..Default::default() },
        ));
    }
    let tensors = fbb.create_vector(&tensors);
    let params: Vec<u8> = [1i32, 2, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let custom_options = Some(fbb.create_vector(&params[..]));
    let (ins, outs) = (Some(fbb.create_vector(&[0, 1, 2])), Some(fbb.create_vector(&[3])));
    let op = fb::Operator::create(
        &mut fbb,
        &fb::OperatorArgs { opcode_index: 0, inputs: ins, outputs: outs, custom_options, ..Default::default() },
    );
    let operators = Some(fbb.create_vector(&[op]));
    let (sg_in, sg_out) = (Some(fbb.create_vector(&[0])), Some(fbb.create_vector(&[3])));
    let sg = fb::SubGraph::create(
        &mut fbb,
        &fb::SubGraphArgs { tensors: Some(tensors), inputs: sg_in, outputs: sg_out, operators, ..Default::default() },
    );
    let subgraphs = Some(fbb.create_vector(&[sg]));
    let custom_code = Some(fbb.create_string("Convolution2DTransposeBias"));
    let code = fb::OperatorCode::create(
        &mut fbb,
        &fb::OperatorCodeArgs {
            deprecated_builtin_code: 32,
            custom_code,
            version: 1,
            builtin_code: fb::BuiltinOperator::CUSTOM,
        },
    );
    let operator_codes = Some(fbb.create_vector(&[code]));
    let model = fb::Model::create(
        &mut fbb,
        &fb::ModelArgs { version: 3, operator_codes, subgraphs, buffers: Some(buffers), ..Default::default() },
    );
    fbb.finish(model, Some("TFL3"));
    let custom = fbb.finished_data().to_vec();

    let gc = qlite_tflite::read_model(bytes::Bytes::copy_from_slice(&custom)).unwrap();
    assert!(matches!(gc.nodes()[0].op, qlite::ir::Op::TransposeConv2d(_)), "{:?}", gc.nodes()[0].op);
    assert_eq!(qlite::run(&gc, inputs.clone()).unwrap(), want);
    let written = qlite_tflite::write_model(&gc).unwrap();
    let back = qlite_tflite::read_model(written.clone()).unwrap();
    assert_eq!(qlite::run(&back, inputs.clone()).unwrap(), want);
    // LiteRT runs MediaPipe's custom op with its default resolver (BUILTIN_REF has none): it must
    // give what it gives on qlite's builtin TRANSPOSE_CONV.
    export_reexport_case("tflite_mediapipe_transpose_conv_bias", &custom, &written, &inputs);
    crate::common::reference_resolver_fails(
        "tflite_mediapipe_transpose_conv_bias",
        "Encountered unresolved custom op: Convolution2DTransposeBias",
        "BUILTIN_REF registers no MediaPipe custom op",
    );
}

/// Files with control flow (a WHILE whose condition and body are two more subgraphs), STRING
/// tensors (read by a custom op) and a resource variable (RESOURCE tensors, its initializer a
/// CALL_ONCE subgraph): read whole, `inspect` shows the subgraphs, a plain
/// `convert` writes them back (LiteRT gives the same outputs on the WHILE and variable files,
/// and fails on the string file exactly as on the original), and `run` / int8 `convert` refuse in one line
/// naming the node, writing nothing.
#[test]
fn control_flow_and_string_files_are_kept_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let qlite = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_qlite")).args(args).output().unwrap();
    let mut text = String::new();
    for name in ["control_flow", "strings", "variables"] {
        let model = fixture(&format!("tflite_opaque/{name}.tflite"));
        let inspect = qlite(&["inspect", model.to_str().unwrap()]);
        assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
        text.push_str(&String::from_utf8_lossy(&inspect.stdout));
        let dest = dir.path().join(format!("{name}.tflite"));
        let convert = qlite(&["convert", model.to_str().unwrap(), "-o", dest.to_str().unwrap()]);
        assert!(convert.status.success(), "{}", String::from_utf8_lossy(&convert.stderr));
        // Read back, the file is the same graph (subgraphs included).
        let (original, g) = read(&format!("tflite_opaque/{name}.tflite"));
        let written = std::fs::read(&dest).unwrap();
        let g2 = qlite_tflite::read_model(bytes::Bytes::copy_from_slice(&written)).unwrap();
        assert_eq!(qlite::ir::print_graph(&g), qlite::ir::print_graph(&g2), "{name}");
        let x = dir.path().join("x.npy");
        qlite::write_npy_file(&x, &qlite::Array::f32(vec![1, 4], vec![0.5, -1.0, 2.0, 3.0]).unwrap()).unwrap();
        let y = dir.path().join("y.npy");
        for args in [
            vec!["run", model.to_str().unwrap(), "--input", x.to_str().unwrap(), "--output", y.to_str().unwrap()],
            vec!["convert", model.to_str().unwrap(), "-o", y.to_str().unwrap(), "--quantize", "dynamic"],
        ] {
            let out = qlite(&args);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!out.status.success() && err.trim_end().lines().count() == 1, "{err}");
            assert!(!y.exists());
            text.push_str(&err.replace(model.to_str().unwrap(), "<model>"));
        }
        if name != "strings" {
            assert_eq!(g.subgraphs().len(), if name == "control_flow" { 2 } else { 1 });
            let x = qlite::Array::f32(vec![1, 4], vec![0.5, -1.0, 2.0, 3.0]).unwrap();
            export_reexport_case(&format!("tflite_{name}_rewritten"), &original, &written, &[x]);
        } else {
            export_reexport_case("tflite_strings_rewritten", &original, &written, &[]);
            for resolver in ["reference", "default"] {
                let why = "LiteRT has no StringLength kernel: it fails on the original the same way";
                let error = "Encountered unresolved custom op: StringLength";
                if resolver == "reference" {
                    crate::common::reference_resolver_fails("tflite_strings_rewritten", error, why);
                } else {
                    crate::common::default_resolver_fails("tflite_strings_rewritten", error, why);
                }
            }
        }
    }
    assert!(text.contains("WHILE v1") && text.contains("while_body") && text.contains("CUSTOM(StringLength)"));
    assert!(text.contains("resource[]") && text.contains("CALL_ONCE"));
    insta::assert_snapshot!("tflite_control_flow_and_strings", text);
}
