//! Calibration wiring, quantized conversion, the per-layer error report and evaluation.
//! qlite-quant holds the maths; this module runs the models it needs (through the
//! interpreter) and reads the calibration files.

use crate::npy::NpyRows;
use crate::{Array, Error, Interpreter, io};
use qlite_interp::Data;
use qlite_ir::{DType, Graph, Op, TensorId};
use qlite_quant::{CalibrationMethod, CalibrationTable, ErrorStats, HistogramObserver, LayerError, MinMaxObserver};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Calibration samples: one row source per graph input.
#[derive(Debug)]
pub struct CalibrationSet {
    inputs: Vec<NpyRows>,
    rows: usize,
    /// Rows per run: a model declared with a fixed batch B > 1 is calibrated B rows at a time.
    batch: usize,
    origin: PathBuf,
    /// What the data is for ("calibration", "comparison"), as the errors name it.
    what: String,
}

/// Open calibration data for `g`: an .npy file of N samples (single-input models) or a
/// directory of NAME.npy files, one per input (NAME = the input's signature name). Shapes,
/// dtypes and values are checked here, naming the input and the sample.
pub fn open_calibration(g: &Graph, path: &Path) -> Result<CalibrationSet, Error> {
    open_samples(g, path, "calibration")
}

/// [`open_calibration`] for data with another purpose (`what`, e.g. "validation"), named so
/// in the errors.
pub fn open_samples(g: &Graph, path: &Path, what: &str) -> Result<CalibrationSet, Error> {
    let err = |message: String| Error::Import { path: path.to_path_buf(), message };
    let files: Vec<PathBuf> = if path.is_dir() {
        (0..g.inputs().len())
            .map(|i| {
                let name = g.input_name(i).unwrap_or("").replace(['/', ':'], "_");
                let f = path.join(format!("{name}.npy"));
                if f.exists() {
                    Ok(f)
                } else {
                    Err(err(format!("no {name}.npy for input {i} ({:?})", g.input_name(i).unwrap_or(""))))
                }
            })
            .collect::<Result<_, _>>()?
    } else {
        if g.inputs().len() != 1 {
            return Err(err(format!(
                "the model has {} inputs: give a directory with one NAME.npy per input ({})",
                g.inputs().len(),
                (0..g.inputs().len()).map(|i| g.input_name(i).unwrap_or("").to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        vec![path.to_path_buf()]
    };
    let mut inputs = Vec::new();
    let mut rows = None;
    for (i, f) in files.iter().enumerate() {
        let bytes = io::map_file(f).map_err(|source| Error::Io { path: f.clone(), source })?;
        let r = NpyRows::open(bytes).map_err(|source| Error::Npy { path: f.clone(), source })?;
        let t = g.inputs().get(i).and_then(|t| g.tensor(*t)).ok_or_else(|| err(format!("model has no input {i}")))?;
        let name = g.input_name(i).unwrap_or("");
        if r.dtype() != DType::F32 {
            return Err(Error::Import {
                path: f.clone(),
                message: format!("{what} data for input {i} ({name:?}) must be float32, got {}", r.dtype()),
            });
        }
        let want: Vec<Option<usize>> = t.shape.dims().iter().skip(1).map(|d| d.fixed()).collect();
        let fits = r.row_shape().len() == want.len()
            && r.row_shape().iter().zip(&want).all(|(&a, b)| b.is_none_or(|b| a == b));
        if !fits {
            return Err(Error::Import {
                path: f.clone(),
                message: format!(
                    "{what} samples for input {i} ({name:?}) have shape {:?}, the model expects {} per sample",
                    r.row_shape(),
                    t.shape
                ),
            });
        }
        if rows.is_some_and(|n| n != r.rows()) {
            return Err(Error::Import {
                path: f.clone(),
                message: format!("{} samples, but another input has {}", r.rows(), rows.unwrap_or(0)),
            });
        }
        rows = Some(r.rows());
        inputs.push(r);
    }
    let rows = rows.unwrap_or(0);
    if rows == 0 {
        return Err(err(format!("the {what} set is empty")));
    }
    let batch = g
        .inputs()
        .first()
        .and_then(|t| g.tensor(*t))
        .and_then(|t| t.shape.dims().first().and_then(|d| d.fixed()))
        .filter(|&b| b > 1)
        .unwrap_or(1);
    if rows < batch {
        return Err(err(format!(
            "the model runs batches of {batch}: give at least {batch} {what} samples, got {rows}"
        )));
    }
    Ok(CalibrationSet { inputs, rows, batch, origin: path.to_path_buf(), what: what.to_string() })
}

impl CalibrationSet {
    /// The number of runs (samples, or batches of samples for a fixed-batch model; a
    /// trailing partial batch is left out).
    pub fn len(&self) -> usize {
        self.rows / self.batch
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Run `i`'s inputs (one array per input), checked for NaN / Inf.
    pub fn sample(&self, i: usize) -> Result<Vec<Array>, Error> {
        self.inputs
            .iter()
            .enumerate()
            .map(|(k, r)| {
                let missing = || Error::Usage(format!("sample {i} is missing"));
                let a = if self.batch == 1 {
                    r.row(i).ok_or_else(missing)?
                } else {
                    let parts: Vec<Array> = (i * self.batch..(i + 1) * self.batch)
                        .map(|j| r.row(j).ok_or_else(missing))
                        .collect::<Result<_, _>>()?;
                    Array::stack_rows(&parts).ok_or_else(missing)?
                };
                if let Data::F32(v) = a.data()
                    && let Some(bad) = v.iter().position(|x| !x.is_finite())
                {
                    return Err(Error::Import {
                        path: self.origin.clone(),
                        message: format!("{} sample {i} of input {k} holds {} at element {bad}", self.what, v[bad]),
                    });
                }
                Ok(a)
            })
            .collect()
    }
}

struct NamedObserver<'a, F: FnMut(&str, &[f32])> {
    g: &'a Graph,
    f: F,
}

impl<F: FnMut(&str, &[f32])> qlite_interp::Observer for NamedObserver<'_, F> {
    fn observe(&mut self, tensor: TensorId, value: &Array) {
        if let (Some(t), Some(v)) = (self.g.tensor(tensor), value.as_f32()) {
            (self.f)(&t.name, v);
        }
    }
}

/// How calibration runs the float graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalibrationRun {
    /// The float kernels: [`Kernels::Fast`] by default (the float results are within 1e-5
    /// relative of the reference kernels, so a range can move by as much; the reference
    /// kernels give the same table on every CPU).
    pub kernels: crate::Kernels,
    /// Samples are spread over this many threads (default: the machine's cores). The table
    /// is the same for any number: ranges and histogram counts merge exactly.
    pub threads: usize,
}

impl Default for CalibrationRun {
    fn default() -> Self {
        CalibrationRun {
            kernels: crate::Kernels::Fast,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Run the float graph over the calibration set and build the table. `progress(done, total)`
/// is called as samples of every pass complete.
pub fn calibrate(
    g: &Graph,
    set: &CalibrationSet,
    method: &CalibrationMethod,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CalibrationTable, Error> {
    calibrate_with(g, set, method, CalibrationRun::default(), progress)
}

/// [`calibrate`] with a choice of kernels and threads.
pub fn calibrate_with(
    g: &Graph,
    set: &CalibrationSet,
    method: &CalibrationMethod,
    run: CalibrationRun,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CalibrationTable, Error> {
    let interp = Interpreter::new(g)?.kernels(run.kernels);
    let passes = if method.needs_histogram() { 2 } else { 1 };
    let total = set.len() * passes;
    let mut minmax =
        over_samples(&interp, g, set, run.threads, 0, total, progress, MinMaxObserver::default, |o, n, v| {
            o.observe(n, v)
        })?
        .into_iter()
        .fold(MinMaxObserver::default(), |mut a, b| {
            a.merge(b);
            a
        });
    minmax.samples = set.len();
    if !method.needs_histogram() {
        return Ok(minmax.into_table());
    }
    let ranges = minmax.ranges().clone();
    let hists = over_samples(
        &interp,
        g,
        set,
        run.threads,
        set.len(),
        total,
        progress,
        || HistogramObserver::new(ranges.clone()),
        |o, n, v| o.observe(n, v),
    )?;
    let mut hist = HistogramObserver::new(ranges);
    hists.into_iter().for_each(|h| hist.merge(h));
    Ok(hist.into_table(method, set.len()))
}

/// Run every sample of `set` through `interp`, `threads` at a time, each thread feeding the
/// values it computes to its own observer (made by `make`); the observers, in thread order.
/// Sample `i` goes to thread `i % threads`. Progress counts from `done_before`.
#[allow(clippy::too_many_arguments)]
fn over_samples<O: Send>(
    interp: &Interpreter<'_>,
    g: &Graph,
    set: &CalibrationSet,
    threads: usize,
    done_before: usize,
    total: usize,
    progress: &mut dyn FnMut(usize, usize),
    make: impl Fn() -> O + Sync,
    observe: impl Fn(&mut O, &str, &[f32]) + Sync,
) -> Result<Vec<O>, Error> {
    let threads = threads.clamp(1, set.len().max(1));
    let done = std::sync::atomic::AtomicUsize::new(0);
    // Each thread runs its samples in its own session (a planned arena: nothing is allocated
    // per sample).
    let work = |k: usize| -> Result<O, Error> {
        let mut o = make();
        let mut session = interp.session();
        for i in (k..set.len()).step_by(threads) {
            let mut obs = NamedObserver { g, f: |n: &str, v: &[f32]| observe(&mut o, n, v) };
            session.run_observed(&set.sample(i)?, &mut obs)?;
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(o)
    };
    if threads == 1 {
        // One thread: no spawning, progress after every sample.
        let mut o = make();
        let mut session = interp.session();
        for i in 0..set.len() {
            let mut obs = NamedObserver { g, f: |n: &str, v: &[f32]| observe(&mut o, n, v) };
            session.run_observed(&set.sample(i)?, &mut obs)?;
            progress(done_before + i + 1, total);
        }
        return Ok(vec![o]);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|k| s.spawn(move || work(k))).collect();
        let mut shown = 0;
        while handles.iter().any(|h| !h.is_finished()) {
            let now = done.load(std::sync::atomic::Ordering::Relaxed);
            if now != shown {
                shown = now;
                progress(done_before + now, total);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        progress(done_before + done.load(std::sync::atomic::Ordering::Relaxed), total);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<O>, Error>>()
    })
}

/// `f` of every sample index, `threads` at a time (thread k takes samples k, k + threads, …);
/// the results in sample order.
fn each_sample<T: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> Result<T, Error> + Sync,
) -> Result<Vec<T>, Error> {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return (0..n).map(f).collect();
    }
    let f = &f;
    let per_thread: Vec<Result<Vec<T>, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|k| s.spawn(move || (k..n).step_by(threads).map(f).collect())).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut per_thread = per_thread.into_iter().map(|r| r.map(Vec::into_iter)).collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        match per_thread[i % threads].next() {
            Some(v) => out.push(v),
            None => break,
        }
    }
    Ok(out)
}

/// Every tensor's values of one run, dequantized to float, by tensor name.
type LayerValues = BTreeMap<String, Vec<f32>>;

/// Values of every tensor of one run, dequantized to float, by tensor name.
pub(crate) fn float_values(g: &Graph, interp: &Interpreter<'_>, inputs: Vec<Array>) -> Result<LayerValues, Error> {
    Ok(float_values_and_outputs(g, interp, inputs)?.0)
}

/// [`float_values`], and the run's outputs as the interpreter returns them.
fn float_values_and_outputs(
    g: &Graph,
    interp: &Interpreter<'_>,
    inputs: Vec<Array>,
) -> Result<(LayerValues, Vec<Array>), Error> {
    struct Collect<'a> {
        g: &'a Graph,
        out: BTreeMap<String, Vec<f32>>,
    }
    impl qlite_interp::Observer for Collect<'_> {
        fn observe(&mut self, tensor: TensorId, value: &Array) {
            let Some(t) = self.g.tensor(tensor) else { return };
            let v = match value.as_f32() {
                Some(v) => Some(v.to_vec()),
                None => qlite_interp::kernels::dequantize(value, t.quant.as_ref()).ok(),
            };
            if let Some(v) = v {
                self.out.insert(t.name.clone(), v);
            }
        }
    }
    let mut c = Collect { g, out: BTreeMap::new() };
    let outputs = interp.run_observed(inputs, &mut c)?;
    Ok((c.out, outputs))
}

/// The per-layer error report: every tensor the float model computes that the quantized model
/// also computes (matched by the source model's tensor names), worst SQNR first.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    pub mode: String,
    pub samples: usize,
    pub layers: Vec<LayerError>,
    /// The model outputs (float vs quantized, dequantized).
    pub outputs: Vec<LayerError>,
    /// Value histograms of the worst layers.
    pub histograms: Vec<RangeHistogram>,
}

pub fn error_report(float: &Graph, quant: &Graph, set: &CalibrationSet, mode: &str) -> Result<ErrorReport, Error> {
    error_report_with(float, quant, set, mode, true, CalibrationRun::default().threads)
}

/// [`error_report`], with or without the histograms (two more passes over the samples), the
/// samples spread over `threads` (the same report for any number).
pub fn error_report_with(
    float: &Graph,
    quant: &Graph,
    set: &CalibrationSet,
    mode: &str,
    with_histograms: bool,
    threads: usize,
) -> Result<ErrorReport, Error> {
    // The fast kernels (the int8 model's bytes are the reference kernels'; the float model's
    // values within the float tolerance), samples spread over the cores; each sample's
    // statistics are merged in sample order, so any number of threads gives the same report.
    let fi = Interpreter::new(float)?.kernels(crate::Kernels::Fast);
    let qi = Interpreter::new(quant)?.kernels(crate::Kernels::Fast);
    let mut stats: BTreeMap<String, ErrorStats> = BTreeMap::new();
    let mut out_stats: Vec<ErrorStats> = vec![ErrorStats::default(); float.outputs().len()];
    let producers: BTreeMap<String, &'static str> = float
        .nodes()
        .iter()
        .flat_map(|n| n.outputs.iter().filter_map(|&o| float.tensor(o).map(|t| (t.name.clone(), n.op.name()))))
        .collect();
    let per_sample = each_sample(set.len(), threads, |i| {
        let sample = set.sample(i)?;
        let (q_inputs, _) = crate::quantize_inputs(quant, sample.clone())?;
        // One run of each model per sample: every layer's values and the outputs.
        let (fv, fo) = float_values_and_outputs(float, &fi, sample)?;
        let (qv, qo) = float_values_and_outputs(quant, &qi, q_inputs)?;
        let mut layers: Vec<(String, ErrorStats)> = Vec::new();
        for (name, f) in &fv {
            if !producers.contains_key(name) {
                continue;
            }
            if let Some(q) = qv.get(name)
                && q.len() == f.len()
            {
                let mut e = ErrorStats::default();
                e.add(f, q);
                layers.push((name.clone(), e));
            }
        }
        let qo = crate::dequantize_outputs(quant, qo)?;
        let mut outs = vec![ErrorStats::default(); fo.len()];
        for (k, (a, b)) in fo.iter().zip(&qo).enumerate() {
            if let (Some(a), Some(b)) = (a.as_f32(), b.as_f32()) {
                outs[k].add(a, b);
            }
        }
        Ok((layers, outs))
    })?;
    for (layers, outs) in per_sample {
        for (name, e) in layers {
            stats.entry(name).or_default().merge(&e);
        }
        for (k, e) in outs.iter().enumerate() {
            if let Some(s) = out_stats.get_mut(k) {
                s.merge(e);
            }
        }
    }
    let mut layers: Vec<LayerError> =
        stats.iter().map(|(name, s)| s.layer(name, producers.get(name).copied().unwrap_or("?"))).collect();
    layers.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db).then_with(|| a.tensor.cmp(&b.tensor)));
    let outputs =
        out_stats.iter().enumerate().map(|(k, s)| s.layer(float.output_name(k).unwrap_or(""), "output")).collect();
    let histograms = if with_histograms { range_histograms(float, quant, &fi, set, &layers)? } else { Vec::new() };
    Ok(ErrorReport { mode: mode.to_string(), samples: set.len(), layers, outputs, histograms })
}

