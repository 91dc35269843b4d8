//! Mixed precision under a budget (`--min-sqnr DB`): quantize everything, then keep the layers
//! that add the most error in float, one at a time, until the model's output SQNR against the
//! float model reaches the budget. The budget is measured as the worst of eight folds of the
//! measure set, so that it holds on data the search never saw.
//!
//! Sensitivity is measured, not guessed: each quantized layer is quantized alone (every other
//! layer left float) and the model's output SQNR measured; the layers whose quantization alone
//! costs the most are kept in float first (an exact `--exclude` of their output tensor), the
//! whole model re-measured after each, until the budget holds.

use crate::Error;
use crate::quantize::CalibrationSet;
use qlite_interp::Interpreter;
use qlite_ir::Graph;
use qlite_quant::{CalibrationTable, ErrorStats, Exclude, QuantConfig};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A layer mixed precision kept in float.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeptLayer {
    /// Its output tensor (the source model's name).
    pub tensor: String,
    pub op: String,
    /// The model's output SQNR with only this layer quantized (lower: more sensitive).
    pub alone_db: f64,
    /// The model's output SQNR once this layer (and those before it) stayed float.
    pub after_db: f64,
    /// Bytes its constants take in float beyond their quantized form.
    pub extra_bytes: i64,
}

/// What mixed precision decided.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MixedPrecision {
    pub target_db: f64,
    /// "calibration set" or "validation set".
    pub measured_on: String,
    pub samples: usize,
    /// The output SQNR with every layer quantized.
    pub all_quantized_db: f64,
    /// The output SQNR of the model written.
    pub achieved_db: f64,
    pub met: bool,
    pub kept: Vec<KeptLayer>,
}

fn quantize(g: &Graph, cfg: &QuantConfig, table: &Option<CalibrationTable>) -> Result<Graph, Error> {
    let mut q = g.clone();
    qlite_quant::quantize_pipeline(cfg.clone(), table.clone())
        .run(&mut q)
        .map_err(|e| Error::Pipeline(e.to_string()))?;
    Ok(q)
}

/// The float model's outputs on every sample (the reference every measurement compares with).
fn reference(g: &Graph, set: &CalibrationSet) -> Result<Vec<Vec<Vec<f32>>>, Error> {
    let it = Interpreter::new(g)?;
    let mut out = Vec::with_capacity(set.len());
    for i in 0..set.len() {
        let y = crate::dequantize_outputs(g, it.run(set.sample(i)?)?)?;
        out.push(y.iter().map(|a| a.as_f32().map(<[f32]>::to_vec).unwrap_or_default()).collect());
    }
    Ok(out)
}

/// The measure set is split into up to this many folds of consecutive samples (two samples
/// each at least), and the budget must hold on each: the worst fold stands in for data
/// the search never saw.
const FOLDS: usize = 8;

fn folds(samples: usize) -> usize {
    (samples / 2).clamp(1, FOLDS)
}

/// The lowest output SQNR of `q` against the reference, over the outputs and the folds of the
/// samples (999: identical).
fn measure(q: &Graph, set: &CalibrationSet, reference: &[Vec<Vec<f32>>]) -> Result<f64, Error> {
    let it = Interpreter::new(q)?;
    let folds = folds(reference.len());
    let outputs = reference.first().map_or(0, Vec::len);
    let mut stats = vec![vec![ErrorStats::default(); outputs]; folds];
    for (i, want) in reference.iter().enumerate() {
        let (x, _) = crate::quantize_inputs(q, set.sample(i)?)?;
        let y = crate::dequantize_outputs(q, it.run(x)?)?;
        let fold = i * folds / reference.len();
        for ((s, w), a) in stats[fold].iter_mut().zip(want).zip(&y) {
            if let Some(v) = a.as_f32() {
                s.add(w, v);
            }
        }
    }
    Ok(stats.iter().flatten().map(|s| s.layer("", "").sqnr_db).fold(999.0, f64::min))
}

