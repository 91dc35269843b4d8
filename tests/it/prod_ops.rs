//! The data-movement and activation ops of production models (PRELU, DEPTH_TO_SPACE,
//! SPACE_TO_DEPTH, MIRROR_PAD, TILE, GATHER, SPLIT, SPLIT_V, SLICE, Keras 3's UpSampling2D) in
//! TensorFlow's converter's own files with a dynamic batch, in every mode it writes (float32,
//! float16 weights, dynamic range, int8 with float, int8 and uint8 I/O): qlite runs a batch of 4
//! in one call, LiteRT must agree (float within 1e-5, hybrid within its bound, integer to the
//! bit), on the files as TF wrote them, as qlite re-writes them, and after qlite quantizes the
//! float one.

use crate::common::{assert_agrees, export_case, fixture, reference_resolver_fails};
use qlite::ir::Graph;
use std::collections::BTreeSet;

/// LiteRT 2.3's BUILTIN_REF resolver registers DEPTH_TO_SPACE version 1 only: it cannot load an
/// int8 DEPTH_TO_SPACE (version 2, as TF's converter writes it too). The default resolver runs
/// it and is then held to the bit.
const REF_D2S: &str = "Didn't find op for builtin opcode 'DEPTH_TO_SPACE' version '2'";
const WHY_D2S: &str = "BUILTIN_REF registers DEPTH_TO_SPACE v1 only; int8 is v2 (TF's own file too)";

fn read(name: &str) -> (Vec<u8>, Graph) {
    read_from("tflite_ops", name)
}

fn read_from(dir: &str, name: &str) -> (Vec<u8>, Graph) {
    let bytes = std::fs::read(fixture(&format!("{dir}/{name}.tflite"))).unwrap();
    let g = qlite_tflite::read_model(bytes::Bytes::copy_from_slice(&bytes)).unwrap();
    (bytes, g)
}

fn ops(g: &Graph) -> BTreeSet<&'static str> {
    g.nodes().iter().map(|n| n.op.name()).collect()
}

const MODES: [(&str, &str); 6] = [
    ("float", "float"),
    ("float16", "float"),
    ("dynamic", "hybrid"),
    ("int8", "exact"),
    ("int8_io_int8", "exact"),
    ("int8_io_uint8", "exact"),
];

/// One fixture set (`make_ops.py`, `make_layers.py`) in every mode: read with its dynamic
/// batch, the ops expected present, a hybrid convolution in the dynamic-range file, run (a batch
/// of 4 in one call), re-written, read again to the same graph, run again to the same bytes;
/// the file as TF wrote it and as qlite re-writes it go to LiteRT.
fn every_mode(dir: &str, input_shape: &str, want: &[&str], reference_fails: Option<(&str, &str)>) {
    for (mode, compare) in MODES {
        let input =
            if mode.starts_with("int8_io_") { format!("{dir}/{mode}_input.npy") } else { format!("{dir}/input.npy") };
        let x = qlite::read_npy_file(&fixture(&input)).unwrap();
        let (bytes, g) = read_from(dir, mode);
        assert_eq!(g.tensor(g.inputs()[0]).unwrap().shape.to_string(), input_shape, "{mode}: the batch stays dynamic");
        let have = ops(&g);
        for op in want {
            assert!(have.contains(op), "{dir} {mode}: no {op} in {have:?}");
        }
        if mode == "dynamic" {
            // A convolution of over 1 024 weights is int8 with float activations (hybrid).
            let hybrid = g.nodes().iter().filter(|n| n.op.name() == "Conv2d").any(|n| {
                n.input(1).and_then(|w| g.tensor(w)).is_some_and(|w| w.dtype == qlite::ir::DType::I8)
                    && n.input(0).and_then(|x| g.tensor(x)).is_some_and(|x| x.dtype == qlite::ir::DType::F32)
            });
            assert!(hybrid, "{dir} {mode}: no hybrid convolution");
        }
        let case = format!("{dir}_{mode}");
        let y = qlite::run_batched(&g, vec![x.clone()]).unwrap();
        assert_eq!(y[0].shape()[0], x.shape()[0], "{mode}: the whole batch in one call");
        export_case(&case, &bytes, std::slice::from_ref(&x), &y, compare);
        let written = qlite_tflite::write_model(&g).unwrap();
        let g2 = qlite_tflite::read_model(written.clone()).unwrap();
        assert_eq!(
            qlite::ir::print_graph(&g2),
            qlite::ir::print_graph(&qlite_tflite::read_model(qlite_tflite::write_model(&g2).unwrap()).unwrap())
        );
        let y2 = qlite::run_batched(&g2, vec![x.clone()]).unwrap();
        assert_eq!(y, y2, "{mode}: the re-written file computes something else");
        export_case(&format!("{case}_rewritten"), &written, std::slice::from_ref(&x), &y2, compare);
        if let (Some((error, why)), true) = (reference_fails, mode.starts_with("int8")) {
            reference_resolver_fails(&case, error, why);
            reference_resolver_fails(&format!("{case}_rewritten"), error, why);
        }
    }
}

#[test]
fn tf_converter_files_with_production_ops_run_and_reexport() {
    let want = ["Prelu", "DepthToSpace", "SpaceToDepth", "MirrorPad", "Gather", "Tile", "StridedSlice", "Reshape"];
    every_mode("tflite_ops", "[?,8,8,4]", &want, Some((REF_D2S, WHY_D2S)));
}