/// Text table of a report (worst layers first).
pub fn render_report(r: &ErrorReport, max_rows: usize) -> String {
    let mut s = format!("per-layer error ({} mode, {} calibration samples), worst first:\n", r.mode, r.samples);
    s.push_str(&format!("  {:>9} {:>8} {:>10}  {:<16} {}\n", "SQNR dB", "cosine", "max |err|", "op", "tensor"));
    for l in r.layers.iter().take(max_rows) {
        s.push_str(&format!("  {:>9.2} {:>8.5} {:>10.4}  {:<16} {}\n", l.sqnr_db, l.cosine, l.max_abs, l.op, l.tensor));
    }
    for o in &r.outputs {
        s.push_str(&format!(
            "  output {:?}: SQNR {:.2} dB, cosine {:.5}, max |err| {:.4}\n",
            o.tensor, o.sqnr_db, o.cosine, o.max_abs
        ));
    }
    s
}

/// What `qlite eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub samples: usize,
    pub top1: f64,
    /// Agreement of top-1 with the reference model, if one was given.
    pub agreement: Option<f64>,
    /// SQNR (dB) of the output against the reference model's.
    pub sqnr_db: Option<f64>,
    /// Mean single-sample latency of the fast kernels, one thread, in a session (over the
    /// first 32 samples, timed apart from the accuracy pass).
    pub mean_latency_us: f64,
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
}

