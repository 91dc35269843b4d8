//! safetensors: zero-copy reading, byte-identical round trips, models from a sidecar,
//! binding weights by name, export with quantization companions, streamed conversion, and
//! the malformed-file catalogue.

use crate::common::fixture;
use qlite::st::convert::{Select, Target};
use qlite::{Array, ConvertOptions, Registry};
use std::path::Path;

fn conformance_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("QLITE_CONFORMANCE_DIR").map(Into::into)
}

/// Export a safetensors case for the Python library: `arrays` must read back equal;
/// `converted` tensors must equal numpy's rounding of their source.
fn export_st_case(name: &str, file: &Path, arrays: &[(&str, Array)], converted: &[(&str, Array, &str)]) {
    let Some(dir) = conformance_dir() else { return };
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(file, d.join("file.safetensors")).unwrap();
    let mut a = serde_json::Map::new();
    for (i, (n, arr)) in arrays.iter().enumerate() {
        qlite::write_npy_file(&d.join(format!("a{i}.npy")), arr).unwrap();
        a.insert(n.to_string(), format!("a{i}.npy").into());
    }
    let mut c = serde_json::Map::new();
    for (i, (n, src, to)) in converted.iter().enumerate() {
        qlite::write_npy_file(&d.join(format!("s{i}.npy")), src).unwrap();
        c.insert(n.to_string(), serde_json::json!({"source": format!("s{i}.npy"), "to": to}));
    }
    let case = serde_json::json!({"kind": "safetensors", "file": "file.safetensors", "arrays": a, "converted": c});
    std::fs::write(d.join("case.json"), serde_json::to_vec_pretty(&case).unwrap()).unwrap();
}

fn array_of(t: &qlite::st::StTensor) -> Array {
    let dtype = qlite::st::ir::to_ir(t.dtype).unwrap();
    Array::from_le_bytes(dtype, t.shape.clone(), &t.data).unwrap()
}

#[test]
fn files_written_by_the_python_library_round_trip_byte_for_byte() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    for name in ["mlp", "cnn"] {
        let src = fixture(&format!("safetensors/{name}.safetensors"));
        let out = dir.path().join(format!("{name}.safetensors"));
        qlite::convert(&reg, &src, &out, &ConvertOptions::default()).unwrap();
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&out).unwrap(), "{name}: round trip changed bytes");
        // Zero-copy: the IR constants point into the mapped file.
        let bytes: bytes::Bytes = std::fs::read(&src).unwrap().into();
        let g = qlite::load_bytes(&reg, &src, bytes.clone()).unwrap();
        let (lo, hi) = (bytes.as_ptr() as usize, bytes.as_ptr() as usize + bytes.len());
        assert!(
            g.tensors()
                .iter()
                .all(|t| t.data.as_ref().is_some_and(|d| (d.as_ptr() as usize) >= lo && (d.as_ptr() as usize) < hi))
        );
    }
    let f = qlite::st::read(std::fs::read(fixture("safetensors/mlp.safetensors")).unwrap().into()).unwrap();
    assert_eq!(f.metadata, vec![("format".to_string(), "pt".to_string())]);
}

#[test]
fn sidecar_models_match_numpy_and_litert() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let x = qlite::read_npy_file(&fixture("digits/x_test.npy")).unwrap();
    let rows: Vec<Array> = (0..16).map(|i| x.row(i).unwrap()).collect();
    let x16 = Array::stack_rows(&rows).unwrap();
    for name in ["mlp", "cnn"] {
        let out = dir.path().join(format!("{name}.tflite"));
        let opts = ConvertOptions { arch: Some(fixture(&format!("safetensors/{name}.toml"))), ..Default::default() };
        qlite::convert(&reg, &fixture(&format!("safetensors/{name}.safetensors")), &out, &opts).unwrap();
        let g = qlite::load(&reg, &out).unwrap();
        let input = if name == "cnn" { x16.clone().reshaped(vec![16, 8, 8, 1]).unwrap() } else { x16.clone() };
        let y = qlite::run_batched(&g, vec![input.clone()]).unwrap();
        let want = qlite::read_npy_file(&fixture(&format!("safetensors/{name}_expected.npy"))).unwrap();
        crate::common::assert_agrees(&y[0], &want, crate::common::FRAMEWORK_TOL, &format!("{name} against numpy"));
        crate::common::export_case(&format!("st_{name}_sidecar"), &std::fs::read(&out).unwrap(), &[input], &y, "float");
    }
}