#[test]
fn tf_converter_files_with_decoder_and_transformer_layers_run_and_reexport() {
    let want = [
        "HardSwish",
        "TransposeConv2d",
        "ResizeBilinear",
        "ResizeNearestNeighbor",
        "Pad",
        "BatchMatMul",
        "Softmax",
        "Gelu",
        "SquaredDifference",
        "Rsqrt",
        "Maximum",
        "Minimum",
        "Sum",
        "LogSoftmax",
    ];
    every_mode("tflite_layers", "[?,6,6,3]", &want, None);
}

#[test]
fn production_ops_quantize_with_qlite() {
    let dir = tempfile::tempdir().unwrap();
    let calib = dir.path().join("calib.npy");
    let x = qlite::read_npy_file(&fixture("tflite_ops/input.npy")).unwrap();
    qlite::write_npy_file(&calib, &x).unwrap();
    let out = dir.path().join("int8.tflite");
    let mut opts = qlite::ConvertOptions::default();
    opts.quant.mode = qlite::QuantMode::Int8;
    opts.calibration = Some(calib);
    qlite::convert(&qlite::Registry::default(), &fixture("tflite_ops/float.tflite"), &out, &opts).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let g = qlite_tflite::read_model(bytes::Bytes::copy_from_slice(&bytes)).unwrap();
    // Every op runs in int8: no float island.
    let float_ops: Vec<String> = g
        .nodes()
        .iter()
        .filter(|n| !matches!(n.op, qlite::ir::Op::Quantize | qlite::ir::Op::Dequantize))
        .filter(|n| n.outputs.iter().any(|&o| g.tensor(o).is_some_and(|t| t.dtype == qlite::ir::DType::F32)))
        .map(|n| n.name.clone())
        .collect();
    assert!(float_ops.is_empty(), "left in float: {float_ops:?}");
    let y = qlite::run_batched(&g, vec![x.clone()]).unwrap();
    let (_, gf) = read("float");
    let yf = qlite::run_batched(&gf, vec![x.clone()]).unwrap();
    for (a, b) in y.iter().zip(&yf) {
        assert_agrees(a, b, qlite::Tolerance::close(0.1, 0.15), "int8 vs float");
    }
    export_case("tflite_ops_quantized_by_qlite", &bytes, &[x], &y, "exact");
    reference_resolver_fails("tflite_ops_quantized_by_qlite", REF_D2S, WHY_D2S);
}

/// TF's converter's Conv2DTranspose with a dynamic batch computes TRANSPOSE_CONV's output_shape
/// at run time (SHAPE → STRIDED_SLICE → PACK): qlite reads it (the height and width are known),
/// runs a batch of 3 as LiteRT does on the same file.
#[test]
fn tf_dynamic_batch_transpose_conv_reads_and_runs() {
    let bytes = std::fs::read(fixture("tflite_ops/deconv_dynamic.tflite")).unwrap();
    let g = qlite_tflite::read_model(bytes::Bytes::copy_from_slice(&bytes)).unwrap();
    assert_eq!(g.tensor(g.inputs()[0]).unwrap().shape.to_string(), "[?,5,5,3]");
    assert_eq!(g.nodes().iter().filter(|n| n.op.name() == "TransposeConv2d").count(), 2);
    let x = qlite::read_npy_file(&fixture("tflite_ops/deconv_input.npy")).unwrap();
    let y = qlite::run(&g, vec![x.clone()]).unwrap();
    assert_eq!(y[0].shape(), &[3, 11, 11, 2]);
    export_case("tflite_ops_deconv_dynamic", &bytes, std::slice::from_ref(&x), &y, "float");
    // qlite's re-export keeps the batch dynamic (its output_shape computed at run time), and
    // so does its int8 conversion: LiteRT's reference kernels run the batch of 3 to the bit.
    let dir = tempfile::tempdir().unwrap();
    let reg = qlite::Registry::default();
    let src = fixture("tflite_ops/deconv_dynamic.tflite");
    let out = dir.path().join("float.tflite");
    qlite::convert(&reg, &src, &out, &qlite::ConvertOptions::default()).unwrap();
    let t = qlite::load(&reg, &out).unwrap();
    assert_eq!(t.tensor(t.inputs()[0]).unwrap().shape.to_string(), "[?,5,5,3]");
    let yt = qlite::run(&t, vec![x.clone()]).unwrap();
    assert_eq!(yt, y);
    export_case(
        "tflite_ops_deconv_dynamic_rewritten",
        &std::fs::read(&out).unwrap(),
        std::slice::from_ref(&x),
        &yt,
        "float",
    );
    let calib = dir.path().join("calib.npy");
    qlite::write_npy_file(&calib, &x).unwrap();
    let mut opts = qlite::ConvertOptions::default();
    opts.quant.mode = qlite::QuantMode::Int8;
    opts.calibration = Some(calib);
    opts.quant.io_type = qlite::IoType::Int8;
    let out8 = dir.path().join("int8.tflite");
    qlite::convert(&reg, &src, &out8, &opts).unwrap();
    let t8 = qlite::load(&reg, &out8).unwrap();
    let xq = qlite::quantize_inputs(&t8, vec![x.clone()]).unwrap().0.remove(0);
    let y8 = qlite::run(&t8, vec![xq.clone()]).unwrap();
    assert_eq!(y8[0].shape(), &[3, 11, 11, 2]);
    export_case("tflite_ops_deconv_dynamic_int8", &std::fs::read(&out8).unwrap(), &[xq], &y8, "exact");
}
