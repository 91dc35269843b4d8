//! `qlite diff A B`: what differs between two models qlite reads, in any formats.
//!
//! Tensors are matched by name (qlite keeps the source model's names through conversion and
//! quantization), operators by the name of their first output tensor. The comparison covers the
//! signature, the operators (added, removed, changed), the quantization parameters, the
//! constant weights (dequantized: max |difference|, max relative difference, SQNR) and, given
//! data, every layer's output.

use crate::quantize::CalibrationSet;
use crate::{Array, Error};
use qlite_interp::Interpreter;
use qlite_ir::{DType, Graph, QuantParams, Tensor};
use qlite_quant::{ErrorStats, LayerError};
use serde::Serialize;
use std::collections::BTreeMap;

/// One input or output whose name, type or shape differs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SignatureChange {
    /// "input" or "output".
    pub kind: &'static str,
    pub index: usize,
    /// `name: dtype[shape] quant`, or `None` when the model has no such input or output.
    pub a: Option<String>,
    pub b: Option<String>,
}

/// An operator, identified by its first output tensor.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpEntry {
    pub tensor: String,
    pub op: String,
}

/// An operator present in both models whose kind, attributes or output type differ.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpChange {
    pub tensor: String,
    pub a: String,
    pub b: String,
}

/// A tensor in both models whose quantization parameters differ.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QuantChange {
    pub tensor: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// A constant in both models whose stored bytes differ.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WeightChange {
    pub tensor: String,
    /// `dtype[shape]` of each side.
    pub a: String,
    pub b: String,
    /// Over the dequantized values; `None` when the element counts differ or a side cannot be
    /// read as numbers.
    pub max_abs: Option<f64>,
    /// Largest |difference| relative to the largest |value| of A.
    pub max_rel: Option<f64>,
    /// 999 stands for "equal as numbers" (e.g. f32 values stored as f16 without loss).
    pub sqnr_db: Option<f64>,
}

/// Everything `qlite diff` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDiff {
    pub a: String,
    pub b: String,
    pub signature: Vec<SignatureChange>,
    pub ops_a: usize,
    pub ops_b: usize,
    pub ops_added: Vec<OpEntry>,
    pub ops_removed: Vec<OpEntry>,
    pub ops_changed: Vec<OpChange>,
    pub quantization: Vec<QuantChange>,
    /// Constants in both models: how many, and those whose bytes differ (worst SQNR first).
    pub weights_compared: usize,
    pub weights_changed: Vec<WeightChange>,
    pub weights_only_a: Vec<String>,
    pub weights_only_b: Vec<String>,
    /// With data: the outputs of every layer both models compute (B against A, dequantized,
    /// worst first), and of the model outputs.
    pub data_samples: Option<usize>,
    pub layers: Vec<LayerError>,
    pub outputs: Vec<LayerError>,
    /// No difference found: same signature, operators, quantization and constant bytes, and
    /// (with data) bit-identical outputs.
    pub equivalent: bool,
}

fn describe_quant(q: &QuantParams) -> String {
    match q.axis() {
        Some(axis) => {
            let (lo, hi) =
                q.scales().iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &s| (l.min(s), h.max(s)));
            let zps =
                if q.zero_points().iter().all(|&z| z == 0) { "zp 0".to_string() } else { "zps ≠ 0".to_string() };
            format!("per-channel (axis {axis}, {} scales in [{lo:e}, {hi:e}], {zps})", q.scales().len())
        }
        None => format!("scale {:e} zp {}", q.scale(), q.zero_point()),
    }
}

fn describe_type(t: &Tensor) -> String {
    format!("{}{}", t.dtype, t.shape)
}

fn describe_io(t: &Tensor, name: &str) -> String {
    let mut s = format!("{name}: {}", describe_type(t));
    if let Some(q) = &t.quant {
        s.push(' ');
        s.push_str(&describe_quant(q));
    }
    s
}