#[test]
fn weights_bind_by_name_with_checks() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("digits/mlp.tflite");
    let g = qlite::load(&reg, &model).unwrap();
    let bias = g.tensors().iter().find(|t| t.name == "sequential_1/dense_2_1/BiasAdd").unwrap();
    let write = |name: &str, tensors: Vec<qlite::st::StTensor>| {
        let p = dir.path().join(name);
        std::fs::write(&p, qlite::st::write(&tensors, &[])).unwrap();
        p
    };
    let t = |name: &str, shape: Vec<usize>, v: &[f32]| qlite::st::StTensor {
        name: name.into(),
        dtype: safetensors::Dtype::F32,
        shape,
        data: qlite::ir::tensor::f32_bytes(v),
    };
    // A bias of +100 on class 3 makes every prediction 3.
    let mut v = vec![0f32; 10];
    v[3] = 100.0;
    let good = write("good.safetensors", vec![t(&bias.name, vec![10], &v)]);
    let out = dir.path().join("bound.tflite");
    qlite::convert(&reg, &model, &out, &ConvertOptions { weights: Some(good), ..Default::default() }).unwrap();
    let y = qlite::run_batched(
        &qlite::load(&reg, &out).unwrap(),
        vec![qlite::read_npy_file(&fixture("digits/x_test.npy")).unwrap()],
    )
    .unwrap();
    assert!(y[0].as_f32().unwrap().chunks(10).all(|r| r[3] > 0.99));
    let mut text = String::new();
    for (label, file) in [
        ("wrong shape", write("shape.safetensors", vec![t(&bias.name, vec![2, 5], &[0.0; 10])])),
        (
            "unmatched names",
            write("names.safetensors", vec![t("nope.weight", vec![1], &[0.0]), t("also.nope", vec![1], &[0.0])]),
        ),
    ] {
        let e = qlite::convert(&reg, &model, &out, &ConvertOptions { weights: Some(file), ..Default::default() })
            .unwrap_err();
        text.push_str(&format!("{label}: {}\n", e.to_string().replace(dir.path().to_str().unwrap(), "<tmp>")));
    }
    insta::assert_snapshot!("bind_errors", text);
}

#[test]
fn quantized_constants_export_with_companions() {
    let reg = Registry::default();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("int8.safetensors");
    qlite::convert(&reg, &fixture("digits/tf_int8/cnn.tflite"), &out, &ConvertOptions::default()).unwrap();
    let f = qlite::st::read(std::fs::read(&out).unwrap().into()).unwrap();
    let names: Vec<&str> = f.tensors.iter().map(|t| t.name.as_str()).collect();
    let w = "sequential_1_1/conv2d_1_2/convolution";
    assert!(
        names.contains(&format!("{w}.qscale").as_str()) && names.contains(&format!("{w}.qzero").as_str()),
        "{names:?}"
    );
    assert_eq!(f.meta(&format!("{w}.qaxis")), Some("0"));
    // Read back: the same quantization parameters as the .tflite.
    let g1 = qlite::load(&reg, &fixture("digits/tf_int8/cnn.tflite")).unwrap();
    let g2 = qlite::load(&reg, &out).unwrap();
    let q = |g: &qlite::Graph| g.tensors().iter().find(|t| t.name == w).and_then(|t| t.quant.clone()).unwrap();
    assert_eq!(q(&g1), q(&g2));
    let arrays: Vec<(&str, Array)> = f
        .tensors
        .iter()
        .filter(|t| qlite::st::ir::to_ir(t.dtype).is_some())
        .map(|t| (t.name.as_str(), array_of(t)))
        .collect();
    export_st_case("st_export_int8_cnn", &out, &arrays, &[]);
}

