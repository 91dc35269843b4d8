//! Shared helpers: graph building, the round-trip "cycle" and conformance export.

use qlite::ir::op::InferInput;
use qlite::ir::{DType, Graph, Node, Op, QuantParams, Shape, Tensor, TensorId};
use qlite::sample::Rng;
use qlite::{Array, Interpreter};
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("fixtures").join(rel)
}

/// Small graph builder: output shapes come from the IR's own inference.
pub struct Builder {
    pub g: Graph,
    pub rng: Rng,
    pub inputs: Vec<Array>,
}

impl Builder {
    pub fn new(name: &str) -> Self {
        // Seeded by the whole name: every case gets its own stream, the same on every run.
        Builder { g: Graph::new(name), rng: Rng::new(qlite::ir::print::fnv1a(name.as_bytes())), inputs: Vec::new() }
    }

    /// A float input with random values in [lo, hi).
    pub fn input(&mut self, name: &str, dims: &[usize], lo: f32, hi: f32) -> TensorId {
        let n = dims.iter().product();
        self.inputs.push(Array::f32(dims.to_vec(), self.rng.vec(n, lo, hi)).unwrap());
        self.input_array(name, Tensor::activation(name, DType::F32, Shape::fixed(dims)))
    }

    /// An input with a given value (any dtype).
    pub fn input_with(&mut self, t: Tensor, value: Array) -> TensorId {
        self.inputs.push(value);
        let name = t.name.clone();
        self.input_array(&name, t)
    }

    fn input_array(&mut self, _name: &str, t: Tensor) -> TensorId {
        let id = self.g.add_tensor(t);
        let mut ins = self.g.inputs().to_vec();
        ins.push(id);
        self.g.set_inputs(ins);
        id
    }

    pub fn konst(&mut self, name: &str, dims: &[usize]) -> TensorId {
        let n = dims.iter().product();
        let v = self.rng.vec(n, -1.0, 1.0);
        self.g.add_tensor(Tensor::constant(name, DType::F32, Shape::fixed(dims), qlite::ir::tensor::f32_bytes(&v)))
    }

    pub fn raw_const(&mut self, t: Tensor) -> TensorId {
        self.g.add_tensor(t)
    }

    /// Add a node; its output tensor is created from inference (dtype `out` when the op
    /// leaves it to the declaration, e.g. Quantize).
    pub fn node(&mut self, op: Op, inputs: &[Option<TensorId>], out: Option<(DType, QuantParams)>) -> TensorId {
        let ins: Vec<InferInput<'_>> =
            inputs.iter().map(|i| i.and_then(|t| self.g.tensor(t)).map(|t| (t.dtype, &t.shape))).collect();
        let inf = op.infer(&ins).expect("inference").remove(0);
        let name = format!("{}_{}", op.name().to_lowercase(), self.g.nodes().len());
        let (dtype, quant) = match out {
            Some((d, q)) => (d, Some(q)),
            None => (inf.dtype.expect("dtype"), None),
        };
        let mut t = Tensor::activation(&name, dtype, inf.shape);
        t.quant = quant;
        let id = self.g.add_tensor(t);
        self.g.add_node(Node::new(name, op, inputs.to_vec(), vec![id]));
        id
    }

    pub fn finish(mut self, outputs: &[TensorId]) -> (Graph, Vec<Array>) {
        self.g.set_outputs(outputs.to_vec());
        qlite::ir::verify(&self.g).expect("test graph verifies");
        (self.g, self.inputs)
    }
}

/// How close float outputs must be to another framework's (onnxruntime, Keras, numpy):
/// `|ours − theirs| ≤ 1e-7 + 1e-4 · max(|ours|, |theirs|)`, non-finite values where they are.
pub const FRAMEWORK_TOL: qlite::Tolerance = qlite::Tolerance::close(1e-4, 1e-7);

/// Panic naming `what` unless `ours` agrees with `want` (the one comparison helper: equal
/// shapes and dtypes, NaN and ±inf in the same places, integers exact).
pub fn assert_agrees(ours: &Array, want: &Array, tol: qlite::Tolerance, what: &str) {
    if let Err(e) = qlite::compare(ours, want, tol) {
        panic!("{what}: {e}");
    }
}

/// Where conformance cases go, if the run collects them.
fn conformance_dir() -> Option<PathBuf> {
    std::env::var_os("QLITE_CONFORMANCE_DIR").map(PathBuf::from)
}

/// Export a conformance case: the model bytes, inputs and qlite's outputs.
pub fn export_case(name: &str, model: &[u8], inputs: &[Array], outputs: &[Array], compare: &str) {
    export_case_with_reference(name, model, inputs, outputs, None, compare);
}