fn signature(a: &Graph, b: &Graph) -> Vec<SignatureChange> {
    let mut out = Vec::new();
    for (kind, ia, ib) in [("input", a.inputs(), b.inputs()), ("output", a.outputs(), b.outputs())] {
        let name = |g: &Graph, i: usize, t: &Tensor| {
            let n = if kind == "input" { g.input_name(i) } else { g.output_name(i) };
            n.filter(|n| !n.is_empty()).unwrap_or(&t.name).to_string()
        };
        for i in 0..ia.len().max(ib.len()) {
            let da = ia.get(i).and_then(|&t| a.tensor(t)).map(|t| describe_io(t, &name(a, i, t)));
            let db = ib.get(i).and_then(|&t| b.tensor(t)).map(|t| describe_io(t, &name(b, i, t)));
            if da != db {
                out.push(SignatureChange { kind, index: i, a: da, b: db });
            }
        }
    }
    out
}

/// Each operator by its first output's name: (op text with attributes and output type).
fn ops_by_output(g: &Graph) -> BTreeMap<String, (String, String)> {
    let mut m = BTreeMap::new();
    for n in g.nodes() {
        let Some(t) = n.outputs.first().and_then(|&o| g.tensor(o)) else { continue };
        let attrs: Vec<String> = n.op.attrs().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let attrs = if attrs.is_empty() { String::new() } else { format!(" {{{}}}", attrs.join(", ")) };
        let text = format!("{}{attrs} -> {}", n.op.name(), describe_type(t));
        m.entry(t.name.clone()).or_insert((n.op.name().to_string(), text));
    }
    m
}

/// Dequantized values of a constant, if it has numbers qlite can read.
fn constant_values(t: &Tensor) -> Option<Vec<f32>> {
    let dims = t.shape.to_fixed()?;
    let a = Array::from_le_bytes(t.dtype, dims, t.data.as_ref()?).ok()?;
    if let Some(v) = a.as_f32() {
        return Some(v.to_vec());
    }
    if let Ok(v) = qlite_interp::kernels::dequantize(&a, t.quant.as_ref()) {
        return Some(v);
    }
    // Integer constants without quantization (shapes, indices): compare as numbers.
    match t.dtype {
        DType::I32 | DType::I64 | DType::I8 | DType::U8 | DType::I16 => {
            let q = QuantParams::per_tensor(1.0, 0);
            qlite_interp::kernels::dequantize(&a, Some(&q)).ok()
        }
        _ => None,
    }
}

fn weight_change(name: &str, ta: &Tensor, tb: &Tensor) -> WeightChange {
    let (mut max_abs, mut max_rel, mut sqnr_db) = (None, None, None);
    if let (Some(va), Some(vb)) = (constant_values(ta), constant_values(tb))
        && va.len() == vb.len()
    {
        let mut s = ErrorStats::default();
        s.add(&va, &vb);
        let peak = va.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
        max_abs = Some(s.max_abs());
        max_rel = Some(if peak > 0.0 {
            s.max_abs() / peak
        } else if s.max_abs() == 0.0 {
            0.0
        } else {
            f64::MAX
        });
        sqnr_db = Some(s.layer(name, "").sqnr_db);
    }
    WeightChange { tensor: name.to_string(), a: describe_type(ta), b: describe_type(tb), max_abs, max_rel, sqnr_db }
}

