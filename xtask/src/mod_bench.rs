//! `cargo xtask bench`: numbers for the notes. No timing is asserted anywhere; this only
//! measures and prints.

use super::{R, cargo, root};
use qlite::ir::QuantParams;
use qlite::ir::op::{Activation, FullyConnected};
use qlite::ir::{DType, Graph, Node, Op, Shape, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fully connected layer whose weights are `mb` megabytes of f32.
fn big_model(mb: usize) -> Graph {
    let depth = 4096;
    let units = mb * 1_000_000 / 4 / depth;
    let mut g = Graph::new("big");
    let x = g.add_tensor(Tensor::activation("x", DType::F32, Shape::fixed(&[1, depth])));
    let mut rng = qlite::sample::Rng::new(1);
    let w = qlite::ir::tensor::f32_bytes(&rng.vec(units * depth, -0.01, 0.01));
    let w = g.add_tensor(Tensor::constant("w", DType::F32, Shape::fixed(&[units, depth]), w));
    let y = g.add_tensor(Tensor::activation("y", DType::F32, Shape::fixed(&[1, units])));
    g.add_node(Node::new(
        "fc",
        Op::FullyConnected(FullyConnected {
            activation: Activation::None,
            keep_num_dims: false,
            asymmetric_inputs: false,
        }),
        vec![Some(x), Some(w), None],
        vec![y],
    ));
    g.set_inputs(vec![x]);
    g.set_outputs(vec![y]);
    g
}

/// An ONNX MLP of Gemm layers (transB = 1, as PyTorch exports nn.Linear) whose f32 weights
/// add up to about `mb` megabytes, serialized with the project's own protobuf bindings.
fn big_onnx(mb: usize) -> Vec<u8> {
    use prost::Message;
    use qlite::onnx::proto::{
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
        ValueInfoProto, tensor_shape_proto, type_proto,
    };
    let width = 2048usize;
    let layers = (mb * 1_000_000).div_ceil(4 * width * width).max(1);
    let mut rng = qlite::sample::Rng::new(3);
    let value_info = |name: &str| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: [1, width as i64]
                        .iter()
                        .map(|&v| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(v)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut g = GraphProto { name: Some("big".into()), ..Default::default() };
    g.input.push(value_info("x"));
    let mut prev = "x".to_string();
    for l in 0..layers {
        let (w, b, y) = (format!("w{l}"), format!("b{l}"), format!("h{l}"));
        let raw = qlite::ir::tensor::f32_bytes(&rng.vec(width * width, -0.02, 0.02));
        g.initializer.push(TensorProto {
            name: Some(w.clone()),
            dims: vec![width as i64, width as i64],
            data_type: Some(1),
            raw_data: Some(raw),
            ..Default::default()
        });
        g.initializer.push(TensorProto {
            name: Some(b.clone()),
            dims: vec![width as i64],
            data_type: Some(1),
            raw_data: Some(qlite::ir::tensor::f32_bytes(&rng.vec(width, -0.1, 0.1))),
            ..Default::default()
        });
        let attr = qlite::onnx::proto::AttributeProto {
            name: Some("transB".into()),
            i: Some(1),
            r#type: Some(2),
            ..Default::default()
        };
        g.node.push(NodeProto {
            input: vec![prev.clone(), w, b],
            output: vec![y.clone()],
            name: Some(format!("gemm{l}")),
            op_type: Some("Gemm".into()),
            attribute: vec![attr],
            ..Default::default()
        });
        let r = format!("r{l}");
        g.node.push(NodeProto {
            input: vec![y],
            output: vec![r.clone()],
            name: Some(format!("relu{l}")),
            op_type: Some("Relu".into()),
            ..Default::default()
        });
        prev = r;
    }
    g.output.push(value_info(&prev));
    let m = ModelProto {
        ir_version: Some(8),
        producer_name: Some("qlite-bench".into()),
        graph: Some(g),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        ..Default::default()
    };
    m.encode_to_vec()
}

/// A 64 → 1024 → 1024 → 10 int8 MLP (float I/O through QUANTIZE / DEQUANTIZE), random
/// weights: the latency benchmark model.
fn int8_mlp() -> Graph {
    let mut rng = qlite::sample::Rng::new(7);
    let mut g = Graph::new("mlp_1024_int8");
    let x = g.add_tensor(Tensor::activation("x", DType::F32, Shape::fixed(&[1, 64])));
    let act_q = QuantParams::per_tensor(0.05, -128);
    let mut h = g.add_tensor(
        Tensor::activation("xq", DType::I8, Shape::fixed(&[1, 64]))
            .with_quant(QuantParams::per_tensor(1.0 / 255.0, -128)),
    );
    g.add_node(Node::new("quantize", Op::Quantize, vec![Some(x)], vec![h]));
    let mut s_in = 1.0f32 / 255.0;
    let dims = [64usize, 1024, 1024, 10];
    for l in 0..3 {
        let (din, dout) = (dims[l], dims[l + 1]);
        let w: Vec<u8> =
            (0..din * dout).map(|_| (rng.next_u64() % 255) as u8).map(|v| (v as i16 - 127) as i8 as u8).collect();
        let s_w = 0.002f32;
        let w = g.add_tensor(
            Tensor::constant(format!("w{l}"), DType::I8, Shape::fixed(&[dout, din]), w.into())
                .with_quant(QuantParams::per_tensor(s_w, 0)),
        );
        let b = g.add_tensor(
            Tensor::constant(
                format!("b{l}"),
                DType::I32,
                Shape::fixed(&[dout]),
                qlite::ir::tensor::i32_bytes(&vec![0; dout]),
            )
            .with_quant(QuantParams::per_tensor(s_in * s_w, 0)),
        );
        let out = g.add_tensor(
            Tensor::activation(format!("h{l}"), DType::I8, Shape::fixed(&[1, dout])).with_quant(act_q.clone()),
        );
        let activation = if l < 2 { Activation::Relu } else { Activation::None };
        g.add_node(Node::new(
            format!("fc{l}"),
            Op::FullyConnected(FullyConnected { activation, keep_num_dims: false, asymmetric_inputs: false }),
            vec![Some(h), Some(w), Some(b)],
            vec![out],
        ));
        h = out;
        s_in = 0.05;
    }
    let y = g.add_tensor(Tensor::activation("y", DType::F32, Shape::fixed(&[1, 10])));
    g.add_node(Node::new("dequantize", Op::Dequantize, vec![Some(h)], vec![y]));
    g.set_inputs(vec![x]);
    g.set_outputs(vec![y]);
    g
}

/// A MobileNet-like float stack at 96×96×3: a 3×3 stride-2 convolution, then depthwise 3×3 +
/// pointwise 1×1 blocks (ReLU6), global average, classifier. Converted to int8 by `qlite
/// convert` for the latency table.
fn mobilenet_like() -> Graph {
    use qlite::ir::op::{Conv2d, DepthwiseConv2d, Mean, Padding};
    let mut rng = qlite::sample::Rng::new(23);
    let mut g = Graph::new("mobilenet_like_96");
    let x = g.add_tensor(Tensor::activation("image", DType::F32, Shape::fixed(&[1, 96, 96, 3])));
    g.set_inputs(vec![x]);
    let f32c = |g: &mut Graph, rng: &mut qlite::sample::Rng, name: String, dims: &[usize], bound: f32| {
        let n = dims.iter().product();
        g.add_tensor(Tensor::constant(
            name,
            DType::F32,
            Shape::fixed(dims),
            qlite::ir::tensor::f32_bytes(&rng.vec(n, -bound, bound)),
        ))
    };
    let relu6 = Activation::Relu6;
    let (mut h, mut side) = (x, 96usize);
    // Stem.
    let w = f32c(&mut g, &mut rng, "stem.w".into(), &[16, 3, 3, 3], 0.4);
    let b = f32c(&mut g, &mut rng, "stem.b".into(), &[16], 0.1);
    side /= 2;
    let y = g.add_tensor(Tensor::activation("stem", DType::F32, Shape::fixed(&[1, side, side, 16])));
    let op = Conv2d { padding: Padding::Same, stride: [2, 2], dilation: [1, 1], activation: relu6 };
    g.add_node(Node::new("stem", Op::Conv2d(op), vec![Some(h), Some(w), Some(b)], vec![y]));
    h = y;
    let mut ch = 16usize;
    for (i, &(out_ch, stride)) in [(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2)].iter().enumerate() {
        let w = f32c(&mut g, &mut rng, format!("dw{i}.w"), &[1, 3, 3, ch], 0.5);
        let b = f32c(&mut g, &mut rng, format!("dw{i}.b"), &[ch], 0.1);
        side = side.div_ceil(stride);
        let y = g.add_tensor(Tensor::activation(format!("dw{i}"), DType::F32, Shape::fixed(&[1, side, side, ch])));
        let op = DepthwiseConv2d {
            padding: Padding::Same,
            stride: [stride, stride],
            dilation: [1, 1],
            depth_multiplier: 1,
            activation: relu6,
        };
        g.add_node(Node::new(format!("dw{i}"), Op::DepthwiseConv2d(op), vec![Some(h), Some(w), Some(b)], vec![y]));
        let w = f32c(&mut g, &mut rng, format!("pw{i}.w"), &[out_ch, 1, 1, ch], (2.0 / ch as f32).sqrt());
        let b = f32c(&mut g, &mut rng, format!("pw{i}.b"), &[out_ch], 0.1);
        let z = g.add_tensor(Tensor::activation(format!("pw{i}"), DType::F32, Shape::fixed(&[1, side, side, out_ch])));
        let op = Conv2d { padding: Padding::Valid, stride: [1, 1], dilation: [1, 1], activation: relu6 };
        g.add_node(Node::new(format!("pw{i}"), Op::Conv2d(op), vec![Some(y), Some(w), Some(b)], vec![z]));
        (h, ch) = (z, out_ch);
    }
    let pooled = g.add_tensor(Tensor::activation("pooled", DType::F32, Shape::fixed(&[1, ch])));
    g.add_node(Node::new("gap", Op::Mean(Mean { axes: vec![1, 2], keep_dims: false }), vec![Some(h)], vec![pooled]));
    let w = f32c(&mut g, &mut rng, "fc.w".into(), &[10, ch], 0.2);
    let b = f32c(&mut g, &mut rng, "fc.b".into(), &[10], 0.1);
    let logits = g.add_tensor(Tensor::activation("logits", DType::F32, Shape::fixed(&[1, 10])));
    let op = FullyConnected { activation: Activation::None, keep_num_dims: false, asymmetric_inputs: false };
    g.add_node(Node::new("fc", Op::FullyConnected(op), vec![Some(pooled), Some(w), Some(b)], vec![logits]));
    g.set_outputs(vec![logits]);
    g
}

/// A float MLP with the given layer widths (random weights): the conversion benchmark model.
fn float_mlp(dims: &[usize]) -> Graph {
    let mut rng = qlite::sample::Rng::new(11);
    let mut g = Graph::new("mlp_float");
    let mut h = g.add_tensor(Tensor::activation("x", DType::F32, Shape::fixed(&[1, dims[0]])));
    g.set_inputs(vec![h]);
    for l in 0..dims.len() - 1 {
        let (din, dout) = (dims[l], dims[l + 1]);
        let bound = (1.0 / din as f32).sqrt();
        let w = qlite::ir::tensor::f32_bytes(&rng.vec(din * dout, -bound, bound));
        let w = g.add_tensor(Tensor::constant(format!("w{l}"), DType::F32, Shape::fixed(&[dout, din]), w));
        let b = g.add_tensor(Tensor::constant(
            format!("b{l}"),
            DType::F32,
            Shape::fixed(&[dout]),
            qlite::ir::tensor::f32_bytes(&rng.vec(dout, -0.1, 0.1)),
        ));
        let out = g.add_tensor(Tensor::activation(format!("h{l}"), DType::F32, Shape::fixed(&[1, dout])));
        let activation = if l + 2 < dims.len() { Activation::Relu } else { Activation::None };
        g.add_node(Node::new(
            format!("fc{l}"),
            Op::FullyConnected(FullyConnected { activation, keep_num_dims: false, asymmetric_inputs: false }),
            vec![Some(h), Some(w), Some(b)],
            vec![out],
        ));
        h = out;
    }
    g.set_outputs(vec![h]);
    g
}

/// A 2 GiB f32 safetensors file (64 tensors of 32 MiB), written once, streamed.
fn big_safetensors(path: &Path) -> R {
    if path.exists() {
        return Ok(());
    }
    use std::io::Write;
    let rows = 2048usize;
    let cols = 4096usize;
    let count = 64;
    let entries: Vec<qlite::st::format::Entry> = (0..count)
        .map(|i| qlite::st::format::Entry {
            name: format!("layers.{i:02}.weight"),
            dtype: safetensors::Dtype::F32,
            shape: vec![rows, cols],
            len: rows * cols * 4,
        })
        .collect();
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&tmp).map_err(|e| e.to_string())?);
    f.write_all(&qlite::st::format::header(&entries, &[])).map_err(|e| e.to_string())?;
    let mut rng = qlite::sample::Rng::new(3);
    for _ in 0..count {
        let v = rng.vec(rows * cols, -1.0, 1.0);
        f.write_all(&qlite::ir::tensor::f32_bytes(&v)).map_err(|e| e.to_string())?;
    }
    f.flush().map_err(|e| e.to_string())?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// 2 GiB f32 → f16: qlite vs the Python baseline vs `cp`. Outputs go to tmpfs (/dev/shm)
/// when it exists, so the numbers measure the conversion rather than this machine's disk
/// (the page cache's write-back is then free for every contender); a run writing to disk is
/// shown for qlite too.
fn weights_bench(dir: &Path, exe: &Path) -> R {
    let src = dir.join("big_2gib_f32.safetensors");
    big_safetensors(&src)?;
    let size = std::fs::metadata(&src).map_err(|e| e.to_string())?.len() as f64;
    let shm = Path::new("/dev/shm");
    let out_dir = if shm.is_dir() { shm.join("qlite-bench") } else { dir.to_path_buf() };
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    // Best of three runs: this machine's I/O timing varies several-fold between runs.
    let run_timed = |cmd: &mut Command| -> Result<(f64, f64), String> {
        let mut best = (f64::INFINITY, 0f64);
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let o = cmd.output().map_err(|e| e.to_string())?;
            if !o.status.success() {
                return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr)));
            }
            let secs = t.elapsed().as_secs_f64();
            let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            let rss = all
                .split_whitespace()
                .find_map(|w| w.strip_prefix("peak_rss_kib="))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            if secs < best.0 {
                best = (secs, rss / 1024.0);
            }
        }
        Ok(best)
    };
    let py = super::oracle_python()?;
    // Warm the page cache so every contender reads the source from memory.
    run_timed(Command::new("cat").arg(&src).stdout(std::process::Stdio::null()))?;
    let q_out = out_dir.join("q.safetensors");
    let (q_s, q_rss) = run_timed(
        Command::new(exe)
            .args(["--stats", "weights"])
            .arg(&src)
            .arg("-o")
            .arg(&q_out)
            .args(["--to", "f16", "--only", ".*"]),
    )?;
    let _ = std::fs::remove_file(&q_out);
    let p_out = out_dir.join("p.safetensors");
    let (p_s, p_rss) =
        run_timed(Command::new(&py).arg(root().join("xtask/bench/python_f16.py")).arg(&src).arg(&p_out))?;
    let _ = std::fs::remove_file(&p_out);
    let c_out = out_dir.join("c.safetensors");
    let (c_s, _) = run_timed(Command::new("cp").arg(&src).arg(&c_out))?;
    let _ = std::fs::remove_file(&c_out);
    let d_out = dir.join("big_f16.safetensors");
    let (d_s, _) = run_timed(
        Command::new(exe).args(["weights"]).arg(&src).arg("-o").arg(&d_out).args(["--to", "f16", "--only", ".*"]),
    )?;
    let _ = std::fs::remove_file(&d_out);
    let mb = size / 1e6;
    println!("  2 GiB f32 safetensors -> f16, best of 3, source in page cache, output on {}:", out_dir.display());
    println!("    {:<32} {:>8} {:>10} {:>14}", "", "seconds", "MB/s read", "peak RSS MiB");
    println!("    {:<32} {:>8.2} {:>10.0} {:>14.1}", "qlite weights --to f16", q_s, mb / q_s, q_rss);
    println!("    {:<32} {:>8.2} {:>10.0} {:>14.1}", "python safetensors + numpy", p_s, mb / p_s, p_rss);
    println!("    {:<32} {:>8.2} {:>10.0} {:>14}", "cp", c_s, mb / c_s, "-");
    println!("    qlite = {:.1}x the Python baseline's throughput, {:.0}% of cp's", p_s / q_s, 100.0 * c_s / q_s);
    println!("    (qlite writing to {}: {:.2} s, {:.0} MB/s)", dir.display(), d_s, mb / d_s);
    let _ = std::fs::remove_dir(&out_dir);
    Ok(())
}

