//! The ONNX backend test cases shipped in the `onnx` wheel (`onnx/backend/test/data/
//! pytorch-converted` and `pytorch-operator`), run through qlite.
//!
//! Each case is imported, sent through the default pipeline and run in qlite's interpreter;
//! every output must match the case's expected output within `RTOL * |expected| + ATOL`.
//! The converted graph is also written as a .tflite conformance case (with qlite's outputs as
//! the expectation), so the LiteRT check that follows runs it in the real runtime.
//!
//! `xtask/conformance/onnx-backend-pass.txt` lists the cases that pass. A listed case that
//! fails is an error; a passing case that is not listed is reported so the list can grow
//! (`cargo xtask onnx-backend --update`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use qlite::Array;

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;
const SUITES: [&str; 3] = ["pytorch-converted", "pytorch-operator", "light"];

pub fn allow_list_path(root: &Path) -> PathBuf {
    root.join("xtask/conformance/onnx-backend-pass.txt")
}

enum Outcome {
    Pass { max_rel: f64 },
    Unsupported(String),
    Mismatch(String),
}

/// Read a serialized TensorProto (the cases' input_N.pb / output_N.pb).
fn read_pb(path: &Path) -> Result<Array, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (dtype, shape, data) =
        qlite::onnx::read_tensor_proto(bytes.into()).map_err(|e| format!("{}: {e}", path.display()))?;
    Array::from_le_bytes(dtype, shape, &data).map_err(|e| format!("{}: {e}", path.display()))
}

/// The one comparison helper (`qlite::compare`): equal shapes and dtypes, NaN and ±inf in the
/// same places, integers exact, floats within `ATOL + RTOL · max(|ours|, |want|)`.
fn compare(ours: &Array, want: &Array) -> Result<f64, String> {
    qlite::compare(ours, want, qlite::Tolerance::close(RTOL, ATOL)).map(|a| a.max_rel).map_err(|e| e.to_string())
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..).map(|i| dir.join(format!("{prefix}_{i}.pb"))).take_while(|p| p.exists()).collect()
}

/// Where a case's inputs and expected outputs come from.
enum DataSet {
    /// A `test_data_set_N` directory of `input_K.pb` / `output_K.pb`.
    Dir(PathBuf),
    /// The "light" ImageNet models: every input is `arange(n) / n` in its declared shape
    /// (what the onnx backend runner feeds them), the expected output is this file.
    Light(PathBuf),
}

fn light_inputs(g: &qlite::Graph) -> Result<Vec<Array>, String> {
    g.inputs()
        .iter()
        .map(|&t| {
            let t = g.tensor(t).ok_or("missing input tensor")?;
            let shape: Vec<usize> = t.shape.dims().iter().map(|d| d.fixed().unwrap_or(1)).collect();
            let n: usize = shape.iter().product();
            let v = (0..n).map(|i| (i as f64 / n as f64) as f32).collect();
            Array::f32(shape, v).map_err(|e| e.to_string())
        })
        .collect()
}

/// Transposes left in the light ImageNet CNNs converted with NHWC inputs and outputs (the
/// `assign-layout` pass): none, except the one Transpose each ShuffleNet channel shuffle needs.
const LIGHT_TRANSPOSES: &[(&str, usize)] = &[
    ("light_bvlc_alexnet", 0),
    ("light_densenet121", 0),
    ("light_inception_v1", 0),
    ("light_inception_v2", 0),
    ("light_resnet50", 0),
    ("light_shufflenet", 16),
    ("light_squeezenet", 0),
    ("light_vgg19", 0),
    ("light_zfnet512", 0),
];

/// Transposes of the model converted with NHWC I/O, when the table above lists it: an error if
/// the count differs.
fn check_transposes(reg: &qlite::Registry, model: &Path) -> Result<(), String> {
    let stem = model.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let Some(&(_, want)) = LIGHT_TRANSPOSES.iter().find(|(n, _)| *n == stem) else { return Ok(()) };
    let bytes = std::fs::read(model).map_err(|e| format!("{}: {e}", model.display()))?;
    let mut g =
        qlite::load_with(reg, model, bytes.into(), &Default::default(), true, None).map_err(|e| e.to_string())?;
    qlite::run_passes(&mut g, &qlite::ConvertOptions { nhwc_io: true, ..Default::default() })
        .map_err(|e| e.to_string())?;
    let got = g.nodes().iter().filter(|n| n.op.name() == "Transpose").count();
    if got != want {
        return Err(format!("{got} Transposes with NHWC I/O, expected {want}"));
    }
    Ok(())
}

