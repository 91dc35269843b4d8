//! The conformance manifest: what the LiteRT check must see, so that a test that stops
//! exporting its cases, an op that loses its cases, or a case that skips its session fails CI
//! instead of passing quietly.
//!
//! `xtask/conformance/manifest.txt` (rewritten by `cargo xtask manifest --update`) lists
//! - `category NAME COUNT`: how many cases each category exported. CI fails when a category
//!   has fewer (or is gone) and prints when one has more;
//! - `op NAME DTYPE...`: for every op of the IR (`OpKind::ALL`), the input dtypes its cases
//!   cover. CI fails when an op loses a dtype, and when an op of the IR has no line at all
//!   (a new op must come with cases);
//! - `uncovered NAME REASON`: an op of the IR no case can hold, and why.
//!
//! Every case the tests export must also say that it ran in a session (`"session": true` in
//! case.json, written once the session gave the reference's bytes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub fn manifest_path(root: &Path) -> PathBuf {
    root.join("xtask/conformance/manifest.txt")
}

/// What the exported cases hold.
#[derive(Debug, Default, PartialEq)]
pub struct Seen {
    pub categories: BTreeMap<String, usize>,
    pub ops: BTreeMap<String, BTreeSet<String>>,
    /// Cases that did not record a session run.
    pub no_session: Vec<String>,
}

/// A case's category: its name without a trailing `_NNN` (random cases), and for the rest
/// the exporting family: the name up to its first `_` or `-` (`rand_conv2d_007` →
/// `rand_conv2d`, `quant_mlp_int8` → `quant`, `onnx-backend-light-resnet50` → `onnx-backend`).
pub fn category(name: &str) -> String {
    if let Some(kind) = name.strip_prefix("rand_") {
        let kind = kind.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('_');
        return format!("rand_{kind}");
    }
    if name.starts_with("onnx-backend-") {
        return "onnx-backend".into();
    }
    name.split(['_', '-']).next().unwrap_or(name).to_string()
}

/// Read every case under `dir`.
pub fn scan(dir: &Path) -> Result<Seen, String> {
    let reg = qlite::Registry::default();
    let mut seen = Seen::default();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("case.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let d = dir.join(&name);
        let text = std::fs::read_to_string(d.join("case.json")).map_err(|e| format!("{name}: {e}"))?;
        let case: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{name}/case.json: {e}"))?;
        *seen.categories.entry(category(&name)).or_default() += 1;
        // Safetensors files have no ops; a re-exported file's oracle is LiteRT on the original
        // (it holds ops qlite cannot run, so no session either).
        if matches!(case.get("kind").and_then(|k| k.as_str()), Some("safetensors" | "reexport")) {
            continue;
        }
        if case.get("session").and_then(|s| s.as_bool()) != Some(true) {
            seen.no_session.push(name.clone());
        }
        let model = d.join(case.get("model").and_then(|m| m.as_str()).unwrap_or("model.tflite"));
        let g = qlite::load(&reg, &model).map_err(|e| format!("{name}: {e}"))?;
        for n in g.nodes() {
            let dtype = n.input(0).and_then(|t| g.tensor(t)).map_or("none".to_string(), |t| t.dtype.to_string());
            seen.ops.entry(n.op.name().to_string()).or_default().insert(dtype);
        }
    }
    Ok(seen)
}

/// The committed manifest.
#[derive(Debug, Default)]
pub struct Manifest {
    pub categories: BTreeMap<String, usize>,
    pub ops: BTreeMap<String, BTreeSet<String>>,
    pub uncovered: BTreeMap<String, String>,
}

pub fn parse(text: &str) -> Result<Manifest, String> {
    let mut m = Manifest::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let bad = || format!("manifest line {}: cannot read {line:?}", i + 1);
        match (words.next(), words.next()) {
            (Some("category"), Some(name)) => {
                let n = words.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
                m.categories.insert(name.to_string(), n);
            }
            (Some("op"), Some(name)) => {
                m.ops.insert(name.to_string(), words.map(str::to_string).collect());
            }
            (Some("uncovered"), Some(name)) => {
                let why: Vec<&str> = words.collect();
                if why.is_empty() {
                    return Err(format!("manifest line {}: `uncovered {name}` needs a reason", i + 1));
                }
                m.uncovered.insert(name.to_string(), why.join(" "));
            }
            _ => return Err(bad()),
        }
    }
    Ok(m)
}