/// SavedModel → .tflite: qlite's whole process against TensorFlow's converter call alone.
fn savedmodel_bench(exe: &Path) -> R {
    let models = ["mlp", "cnn", "ops"].map(|m| root().join("fixtures/savedmodel").join(m));
    let out = root().join("target/bench/sm.tflite");
    let mut ours = Vec::new();
    for m in &models {
        let mut times = Vec::new();
        for _ in 0..7 {
            let o = Command::new(exe)
                .arg("--stats")
                .args(["convert"])
                .arg(m)
                .arg("-o")
                .arg(&out)
                .output()
                .map_err(|e| e.to_string())?;
            if !o.status.success() {
                return Err(format!("qlite convert {} failed: {}", m.display(), String::from_utf8_lossy(&o.stderr)));
            }
            let t = String::from_utf8_lossy(&o.stderr)
                .split_whitespace()
                .find_map(|w| w.strip_prefix("elapsed_ms=").and_then(|v| v.parse::<f64>().ok()))
                .unwrap_or(f64::NAN);
            times.push(t);
        }
        ours.push(median(times));
    }
    // TensorFlow: QLITE_TF_PYTHON, or the fixtures venv (created on first use).
    let py = match std::env::var_os("QLITE_TF_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => super::venv(&root().join(".venv-fixtures"), &root().join("xtask/requirements-fixtures.txt"))?,
    };
    let o = Command::new(py)
        .arg(root().join("xtask/bench/tf_convert.py"))
        .args(&models)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("TensorFlow converter script failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    println!("  SavedModel -> .tflite (median; qlite: whole process; TensorFlow: the converter call only):");
    for (m, q) in models.iter().zip(&ours) {
        let line = text.lines().find(|l| l.starts_with(&m.display().to_string())).unwrap_or("");
        let tf: f64 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("tf_ms=").and_then(|v| v.parse().ok()))
            .unwrap_or(f64::NAN);
        let name = m.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        println!("    {name:<6} qlite {q:>7.2} ms   TensorFlow {tf:>8.1} ms   {:>6.0}x faster", tf / q);
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn bench() -> R {
    let dir = root().join("target").join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let reg = qlite::Registry::default();
    let big = dir.join("big_100mb.tflite");
    if !big.exists() {
        qlite::save(&reg, &big_model(100), &big).map_err(|e| e.to_string())?;
    }
    let size = std::fs::metadata(&big).map_err(|e| e.to_string())?.len();
    super::run(cargo().args(["build", "--quiet", "--release", "-p", "qlite-cli"]))?;
    let exe = root().join("target/release/qlite");
    // Runs the release binary with --stats; returns (elapsed ms, peak RSS MiB) medians.
    let measure = |args: &[&str]| -> Result<(f64, f64), String> {
        let (mut times, mut rss) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let out = Command::new(&exe).arg("--stats").args(args).output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("qlite {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
            }
            for w in String::from_utf8_lossy(&out.stderr).split_whitespace() {
                if let Some(v) = w.strip_prefix("elapsed_ms=") {
                    times.push(v.parse::<f64>().unwrap_or(f64::NAN));
                }
                if let Some(v) = w.strip_prefix("peak_rss_kib=") {
                    rss.push(v.parse::<f64>().unwrap_or(f64::NAN) / 1024.0);
                }
            }
        }
        Ok((median(times), median(rss)))
    };
    let big_s = big.to_string_lossy().into_owned();
    println!("bench (release binary, whole process, median of 5; elapsed includes reading and writing)");
    let (t, m) = measure(&["inspect", &big_s])?;
    println!(
        "  inspect {:.1} MB .tflite: {t:.2} ms, peak RSS {m:.1} MiB (weights mapped, not copied)",
        size as f64 / 1e6
    );
    let big_out = dir.join("big_out.tflite").to_string_lossy().into_owned();
    let (t, m) = measure(&["convert", &big_s, "-o", &big_out])?;
    println!(
        "  convert {:.1} MB .tflite -> .tflite: {t:.1} ms, peak RSS {m:.1} MiB (one 100 MB weight, streamed from the mapped input in 16 MB blocks)",
        size as f64 / 1e6
    );
    let onnx = dir.join("big.onnx");
    let onnx_bytes = big_onnx(100);
    std::fs::write(&onnx, &onnx_bytes).map_err(|e| e.to_string())?;
    let onnx_s = onnx.to_string_lossy().into_owned();
    let (t, m) = measure(&["convert", &onnx_s, "-o", &big_out])?;
    println!(
        "  convert {:.1} MB .onnx (Gemm+Relu MLP) -> .tflite: {t:.1} ms, peak RSS {m:.1} MiB ({:.2}x the file)",
        onnx_bytes.len() as f64 / 1e6,
        m * 1048576.0 / onnx_bytes.len() as f64
    );
    let (t, m) = measure(&["inspect", &onnx_s])?;
    println!("  inspect {:.1} MB .onnx: {t:.1} ms, peak RSS {m:.1} MiB", onnx_bytes.len() as f64 / 1e6);
    for name in ["mlp", "cnn"] {
        let src = root().join(format!("fixtures/digits/{name}.tflite")).to_string_lossy().into_owned();
        let out = dir.join(format!("{name}.tflite")).to_string_lossy().into_owned();
        let (t, m) = measure(&["convert", &src, "-o", &out])?;
        println!("  convert digits {name} (TF-made .tflite -> qlite .tflite): {t:.2} ms, peak RSS {m:.1} MiB");
    }
    let x = root().join("fixtures/digits/x_test.npy").to_string_lossy().into_owned();
    let cnn = root().join("fixtures/digits/cnn.tflite").to_string_lossy().into_owned();
    let (t, _) = measure(&["run", &cnn, "-i", &x])?;
    println!("  run digits cnn on 360 samples (reference float kernels): {t:.1} ms");

    // Conversion time per mode (release binary, whole process) and calibration throughput.
    let mlp_1m = dir.join("mlp_1m_float.tflite");
    qlite::save(&reg, &float_mlp(&[64, 1024, 1024, 10]), &mlp_1m).map_err(|e| e.to_string())?;
    let calib = root().join("fixtures/digits/x_calib.npy").to_string_lossy().into_owned();
    println!("  conversion per mode (ms, whole process incl. reading, calibration on 200 samples for int8, writing):");
    println!("    {:<28} {:>9} {:>9} {:>9} {:>9} {:>22}", "model", "none", "float16", "dynamic", "int8", "calibration");
    for m in [root().join("fixtures/digits/mlp.tflite"), root().join("fixtures/digits/cnn.tflite"), mlp_1m.clone()] {
        let ms = m.to_string_lossy().into_owned();
        let out = dir.join("q.tflite").to_string_lossy().into_owned();
        let mut row = Vec::new();
        for mode in ["none", "float16", "dynamic", "int8"] {
            let (t, _) = measure(&["convert", &ms, "-o", &out, "--quantize", mode, "--calibration", &calib])?;
            row.push(t);
        }
        let o = Command::new(&exe)
            .args(["convert", &ms, "-o", &out, "--quantize", "int8", "--calibration", &calib])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&o.stdout);
        let cal_ms: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("calibration: "))
            .and_then(|v| v.trim_end_matches(" ms").parse().ok())
            .unwrap_or(f64::NAN);
        let name = m.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        println!(
            "    {:<28} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10.0} samples/s",
            name,
            row[0],
            row[1],
            row[2],
            row[3],
            200.0 / (cal_ms / 1e3)
        );
    }

    weights_bench(&dir, &exe)?;
    savedmodel_bench(&exe)?;

    // Single-image latency: qlite (reference and fast kernels) vs LiteRT (reference kernels
    // and default path), same models, one thread. The table also goes to docs/benchmarks.md.
    let big_mlp = dir.join("mlp_1024_int8.tflite");
    qlite::save(&reg, &int8_mlp(), &big_mlp).map_err(|e| e.to_string())?;
    let mobile_f = dir.join("mobilenet_like_96_float.tflite");
    qlite::save(&reg, &mobilenet_like(), &mobile_f).map_err(|e| e.to_string())?;
    let mobile = dir.join("mobilenet_like_96_int8.tflite");
    let calib = dir.join("mobilenet_calib.npy");
    let mut rng = qlite::sample::Rng::new(5);
    let images =
        qlite::Array::f32(vec![16, 96, 96, 3], rng.vec(16 * 96 * 96 * 3, 0.0, 1.0)).map_err(|e| e.to_string())?;
    qlite::write_npy_file(&calib, &images).map_err(|e| e.to_string())?;
    let (mf, mo, cal) = (mobile_f.to_string_lossy(), mobile.to_string_lossy(), calib.to_string_lossy());
    measure(&["convert", &mf, "-o", &mo, "--quantize", "int8", "--calibration", &cal])?;
    let models: Vec<String> = ["fixtures/digits/tf_int8/mlp.tflite", "fixtures/digits/tf_int8/cnn.tflite"]
        .iter()
        .map(|m| root().join(m).to_string_lossy().into_owned())
        .chain([big_mlp.to_string_lossy().into_owned(), mobile.to_string_lossy().into_owned()])
        .collect();
    let py = super::oracle_python()?;
    let out = Command::new(py)
        .arg(root().join("xtask/bench/litert_latency.py"))
        .args(&models)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("LiteRT latency script failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let litert = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut table = String::new();
    table.push_str("| model | qlite fast | qlite fast, 2 threads | qlite reference | LiteRT reference | LiteRT default | fast vs LiteRT ref | fast vs LiteRT default | arena | allocations per run |\n");
    table.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for m in &models {
        let ours = |kernels: &str, threads: &str, runs: &str| -> Result<serde_json::Value, String> {
            let q = Command::new(&exe)
                .args(["bench", m, "--iterations", runs, "--kernels", kernels, "--threads", threads, "--json"])
                .output()
                .map_err(|e| e.to_string())?;
            serde_json::from_slice(&q.stdout)
                .map_err(|e| format!("qlite bench {m}: {e}: {}", String::from_utf8_lossy(&q.stderr)))
        };
        // The fast kernels: lowest median of 5 rounds, as for LiteRT's default path (bursts
        // of this VM's timing drift last longer than a round).
        let mut fast_runs = Vec::new();
        for _ in 0..5 {
            fast_runs.push(ours("fast", "1", "2000")?);
        }
        let median = |v: &serde_json::Value| v["median_us"].as_f64().unwrap_or(f64::NAN);
        let fast = fast_runs.iter().map(median).fold(f64::INFINITY, f64::min);
        let arena = fast_runs[0]["arena_bytes"].as_f64().unwrap_or(f64::NAN) / 1024.0;
        let allocs =
            fast_runs.iter().map(|v| v["allocations_per_run"].as_f64().unwrap_or(f64::NAN)).fold(0.0, f64::max);
        let two = (0..5).map(|_| ours("fast", "2", "2000").map(|v| median(&v))).collect::<Result<Vec<_>, _>>()?;
        let two = two.into_iter().fold(f64::INFINITY, f64::min);
        let reference = median(&ours("reference", "1", "300")?);
        let line = litert.lines().find(|l| l.starts_with(m.as_str())).unwrap_or("");
        let field = |k: &str| -> f64 {
            line.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
        };
        let (r, d) = (field("ref_us="), field("default_us="));
        let name = Path::new(m).iter().rev().take(2).collect::<Vec<_>>().into_iter().rev().collect::<PathBuf>();
        table.push_str(&format!(
            "| {} | {fast:.1} µs | {two:.1} µs | {reference:.1} µs | {r:.1} µs | {d:.1} µs | {:.1}× faster | {:.2}× the time | {arena:.1} KiB | {allocs} |\n",
            name.display(),
            r / fast,
            fast / d
        ));
    }
    println!("  single-image int8 latency (median, one thread):");
    for l in table.lines() {
        println!("    {l}");
    }
    let memory = conversion_memory(&dir, &exe)?;
    let large = large_models(&dir, &exe)?;
    let calibration = calibration_bench(&dir, &exe)?;
    let doc = format!(
        "# Benchmarks\n\nWritten by `cargo xtask bench` (release build, single-image latency, one thread unless \
         stated; qlite fast and LiteRT default: the lowest of 5 medians of 1000–2000 runs after warm-up, \
         as this VM's timing drifts; the reference kernels: one median of 200–300 runs). LiteRT = \
         ai-edge-litert pinned in xtask/requirements-oracle.txt, timed from Python around `invoke()`; \
         qlite = `qlite bench`, a session (planned arena) run from Rust. `qlite fast` gives the same \
         bytes as `qlite reference`, which is bit-exact with LiteRT's reference kernels; LiteRT's \
         default path (XNNPACK) is not bit-exact with them (it requantizes in float).\n\n{table}\n\
         The models: the TensorFlow-converted int8 digits MLP and CNN (`fixtures/digits/tf_int8`), a \
         64→1024→1024→10 int8 MLP, and a MobileNet-like stack at 96×96×3 (3×3 stride-2 stem, six \
         depthwise + pointwise blocks, average, classifier) converted to int8 by `qlite convert`.\n\n\
         ## Real-size models\n\n{large}\n\
         ResNet-50 is the `onnx` wheel's `light_resnet50.onnx` (ResNet-50 v1's architecture; its \
         weights are made at load by ConstantOfShape, so the values are not a trained model's, the \
         work is), converted by `qlite convert --io-layout nhwc --quantize int8` calibrated on 4 \
         seeded random images: no Transpose is left (`assign-layout`). The float32 row: the same \
         architecture with random weights stored in the file (below), `--io-layout nhwc`. The Keras \
         rows: `keras.applications` with random weights (seed 7), converted by TensorFlow's \
         converter, float32 and full integer with int8 I/O (`xtask/bench/keras_latency_models.py`). Both sides run the same \
         file, median of 20 runs, lowest of 5 rounds taken in turn with the other tool, on one thread and on both cores (qlite \
         `--threads 2`: its persistent pool splits convolutions, depthwise and element-wise ops; \
         LiteRT `num_threads=2`: XNNPACK's pool).\n\n\
         ## Converting real-size ONNX files: time and peak memory\n\n{memory}\n\
         The `onnx` wheel's light ResNet-50, DenseNet-121 and VGG-19 with their ConstantOfShape \
         weights replaced by seeded random initializers stored in the file \
         (`xtask/bench/onnx_real_size.py`), converted with `--io-layout nhwc` (float32) to a new file, \
         after `sync` (the previous run's output on the disk); median of 3 runs of the whole process, peak resident memory the highest of them. Over an \
         existing file: the same, the output replacing the previous run's (qlite writes a temporary \
         file and renames it over the old one; ext4 then starts writing the new data to the disk \
         before the rename, its guard against a crash leaving an empty file, so the time depends on \
         the disk). To tmpfs: the same to a new file in `/dev/shm`, without the disk's file system (on \
         this VM the kernel's copy into ext4's page cache is bimodal: the same 100 MB in 10 or in \
         90 ms). `cp`: copying the same file, warm page cache, median of 3.\n\n\
         ## Conversion against TensorFlow's converter\n\n{calibration}\n\
         Keras ResNet-50 (`keras.applications`, random weights, 224×224, batch None) exported as a \
         SavedModel (`xtask/bench/keras_resnet50_int8.py`). TensorFlow: the converter call only \
         (imported and warmed up first). qlite: the whole process, `qlite convert` to a new file after \
         `sync` (and to a new file in `/dev/shm`), median of 5, peak resident memory the highest of them; int8: `--quantize int8 \
         --calibration` with the same 32 images (import, calibration on the fast kernels with the \
         samples spread over both cores, quantization, writing), median of 3.\n"
    );
    std::fs::create_dir_all(root().join("docs")).map_err(|e| e.to_string())?;
    std::fs::write(root().join("docs/benchmarks.md"), doc).map_err(|e| e.to_string())?;
    Ok(())
}