fn run_case(reg: &qlite::Registry, model: &Path, sets: Vec<DataSet>, export: &Path) -> Outcome {
    let mut g = match qlite::load(reg, model) {
        Ok(g) => g,
        Err(e) => return Outcome::Unsupported(one_line(&e.to_string())),
    };
    if let Err(e) = check_transposes(reg, model) {
        return Outcome::Mismatch(e);
    }
    if let Err(e) = qlite::run_passes(&mut g, &qlite::ConvertOptions::default()) {
        return Outcome::Mismatch(format!("pipeline: {e}"));
    }
    if sets.is_empty() {
        // Nothing to compare with is not a pass.
        return Outcome::Unsupported("the case has no test data set".into());
    }
    let mut max_rel = 0f64;
    let mut exported = false;
    for set in sets {
        let (inputs, want): (Result<Vec<Array>, String>, Result<Vec<Array>, String>) = match &set {
            DataSet::Dir(d) => (
                numbered(d, "input").iter().map(|p| read_pb(p)).collect(),
                numbered(d, "output").iter().map(|p| read_pb(p)).collect(),
            ),
            DataSet::Light(out) => (light_inputs(&g), read_pb(out).map(|a| vec![a])),
        };
        let (inputs, want) = match (inputs, want) {
            (Ok(i), Ok(w)) => (i, w),
            (Err(e), _) | (_, Err(e)) => return Outcome::Unsupported(e),
        };
        let ours = match qlite::run(&g, inputs.clone()) {
            Ok(o) => o,
            Err(e) => return Outcome::Mismatch(format!("interpreter: {e}")),
        };
        if ours.len() != want.len() {
            return Outcome::Mismatch(format!("{} outputs, expected {}", ours.len(), want.len()));
        }
        for (k, (o, w)) in ours.iter().zip(&want).enumerate() {
            match compare(o, w) {
                Ok(r) => max_rel = max_rel.max(r),
                Err(e) => return Outcome::Mismatch(format!("output {k}: {e}")),
            }
        }
        if !exported {
            if let Err(e) = export_case(reg, &g, &inputs, &ours, export) {
                return Outcome::Mismatch(format!("export: {e}"));
            }
            exported = true;
        }
    }
    Outcome::Pass { max_rel }
}

fn export_case(
    reg: &qlite::Registry,
    g: &qlite::Graph,
    inputs: &[Array],
    outputs: &[Array],
    d: &Path,
) -> Result<(), String> {
    session_agrees(g, inputs, outputs)?;
    std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    qlite::save(reg, g, &d.join("model.tflite")).map_err(|e| e.to_string())?;
    let mut ins = Vec::new();
    for (i, a) in inputs.iter().enumerate() {
        let f = format!("input_{i}.npy");
        qlite::write_npy_file(&d.join(&f), a).map_err(|e| e.to_string())?;
        ins.push(format!("\"{f}\""));
    }
    let mut outs = Vec::new();
    for (i, a) in outputs.iter().enumerate() {
        let f = format!("expected_{i}.npy");
        qlite::write_npy_file(&d.join(&f), a).map_err(|e| e.to_string())?;
        outs.push(format!("\"{f}\""));
    }
    // LiteRT's BUILTIN_REF resolver registers no ELU: such a case is held to the default
    // resolver, and the reference one must fail as recorded (check.py).
    let elu = g.nodes().iter().any(|n| n.op.name() == "Elu");
    let known = if elu {
        ", \"reference_resolver_fails\": {\"error\": \"Didn't find op for builtin opcode 'ELU' version '1'\", \"why\": \"BUILTIN_REF registers no ELU\"}"
    } else {
        ""
    };
    let json = format!(
        "{{\"model\": \"model.tflite\", \"inputs\": [{}], \"expected\": [{}], \"compare\": \"float\", \"session\": true{known}}}\n",
        ins.join(", "),
        outs.join(", ")
    );
    std::fs::write(d.join("case.json"), json).map_err(|e| e.to_string())
}

