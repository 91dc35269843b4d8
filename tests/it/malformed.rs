//! The hostile-input catalogue (`fixtures/malformed/`, written by `cargo xtask malformed`):
//! every file is refused with a clear error, no panic, no allocation beyond a small budget,
//! and no output file. One snapshot per file.

use crate::alloc::peak_during;
use qlite::{ConvertOptions, Registry};

/// Nothing in the catalogue may make a reader hold more than this.
const BUDGET: usize = 64 << 20;

#[test]
fn every_malformed_file_is_refused_cleanly() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let root = crate::common::fixture("malformed").canonicalize().unwrap();
    let mut seen = 0;
    insta::glob!("../../fixtures/malformed", "*", |path| {
        seen += 1;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() || name.ends_with(".bin") {
            return; // the directory itself, or the side file the external-data cases point at
        }
        let (msg, peak) = if name.ends_with(".npy") {
            let (r, peak) = peak_during(|| qlite::read_npy_file(path));
            (r.map(|a| format!("accepted: {:?}", a.shape())).unwrap_or_else(|e| e.to_string()), peak)
        } else {
            let out = dir.path().join("out.tflite");
            let (r, peak) = peak_during(|| qlite::convert(&reg, path, &out, &ConvertOptions::default()));
            match r {
                Err(e) => {
                    assert!(!out.exists(), "{name}: an output file was written");
                    (e.to_string(), peak)
                }
                // Well-formed but unusable: converting passes it through unchanged (as
                // TensorFlow's converter would); running it must be refused at load.
                Ok(_) => {
                    std::fs::remove_file(&out).unwrap();
                    let g = qlite::load(&reg, path).unwrap();
                    let (r, peak) = peak_during(|| qlite::Interpreter::new(&g).map(|_| ()));
                    (r.map(|_| "accepted".to_string()).unwrap_or_else(|e| format!("refused at run: {e}")), peak)
                }
            }
        };
        assert!(!msg.starts_with("accepted"), "{name} was accepted: {msg}");
        assert!(peak < BUDGET, "{name}: reading it allocated {peak} bytes");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{name}: files left behind: {left:?}");
        let msg = msg.replace(root.to_str().unwrap(), "<malformed>").replace(dir.path().to_str().unwrap(), "<out>");
        insta::assert_snapshot!(msg);
    });
    assert!(seen >= 70, "the catalogue has {seen} files; run `cargo xtask malformed`");
}