/// One real-size model side by side: qlite's fast kernels and LiteRT's default path
/// (XNNPACK), each on 1 and on 2 threads, the lowest median of 5 rounds of 20 runs (the tools
/// in turn); qlite's allocations per run.
struct SideBySide {
    qlite: [f64; 2],
    litert: [f64; 2],
    allocs: f64,
}

impl SideBySide {
    /// A table row's cells after the model's name (ending before the conversion column).
    fn cells(&self) -> String {
        let [q1, q2] = self.qlite;
        let [l1, l2] = self.litert;
        format!(
            "{:.1} ms | {:.1} ms | {:.2}× | {:.1} ms | {:.1} ms | {:.2}× | {}",
            q1 / 1e3,
            l1 / 1e3,
            q1 / l1,
            q2 / 1e3,
            l2 / 1e3,
            q2 / l2,
            self.allocs
        )
    }
}

fn side_by_side(exe: &Path, model: &Path) -> Result<SideBySide, String> {
    let mut r = SideBySide { qlite: [f64::INFINITY; 2], litert: [f64::INFINITY; 2], allocs: f64::NAN };
    for (i, threads) in ["1", "2"].into_iter().enumerate() {
        // The two tools in turn, 5 rounds, each tool's lowest: this VM's second vCPU has
        // minutes-long slow spells (both tools' 2-thread times rise by half in them), which
        // one tool's rounds in a row could all fall into.
        for _ in 0..5 {
            let out = Command::new(super::oracle_python()?)
                .arg(root().join("xtask/bench/litert_latency.py"))
                .args(["--large", "--threads", threads])
                .arg(model)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("LiteRT latency script failed: {}", String::from_utf8_lossy(&out.stderr)));
            }
            let v = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .find_map(|w| w.strip_prefix("default_us="))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            r.litert[i] = r.litert[i].min(v);
            let q = Command::new(exe)
                .arg("bench")
                .arg(model)
                .args(["--iterations", "20", "--json", "--threads", threads])
                .output()
                .map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_slice(&q.stdout).map_err(|e| format!("qlite bench: {e}"))?;
            r.qlite[i] = r.qlite[i].min(v["median_us"].as_f64().unwrap_or(f64::NAN));
            let a = v["allocations_per_run"].as_f64().unwrap_or(f64::NAN);
            r.allocs = if r.allocs.is_nan() { a } else { r.allocs.max(a) };
        }
    }
    Ok(r)
}