/// Search for a small set of float layers that meets `target_db` on `set`. Returns the graph
/// to write and the decisions.
pub(crate) fn search(
    g: &Graph,
    cfg: &QuantConfig,
    table: &Option<CalibrationTable>,
    set: &CalibrationSet,
    measured_on: &str,
    target_db: f64,
) -> Result<(Graph, MixedPrecision), Error> {
    let want = reference(g, set)?;
    let all_q = quantize(g, cfg, table)?;
    let all_quantized_db = measure(&all_q, set, &want)?;
    let name = |t: qlite_ir::TensorId| g.tensor(t).map(|t| t.name.clone()).unwrap_or_default();
    // The layers quantization changed: their output or a constant input is stored otherwise.
    let stored = |graph: &Graph| -> BTreeMap<String, (qlite_ir::DType, bool)> {
        graph.tensors().iter().map(|t| (t.name.clone(), (t.dtype, t.quant.is_some()))).collect()
    };
    let (sf, sq) = (stored(g), stored(&all_q));
    let changed = |t: &String| sf.get(t) != sq.get(t);
    let mut layers: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut seen = BTreeSet::new();
    for n in g.nodes() {
        let Some(&out) = n.outputs.first() else { continue };
        let consts: Vec<String> =
            n.input_ids().filter(|&t| g.tensor(t).is_some_and(|t| t.data.is_some())).map(name).collect();
        let out = name(out);
        if (changed(&out) || consts.iter().any(changed)) && seen.insert(out.clone()) {
            layers.push((out, n.op.name().to_string(), consts));
        }
    }
    let mut kept = Vec::new();
    let (mut q, mut achieved_db) = (all_q.clone(), all_quantized_db);
    if achieved_db < target_db {
        // Sensitivity: the output SQNR with one layer quantized alone.
        let mut alone = Vec::with_capacity(layers.len());
        for (k, (out, _, _)) in layers.iter().enumerate() {
            let mut c = cfg.clone();
            c.exclude.extend(layers.iter().enumerate().filter(|&(j, _)| j != k).map(|(_, l)| Exclude::exact(&l.0)));
            let db = measure(&quantize(g, &c, table)?, set, &want)?;
            alone.push((db, k));
            let _ = out;
        }
        alone.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let bytes = |graph: &Graph, names: &[String]| -> i64 {
            graph
                .tensors()
                .iter()
                .filter(|t| names.contains(&t.name))
                .map(|t| t.data.as_ref().map_or(0, |d| d.len()) as i64)
                .sum()
        };
        let mut c = cfg.clone();
        for (db, k) in alone {
            let (out, op, consts) = &layers[k];
            c.exclude.push(Exclude::exact(out));
            q = quantize(g, &c, table)?;
            achieved_db = measure(&q, set, &want)?;
            kept.push(KeptLayer {
                tensor: out.clone(),
                op: op.clone(),
                alone_db: (db * 100.0).round() / 100.0,
                after_db: (achieved_db * 100.0).round() / 100.0,
                extra_bytes: bytes(g, consts) - bytes(&all_q, consts),
            });
            if achieved_db >= target_db {
                break;
            }
        }
    }
    let decision = MixedPrecision {
        target_db,
        measured_on: measured_on.to_string(),
        samples: set.len(),
        all_quantized_db,
        achieved_db,
        met: achieved_db >= target_db,
        kept,
    };
    Ok((q, decision))
}

/// The decisions as text (for the CLI).
pub fn render_text(m: &MixedPrecision) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "mixed precision: target {:.2} dB on the {} ({} samples, worst of {} folds): {:.2} dB with every layer quantized, {:.2} dB written{}\n",
        m.target_db,
        m.measured_on,
        m.samples,
        folds(m.samples),
        m.all_quantized_db,
        m.achieved_db,
        if m.met {
            ""
        } else {
            " (target not met even with every layer in float: the I/O quantization alone exceeds it)"
        }
    );
    for k in &m.kept {
        let _ = writeln!(
            s,
            "  kept in float: {:<16} {:?} (alone it costs the output {:.2} dB SQNR; {:.2} dB after; +{} bytes)",
            k.op, k.tensor, k.alone_db, k.after_db, k.extra_bytes
        );
    }
    s
}