/// Top-1 accuracy of `model` on `x` / `labels` (int64 class indices), optionally against a
/// reference model. Float inputs are quantized for int8 / uint8 models; integer outputs are
/// dequantized before comparing. The samples are spread over the cores.
pub fn evaluate(model: &Graph, x: &Array, labels: &[i64], reference: Option<&Graph>) -> Result<Evaluation, Error> {
    evaluate_with(model, x, labels, reference, CalibrationRun::default().threads)
}

/// [`evaluate`] with the samples spread over `threads` (each sample's result merged in sample
/// order: the same numbers for any number). The latency is measured apart, on one thread, in
/// a session over the first 32 samples, so sharing the cores does not inflate it.
pub fn evaluate_with(
    model: &Graph,
    x: &Array,
    labels: &[i64],
    reference: Option<&Graph>,
    threads: usize,
) -> Result<Evaluation, Error> {
    let n = x.shape().first().copied().unwrap_or(0);
    if n != labels.len() {
        return Err(Error::Usage(format!("{n} samples but {} labels", labels.len())));
    }
    // The fast kernels: the reference kernels' bytes, at deployment speed.
    let interp = Interpreter::new(model)?.kernels(crate::Kernels::Fast);
    let ref_interp = reference.map(Interpreter::new).transpose()?;
    let row = |i: usize| x.row(i).ok_or_else(|| Error::Usage("empty data".into()));
    let per_sample = each_sample(labels.len(), threads, |i| {
        let (inputs, _) = crate::quantize_inputs(model, vec![row(i)?])?;
        let y = crate::dequantize_outputs(model, interp.run(inputs)?)?;
        let yv = y
            .first()
            .and_then(|a| a.as_f32())
            .ok_or_else(|| Error::Usage("the model's first output is not numeric".into()))?;
        let p = argmax(yv);
        let mut against = None;
        if let (Some(ri), Some(rg)) = (&ref_interp, reference) {
            let (rin, _) = crate::quantize_inputs(rg, vec![row(i)?])?;
            let r = crate::dequantize_outputs(rg, ri.run(rin)?)?;
            if let Some(rv) = r.first().and_then(|a| a.as_f32()) {
                let mut e = ErrorStats::default();
                e.add(rv, yv);
                against = Some((argmax(rv) == p, e));
            }
        }
        Ok((p as i64 == labels[i], against))
    })?;
    let (mut correct, mut agree) = (0usize, 0usize);
    let mut stats = ErrorStats::default();
    for (ok, against) in per_sample {
        correct += usize::from(ok);
        if let Some((same, e)) = against {
            agree += usize::from(same);
            stats.merge(&e);
        }
    }
    // Latency: one thread, a session (its planned arena), the first samples.
    let mut session = interp.session();
    let timed = labels.len().min(32);
    let mut total_us = 0.0;
    for i in 0..timed {
        let (inputs, _) = crate::quantize_inputs(model, vec![row(i)?])?;
        let t = std::time::Instant::now();
        session.run(&inputs)?;
        total_us += t.elapsed().as_secs_f64() * 1e6;
    }
    let n = labels.len().max(1) as f64;
    Ok(Evaluation {
        samples: labels.len(),
        top1: correct as f64 / n,
        agreement: reference.map(|_| agree as f64 / n),
        sqnr_db: reference.map(|_| if stats.sqnr_db().is_finite() { stats.sqnr_db() } else { 999.0 }),
        mean_latency_us: total_us / timed.max(1) as f64,
    })
}

