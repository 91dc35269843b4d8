//! `cargo xtask fuzz [--seconds N] [TARGET...]`: run the cargo-fuzz targets in `fuzz/`.
//!
//! Needs the nightly toolchain (libFuzzer's instrumentation); cargo-fuzz is installed once from
//! crates.io into `.tools/`. Each target starts from a corpus seeded with the fixtures of its
//! format (and `fixtures/malformed/`), kept in `target/fuzz/corpus/TARGET` between runs. A crash
//! fails the command and leaves its input in `target/fuzz/artifacts/TARGET/`, to be turned into
//! a regression fixture in `fixtures/malformed/`.

use super::{R, root};
use std::path::{Path, PathBuf};
use std::process::Command;

const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The targets and the file extensions that seed them.
pub const TARGETS: [(&str, &[&str]); 5] = [
    ("tflite", &["tflite"]),
    ("onnx", &["onnx"]),
    ("safetensors", &["safetensors"]),
    ("npy", &["npy"]),
    ("savedmodel", &["pb", "index"]),
];

fn cargo_fuzz_bin() -> Result<PathBuf, String> {
    let dir = root().join(".tools").join(format!("cargo-fuzz-{CARGO_FUZZ_VERSION}"));
    let bin = dir.join("bin");
    if bin.join("cargo-fuzz").exists() {
        return Ok(bin);
    }
    super::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["install", "--quiet", "--locked", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--root"])
            .arg(&dir),
    )
    .map_err(|e| format!("cannot install cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io: {e}"))?;
    Ok(bin)
}

fn seed(corpus: &Path, exts: &[&str]) -> Result<usize, String> {
    std::fs::create_dir_all(corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let mut n = 0;
    let mut stack = vec![root().join("fixtures")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let ext_ok = p.extension().is_some_and(|x| exts.iter().any(|w| x == *w));
            let small = e.metadata().is_ok_and(|m| m.len() <= 4 << 20);
            if ext_ok && small {
                let rel = p.strip_prefix(root()).unwrap_or(&p).to_string_lossy().replace(['/', '\\'], "_");
                std::fs::copy(&p, corpus.join(format!("seed_{rel}"))).map_err(|e| format!("{}: {e}", p.display()))?;
                n += 1;
            }
        }
    }
    Ok(n)
}

pub fn fuzz(args: &[String]) -> R {
    let mut seconds = 60u64;
    let mut chosen = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds =
                    it.next().and_then(|v| v.parse().ok()).ok_or("--seconds needs a number of seconds per target")?;
            }
            t if TARGETS.iter().any(|(n, _)| *n == t) => chosen.push(t.to_string()),
            other => {
                return Err(format!(
                    "unknown fuzz argument {other:?} (targets: {})",
                    TARGETS.map(|(n, _)| n).join(", ")
                ));
            }
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    }
    let nightly = Command::new("rustup").args(["run", "nightly", "rustc", "--version"]).output();
    if !nightly.as_ref().is_ok_and(|o| o.status.success()) {
        return Err("fuzzing needs the nightly toolchain (`rustup toolchain install nightly`)".into());
    }
    let bin = cargo_fuzz_bin()?;
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let work = root().join("target").join("fuzz");
    let mut report = Vec::new();
    for t in &chosen {
        let exts = TARGETS.iter().find(|(n, _)| n == t).map(|(_, e)| *e).unwrap_or(&[]);
        let corpus = work.join("corpus").join(t);
        let seeds = seed(&corpus, exts)?;
        if seeds == 0 {
            return Err(format!("fuzz target {t}: no seed file found under fixtures/ (extensions {exts:?})"));
        }
        let artifacts = work.join("artifacts").join(t);
        std::fs::create_dir_all(&artifacts).map_err(|e| e.to_string())?;
        eprintln!("fuzz {t}: {seconds} s from {seeds} seed files");
        let out = Command::new("rustup")
            .args(["run", "nightly", "cargo", "fuzz", "run", "-O", t])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .args(["-rss_limit_mb=2048", "-timeout=20", "-print_final_stats=1"])
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .env("PATH", &path)
            .current_dir(root().join("fuzz"))
            .output()
            .map_err(|e| format!("cannot start cargo fuzz: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "fuzz target {t} failed ({}); the input is in {}:\n{}",
                out.status,
                artifacts.display(),
                tail.join("\n")
            ));
        }
        let runs = run_summary(&stderr).map_err(|e| format!("fuzz target {t}: {e}"))?;
        let line = format!("fuzz {t}: {runs} executions from {seeds} seed files, no crash");
        eprintln!("{line}");
        report.push(line);
    }
    for r in report {
        eprintln!("{r}");
    }
    Ok(())
}

/// The execution count of libFuzzer's closing `Done N runs in S second(s)` line. A run that
/// printed no such line, or executed nothing, did not fuzz: an error.
fn run_summary(stderr: &str) -> Result<u64, String> {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Done "))
        .ok_or("libFuzzer printed no run summary (`Done N runs ...`): nothing shows that it fuzzed")?;
    let runs: u64 = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("cannot read the run summary {line:?}"))?;
    if runs == 0 {
        return Err("libFuzzer executed no input".into());
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::run_summary;

    /// Sabotage: a smoke run without a summary, or with zero executions, is a failure.
    #[test]
    fn a_fuzz_run_must_show_executions() {
        assert_eq!(run_summary("#2 INITED\nDone 48213 runs in 15 second(s)\n"), Ok(48213));
        assert!(run_summary("INFO: Seed: 1\n").unwrap_err().contains("no run summary"));
        assert!(run_summary("Done 0 runs in 15 second(s)").unwrap_err().contains("no input"));
        assert!(run_summary("Done lots").is_err());
    }
}