/// Like [`export_case`], with the outputs LiteRT's reference kernels must give when they
/// knowingly differ from the default kernels (LOCAL_RESPONSE_NORMALIZATION's window).
pub fn export_case_with_reference(
    name: &str,
    model: &[u8],
    inputs: &[Array],
    outputs: &[Array],
    reference: Option<&[Array]>,
    compare: &str,
) {
    // Every exported case also runs on the fast kernels at every instruction-set tier the
    // host has, plainly and in a session (twice: the planned arena reused), batched cases
    // one row at a time; each must give the same bytes as the reference kernels that
    // computed `outputs` (so the LiteRT check covers them all).
    let g = qlite_tflite::read_model(bytes::Bytes::copy_from_slice(model)).unwrap();
    let tiers = fast_and_sessions_agree(name, &g, inputs, outputs);
    let Some(dir) = conformance_dir() else { return };
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("model.tflite"), model).unwrap();
    let mut ins = Vec::new();
    for (i, a) in inputs.iter().enumerate() {
        let f = format!("input_{i}.npy");
        qlite::write_npy_file(&d.join(&f), a).unwrap();
        ins.push(f);
    }
    let mut outs = Vec::new();
    for (i, a) in outputs.iter().enumerate() {
        let f = format!("expected_{i}.npy");
        qlite::write_npy_file(&d.join(&f), a).unwrap();
        outs.push(f);
    }
    let mut case = serde_json::json!({"model": "model.tflite", "inputs": ins, "expected": outs, "compare": compare,
        "session": true, "tiers": tiers});
    if let Some(r) = reference {
        let mut files = Vec::new();
        for (i, a) in r.iter().enumerate() {
            let f = format!("expected_reference_{i}.npy");
            qlite::write_npy_file(&d.join(&f), a).unwrap();
            files.push(f);
        }
        case["expected_reference"] = serde_json::json!(files);
    }
    std::fs::write(d.join("case.json"), serde_json::to_vec_pretty(&case).unwrap()).unwrap();
}

/// Record that LiteRT's default resolver (XNNPACK) fails on an exported case with `error`:
/// check.py then requires that failure (and still holds the reference resolver to the case).
pub fn default_resolver_fails(name: &str, error: &str, why: &str) {
    resolver_fails(name, "default", error, why);
}

/// Record that LiteRT's reference resolver (BUILTIN_REF) cannot run an exported case (an op
/// version it does not register): check.py requires that failure and holds the default
/// resolver to the case's comparison instead (bit-exact for integer cases).
pub fn reference_resolver_fails(name: &str, error: &str, why: &str) {
    resolver_fails(name, "reference", error, why);
}

fn resolver_fails(name: &str, resolver: &str, error: &str, why: &str) {
    let Some(dir) = conformance_dir() else { return };
    let path = dir.join(name).join("case.json");
    let mut case: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    case[format!("{resolver}_resolver_fails")] = serde_json::json!({"error": error, "why": why});
    std::fs::write(&path, serde_json::to_vec_pretty(&case).unwrap()).unwrap();
}

/// Export a re-written file holding ops qlite cannot run: LiteRT must give on `model` exactly
/// what it gives on `original` (check.py, case kind "reexport").
pub fn export_reexport_case(name: &str, original: &[u8], model: &[u8], inputs: &[Array]) {
    let Some(dir) = conformance_dir() else { return };
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("model.tflite"), model).unwrap();
    std::fs::write(d.join("original.tflite"), original).unwrap();
    let mut ins = Vec::new();
    for (i, a) in inputs.iter().enumerate() {
        let f = format!("input_{i}.npy");
        qlite::write_npy_file(&d.join(&f), a).unwrap();
        ins.push(f);
    }
    let case = serde_json::json!({"kind": "reexport", "model": "model.tflite", "original": "original.tflite",
        "inputs": ins});
    std::fs::write(d.join("case.json"), serde_json::to_vec_pretty(&case).unwrap()).unwrap();
}

/// Whether `inputs` are a batch of rows for `g` (whose declared first dimension is 1) rather
/// than the shapes it declares.
fn is_row_batch(g: &Graph, inputs: &[Array]) -> bool {
    inputs.iter().zip(g.inputs()).any(|(a, &t)| {
        let d = g.tensors()[t.index()].shape.dims();
        d.len() != a.shape().len() || d.iter().zip(a.shape()).any(|(d, &n)| d.fixed().is_some_and(|f| f != n))
    })
}