/// Compare two models; `data` (one array per input, N samples each) adds the per-layer
/// comparison. Fails when the models take different inputs and data is given.
pub fn diff(a: &Graph, b: &Graph, names: (&str, &str), data: Option<&CalibrationSet>) -> Result<ModelDiff, Error> {
    let signature = signature(a, b);

    let (oa, ob) = (ops_by_output(a), ops_by_output(b));
    let ops_added: Vec<OpEntry> = ob
        .iter()
        .filter(|(k, _)| !oa.contains_key(*k))
        .map(|(k, (op, _))| OpEntry { tensor: k.clone(), op: op.clone() })
        .collect();
    let ops_removed: Vec<OpEntry> = oa
        .iter()
        .filter(|(k, _)| !ob.contains_key(*k))
        .map(|(k, (op, _))| OpEntry { tensor: k.clone(), op: op.clone() })
        .collect();
    let ops_changed: Vec<OpChange> = oa
        .iter()
        .filter_map(|(k, (_, ta))| {
            let (_, tb) = ob.get(k)?;
            (ta != tb).then(|| OpChange { tensor: k.clone(), a: ta.clone(), b: tb.clone() })
        })
        .collect();

    // Tensors by name (the first of each name).
    let by_name = |g: &Graph| {
        let mut m: BTreeMap<String, qlite_ir::TensorId> = BTreeMap::new();
        for id in g.tensor_ids() {
            m.entry(g.tensors()[id.index()].name.clone()).or_insert(id);
        }
        m
    };
    let (ta, tb) = (by_name(a), by_name(b));
    let mut quantization = Vec::new();
    let (mut weights_compared, mut weights_changed) = (0, Vec::new());
    for (name, &ia) in &ta {
        let Some(&ib) = tb.get(name) else { continue };
        let (x, y) = (&a.tensors()[ia.index()], &b.tensors()[ib.index()]);
        let (qx, qy) = (x.quant.as_ref().map(describe_quant), y.quant.as_ref().map(describe_quant));
        if x.quant != y.quant {
            quantization.push(QuantChange { tensor: name.clone(), a: qx, b: qy });
        }
        if let (Some(dx), Some(dy)) = (&x.data, &y.data) {
            weights_compared += 1;
            if dx[..] != dy[..] || x.dtype != y.dtype || x.shape != y.shape {
                weights_changed.push(weight_change(name, x, y));
            }
        }
    }
    weights_changed.sort_by(|p: &WeightChange, q: &WeightChange| {
        let key = |w: &WeightChange| w.sqnr_db.unwrap_or(f64::NEG_INFINITY);
        key(p).total_cmp(&key(q)).then_with(|| p.tensor.cmp(&q.tensor))
    });
    let consts = |g: &Graph, other: &BTreeMap<String, qlite_ir::TensorId>, og: &Graph| -> Vec<String> {
        g.tensors()
            .iter()
            .filter(|t| t.data.is_some())
            .filter(|t| other.get(&t.name).is_none_or(|&o| og.tensors()[o.index()].data.is_none()))
            .map(|t| t.name.clone())
            .collect()
    };
    let weights_only_a = consts(a, &tb, b);
    let weights_only_b = consts(b, &ta, a);

    let (mut layers, mut outputs, mut data_samples, mut outputs_equal) = (Vec::new(), Vec::new(), None, true);
    if let Some(set) = data {
        let (l, o, eq) = compare_layers(a, b, set)?;
        (layers, outputs, data_samples, outputs_equal) = (l, o, Some(set.len()), eq);
    }
    let equivalent = signature.is_empty()
        && ops_added.is_empty()
        && ops_removed.is_empty()
        && ops_changed.is_empty()
        && quantization.is_empty()
        && weights_changed.is_empty()
        && weights_only_a.is_empty()
        && weights_only_b.is_empty()
        && outputs_equal;
    Ok(ModelDiff {
        a: names.0.to_string(),
        b: names.1.to_string(),
        signature,
        ops_a: a.nodes().len(),
        ops_b: b.nodes().len(),
        ops_added,
        ops_removed,
        ops_changed,
        quantization,
        weights_compared,
        weights_changed,
        weights_only_a,
        weights_only_b,
        data_samples,
        layers,
        outputs,
        equivalent,
    })
}