/// Real-size ONNX CNNs converted to float .tflite: elapsed time and peak RSS against the file
/// size, and `cp` of the same file; a Markdown table.
fn conversion_memory(dir: &Path, exe: &Path) -> Result<String, String> {
    let out_dir = dir.join("onnx");
    let o = Command::new(super::oracle_python()?)
        .arg(root().join("xtask/bench/onnx_real_size.py"))
        .arg(&out_dir)
        .args(["resnet50", "densenet121", "vgg19"])
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("onnx_real_size.py failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    let mut table = String::from(
        "| model | file | qlite convert | over an existing file | to tmpfs | peak memory | peak ÷ file | `cp` of the file |\n|---|---|---|---|---|---|---|---|\n",
    );
    for name in ["resnet50", "densenet121", "vgg19"] {
        let src = out_dir.join(format!("{name}.onnx"));
        let dst = dir.join(format!("{name}_float.tflite"));
        let bytes = std::fs::metadata(&src).map_err(|e| e.to_string())?.len() as f64;
        let (mut times, mut replacing, mut peak) = (Vec::new(), Vec::new(), 0f64);
        let convert = || {
            stats(
                Command::new(exe)
                    .arg("--stats")
                    .arg("convert")
                    .arg(&src)
                    .arg("-o")
                    .arg(&dst)
                    .args(["--io-layout", "nhwc"]),
            )
        };
        for _ in 0..3 {
            let _ = std::fs::remove_file(&dst);
            settle();
            let (ms, p) = convert()?;
            times.push(ms);
            peak = peak.max(p);
        }
        for _ in 0..3 {
            settle();
            replacing.push(convert()?.0);
        }
        let shm = tmpfs(&format!("{name}.tflite"));
        let mut shm_ms = Vec::new();
        for _ in 0..3 {
            let _ = std::fs::remove_file(&shm);
            let mut cmd = Command::new(exe);
            cmd.arg("--stats").arg("convert").arg(&src).arg("-o").arg(&shm).args(["--io-layout", "nhwc"]);
            shm_ms.push(stats(&mut cmd)?.0);
        }
        let _ = std::fs::remove_file(&shm);
        let copy = dir.join(format!("{name}_copy.onnx"));
        let mut cp = Vec::new();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let ok = Command::new("cp").arg(&src).arg(&copy).status().map_err(|e| e.to_string())?.success();
            if !ok {
                return Err(format!("cp {} failed", src.display()));
            }
            cp.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let _ = std::fs::remove_file(&copy);
        table.push_str(&format!(
            "| {name} | {:.0} MB | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} MB | {:.2}× | {:.0} ms |\n",
            bytes / 1e6,
            median(times),
            median(replacing),
            median(shm_ms),
            peak / 1e6,
            peak / bytes,
            median(cp)
        ));
    }
    println!("  real-size ONNX conversion, time and peak memory:");
    for l in table.lines() {
        println!("    {l}");
    }
    Ok(table)
}