/// Run `g` on the fast kernels at every tier, plainly and twice in a session, and require
/// `outputs` bit for bit each time (the one comparison helper, exact). Returns the tiers run.
/// How far the fast kernels' float outputs may be from the reference kernels' (integer outputs
/// must be the same bytes): SGEMM sums in blocks, the reference kernels in sequence.
pub const FAST_FLOAT_TOL: qlite::Tolerance = qlite::Tolerance::close(1e-5, 1e-6);

pub fn fast_and_sessions_agree(name: &str, g: &Graph, inputs: &[Array], outputs: &[Array]) -> Vec<String> {
    let rows: Vec<Vec<Array>> = if is_row_batch(g, inputs) {
        let n = inputs[0].shape()[0];
        (0..n).map(|r| inputs.iter().map(|a| a.row(r).expect("batch row")).collect()).collect()
    } else {
        vec![inputs.to_vec()]
    };
    let stack = |parts: Vec<Vec<Array>>| -> Vec<Array> {
        if parts.len() == 1 && !is_row_batch(g, inputs) {
            return parts.into_iter().next().unwrap_or_default();
        }
        let outs = parts.first().map_or(0, Vec::len);
        (0..outs)
            .map(|k| Array::stack_rows(&parts.iter().map(|p| p[k].clone()).collect::<Vec<_>>()).expect("stack"))
            .collect()
    };
    let mut tiers = Vec::new();
    qlite::isa::for_each_tier(|t| {
        let interp = Interpreter::new(g).unwrap().isa(t).kernels(qlite::Kernels::Fast);
        let plain = stack(rows.iter().map(|r| interp.run(r.clone()).unwrap()).collect());
        if let Err(e) = qlite::compare_all(&plain, outputs, FAST_FLOAT_TOL) {
            panic!("{name} at {t}: the fast kernels differ from the reference: {e}");
        }
        let mut session = interp.session();
        for run in 0..2 {
            let got = stack(
                rows.iter()
                    .map(|r| {
                        session.run(r).unwrap_or_else(|e| panic!("{name} at {t}: session: {e}"));
                        session.outputs().unwrap().into_iter().cloned().collect()
                    })
                    .collect(),
            );
            if let Err(e) = qlite::compare_all(&got, outputs, FAST_FLOAT_TOL) {
                panic!("{name} at {t}: session run {run} differs from the reference: {e}");
            }
        }
        tiers.push(t.name().to_string());
    });
    tiers
}

/// The round-trip cycle every op goes through: run in qlite → write → read → write (the
/// same bytes) → run again (the same outputs) → export for LiteRT. Returns the outputs and
/// the re-read graph.
pub fn cycle(name: &str, g: &Graph, inputs: &[Array], compare: &str) -> (Vec<Array>, Graph) {
    let y = Interpreter::new(g).unwrap().run(inputs.to_vec()).unwrap();
    let bytes = qlite_tflite::write_model(g).unwrap();
    assert_eq!(&bytes[4..8], b"TFL3");
    let g2 = qlite_tflite::read_model(bytes.clone()).unwrap();
    let bytes2 = qlite_tflite::write_model(&g2).unwrap();
    assert!(bytes == bytes2, "{name}: write → read → write is not byte-identical");
    let y2 = Interpreter::new(&g2).unwrap().run(inputs.to_vec()).unwrap();
    assert_eq!(y, y2, "{name}: outputs changed after the round trip");
    // LiteRT's reference LOCAL_RESPONSE_NORMALIZATION sums one channel fewer than TensorFlow's
    // window (see Interpreter::litert_reference_lrn): its run is held to qlite's emulation.
    let lrn = g.nodes().iter().any(|n| matches!(n.op, Op::LocalResponseNorm(_)));
    let reference =
        lrn.then(|| Interpreter::new(&g2).unwrap().litert_reference_lrn(true).run(inputs.to_vec()).unwrap());
    export_case_with_reference(name, &bytes, inputs, &y, reference.as_deref(), compare);
    (y, g2)
}

/// Deterministic text of arrays for snapshots.
pub fn arrays_text(a: &[Array]) -> String {
    a.iter()
        .map(|a| {
            let vals: Vec<String> = match a.data() {
                qlite::Data::F32(v) => v.iter().map(|x| format!("{x:.6}")).collect(),
                qlite::Data::I8(v) => v.iter().map(|x| x.to_string()).collect(),
                qlite::Data::U8(v) => v.iter().map(|x| x.to_string()).collect(),
                other => vec![format!("{other:?}")],
            };
            format!("{} {:?} [{}]", a.dtype(), a.shape(), vals.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