/// Refuse data comparisons between models that do not take the same inputs (count and
/// shapes, where a dimension known only at run time fits any size; the element type may
/// differ: float data is quantized for an integer input).
pub fn check_same_inputs(a: &Graph, b: &Graph) -> Result<(), Error> {
    let shapes = |g: &Graph| -> Vec<qlite_ir::Shape> {
        g.inputs().iter().filter_map(|&t| g.tensor(t)).map(|t| t.shape.clone()).collect()
    };
    let (ha, hb) = (shapes(a), shapes(b));
    let fits = ha.len() == hb.len() && ha.iter().zip(&hb).all(|(x, y)| qlite_ir::verify::shapes_compatible(x, y));
    let (sa, sb): (Vec<String>, Vec<String>) =
        (ha.iter().map(|s| s.to_string()).collect(), hb.iter().map(|s| s.to_string()).collect());
    if !fits {
        return Err(Error::Usage(format!(
            "the models take different inputs ({} vs {}), so their layers cannot be compared on the same data",
            if sa.is_empty() { "none".to_string() } else { sa.join(", ") },
            if sb.is_empty() { "none".to_string() } else { sb.join(", ") },
        )));
    }
    Ok(())
}

/// Per-layer and per-output statistics of B against A over the samples, and whether every
/// output was bit-identical.
fn compare_layers(
    a: &Graph,
    b: &Graph,
    set: &CalibrationSet,
) -> Result<(Vec<LayerError>, Vec<LayerError>, bool), Error> {
    check_same_inputs(a, b)?;
    let (ia, ib) = (Interpreter::new(a)?, Interpreter::new(b)?);
    let producers: BTreeMap<String, &'static str> = a
        .nodes()
        .iter()
        .flat_map(|n| n.outputs.iter().filter_map(|&o| a.tensor(o).map(|t| (t.name.clone(), n.op.name()))))
        .collect();
    let mut stats: BTreeMap<String, ErrorStats> = BTreeMap::new();
    let mut out_stats = vec![ErrorStats::default(); a.outputs().len().min(b.outputs().len())];
    let mut identical = a.outputs().len() == b.outputs().len();
    for i in 0..set.len() {
        let sample = set.sample(i)?;
        let (xa, _) = crate::quantize_inputs(a, sample.clone())?;
        let (xb, _) = crate::quantize_inputs(b, sample)?;
        let va = crate::quantize::float_values(a, &ia, xa.clone())?;
        let vb = crate::quantize::float_values(b, &ib, xb.clone())?;
        for (name, x) in &va {
            if !producers.contains_key(name) {
                continue;
            }
            if let Some(y) = vb.get(name)
                && x.len() == y.len()
            {
                stats.entry(name.clone()).or_default().add(x, y);
            }
        }
        let (ya, yb) = (ia.run(xa)?, ib.run(xb)?);
        identical &= ya == yb;
        let ya = crate::dequantize_outputs(a, ya)?;
        let yb = crate::dequantize_outputs(b, yb)?;
        for (k, s) in out_stats.iter_mut().enumerate() {
            if let (Some(x), Some(y)) = (ya[k].as_f32(), yb[k].as_f32())
                && x.len() == y.len()
            {
                s.add(x, y);
            }
        }
    }
    let mut layers: Vec<LayerError> =
        stats.iter().map(|(name, s)| s.layer(name, producers.get(name).copied().unwrap_or("?"))).collect();
    layers.sort_by(|p, q| p.sqnr_db.total_cmp(&q.sqnr_db).then_with(|| p.tensor.cmp(&q.tensor)));
    let outputs =
        out_stats.iter().enumerate().map(|(k, s)| s.layer(a.output_name(k).unwrap_or(""), "output")).collect();
    Ok((layers, outputs, identical))
}

