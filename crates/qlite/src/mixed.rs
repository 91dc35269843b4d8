//! Mixed precision under a budget (`--min-sqnr DB`, `--max-accuracy-drop`): quantize
//! everything, then give the layers that add the most error more precision, one at a time,
//! until the model meets the budget. The budget is measured as the worst of eight folds of the
//! measure set, so that it holds on data the search never saw.
//!
//! Sensitivity is measured, not guessed: each quantized layer is quantized alone (every other
//! layer left float) and the model's output SQNR measured. In int8 mode the most sensitive
//! layers are first promoted to int16 activations (16x8 kernels: int8 weights, so the file
//! barely grows), the whole model re-measured after each; only if every layer LiteRT can run in
//! int16 is promoted and the budget still fails are layers kept in float, in the same order
//! (layers with weights: int16 activations already leave a weightless one within 16-bit
//! rounding of float).
//! In the other modes layers are kept in float directly (an exact `--exclude` of their output
//! tensor).

use crate::Error;
use crate::quantize::CalibrationSet;
use qlite_interp::Interpreter;
use qlite_ir::Graph;
use qlite_quant::{CalibrationTable, ErrorStats, Exclude, QuantConfig};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A layer mixed precision gave more precision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeptLayer {
    /// Its output tensor (the source model's name).
    pub tensor: String,
    pub op: String,
    /// "int16" (promoted to 16-bit activations) or "float" (kept in float).
    pub precision: String,
    /// The model's output SQNR with only this layer quantized (lower: more sensitive).
    pub alone_db: f64,
    /// The model's output SQNR once this layer (and those before it) got more precision.
    pub after_db: f64,
    /// Bytes its constants take beyond their fully quantized form.
    pub extra_bytes: i64,
}

/// What the mixed-precision budget bounds.
#[derive(Debug, Clone, PartialEq)]
pub enum Budget {
    /// The output SQNR against the float model, in dB, at least (`--min-sqnr`).
    MinSqnr(f64),
    /// The top-1 accuracy lost against the float model, in percentage points, at most
    /// (`--max-accuracy-drop`), with one label per sample of the measure set.
    MaxAccuracyDrop { points: f64, labels: Vec<i64> },
}

/// What mixed precision decided.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MixedPrecision {
    /// The SQNR budget (`--min-sqnr`), if that was the budget.
    pub target_db: Option<f64>,
    /// The accuracy budget in percentage points (`--max-accuracy-drop`), if that was the budget.
    pub max_accuracy_drop: Option<f64>,
    /// Top-1 accuracy (%) of the float model, with every layer quantized, and written (with
    /// an accuracy budget).
    pub float_top1: Option<f64>,
    pub all_quantized_top1: Option<f64>,
    pub achieved_top1: Option<f64>,
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

/// The measure set is split into up to this many folds of consecutive samples (two samples
/// each at least), and the budget must hold on each: the worst fold stands in for data the
/// search never saw.
const FOLDS: usize = 8;

fn folds(samples: usize) -> usize {
    (samples / 2).clamp(1, FOLDS)
}

/// Top-1 accuracy (%) of the first output's rows against `labels` (one per row, in order).
fn top1(outputs: &[Vec<Vec<f32>>], labels: &[i64]) -> Result<f64, Error> {
    let per_run = if outputs.is_empty() { 0 } else { labels.len() / outputs.len() };
    if per_run == 0 || per_run * outputs.len() != labels.len() {
        return Err(Error::Usage(format!(
            "{} labels for {} runs of the validation set: give one label per sample",
            labels.len(),
            outputs.len()
        )));
    }
    let mut correct = 0usize;
    for (r, run) in outputs.iter().enumerate() {
        let y = run.first().map_or(&[][..], Vec::as_slice);
        let classes = (y.len() / per_run).max(1);
        for (k, row) in y.chunks(classes).take(per_run).enumerate() {
            let best =
                row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
            correct += usize::from(best as i64 == labels[r * per_run + k]);
        }
    }
    Ok(100.0 * correct as f64 / labels.len() as f64)
}