/// The float model's values at one layer, binned over the range its quantized tensor can
/// represent (quantization clips what falls outside).
#[derive(Debug, Clone, Serialize)]
pub struct RangeHistogram {
    pub tensor: String,
    /// The binned range: the quantized tensor's, or the observed one for a tensor left float.
    pub lo: f64,
    pub hi: f64,
    /// The quantized tensor's type and parameters, when it has them.
    pub quant: Option<String>,
    pub bins: Vec<u64>,
    /// Values below `lo` and above `hi`.
    pub below: u64,
    pub above: u64,
}

/// How many of the worst layers get a histogram, and how many bins.
const HIST_LAYERS: usize = 6;
const HIST_BINS: usize = 64;

/// Histograms of the float values of the worst (non-identical) layers over the calibration set.
fn range_histograms(
    float: &Graph,
    quant: &Graph,
    fi: &Interpreter<'_>,
    set: &CalibrationSet,
    layers: &[LayerError],
) -> Result<Vec<RangeHistogram>, Error> {
    let chosen: Vec<&LayerError> = layers.iter().filter(|l| l.sqnr_db < 999.0).take(HIST_LAYERS).collect();
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_name: BTreeMap<&str, &qlite_ir::Tensor> = BTreeMap::new();
    for t in quant.tensors() {
        by_name.entry(t.name.as_str()).or_insert(t);
    }
    let mut hists: Vec<RangeHistogram> = chosen
        .iter()
        .map(|l| {
            let t = by_name.get(l.tensor.as_str());
            let q = t.and_then(|t| t.quant.as_ref().filter(|q| !q.is_per_channel()).map(|q| (t.dtype, q)));
            let limits = q.and_then(|(d, q)| {
                let (lo, hi) = match d {
                    DType::I8 => (-128.0, 127.0),
                    DType::U8 => (0.0, 255.0),
                    DType::I16 => (-32768.0, 32767.0),
                    _ => return None,
                };
                let (s, z) = (q.scale() as f64, q.zero_point() as f64);
                Some((s * (lo - z), s * (hi - z)))
            });
            let (lo, hi) = limits.unwrap_or((f64::INFINITY, f64::NEG_INFINITY));
            RangeHistogram {
                tensor: l.tensor.clone(),
                lo,
                hi,
                quant: q
                    .filter(|_| limits.is_some())
                    .map(|(d, q)| format!("{d} scale {:e} zp {}", q.scale(), q.zero_point())),
                bins: vec![0; HIST_BINS],
                below: 0,
                above: 0,
            }
        })
        .collect();
    // A tensor left float is binned over the range it was observed in.
    if hists.iter().any(|h| h.quant.is_none()) {
        for i in 0..set.len() {
            let fv = float_values(float, fi, set.sample(i)?)?;
            for h in hists.iter_mut().filter(|h| h.quant.is_none()) {
                for &v in fv.get(&h.tensor).into_iter().flatten().filter(|v| v.is_finite()) {
                    h.lo = h.lo.min(v as f64);
                    h.hi = h.hi.max(v as f64);
                }
            }
        }
    }
    for i in 0..set.len() {
        let fv = float_values(float, fi, set.sample(i)?)?;
        for h in hists.iter_mut() {
            let width = h.hi - h.lo;
            for &v in fv.get(&h.tensor).into_iter().flatten() {
                let v = v as f64;
                if v < h.lo {
                    h.below += 1;
                } else if v > h.hi {
                    h.above += 1;
                } else {
                    let k = if width > 0.0 { ((v - h.lo) / width * HIST_BINS as f64) as usize } else { 0 };
                    h.bins[k.min(HIST_BINS - 1)] += 1;
                }
            }
        }
    }
    hists.retain(|h| h.lo.is_finite() && h.hi.is_finite());
    Ok(hists)
}