#[test]
fn streamed_conversion_to_f16_bf16_int8() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("safetensors/mlp.safetensors");
    let f = qlite::st::read(std::fs::read(&src).unwrap().into()).unwrap();
    let w1 = f.tensors.iter().find(|t| t.name == "fc1.weight").unwrap();
    for (to, tag) in [(Target::F16, "f16"), (Target::BF16, "bf16")] {
        let out = dir.path().join(format!("{tag}.safetensors"));
        let r = qlite::st::convert::convert(&src, &out, to, &Select::default(), &mut |_, _| {}).unwrap();
        assert_eq!(r.converted, 2, "weights converted, biases kept");
        let g = qlite::st::read(std::fs::read(&out).unwrap().into()).unwrap();
        let b1 = g.tensors.iter().find(|t| t.name == "fc1.bias").unwrap();
        assert_eq!(b1.dtype, safetensors::Dtype::F32, "1-D biases stay float by default");
        export_st_case(
            &format!("st_convert_{tag}"),
            &out,
            &[],
            &[
                ("fc1.weight", array_of(w1), tag),
                ("fc2.weight", array_of(f.tensors.iter().find(|t| t.name == "fc2.weight").unwrap()), tag),
            ],
        );
    }
    // int8: per-row symmetric, error at most half a step.
    let out = dir.path().join("int8.safetensors");
    let only = Select { only: Some(regex::Regex::new("fc1\\..*").unwrap()), keep: None };
    qlite::st::convert::convert(&src, &out, Target::Int8, &only, &mut |_, _| {}).unwrap();
    let g = qlite::st::read(std::fs::read(&out).unwrap().into()).unwrap();
    let q = g.tensors.iter().find(|t| t.name == "fc1.weight").unwrap();
    let s = g.tensors.iter().find(|t| t.name == "fc1.weight.qscale").unwrap();
    let scales = qlite::ir::tensor::read_f32s(&s.data);
    let orig = qlite::ir::tensor::read_f32s(&w1.data);
    for (i, (&qv, &o)) in q.data.iter().zip(&orig).enumerate() {
        let sc = scales[i / 64];
        assert!(((qv as i8) as f32 * sc - o).abs() <= sc / 2.0 + 1e-7);
    }
    assert_eq!(
        g.tensors.iter().find(|t| t.name == "fc2.weight").unwrap().dtype,
        safetensors::Dtype::F32,
        "--only limits the conversion"
    );
    // Sharded checkpoints: every shard converted, the index rewritten.
    let shards = dir.path().join("sharded");
    std::fs::create_dir(&shards).unwrap();
    std::fs::copy(&src, shards.join("model-00001-of-00002.safetensors")).unwrap();
    std::fs::copy(fixture("safetensors/cnn.safetensors"), shards.join("model-00002-of-00002.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": {
        "fc1.weight": "model-00001-of-00002.safetensors", "fc1.bias": "model-00001-of-00002.safetensors",
        "fc2.weight": "model-00001-of-00002.safetensors", "fc2.bias": "model-00001-of-00002.safetensors",
        "conv.weight": "model-00002-of-00002.safetensors", "conv.bias": "model-00002-of-00002.safetensors",
        "dw.weight": "model-00002-of-00002.safetensors", "fc.weight": "model-00002-of-00002.safetensors",
        "fc.bias": "model-00002-of-00002.safetensors"}});
    std::fs::write(shards.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let out_dir = dir.path().join("sharded_int8");
    let r = qlite::st::convert::convert(&shards, &out_dir, Target::Int8, &Select::default(), &mut |_, _| {}).unwrap();
    assert_eq!(r.files, 2);
    let new_index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("model.safetensors.index.json")).unwrap()).unwrap();
    assert_eq!(new_index["weight_map"]["fc1.weight.qscale"], "model-00001-of-00002.safetensors");
    assert!(new_index["metadata"]["total_size"].as_u64().unwrap() > 0);
}

#[test]
fn malformed_safetensors_are_refused_by_the_weights_path_too() {
    // The catalogue's safetensors files (their `convert` errors are snapshotted by
    // malformed.rs) must also fail `qlite weights`, leaving no output or temp file.
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(fixture("malformed")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "safetensors") {
            continue;
        }
        n += 1;
        let out = dir.path().join("w.safetensors");
        let w = qlite::st::convert::convert(&p, &out, Target::F16, &Select::default(), &mut |_, _| {});
        assert!(w.is_err(), "{}: weights conversion accepted it", p.display());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{}: files left: {left:?}", p.display());
    }
    assert!(n >= 15, "only {n} malformed safetensors files");
}