/// `q`'s outputs (dequantized) on every sample (the float model's are the reference the
/// quantized candidates are measured against).
fn outputs(q: &Graph, set: &CalibrationSet) -> Result<Vec<Vec<Vec<f32>>>, Error> {
    // The fast kernels: int8 bytes equal the reference kernels', float within 1e-5, and the
    // search runs every candidate over every sample.
    let it = Interpreter::new(q)?.kernels(qlite_interp::Kernels::Fast);
    let mut out = Vec::with_capacity(set.len());
    for i in 0..set.len() {
        let (x, _) = crate::quantize_inputs(q, set.sample(i)?)?;
        let y = crate::dequantize_outputs(q, it.run(x)?)?;
        out.push(y.iter().map(|a| a.as_f32().map(<[f32]>::to_vec).unwrap_or_default()).collect());
    }
    Ok(out)
}

/// The lowest output SQNR of `got` against the reference, over the outputs and the folds of
/// the samples (999: identical).
fn sqnr_of(got: &[Vec<Vec<f32>>], reference: &[Vec<Vec<f32>>]) -> f64 {
    let folds = folds(reference.len());
    let n_out = reference.first().map_or(0, Vec::len);
    let mut stats = vec![vec![ErrorStats::default(); n_out]; folds];
    for (i, (want, y)) in reference.iter().zip(got).enumerate() {
        let fold = i * folds / reference.len();
        for ((s, w), v) in stats[fold].iter_mut().zip(want).zip(y) {
            s.add(w, v);
        }
    }
    stats.iter().flatten().map(|s| s.layer("", "").sqnr_db).fold(999.0, f64::min)
}