/// Bias correction: for each int8 CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED of `quant`,
/// the mean error of its output against the float model's same tensor over the samples (per
/// output channel, where the fused activation is linear) is subtracted from its int32 bias.
/// `rounds` repeats it (each round measures the model the previous one corrected). Returns the
/// number of layers whose bias changed.
pub fn bias_correction(float: &Graph, quant: &mut Graph, set: &CalibrationSet, rounds: usize) -> Result<usize, Error> {
    use qlite_ir::op::Activation;
    let mut corrected = BTreeSet::new();
    for _ in 0..rounds {
        // (output tensor name, bias tensor, channels, linear range of the activation)
        let mut layers: Vec<(String, TensorId, usize, (f32, f32))> = Vec::new();
        for n in quant.nodes() {
            if !matches!(n.op, Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::FullyConnected(_)) {
                continue;
            }
            let (Some(&out), Some(b)) = (n.outputs.first(), n.input(2)) else { continue };
            let (Some(ot), Some(bt)) = (quant.tensor(out), quant.tensor(b)) else { continue };
            if ot.dtype != DType::I8 || bt.dtype != DType::I32 || bt.data.is_none() || bt.quant.is_none() {
                continue;
            }
            let range = match n.op.fused_activation().unwrap_or_default() {
                Activation::None => (f32::NEG_INFINITY, f32::INFINITY),
                Activation::Relu => (0.0, f32::INFINITY),
                Activation::Relu6 => (0.0, 6.0),
                Activation::ReluN1To1 => (-1.0, 1.0),
            };
            let channels = bt.shape.to_fixed().map_or(0, |d| d.iter().product());
            if channels > 0 {
                layers.push((ot.name.clone(), b, channels, range));
            }
        }
        let (fi, qi) = (Interpreter::new(float)?, Interpreter::new(quant)?);
        let mut sums: Vec<Vec<(f64, u64)>> = layers.iter().map(|l| vec![(0.0, 0); l.2]).collect();
        for i in 0..set.len() {
            let sample = set.sample(i)?;
            let (xq, _) = crate::quantize_inputs(quant, sample.clone())?;
            let fv = float_values(float, &fi, sample)?;
            let qv = float_values(quant, &qi, xq)?;
            for (k, (name, _, c, (lo, hi))) in layers.iter().enumerate() {
                let (Some(f), Some(q)) = (fv.get(name), qv.get(name)) else { continue };
                if f.len() != q.len() || f.len() % c != 0 {
                    continue;
                }
                for (j, (&a, &b)) in f.iter().zip(q).enumerate() {
                    if a > *lo && a < *hi {
                        let s = &mut sums[k][j % c];
                        s.0 += (b - a) as f64;
                        s.1 += 1;
                    }
                }
            }
        }
        let mut changed = false;
        for ((name, b, _, _), sums) in layers.iter().zip(&sums) {
            let Some(t) = quant.tensor(*b) else { continue };
            let (Some(q), Some(data)) = (t.quant.clone(), t.data.clone()) else { continue };
            let mut v: Vec<i32> = data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let mut any = false;
            for (c, &(sum, count)) in sums.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let scale = q.channel(c).0 as f64;
                let step = (sum / count as f64 / scale).round();
                if step != 0.0 && scale > 0.0 {
                    v[c] = (v[c] as f64 - step).clamp(i32::MIN as f64, i32::MAX as f64) as i32;
                    any = true;
                }
            }
            if any {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                if let Some(t) = quant.tensor_mut(*b) {
                    t.data = Some(bytes.into());
                }
                corrected.insert(name.clone());
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Ok(corrected.len())
}

/// Samples `auto` calibration measures each candidate on (the first ones of the set), in
/// folds of consecutive samples.
const AUTO_SAMPLES: usize = 128;
const AUTO_FOLDS: usize = 4;

/// `--calibration-method auto`: starting from the minmax ranges, each tensor in graph order
/// takes the candidate range (percentile, MSE) that raises the quantized model's output SQNR
/// against the float model on the calibration samples, if one does (by more than 0.01 dB:
/// noise is not a reason to move off TF's converter's choice). Candidates within 1 % of the
/// current range are not tried. The table's `method` records what was chosen, e.g.
/// `auto(minmax 40, percentile(99.99) 12, mse 8)`.
pub fn auto_ranges(
    g: &Graph,
    set: &CalibrationSet,
    cfg: &qlite_quant::QuantConfig,
    mut table: CalibrationTable,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CalibrationTable, Error> {
    let n = set.len().min(AUTO_SAMPLES);
    let samples: Vec<Vec<Array>> = (0..n).map(|i| set.sample(i)).collect::<Result<_, _>>()?;
    let float = Interpreter::new(g)?.kernels(crate::Kernels::Fast);
    let want: Vec<Vec<Array>> = samples.iter().map(|x| float.run(x.clone())).collect::<Result<_, _>>()?;
    let score = |t: &CalibrationTable| -> Result<Vec<f64>, Error> {
        let q = qlite_quant::quantize_graph(g, Some(t), cfg).map_err(|e| Error::Pipeline(e.to_string()))?;
        let it = Interpreter::new(&q)?.kernels(crate::Kernels::Fast);
        let mut stats = vec![ErrorStats::default(); AUTO_FOLDS];
        for (i, (x, w)) in samples.iter().zip(&want).enumerate() {
            let (xq, _) = crate::quantize_inputs(&q, x.clone())?;
            let y = crate::dequantize_outputs(&q, it.run(xq)?)?;
            for (a, b) in w.iter().zip(&y) {
                if let (Some(a), Some(b)) = (a.as_f32(), b.as_f32()) {
                    stats[i * AUTO_FOLDS / samples.len().max(1)].add(a, b);
                }
            }
        }
        Ok(stats.iter().filter(|s| s.count() > 0).map(|s| s.sqnr_db()).collect::<Vec<f64>>())
    };
    let candidates = std::mem::take(&mut table.candidates);
    // Graph order: a tensor's range is settled before the layers after it are judged.
    let order: Vec<String> = g
        .inputs()
        .iter()
        .chain(g.nodes().iter().flat_map(|n| n.outputs.iter()))
        .filter_map(|&t| g.tensor(t).map(|t| t.name.clone()))
        .filter(|name| candidates.contains_key(name))
        .collect();
    let mut best = score(&table)?;
    let mut chosen: BTreeMap<String, usize> = BTreeMap::new();
    for (k, name) in order.iter().enumerate() {
        let mut pick = "minmax".to_string();
        for (method, r) in candidates[name].iter().skip(1) {
            let cur = table.ranges[name];
            let width = (cur.max - cur.min).abs().max(f32::MIN_POSITIVE);
            if (r.min - cur.min).abs() <= 0.01 * width && (r.max - cur.max).abs() <= 0.01 * width {
                continue;
            }
            let mut trial = table.clone();
            trial.ranges.insert(name.clone(), *r);
            let s = score(&trial)?;
            // Taken only if every fold gains: a clip that helps some samples and hurts others
            // (outliers the other folds have) would not generalize.
            if s.iter().zip(&best).all(|(a, b)| a > &(b + 0.01)) {
                (best, table, pick) = (s, trial, method.clone());
            }
        }
        *chosen.entry(pick).or_default() += 1;
        progress(k + 1, order.len());
    }
    let counts: Vec<String> = chosen.iter().map(|(m, c)| format!("{m} {c}")).collect();
    table.method = format!("auto({})", counts.join(", "));
    Ok(table)
}