/// Where to write a benchmark's output on a tmpfs (`/dev/shm`, else the system's temporary
/// directory): the conversion's own time, without the file system's. On this VM the copy into
/// ext4's page cache is bimodal (the same 100 MB written in 10 or in 90 ms, `perf`: all of it
/// in the kernel's `copy_folio_from_iter_atomic`).
fn tmpfs(name: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    dir.join(format!("qlite-bench-{name}"))
}

/// Waits for the previous runs' output to reach the disk (`sync`), so a timed conversion does
/// not also pay for the last one's write-back.
fn settle() {
    let _ = Command::new("sync").status();
}

/// Runs `qlite --stats ...`; (elapsed ms, peak resident bytes).
fn stats(cmd: &mut Command) -> Result<(f64, f64), String> {
    let o = cmd.output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let field = |k: &str| err.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse::<f64>().ok());
    Ok((field("elapsed_ms=").unwrap_or(f64::NAN), field("peak_rss_kib=").unwrap_or(f64::NAN) * 1024.0))
}

/// Keras ResNet-50 to float32 and to full integer with 32 calibration images: TensorFlow's
/// converter against `qlite convert` on this machine; a Markdown table.
fn calibration_bench(dir: &Path, exe: &Path) -> Result<String, String> {
    let out = dir.join("keras_resnet50");
    let py = match std::env::var_os("QLITE_TF_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => super::venv(&root().join(".venv-fixtures"), &root().join("xtask/requirements-fixtures.txt"))?,
    };
    let o = Command::new(py)
        .arg(root().join("xtask/bench/keras_resnet50_int8.py"))
        .arg(&out)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("keras_resnet50_int8.py failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    let tf = |k: &str| -> f64 {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k).and_then(|v| v.parse().ok()))
            .unwrap_or(f64::NAN)
    };
    let (tf_ms, tf_float_ms) = (tf("tf_int8_ms="), tf("tf_float_ms="));
    let (saved, calib, q) = (out.join("saved_model"), out.join("calib.npy"), out.join("qlite_int8.tflite"));
    // Float: the whole process, each time to a new file (replacing one costs the file system's
    // flush: below), and its peak memory against the variables it reads.
    let variables: u64 = std::fs::read_dir(saved.join("variables"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let f = out.join("qlite_float.tflite");
    let (mut float_ms, mut float_peak) = (Vec::new(), 0f64);
    for _ in 0..5 {
        let _ = std::fs::remove_file(&f);
        settle();
        let (ms, peak) = stats(Command::new(exe).arg("--stats").arg("convert").arg(&saved).arg("-o").arg(&f))?;
        float_ms.push(ms);
        float_peak = float_peak.max(peak);
    }
    let float_ms = median(float_ms);
    let shm = tmpfs("keras_resnet50.tflite");
    let mut shm_ms = Vec::new();
    for _ in 0..5 {
        let _ = std::fs::remove_file(&shm);
        shm_ms.push(stats(Command::new(exe).arg("--stats").arg("convert").arg(&saved).arg("-o").arg(&shm))?.0);
    }
    let _ = std::fs::remove_file(&shm);
    let shm_ms = median(shm_ms);
    let mut times = Vec::new();
    let mut calib_ms = Vec::new();
    for _ in 0..3 {
        let o = Command::new(exe)
            .arg("--stats")
            .arg("convert")
            .arg(&saved)
            .arg("-o")
            .arg(&q)
            .args(["--quantize", "int8", "--calibration"])
            .arg(&calib)
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!("qlite convert of Keras ResNet-50 failed: {}", String::from_utf8_lossy(&o.stderr)));
        }
        let (err, stdout) = (String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
        times.push(
            err.split_whitespace()
                .find_map(|w| w.strip_prefix("elapsed_ms=").and_then(|v| v.parse::<f64>().ok()))
                .unwrap_or(f64::NAN),
        );
        calib_ms.push(
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("calibration: ").and_then(|v| v.trim_end_matches(" ms").parse().ok()))
                .unwrap_or(f64::NAN),
        );
    }
    let (ours, cal) = (median(times), median(calib_ms));
    let table = format!(
        "| model | TensorFlow's converter | qlite convert | of which calibration | qlite's speed-up | qlite's peak memory |\n\
         |---|---|---|---|---|---|\n\
         | Keras ResNet-50 float32 | {:.2} s | {:.0} ms ({:.0} ms to tmpfs) | — | {:.0}× ({:.0}×) | {:.0} MB ({:.2}× the {:.0} MB of variables) |\n\
         | Keras ResNet-50 int8, 32 images | {:.1} s | {:.2} s | {:.2} s | {:.1}× | |\n",
        tf_float_ms / 1e3,
        float_ms,
        shm_ms,
        tf_float_ms / float_ms,
        tf_float_ms / shm_ms,
        float_peak / 1e6,
        float_peak / variables as f64,
        variables as f64 / 1e6,
        tf_ms / 1e3,
        ours / 1e3,
        cal / 1e3,
        tf_ms / ours
    );
    println!("  conversion against TensorFlow's converter:");
    for l in table.lines() {
        println!("    {l}");
    }
    Ok(table)
}