fn num(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// The text `qlite diff` prints; `max_rows` bounds each list.
pub fn render_text(d: &ModelDiff, max_rows: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let more = |s: &mut String, n: usize| {
        if n > max_rows {
            let _ = writeln!(s, "    … {} more", n - max_rows);
        }
    };
    let _ = writeln!(s, "A: {}\nB: {}", d.a, d.b);
    if d.signature.is_empty() {
        let _ = writeln!(s, "signature: same");
    } else {
        let _ = writeln!(s, "signature: {} difference(s)", d.signature.len());
        for c in &d.signature {
            let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
            let _ = writeln!(s, "  {} {}:\n    A {}\n    B {}", c.kind, c.index, side(&c.a), side(&c.b));
        }
    }
    let _ = writeln!(
        s,
        "ops: {} in A, {} in B; {} added, {} removed, {} changed",
        d.ops_a,
        d.ops_b,
        d.ops_added.len(),
        d.ops_removed.len(),
        d.ops_changed.len()
    );
    for e in d.ops_added.iter().take(max_rows) {
        let _ = writeln!(s, "  + {} {:?}", e.op, e.tensor);
    }
    more(&mut s, d.ops_added.len());
    for e in d.ops_removed.iter().take(max_rows) {
        let _ = writeln!(s, "  - {} {:?}", e.op, e.tensor);
    }
    more(&mut s, d.ops_removed.len());
    for c in d.ops_changed.iter().take(max_rows) {
        let _ = writeln!(s, "  ~ {:?}\n    A {}\n    B {}", c.tensor, c.a, c.b);
    }
    more(&mut s, d.ops_changed.len());
    let _ = writeln!(s, "quantization: {} tensor(s) differ", d.quantization.len());
    for c in d.quantization.iter().take(max_rows) {
        let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "float".into());
        let _ = writeln!(s, "  {:?}: {} → {}", c.tensor, side(&c.a), side(&c.b));
    }
    more(&mut s, d.quantization.len());
    let _ = writeln!(
        s,
        "weights: {} compared, {} differ; {} only in A, {} only in B",
        d.weights_compared,
        d.weights_changed.len(),
        d.weights_only_a.len(),
        d.weights_only_b.len()
    );
    if !d.weights_changed.is_empty() {
        let _ = writeln!(s, "  {:>9} {:>10} {:>9}  tensor (A → B)", "SQNR dB", "max |diff|", "max rel");
    }
    for w in d.weights_changed.iter().take(max_rows) {
        let _ = writeln!(
            s,
            "  {:>9} {:>10} {:>9}  {:?} ({} → {})",
            num(w.sqnr_db, |v| format!("{v:.2}")),
            num(w.max_abs, |v| format!("{v:.4e}")),
            num(w.max_rel, |v| format!("{:.3}%", v * 100.0)),
            w.tensor,
            w.a,
            w.b
        );
    }
    more(&mut s, d.weights_changed.len());
    for (side, list) in [("A", &d.weights_only_a), ("B", &d.weights_only_b)] {
        for n in list.iter().take(max_rows) {
            let _ = writeln!(s, "  only in {side}: {n:?}");
        }
        more(&mut s, list.len());
    }
    if let Some(n) = d.data_samples {
        let _ = writeln!(s, "layers on {n} sample(s), B against A, worst first:");
        let _ = writeln!(s, "  {:>9} {:>8} {:>10}  {:<16} tensor", "SQNR dB", "cosine", "max |diff|", "op");
        for l in d.layers.iter().take(max_rows) {
            let _ =
                writeln!(s, "  {:>9.2} {:>8.5} {:>10.4e}  {:<16} {:?}", l.sqnr_db, l.cosine, l.max_abs, l.op, l.tensor);
        }
        more(&mut s, d.layers.len());
        for o in &d.outputs {
            let _ = writeln!(
                s,
                "  output {:?}: SQNR {:.2} dB, cosine {:.5}, max |diff| {:.4e}",
                o.tensor, o.sqnr_db, o.cosine, o.max_abs
            );
        }
    }
    let _ = writeln!(s, "{}", if d.equivalent { "equivalent" } else { "different" });
    s
}