/// Hold what was seen to the manifest: the failures (empty when all holds) and the notes
/// (growth the manifest does not list yet).
pub fn check(seen: &Seen, m: &Manifest) -> (Vec<String>, Vec<String>) {
    let (mut fail, mut note) = (Vec::new(), Vec::new());
    for (cat, &want) in &m.categories {
        match seen.categories.get(cat).copied().unwrap_or(0) {
            0 => fail.push(format!("category {cat}: no case exported (the manifest expects {want})")),
            n if n < want => fail.push(format!("category {cat}: {n} cases, the manifest expects {want}")),
            n if n > want => note.push(format!("category {cat}: {n} cases, the manifest lists {want}")),
            _ => {}
        }
    }
    for (cat, n) in &seen.categories {
        if !m.categories.contains_key(cat) {
            note.push(format!("category {cat}: {n} cases, not in the manifest yet"));
        }
    }
    for kind in qlite::ir::OpKind::ALL {
        let name = kind.name();
        let have = seen.ops.get(name).cloned().unwrap_or_default();
        if let Some(why) = m.uncovered.get(name) {
            if !have.is_empty() {
                note.push(format!("op {name}: listed as uncovered ({why}) but cases hold it now"));
            }
            continue;
        }
        let Some(want) = m.ops.get(name) else {
            fail.push(format!(
                "op {name}: the IR has it but the manifest does not list its cases (add them, then `cargo xtask manifest --update`)"
            ));
            continue;
        };
        let missing: Vec<&String> = want.difference(&have).collect();
        if !missing.is_empty() {
            fail.push(format!("op {name}: no case holds it with {missing:?} inputs any more"));
        }
        let extra: Vec<&String> = have.difference(want).collect();
        if !extra.is_empty() {
            note.push(format!("op {name}: new coverage {extra:?}"));
        }
    }
    for name in m.ops.keys().chain(m.uncovered.keys()) {
        if !qlite::ir::OpKind::ALL.iter().any(|k| k.name() == name) {
            fail.push(format!("op {name}: listed in the manifest but the IR has no such op"));
        }
    }
    if !seen.no_session.is_empty() {
        let shown: Vec<&str> = seen.no_session.iter().take(10).map(String::as_str).collect();
        fail.push(format!("{} cases did not run in a session: {}", seen.no_session.len(), shown.join(", ")));
    }
    (fail, note)
}

pub fn render(seen: &Seen, old: &Manifest) -> String {
    let mut t = String::from(
        "# The conformance manifest (see xtask/src/manifest.rs). `cargo xtask manifest --update`\n\
         # rewrites it from target/conformance after a test run; review the change like a snapshot.\n\
         # CI fails when a category has fewer cases than listed, when an op loses an input dtype,\n\
         # and when an op of the IR is neither listed nor `uncovered` with a reason.\n\n",
    );
    for (cat, n) in &seen.categories {
        t.push_str(&format!("category {cat} {n}\n"));
    }
    t.push('\n');
    for kind in qlite::ir::OpKind::ALL {
        let name = kind.name();
        if let Some(why) = old.uncovered.get(name) {
            t.push_str(&format!("uncovered {name} {why}\n"));
        } else if let Some(d) = seen.ops.get(name) {
            t.push_str(&format!("op {name} {}\n", d.iter().cloned().collect::<Vec<_>>().join(" ")));
        }
    }
    t
}

/// Check (or with `update` rewrite) the manifest against the cases under `dir`.
pub fn run(root: &Path, dir: &Path, update: bool) -> Result<(), String> {
    let path = manifest_path(root);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let m = parse(&text)?;
    let seen = scan(dir)?;
    if update {
        std::fs::write(&path, render(&seen, &m)).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("manifest: wrote {}", path.display());
    }
    let m = if update { parse(&std::fs::read_to_string(&path).map_err(|e| e.to_string())?)? } else { m };
    let (fail, note) = check(&seen, &m);
    let total: usize = seen.categories.values().sum();
    for n in &note {
        println!("manifest: {n}");
    }
    for f in &fail {
        println!("manifest: FAIL {f}");
    }
    if !fail.is_empty() {
        return Err(format!("the conformance cases fall short of {} ({} problems)", path.display(), fail.len()));
    }
    println!(
        "manifest: {total} cases in {} categories, {} ops covered, every case run in a session",
        seen.categories.len(),
        seen.ops.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> Seen {
        let mut s = Seen::default();
        s.categories.insert("rand_add".into(), 200);
        for k in qlite::ir::OpKind::ALL {
            s.ops.insert(k.name().into(), ["int8".to_string()].into());
        }
        s
    }

    #[test]
    fn categories_are_families() {
        assert_eq!(category("rand_average_pool_001"), "rand_average_pool");
        assert_eq!(category("quant_mlp_int8_io_int8"), "quant");
        assert_eq!(category("onnx-backend-light-light_resnet50"), "onnx-backend");
        assert_eq!(category("op_fully_connected"), "op");
    }

    /// Sabotage: a dropped category, a shrunk one, a lost dtype, a new op without cases and a
    /// case without a session each fail the check.
    #[test]
    fn shrinking_fails_and_growth_is_noted() {
        let good = render(&seen(), &Manifest::default());
        let m = parse(&good).unwrap();
        assert_eq!(check(&seen(), &m), (vec![], vec![]));
        let mut s = seen();
        s.categories.insert("rand_add".into(), 199);
        assert!(check(&s, &m).0[0].contains("199 cases"));
        s.categories.clear();
        assert!(check(&s, &m).0[0].contains("no case exported"));
        let mut s = seen();
        s.ops.get_mut("Add").unwrap().clear();
        assert!(check(&s, &m).0[0].contains("op Add"));
        let mut s = seen();
        s.no_session.push("x".into());
        assert!(check(&s, &m).0[0].contains("session"));
        let mut s = seen();
        s.categories.insert("rand_add".into(), 201);
        assert_eq!(check(&s, &m).0, Vec::<String>::new());
        assert!(check(&s, &m).1[0].contains("201"));
        let m2 = parse(&good.replace("op Conv2d int8\n", "")).unwrap();
        assert!(check(&seen(), &m2).0[0].contains("op Conv2d: the IR has it"));
        assert!(parse("uncovered Opaque").is_err());
    }
}