/// As for every case the tests export: the graph also runs on the fast kernels in a session
/// (twice, the arena reused), with the same values; at every instruction-set tier the host has
/// when it holds integer tensors (float kernels do not depend on the tier: one run).
fn session_agrees(g: &qlite::Graph, inputs: &[Array], outputs: &[Array]) -> Result<(), String> {
    let integer = g.tensors().iter().any(|t| t.dtype.is_quantizable_int());
    let tiers = if integer { qlite::Isa::available() } else { vec![qlite::Isa::process_default()] };
    for t in tiers {
        let run = || -> Result<(), String> {
            let interp = qlite::Interpreter::new(g).map_err(|e| e.to_string())?.isa(t).kernels(qlite::Kernels::Fast);
            let mut session = interp.session();
            for _ in 0..2 {
                session.run(inputs).map_err(|e| e.to_string())?;
                let got: Vec<Array> = session.outputs().map_err(|e| e.to_string())?.into_iter().cloned().collect();
                // The fast kernels' float sums are blocked (SGEMM): within 1e-5 of the reference's.
                qlite::compare_all(&got, outputs, qlite::Tolerance::close(1e-5, 1e-6))?;
            }
            Ok(())
        };
        run().map_err(|e| format!("session at {t}: {e}"))?;
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    let s = s.split_once(": ").map_or(s, |(_, rest)| rest); // drop the path prefix
    s.lines().collect::<Vec<_>>().join(" ")
}

/// Run every case under `data` (the wheel's backend/test/data). Writes LiteRT cases to
/// `export_root/onnx-backend-<case>`. With `update`, rewrites the allow-list.
pub fn run(root: &Path, data: &Path, export_root: &Path, update: bool) -> Result<(), String> {
    // The light VGG-19 and ZFNet-512 make 491 MB and 328 MB of weights with ConstantOfShape:
    // they convert (with no Transpose), but running them on the reference float kernels and in
    // LiteRT would take minutes of CI; a budget on constant bytes keeps them out here.
    let reg = qlite::Registry::default()
        .with_limits(qlite::ir::Limits { max_total_bytes: 256 << 20, ..qlite::ir::Limits::default() });
    let list_path = allow_list_path(root);
    let listed: BTreeSet<String> = std::fs::read_to_string(&list_path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let mut passing = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let (mut total, mut attempted) = (0, 0);
    let mut regressions = Vec::new();
    let mut report = String::new();
    for suite in SUITES {
        let dir = data.join(suite);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e} (is the onnx wheel installed in the oracle venv?)", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        // (case name, model, data sets)
        let mut cases: Vec<(String, PathBuf, Vec<DataSet>)> = Vec::new();
        for e in entries {
            let file = e.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if suite == "light" {
                let Some(stem) = file.strip_suffix(".onnx") else { continue };
                let out = dir.join(format!("{stem}_output_0.pb"));
                cases.push((format!("{suite}/{stem}"), e.clone(), vec![DataSet::Light(out)]));
            } else if e.join("model.onnx").exists() {
                let mut sets: Vec<PathBuf> = std::fs::read_dir(&e)
                    .map(|r| r.filter_map(|x| x.ok().map(|x| x.path())).filter(|p| p.is_dir()).collect())
                    .unwrap_or_default();
                sets.sort();
                cases.push((
                    format!("{suite}/{file}"),
                    e.join("model.onnx"),
                    sets.into_iter().map(DataSet::Dir).collect(),
                ));
            }
        }
        for (name, model, sets) in cases {
            total += 1;
            seen.insert(name.clone());
            let export = export_root.join(format!("onnx-backend-{}", name.replace('/', "-")));
            let outcome = run_case(&reg, &model, sets, &export);
            let line = match &outcome {
                Outcome::Pass { max_rel } => {
                    attempted += 1;
                    passing.insert(name.clone());
                    format!("pass         {name} (max rel. error {max_rel:.1e})")
                }
                Outcome::Unsupported(why) => format!("unsupported  {name}: {why}"),
                Outcome::Mismatch(why) => {
                    attempted += 1;
                    let _ = std::fs::remove_dir_all(&export);
                    format!("FAIL         {name}: {why}")
                }
            };
            if !matches!(outcome, Outcome::Pass { .. }) && listed.contains(&name) {
                regressions.push(line.clone());
            }
            println!("{line}");
            report.push_str(&line);
            report.push('\n');
        }
    }
    println!("onnx backend: {} passing / {attempted} attempted / {total} total", passing.len());
    let report_path = export_root.join("onnx-backend-report.txt");
    let _ = std::fs::create_dir_all(export_root);
    let _ = std::fs::write(&report_path, report);
    let new: Vec<_> = passing.difference(&listed).collect();
    if update {
        let mut text = String::from(
            "# ONNX backend cases qlite passes (cargo xtask onnx-backend --update rewrites this).\n\
             # CI fails when a listed case stops passing.\n",
        );
        for p in &passing {
            text.push_str(p);
            text.push('\n');
        }
        std::fs::write(&list_path, text).map_err(|e| format!("{}: {e}", list_path.display()))?;
        println!("wrote {} cases to {}", passing.len(), list_path.display());
    } else if !new.is_empty() {
        println!("{} passing cases are not in {} yet (run with --update):", new.len(), list_path.display());
        for n in new {
            println!("  {n}");
        }
    }
    // A listed case that is no longer in the data has not passed: it vanished.
    for gone in listed.difference(&seen) {
        regressions.push(format!("vanished     {gone}: listed, but the onnx wheel's data has no such case"));
    }
    if !regressions.is_empty() {
        return Err(format!(
            "{} allow-listed ONNX backend cases regressed or vanished:\n{}",
            regressions.len(),
            regressions.join("\n")
        ));
    }
    if listed.is_empty() && !update {
        return Err(format!("{} is empty or missing", list_path.display()));
    }
    Ok(())
}