/// Real-size int8 models: qlite's fast kernels against LiteRT's default path (XNNPACK), one
/// thread, the same file; a Markdown table.
fn large_models(dir: &Path, exe: &Path) -> Result<String, String> {
    let light = super::onnx_test_data()?.join("light").join("light_resnet50.onnx");
    let calib = dir.join("resnet50_calib.npy");
    let mut rng = qlite::sample::Rng::new(7);
    let images =
        qlite::Array::f32(vec![4, 224, 224, 3], rng.vec(4 * 224 * 224 * 3, 0.0, 1.0)).map_err(|e| e.to_string())?;
    qlite::write_npy_file(&calib, &images).map_err(|e| e.to_string())?;
    let r50 = dir.join("resnet50_int8.tflite");
    let (l, c, o) = (light.to_string_lossy(), calib.to_string_lossy(), r50.to_string_lossy());
    let conv = Command::new(exe)
        .args(["--stats", "convert", &l, "-o", &o, "--io-layout", "nhwc", "--quantize", "int8", "--calibration", &c])
        .output()
        .map_err(|e| e.to_string())?;
    if !conv.status.success() {
        return Err(format!("qlite convert {l}: {}", String::from_utf8_lossy(&conv.stderr)));
    }
    let conv_ms = String::from_utf8_lossy(&conv.stderr)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("elapsed_ms=").and_then(|v| v.parse::<f64>().ok()))
        .unwrap_or(f64::NAN);
    let int8 = side_by_side(exe, &r50)?;
    // The float conversion `conversion_memory` wrote: the same architecture in float32.
    let f32_model = dir.join("resnet50_float.tflite");
    let float = side_by_side(exe, &f32_model)?;
    // 16x8: LiteRT runs it on its reference kernels (no optimized int64-bias kernels), most
    // of a second per image: a few runs each.
    let r16 = dir.join("resnet50_int16x8.tflite");
    let o16 = r16.to_string_lossy();
    let conv = Command::new(exe)
        .args(["convert", &l, "-o", &o16, "--io-layout", "nhwc", "--quantize", "int16x8", "--calibration", &c])
        .output()
        .map_err(|e| e.to_string())?;
    if !conv.status.success() {
        return Err(format!("qlite convert {l} int16x8: {}", String::from_utf8_lossy(&conv.stderr)));
    }
    let out = Command::new(super::oracle_python()?)
        .arg(root().join("xtask/bench/litert_latency.py"))
        .arg("--slow")
        .arg(&r16)
        .output()
        .map_err(|e| e.to_string())?;
    let d16 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("default_us="))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let q =
        Command::new(exe).args(["bench", &o16, "--iterations", "5", "--json"]).output().map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&q.stdout).map_err(|e| format!("qlite bench: {e}"))?;
    let (q16, allocs16) =
        (v["median_us"].as_f64().unwrap_or(f64::NAN), v["allocations_per_run"].as_f64().unwrap_or(f64::NAN));
    let mut table = format!(
        "| model | qlite fast | LiteRT default (XNNPACK) | qlite ÷ XNNPACK | qlite fast, 2 threads | XNNPACK, 2 threads | qlite ÷ XNNPACK, 2 threads | allocations per run | qlite convert (int8, 4 calibration images) |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | ResNet-50 int8, 224×224 | {} | {:.1} s |\n\
         | ResNet-50 float32, 224×224 | {} | — |\n\
         | ResNet-50 int16x8, 224×224 (LiteRT: reference kernels only) | {:.1} ms | {:.1} ms | {:.2}× | — | — | — | {allocs16} | — |\n",
        int8.cells(),
        conv_ms / 1e3,
        float.cells(),
        q16 / 1e3,
        d16 / 1e3,
        q16 / d16,
    );
    // Keras applications converted by TensorFlow's converter (made on demand, needs TF).
    let py = match std::env::var_os("QLITE_TF_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => super::venv(&root().join(".venv-fixtures"), &root().join("xtask/requirements-fixtures.txt"))?,
    };
    let o = Command::new(py)
        .arg(root().join("xtask/bench/keras_latency_models.py"))
        .arg(dir.join("keras"))
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("keras_latency_models.py failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    for path in String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.ends_with(".tflite")) {
        let r = side_by_side(exe, Path::new(path))?;
        let stem = Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = stem
            .replace("keras_mobilenet_v2", "Keras MobileNetV2 1.0")
            .replace("keras_efficientnet_b0", "Keras EfficientNet-B0")
            .replace("_float", " float32, 224×224 (TF converter)")
            .replace("_int8", " int8, 224×224 (TF converter)");
        table.push_str(&format!("| {name} | {} | — |\n", r.cells()));
    }
    println!("  real-size latency:");
    for l in table.lines() {
        println!("    {l}");
    }
    Ok(table)
}