/// Search for a small set of float layers that meets `target_db` on `set`. Returns the graph
/// to write and the decisions.
pub(crate) fn search(
    g: &Graph,
    cfg: &QuantConfig,
    table: &Option<CalibrationTable>,
    set: &CalibrationSet,
    measured_on: &str,
    budget: &Budget,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Graph, MixedPrecision), Error> {
    let want = outputs(g, set)?;
    let labels = match budget {
        Budget::MaxAccuracyDrop { labels, .. } => Some(labels.as_slice()),
        Budget::MinSqnr(_) => None,
    };
    let float_top1 = labels.map(|l| top1(&want, l)).transpose()?;
    // (SQNR, top-1) of a candidate, and whether it meets the budget.
    let judge = |got: &[Vec<Vec<f32>>]| -> Result<(f64, Option<f64>, bool), Error> {
        let db = sqnr_of(got, &want);
        let acc = labels.map(|l| top1(got, l)).transpose()?;
        let met = match budget {
            Budget::MinSqnr(t) => db >= *t,
            Budget::MaxAccuracyDrop { points, .. } => float_top1.zip(acc).is_some_and(|(f, a)| f - a <= *points),
        };
        Ok((db, acc, met))
    };
    let all_q = quantize(g, cfg, table)?;
    let (all_quantized_db, all_quantized_top1, all_met) = judge(&outputs(&all_q, set)?)?;
    let name = |t: qlite_ir::TensorId| g.tensor(t).map(|t| t.name.clone()).unwrap_or_default();
    // The layers quantization changed: their output or a constant input is stored otherwise.
    let stored = |graph: &Graph| -> BTreeMap<String, (qlite_ir::DType, bool)> {
        graph.tensors().iter().map(|t| (t.name.clone(), (t.dtype, t.quant.is_some()))).collect()
    };
    let (sf, sq) = (stored(g), stored(&all_q));
    let changed = |t: &String| sf.get(t) != sq.get(t);
    let mut layers: Vec<(String, String, Vec<String>, bool)> = Vec::new();
    let mut seen = BTreeSet::new();
    let int8 = cfg.mode == qlite_quant::QuantMode::Int8;
    for n in g.nodes() {
        let Some(&out) = n.outputs.first() else { continue };
        let consts: Vec<String> =
            n.input_ids().filter(|&t| g.tensor(t).is_some_and(|t| t.data.is_some())).map(name).collect();
        let out = name(out);
        if (changed(&out) || consts.iter().any(changed)) && seen.insert(out.clone()) {
            let promotable = int8 && qlite_quant::spec::has_int16_kernel(&n.op);
            layers.push((out, n.op.name().to_string(), consts, promotable));
        }
    }
    let mut kept: Vec<KeptLayer> = Vec::new();
    let (mut q, mut achieved_db, mut achieved_top1, mut met) =
        (all_q.clone(), all_quantized_db, all_quantized_top1, all_met);
    if !met {
        // Sensitivity: the output SQNR with one layer quantized alone.
        let mut alone = Vec::with_capacity(layers.len());
        for k in 0..layers.len() {
            let mut c = cfg.clone();
            c.exclude.extend(layers.iter().enumerate().filter(|&(j, _)| j != k).map(|(_, l)| Exclude::exact(&l.0)));
            let db = sqnr_of(&outputs(&quantize(g, &c, table)?, set)?, &want);
            alone.push((db, k));
            progress(k + 1, layers.len());
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
        // Pass 1 (int8): promote to int16, most sensitive first. Pass 2: keep in float, in the
        // same order (a layer promoted in pass 1 moves to float).
        for pass in [1, 2] {
            for &(db, k) in &alone {
                let (out, op, consts, promotable) = &layers[k];
                let precision = match (pass, promotable) {
                    (1, true) => "int16",
                    (1, false) if int8 => continue,
                    // A promoted layer without weights (SOFTMAX, a pool, an ADD) loses only
                    // 16-bit rounding: float would buy nothing.
                    (2, true) if consts.is_empty() => continue,
                    _ => "float",
                };
                if precision == "int16" {
                    c.int16.push(Exclude::exact(out));
                } else {
                    c.exclude.push(Exclude::exact(out));
                }
                q = quantize(g, &c, table)?;
                (achieved_db, achieved_top1, met) = judge(&outputs(&q, set)?)?;
                let layer = KeptLayer {
                    tensor: out.clone(),
                    op: op.clone(),
                    precision: precision.to_string(),
                    alone_db: (db * 100.0).round() / 100.0,
                    after_db: (achieved_db * 100.0).round() / 100.0,
                    extra_bytes: bytes(&q, consts) - bytes(&all_q, consts),
                };
                match kept.iter_mut().find(|l| l.tensor == *out) {
                    Some(l) => *l = layer,
                    None => kept.push(layer),
                }
                if met {
                    break;
                }
            }
            if met || !int8 {
                break;
            }
        }
    }
    let decision = MixedPrecision {
        target_db: match budget {
            Budget::MinSqnr(t) => Some(*t),
            Budget::MaxAccuracyDrop { .. } => None,
        },
        max_accuracy_drop: match budget {
            Budget::MaxAccuracyDrop { points, .. } => Some(*points),
            Budget::MinSqnr(_) => None,
        },
        float_top1,
        all_quantized_top1,
        achieved_top1,
        measured_on: measured_on.to_string(),
        samples: set.len(),
        all_quantized_db,
        achieved_db,
        met,
        kept,
    };
    Ok((q, decision))
}

/// The budget and its outcome in one sentence.
pub fn summary(m: &MixedPrecision) -> String {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} %"));
    let head = match (m.target_db, m.max_accuracy_drop) {
        (Some(t), _) => format!(
            "target {t:.2} dB output SQNR on the {} ({} samples, worst of {} folds): {:.2} dB with every layer quantized, {:.2} dB written",
            m.measured_on,
            m.samples,
            folds(m.samples),
            m.all_quantized_db,
            m.achieved_db
        ),
        (None, drop) => format!(
            "top-1 drop at most {:.2} points on the {} ({} samples): float {}, every layer quantized {}, written {} ({:.2} dB output SQNR)",
            drop.unwrap_or(0.0),
            m.measured_on,
            m.samples,
            pct(m.float_top1),
            pct(m.all_quantized_top1),
            pct(m.achieved_top1),
            m.achieved_db
        ),
    };
    format!(
        "{head}{}",
        if m.met { "" } else { " (not met even with every layer in float: the I/O quantization alone exceeds it)" }
    )
}

/// The decisions as text (for the CLI).
pub fn render_text(m: &MixedPrecision) -> String {
    use std::fmt::Write;
    let mut s = format!("mixed precision: {}\n", summary(m));
    for k in &m.kept {
        let _ = writeln!(
            s,
            "  {}: {:<16} {:?} (alone it costs the output {:.2} dB SQNR; {:.2} dB after; +{} bytes)",
            if k.precision == "int16" { "promoted to int16" } else { "kept in float" },
            k.op,
            k.tensor,
            k.alone_db,
            k.after_db,
            k.extra_bytes
        );
    }
    s
}
