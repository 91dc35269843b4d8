//! qlite: convert, inspect and run neural-network models.
//!
//! This crate is the library surface other tools use. It ties the IR, the format crates and
//! the interpreter together:
//!
//! - [`Importer`] and [`Exporter`] are the plugin traits; a [`Registry`] picks one by magic
//!   bytes, then by file extension.
//! - [`load`] reads a model (memory-mapped, weights not copied), [`save`] writes one
//!   atomically, [`convert`] does both with the pass pipeline in between.
//! - [`run`] executes a graph; [`inspect`] describes a model file.
//!
//! ```
//! use qlite::{Registry, ConvertOptions};
//! # fn main() -> Result<(), qlite::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let input = dir.path().join("in.tflite");
//! # std::fs::write(&input, qlite::sample::tiny_tflite()).unwrap();
//! let output = dir.path().join("out.tflite");
//! let report = qlite::convert(&Registry::default(), &input, &output, &ConvertOptions::default())?;
//! assert!(report.output_bytes > 0);
//! let model = qlite::load(&Registry::default(), &output)?;
//! let y = qlite::run(&model, vec![qlite::Array::f32(vec![1, 4], vec![1.0, -2.0, 3.0, -4.0]).unwrap()])?;
//! assert_eq!(y[0].shape(), &[1, 2]);
//!
//! // Many inferences: the fast kernels and a session, whose arena is reused (once it has
//! // grown, a run allocates nothing for ops with in-place kernels).
//! let interp = qlite::Interpreter::new(&model)?.kernels(qlite::Kernels::Fast);
//! let mut session = interp.session();
//! for x in [[1.0, -2.0, 3.0, -4.0], [0.5, 0.5, 0.5, 0.5]] {
//!     session.run(&[qlite::Array::f32(vec![1, 4], x.to_vec()).unwrap()])?;
//!     assert_eq!(session.output(0)?.shape(), &[1, 2]);
//! }
//! # Ok(()) }
//! ```

// Library code never unwraps: values derived from a file are checked and errors returned.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod check;
pub mod diff;
pub mod inspect;
pub mod io;
pub mod mixed;
pub mod npy;
pub mod quantize;
pub mod report;
pub mod roundtrip;
pub mod sample;

pub use qlite_interp::{
    Agreement, Array, Data, Interpreter, Isa, Kernels, Mismatch, Observer, Session, Tolerance, compare, compare_all,
    isa,
};
pub use qlite_ir as ir;
pub use qlite_ir::Graph;
pub use qlite_onnx as onnx;
pub use qlite_quant as quant;
pub use qlite_quant::{CalibrationMethod, CalibrationTable, IoType, QuantConfig, QuantMode};
pub use qlite_safetensors as st;

use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Everything that can go wrong in the library, with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: unknown model format (no importer recognises its bytes or its extension; known: {known})")]
    UnknownFormat { path: PathBuf, known: String },
    #[error("{path}: no exporter writes this extension (known: {known})")]
    NoExporter { path: PathBuf, known: String },
    #[error("{path}: {message}")]
    Import { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Export { path: PathBuf, message: String },
    #[error("{0}")]
    Pipeline(String),
    #[error("{0}")]
    Run(#[from] qlite_interp::InterpError),
    #[error("{path}: {source}")]
    Npy { path: PathBuf, source: npy::NpyError },
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Limit { path: PathBuf, source: qlite_ir::LimitError },
    #[error("{path}: not written: {}", check::one_line(report))]
    Unsupported { path: PathBuf, report: Box<check::CheckReport> },
}

/// Bytes of a model file plus where they came from, and import options.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub bytes: Bytes,
    /// Input shapes that override the model's (`--input-shape NAME=1,3,8,8`).
    pub input_shapes: std::collections::BTreeMap<String, Vec<qlite_ir::Dim>>,
    /// Give the model NHWC inputs and outputs (rank-4 I/O of an NCHW source format).
    pub nhwc_io: bool,
    /// What the importer may allocate (the facade checks the whole graph again afterwards).
    pub limits: qlite_ir::Limits,
    /// Which signature to import, for formats that have several (SavedModel).
    pub signature: Option<String>,
}

/// Reads one model format into the IR. Implement this to add a format.
pub trait Importer: Send + Sync {
    /// Short format name, e.g. "tflite".
    fn name(&self) -> &'static str;
    /// File extensions (without dot) this importer claims.
    fn extensions(&self) -> &'static [&'static str];
    /// Does the start of the file look like this format?
    fn sniff(&self, head: &[u8]) -> bool;
    /// Parse. Errors are messages; the facade adds the path.
    fn import(&self, source: &Source) -> Result<Graph, String>;
}

/// Writes the IR in one format. Implement this to add a format.
pub trait Exporter: Send + Sync {
    fn name(&self) -> &'static str;
    fn extensions(&self) -> &'static [&'static str];
    /// Serialize (legalize first, then write one to one).
    fn export(&self, g: &Graph) -> Result<Bytes, String>;
    /// Serialize into `w`; returns the bytes written. Override to stream large data instead of
    /// building the whole file in memory first.
    fn export_to(&self, g: &Graph, w: &mut dyn std::io::Write) -> Result<u64, String> {
        let data = self.export(g)?;
        w.write_all(&data).map_err(|e| e.to_string())?;
        Ok(data.len() as u64)
    }
    /// [`export_to`](Self::export_to) taking the graph: override to free each constant once
    /// written, so a converted model's weights are not in memory twice.
    fn export_owned(&self, g: Graph, w: &mut dyn std::io::Write) -> Result<u64, String> {
        self.export_to(&g, w)
    }
}

/// TensorFlow Lite flatbuffers.
#[derive(Debug, Default)]
pub struct TfliteFormat;

impl Importer for TfliteFormat {
    fn name(&self) -> &'static str {
        "tflite"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["tflite"]
    }
    fn sniff(&self, head: &[u8]) -> bool {
        qlite_tflite::sniff(head)
    }
    fn import(&self, source: &Source) -> Result<Graph, String> {
        qlite_tflite::read_model(source.bytes.clone()).map_err(|e| e.to_string())
    }
}

impl Exporter for TfliteFormat {
    fn name(&self) -> &'static str {
        "tflite"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["tflite"]
    }
    fn export(&self, g: &Graph) -> Result<Bytes, String> {
        qlite_tflite::write_model(g).map_err(|e| e.to_string())
    }
    fn export_to(&self, g: &Graph, w: &mut dyn std::io::Write) -> Result<u64, String> {
        qlite_tflite::write_model_to(g, qlite_tflite::BufferPlacement::Auto, w).map_err(|e| e.to_string())
    }
    fn export_owned(&self, g: Graph, w: &mut dyn std::io::Write) -> Result<u64, String> {
        qlite_tflite::write_model_owned(g, qlite_tflite::BufferPlacement::Auto, w).map_err(|e| e.to_string())
    }
}

/// safetensors: weights. Importing gives a weights-only graph (constants, no ops); give an
/// architecture sidecar (`ConvertOptions::arch`) to build a runnable model.
#[derive(Debug, Default)]
pub struct SafetensorsFormat;

impl Importer for SafetensorsFormat {
    fn name(&self) -> &'static str {
        "safetensors"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["safetensors"]
    }
    fn sniff(&self, head: &[u8]) -> bool {
        qlite_safetensors::sniff(head)
    }
    fn import(&self, source: &Source) -> Result<Graph, String> {
        let f = qlite_safetensors::read(source.bytes.clone()).map_err(|e| e.to_string())?;
        qlite_safetensors::ir::to_graph(&f).map_err(|e| e.to_string())
    }
}

impl Exporter for SafetensorsFormat {
    fn name(&self) -> &'static str {
        "safetensors"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["safetensors"]
    }
    fn export(&self, g: &Graph) -> Result<Bytes, String> {
        let (tensors, meta) = qlite_safetensors::ir::from_graph(g);
        Ok(Bytes::from(qlite_safetensors::write(&tensors, &meta)))
    }
}

/// ONNX models (import only). External data is resolved inside the model's directory.
#[derive(Debug, Default)]
pub struct OnnxFormat;

impl Importer for OnnxFormat {
    fn name(&self) -> &'static str {
        "onnx"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["onnx"]
    }
    fn sniff(&self, head: &[u8]) -> bool {
        qlite_onnx::sniff(head)
    }
    fn import(&self, source: &Source) -> Result<Graph, String> {
        let opts = qlite_onnx::ImportOptions {
            model_dir: source
                .path
                .parent()
                .map(|p| if p.as_os_str().is_empty() { Path::new(".").to_path_buf() } else { p.to_path_buf() }),
            input_shapes: source.input_shapes.clone(),
            nhwc_io: source.nhwc_io,
            limits: source.limits,
        };
        qlite_onnx::import(source.bytes.clone(), &opts).map_err(|e| e.to_string())
    }
}

/// TensorFlow SavedModel directories (and `saved_model.pb` inside one) and frozen GraphDef
/// `.pb` files.
#[derive(Debug, Clone, Copy)]
pub struct SavedModelFormat;

impl Importer for SavedModelFormat {
    fn name(&self) -> &'static str {
        "savedmodel"
    }
    fn extensions(&self) -> &'static [&'static str] {
        &["pb"]
    }
    fn sniff(&self, _head: &[u8]) -> bool {
        false // protobuf has no magic number: chosen for directories and by extension
    }
    fn import(&self, source: &Source) -> Result<Graph, String> {
        let opts = qlite_savedmodel::ImportOptions {
            signature: source.signature.clone(),
            input_shapes: source.input_shapes.clone(),
        };
        let dir = if source.path.is_dir() {
            Some(source.path.clone())
        } else if source.path.file_name().is_some_and(|f| f == "saved_model.pb") {
            source.path.parent().map(Path::to_path_buf)
        } else {
            None
        };
        match dir {
            Some(d) => qlite_savedmodel::import_saved_model(&d, &opts),
            None => qlite_savedmodel::import_graph_def(source.bytes.clone(), &opts),
        }
        .map_err(|e| e.to_string())
    }
}

/// The bytes of a model path: the file, memory-mapped; for a SavedModel directory, its
/// `saved_model.pb`.
pub fn model_bytes(path: &Path) -> Result<Bytes, Error> {
    let file = if path.is_dir() {
        let pb = path.join("saved_model.pb");
        if !pb.is_file() {
            return Err(Error::Import {
                path: path.to_path_buf(),
                message: "a directory is read as a TensorFlow SavedModel, but this one has no saved_model.pb".into(),
            });
        }
        pb
    } else {
        path.to_path_buf()
    };
    io::map_file(&file).map_err(|source| Error::Io { path: file, source })
}

/// The importers and exporters qlite knows. `Registry::default()` has every built-in format;
/// other crates add theirs with [`Registry::add_importer`] / [`Registry::add_exporter`].
pub struct Registry {
    importers: Vec<Box<dyn Importer>>,
    exporters: Vec<Box<dyn Exporter>>,
    limits: qlite_ir::Limits,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("importers", &self.importers.iter().map(|i| i.name()).collect::<Vec<_>>())
            .field("exporters", &self.exporters.iter().map(|e| e.name()).collect::<Vec<_>>())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::empty()
            .add_importer(TfliteFormat)
            .add_importer(SafetensorsFormat)
            .add_importer(OnnxFormat)
            .add_importer(SavedModelFormat)
            .add_exporter(TfliteFormat)
            .add_exporter(SafetensorsFormat)
    }
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

impl Registry {
    pub fn empty() -> Self {
        Registry { importers: Vec::new(), exporters: Vec::new(), limits: qlite_ir::Limits::default() }
    }
    /// Resource limits every model loaded through this registry is held to.
    pub fn with_limits(mut self, limits: qlite_ir::Limits) -> Self {
        self.limits = limits;
        self
    }
    pub fn limits(&self) -> &qlite_ir::Limits {
        &self.limits
    }
    pub fn add_importer(mut self, i: impl Importer + 'static) -> Self {
        self.importers.push(Box::new(i));
        self
    }
    pub fn add_exporter(mut self, e: impl Exporter + 'static) -> Self {
        self.exporters.push(Box::new(e));
        self
    }

    /// The importer for a file: magic bytes first, then the extension.
    pub fn importer_for(&self, path: &Path, head: &[u8]) -> Option<&dyn Importer> {
        if path.is_dir() {
            return self.importers.iter().find(|i| i.name() == "savedmodel").map(|b| b.as_ref());
        }
        self.importers
            .iter()
            .find(|i| i.sniff(head))
            .or_else(|| {
                let ext = extension(path);
                self.importers.iter().find(|i| i.extensions().contains(&ext.as_str()))
            })
            .map(|b| b.as_ref())
    }

    /// The exporter for an output path, by extension.
    pub fn exporter_for(&self, path: &Path) -> Option<&dyn Exporter> {
        let ext = extension(path);
        self.exporters.iter().find(|e| e.extensions().contains(&ext.as_str())).map(|b| b.as_ref())
    }

    fn known_importers(&self) -> String {
        self.importers.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
    }
}

/// Read a model file into the IR (memory-mapped; constants point into the map).
pub fn load(reg: &Registry, path: &Path) -> Result<Graph, Error> {
    let bytes = model_bytes(path)?;
    load_bytes(reg, path, bytes)
}

/// Parse model bytes that came from `path` (used for messages and format detection).
pub fn load_bytes(reg: &Registry, path: &Path, bytes: Bytes) -> Result<Graph, Error> {
    let imp = reg
        .importer_for(path, &bytes[..bytes.len().min(64)])
        .ok_or_else(|| Error::UnknownFormat { path: path.to_path_buf(), known: reg.known_importers() })?;
    let src = Source {
        path: path.to_path_buf(),
        bytes,
        input_shapes: Default::default(),
        nhwc_io: false,
        limits: reg.limits,
        signature: None,
    };
    let g = imp.import(&src).map_err(|message| Error::Import { path: path.to_path_buf(), message })?;
    reg.limits.check(&g).map_err(|source| Error::Limit { path: path.to_path_buf(), source })?;
    Ok(g)
}

/// [`load_bytes`] with input shape overrides.
pub fn load_with_shapes(
    reg: &Registry,
    path: &Path,
    bytes: Bytes,
    input_shapes: &std::collections::BTreeMap<String, Vec<qlite_ir::Dim>>,
) -> Result<Graph, Error> {
    load_with(reg, path, bytes, input_shapes, false, None)
}

/// [`load_bytes`] with input shape overrides and, for NCHW formats (ONNX), NHWC I/O.
pub fn load_with(
    reg: &Registry,
    path: &Path,
    bytes: Bytes,
    input_shapes: &std::collections::BTreeMap<String, Vec<qlite_ir::Dim>>,
    nhwc_io: bool,
    signature: Option<&str>,
) -> Result<Graph, Error> {
    let imp = reg
        .importer_for(path, &bytes[..bytes.len().min(64)])
        .ok_or_else(|| Error::UnknownFormat { path: path.to_path_buf(), known: reg.known_importers() })?;
    if nhwc_io && imp.name() != "onnx" {
        return Err(Error::Usage(format!(
            "{}: NHWC I/O applies to NCHW formats (ONNX); {} models are NHWC already",
            path.display(),
            imp.name()
        )));
    }
    if signature.is_some() && imp.name() != "savedmodel" {
        return Err(Error::Usage(format!(
            "{}: --signature applies to TensorFlow SavedModels; {} models have one signature",
            path.display(),
            imp.name()
        )));
    }
    let src = Source {
        path: path.to_path_buf(),
        bytes,
        input_shapes: input_shapes.clone(),
        nhwc_io,
        limits: reg.limits,
        signature: signature.map(str::to_string),
    };
    let g = imp.import(&src).map_err(|message| Error::Import { path: path.to_path_buf(), message })?;
    reg.limits.check(&g).map_err(|source| Error::Limit { path: path.to_path_buf(), source })?;
    Ok(g)
}

/// Serialize `g` for `path` (format by extension), without writing.
pub fn export_bytes(reg: &Registry, g: &Graph, path: &Path) -> Result<Bytes, Error> {
    let exp = exporter(reg, path)?;
    exp.export(g).map_err(|message| Error::Export { path: path.to_path_buf(), message })
}

fn exporter<'r>(reg: &'r Registry, path: &Path) -> Result<&'r dyn Exporter, Error> {
    reg.exporter_for(path).ok_or_else(|| Error::NoExporter {
        path: path.to_path_buf(),
        known: reg
            .exporters
            .iter()
            .flat_map(|e| e.extensions())
            .map(|e| format!(".{e}"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Write `g` to `path` atomically (a temporary file beside it, renamed when complete; nothing
/// is left behind on error). Returns the number of bytes written.
pub fn save(reg: &Registry, g: &Graph, path: &Path) -> Result<usize, Error> {
    save_via(reg, path, |exp, w| exp.export_to(g, w))
}

/// [`save`] for a caller that is done with the graph: the exporter may free each constant
/// once it is written, so the weights are not held twice while the file is made.
pub fn save_owned(reg: &Registry, g: Graph, path: &Path) -> Result<usize, Error> {
    save_via(reg, path, |exp, w| exp.export_owned(g, w))
}

fn save_via(
    reg: &Registry,
    path: &Path,
    export: impl FnOnce(&dyn Exporter, &mut dyn std::io::Write) -> Result<u64, String>,
) -> Result<usize, Error> {
    let exp = exporter(reg, path)?;
    let io_err = |source| Error::Io { path: path.to_path_buf(), source };
    let tmp = io::temp_beside(path).map_err(io_err)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
    let n = export(exp, &mut w).map_err(|message| Error::Export { path: path.to_path_buf(), message })?;
    let tmp = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    io::finish(tmp, path).map_err(io_err)?;
    Ok(n as usize)
}

/// Options of [`convert`].
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Run these passes (by name, see [`pass_table`]) instead of the default cleanup pipeline.
    pub passes: Option<Vec<String>>,
    /// Print the IR to stderr after every pass that changed it.
    pub print_ir_after_change: bool,
    /// Stop rewriting after this many rewrites (to bisect a bad rewrite).
    pub stop_after: Option<usize>,
    /// Quantization (mode, I/O type, calibration method, excludes).
    pub quant: QuantConfig,
    /// Calibration data: an .npy of samples, or a directory of NAME.npy per input.
    pub calibration: Option<PathBuf>,
    /// A saved calibration table to use instead of running calibration.
    pub calibration_table: Option<PathBuf>,
    /// Where to save the calibration table.
    pub save_calibration: Option<PathBuf>,
    /// Where to write the per-layer error report (JSON, or one self-contained HTML page for a
    /// `.html` path); needs calibration data.
    pub report: Option<PathBuf>,
    /// Where to write the per-layer SQNR as Model Explorer node data (JSON).
    pub report_node_data: Option<PathBuf>,
    /// The model's name in the HTML report (default: the graph's name).
    pub model_name: Option<String>,
    /// Mixed precision: keep the layers that add the most error in float until the output
    /// SQNR against the float model reaches this many dB (`--min-sqnr`).
    pub min_sqnr: Option<f64>,
    /// Mixed precision: keep layers in float until the top-1 accuracy lost against the float
    /// model is at most this many percentage points on `validation` with `labels`
    /// (`--max-accuracy-drop`).
    pub max_accuracy_drop: Option<f64>,
    /// One integer class label per validation sample (`--labels`).
    pub labels: Option<PathBuf>,
    /// int8: correct each conv / FC bias by its layer's mean output error over the calibration
    /// set (`--bias-correction`).
    pub bias_correction: bool,
    /// Measure the mixed-precision budget on these samples instead of the calibration set
    /// (`--validation`).
    pub validation: Option<PathBuf>,
    /// Architecture sidecar (TOML) that turns a safetensors weights file into a model.
    pub arch: Option<PathBuf>,
    /// safetensors weights bound by name onto the model's constants (fine-tuned weights).
    pub weights: Option<PathBuf>,
    /// Input shapes overriding the model's (e.g. a symbolic batch of an ONNX model).
    pub input_shapes: std::collections::BTreeMap<String, Vec<qlite_ir::Dim>>,
    /// NHWC inputs and outputs for an NCHW source (ONNX): `--io-layout nhwc`.
    pub nhwc_io: bool,
    /// The SavedModel signature to convert (default `serving_default`): `--signature`.
    pub signature: Option<String>,
    /// Check the written .tflite against this runtime before anything is written (`--target`):
    /// any unsupported operator fails the conversion, every one named.
    pub target: Option<check::Target>,
    /// How calibration runs the float model (kernels, threads).
    pub calibration_run: quantize::CalibrationRun,
}

/// What [`convert`] did.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub input_bytes: usize,
    pub output_bytes: usize,
    pub nodes: usize,
    pub passes: Vec<qlite_ir::pass::PassRecord>,
    pub elapsed: Duration,
    /// Time spent calibrating (zero when a table was given or no calibration was needed).
    pub calibration: Duration,
    /// The per-layer error report, when calibration data was given.
    pub error_report: Option<quantize::ErrorReport>,
    /// What mixed precision kept in float, when `min_sqnr` was given.
    pub mixed: Option<mixed::MixedPrecision>,
}

/// Every pass the CLI can name with `--passes`.
pub fn pass_table() -> Vec<qlite_ir::PassInfo> {
    qlite_ir::passes::PASSES.to_vec()
}

/// The pipeline `convert` runs by default.
pub fn default_pipeline() -> qlite_ir::PassManager {
    qlite_ir::passes::cleanup_pipeline()
}

/// Run a pipeline (by names or the default) on a graph. A weights-only graph (no ops) is left
/// alone: there is nothing to optimize and every constant must survive.
pub fn run_passes(g: &mut Graph, opts: &ConvertOptions) -> Result<Vec<qlite_ir::pass::PassRecord>, Error> {
    run_passes_with(g, opts, true)
}

/// [`run_passes`]; `restore`: a failing pass puts the graph back as it was before it (a caller
/// that drops the graph on failure, as [`convert`] does, saves the copy that takes).
fn run_passes_with(
    g: &mut Graph,
    opts: &ConvertOptions,
    restore: bool,
) -> Result<Vec<qlite_ir::pass::PassRecord>, Error> {
    if g.nodes().is_empty() {
        return Ok(Vec::new());
    }
    let pm = match &opts.passes {
        Some(names) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            qlite_ir::pass::pipeline_from_names(&pass_table(), &names).map_err(Error::Usage)?
        }
        None => default_pipeline(),
    };
    let pm = pm
        .print_after_change(opts.print_ir_after_change)
        .stop_after(opts.stop_after)
        .restore_on_error(restore)
        .after_change(io::trim_freed_memory);
    pm.run(g).map_err(|e| Error::Pipeline(e.to_string()))
}

/// Read `input`, run the pipeline (cleanup, then quantization when configured), write
/// `output` atomically.
pub fn convert(reg: &Registry, input: &Path, output: &Path, opts: &ConvertOptions) -> Result<ConvertReport, Error> {
    convert_with_progress(reg, input, output, opts, &mut |_, _| {})
}

/// [`convert`], calling `progress(done, total)` during calibration.
pub fn convert_with_progress(
    reg: &Registry,
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ConvertReport, Error> {
    let start = Instant::now();
    let bytes = model_bytes(input)?;
    let input_bytes = bytes.len();
    let mut g = match &opts.arch {
        Some(arch) => {
            let text = std::fs::read_to_string(arch).map_err(|source| Error::Io { path: arch.clone(), source })?;
            let f = qlite_safetensors::read(bytes)
                .map_err(|e| Error::Import { path: input.to_path_buf(), message: e.to_string() })?;
            qlite_safetensors::arch::build(&text, &f)
                .map_err(|e| Error::Import { path: arch.clone(), message: e.to_string() })?
        }
        None => load_with(reg, input, bytes, &opts.input_shapes, opts.nhwc_io, opts.signature.as_deref())?,
    };
    if let Some(w) = &opts.weights {
        let wb = io::map_file(w).map_err(|source| Error::Io { path: w.clone(), source })?;
        let f = qlite_safetensors::read(wb).map_err(|e| Error::Import { path: w.clone(), message: e.to_string() })?;
        g = qlite_safetensors::ir::bind_weights(&g, &f)
            .map_err(|e| Error::Import { path: w.clone(), message: e.to_string() })?
            .0;
    }
    if g.nodes().is_empty() && exporter_kind(output) != Some("safetensors") {
        return Err(Error::Usage(format!(
            "{}: a weights-only file has no operators; give --arch model.toml to build a model, or write .safetensors",
            input.display()
        )));
    }
    // Weights the importer reordered or folded are freed by now, and again after the passes:
    // give the pages back before the next phase allocates.
    io::trim_freed_memory();
    // On failure the graph is dropped: no copy is kept to restore it.
    let mut passes = run_passes_with(&mut g, opts, false)?;
    io::trim_freed_memory();
    let q = quantize_model(&g, opts, progress)?;
    // The float graph's constants are the quantized graph's too (shared) or no longer needed:
    // letting go of them here lets the writer free each weight once it is in the output.
    drop(g);
    passes.extend(q.passes);
    let nodes = q.graph.nodes().len();
    let output_bytes = match opts.target {
        None => save_owned(reg, q.graph, output)?,
        Some(target) => {
            let bytes = export_bytes(reg, &q.graph, output)?;
            let report = check::check_tflite(&bytes, target)
                .map_err(|e| Error::Export { path: output.to_path_buf(), message: e.to_string() })?;
            if !report.ok() {
                return Err(Error::Unsupported { path: output.to_path_buf(), report: Box::new(report) });
            }
            io::write_atomic(output, &bytes).map_err(|source| Error::Io { path: output.to_path_buf(), source })?;
            bytes.len()
        }
    };
    Ok(ConvertReport {
        input_bytes,
        output_bytes,
        nodes,
        passes,
        elapsed: start.elapsed(),
        calibration: q.calibration,
        error_report: q.report,
        mixed: q.mixed,
    })
}

fn exporter_kind(path: &Path) -> Option<&'static str> {
    match extension(path).as_str() {
        "safetensors" => Some("safetensors"),
        "tflite" => Some("tflite"),
        _ => None,
    }
}

/// A quantized graph and what it took.
#[derive(Debug)]
pub struct Quantized {
    pub graph: Graph,
    pub passes: Vec<qlite_ir::pass::PassRecord>,
    pub calibration: Duration,
    pub table: Option<CalibrationTable>,
    pub report: Option<quantize::ErrorReport>,
    pub mixed: Option<mixed::MixedPrecision>,
}

/// Calibrate (if needed) and quantize a float graph as `opts` asks; also the error report.
pub fn quantize_model(
    g: &Graph,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Quantized, Error> {
    let cfg = &opts.quant;
    if let Some(db) = opts.min_sqnr.filter(|v| !v.is_finite()) {
        return Err(Error::Usage(format!("--min-sqnr must be a finite number of dB, got {db}")));
    }
    if let Some(p) = opts.max_accuracy_drop.filter(|v| !(0.0..=100.0).contains(v)) {
        return Err(Error::Usage(format!("--max-accuracy-drop must be between 0 and 100 percentage points, got {p}")));
    }
    if cfg.mode != QuantMode::None || opts.calibration.is_some() {
        qlite_quant::check_supported(g).map_err(|e| Error::Usage(e.to_string()))?;
    }
    // Cross-layer equalization rewrites the float model that is then calibrated, quantized and
    // measured (the same function in float, to rounding; its layers' values are scaled per
    // channel, so the per-layer report compares against it, not the original).
    let mut equalization = Vec::new();
    let equalized;
    let g = if cfg.equalize && cfg.mode != QuantMode::None {
        let mut e = g.clone();
        equalization = qlite_ir::PassManager::new()
            .with(qlite_ir::passes::CrossLayerEqualization)
            .run(&mut e)
            .map_err(|e| Error::Pipeline(e.to_string()))?;
        equalized = e;
        &equalized
    } else {
        g
    };
    let set = match &opts.calibration {
        Some(p) => Some(quantize::open_calibration(g, p)?),
        None => None,
    };
    let t = Instant::now();
    let table = match (&opts.calibration_table, &set) {
        (Some(p), _) => {
            let text = std::fs::read_to_string(p).map_err(|source| Error::Io { path: p.clone(), source })?;
            Some(CalibrationTable::from_json(&text).map_err(|message| Error::Import { path: p.clone(), message })?)
        }
        (None, Some(set)) if cfg.mode.is_full_integer() || opts.save_calibration.is_some() => {
            let t = quantize::calibrate_with(g, set, &cfg.method, opts.calibration_run, progress)?;
            match cfg.method {
                qlite_quant::CalibrationMethod::Auto if cfg.mode.is_full_integer() => {
                    Some(quantize::auto_ranges(g, set, cfg, t, progress)?)
                }
                // Nothing to search without a quantized model: the minmax ranges, named so.
                qlite_quant::CalibrationMethod::Auto => {
                    Some(CalibrationTable { method: "minmax".into(), candidates: Default::default(), ..t })
                }
                _ => Some(t),
            }
        }
        _ => None,
    };
    let calibration = if opts.calibration_table.is_none() && table.is_some() { t.elapsed() } else { Duration::ZERO };
    if let (Some(p), Some(t)) = (&opts.save_calibration, &table) {
        io::write_atomic(p, t.to_json().as_bytes()).map_err(|source| Error::Io { path: p.clone(), source })?;
    }
    if cfg.mode.is_full_integer() && table.is_none() {
        return Err(Error::Usage(qlite_quant::QuantError::NoCalibration(cfg.mode.name()).to_string()));
    }
    let mut graph = g.clone();
    let mut passes = equalization;
    if cfg.mode != QuantMode::None {
        passes.extend(
            qlite_quant::quantize_pipeline(cfg.clone(), table.clone())
                .run(&mut graph)
                .map_err(|e| Error::Pipeline(e.to_string()))?,
        );
    }
    let budget = match (opts.min_sqnr, opts.max_accuracy_drop) {
        (Some(_), Some(_)) => return Err(Error::Usage("give --min-sqnr or --max-accuracy-drop, not both".into())),
        (Some(db), None) => Some(mixed::Budget::MinSqnr(db)),
        (None, Some(points)) => {
            let (Some(_), Some(l)) = (&opts.validation, &opts.labels) else {
                return Err(Error::Usage(
                    "--max-accuracy-drop measures top-1 accuracy: give --validation X.npy and --labels Y.npy".into(),
                ));
            };
            Some(mixed::Budget::MaxAccuracyDrop { points, labels: read_labels(l)? })
        }
        (None, None) => None,
    };
    let mixed = match budget {
        None => None,
        Some(_) if cfg.mode == QuantMode::None => {
            return Err(Error::Usage(
                "mixed precision (--min-sqnr, --max-accuracy-drop) needs a quantization mode (--quantize int8, int16x8, dynamic or float16)"
                    .into(),
            ));
        }
        Some(budget) => {
            let (owned, measured_on) = match &opts.validation {
                Some(p) => (Some(quantize::open_samples(g, p, "validation")?), "validation set"),
                None => (None, "calibration set"),
            };
            let measure = owned.as_ref().or(set.as_ref()).ok_or_else(|| {
                Error::Usage("--min-sqnr measures the model on data: give --calibration or --validation".into())
            })?;
            let (q, decision) = mixed::search(g, cfg, &table, measure, measured_on, &budget, progress)?;
            graph = q;
            Some(decision)
        }
    };
    if opts.bias_correction {
        let set = set.as_ref().filter(|_| cfg.mode == QuantMode::Int8).ok_or_else(|| {
            Error::Usage(
                "--bias-correction measures int8 layers on data: give --quantize int8 and --calibration".into(),
            )
        })?;
        quantize::bias_correction(g, &mut graph, set, BIAS_CORRECTION_ROUNDS)?;
    }
    // The report runs both models over the calibration set: only when asked for.
    let asked = opts.report.as_ref().or(opts.report_node_data.as_ref());
    let report = match (&set, asked) {
        (Some(set), Some(_)) if cfg.mode != QuantMode::None => {
            Some(quantize::error_report_with(g, &graph, set, cfg.mode.name(), true, opts.calibration_run.threads)?)
        }
        _ => None,
    };
    match (asked, &report) {
        (Some(p), None) => {
            return Err(Error::Usage(format!(
                "{}: the error report needs --calibration data and a quantization mode",
                p.display()
            )));
        }
        (_, Some(r)) => {
            let equalized =
                passes.iter().filter(|p| p.pass == "cross-layer-equalization").map(|p| p.rewrites).sum::<usize>();
            let context = ReportContext { mixed: mixed.as_ref(), table: table.as_ref(), equalized };
            write_reports(opts, r, &graph, &context)?
        }
        _ => {}
    }
    Ok(Quantized { graph, passes, calibration, table, report, mixed })
}

/// Rounds of bias correction (each measures the model the previous one corrected).
const BIAS_CORRECTION_ROUNDS: usize = 1;

/// Write the error report where `--report` (JSON, or one HTML page for a `.html` path) and
/// `--report-node-data` (Model Explorer's node data) ask.
/// What the HTML report says was decided besides the per-layer numbers.
struct ReportContext<'a> {
    mixed: Option<&'a mixed::MixedPrecision>,
    table: Option<&'a CalibrationTable>,
    /// Layer pairs cross-layer equalization balanced (rewrites of its pass).
    equalized: usize,
}

fn write_reports(
    opts: &ConvertOptions,
    r: &quantize::ErrorReport,
    quantized: &Graph,
    context: &ReportContext<'_>,
) -> Result<(), Error> {
    let mixed = context.mixed;
    let write = |p: &PathBuf, text: String| {
        io::write_atomic(p, text.as_bytes()).map_err(|source| Error::Io { path: p.clone(), source })
    };
    if let Some(p) = &opts.report {
        let html = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
        let text = if html {
            let model = opts.model_name.clone().unwrap_or_else(|| quantized.name().to_string());
            let mut decisions: Vec<String> = Vec::new();
            if let Some(m) = mixed {
                decisions.push(format!("Mixed precision, {}.", mixed::summary(m)));
                for k in &m.kept {
                    decisions.push(format!(
                        "{} by mixed precision: {} {} (quantized alone: {:.2} dB output SQNR; model {:.2} dB after; +{} bytes).",
                        if k.precision == "int16" { "Promoted to int16 activations" } else { "Kept in float" },
                        k.op,
                        k.tensor,
                        k.alone_db,
                        k.after_db,
                        k.extra_bytes
                    ));
                }
            }
            for e in &opts.quant.exclude {
                decisions.push(format!("Kept in float by --exclude {}.", e.pattern));
            }
            for e in &opts.quant.int16 {
                decisions.push(format!("Promoted to int16 activations by --int16 {}.", e.pattern));
            }
            if let Some(t) = context.table {
                decisions.push(format!("Calibration ranges: {} over {} samples.", t.method, t.samples));
            }
            if opts.quant.equalize {
                decisions.push(format!(
                    "Cross-layer equalization balanced {} rewrite(s) of consecutive layers before calibration.",
                    context.equalized
                ));
            }
            if opts.bias_correction {
                decisions
                    .push("Bias correction: each conv / FC layer's mean output error subtracted from its bias.".into());
            }
            report::render_html(r, &model, &decisions)
        } else {
            serde_json::to_string_pretty(r).map_err(|e| Error::Usage(e.to_string()))?
        };
        write(p, text)?;
    }
    if let Some(p) = &opts.report_node_data {
        // The graph as the .tflite writer names it (Model Explorer's graph id).
        let graph = if quantized.name().is_empty() { "main" } else { quantized.name() };
        write(p, report::node_data_json(r, graph))?;
    }
    Ok(())
}

/// Run a graph once.
pub fn run(g: &Graph, inputs: Vec<Array>) -> Result<Vec<Array>, Error> {
    Ok(Interpreter::new(g)?.run(inputs)?)
}

/// Read an .npy file.
pub fn read_npy_file(path: &Path) -> Result<Array, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    npy::read_npy(&bytes).map_err(|source| Error::Npy { path: path.to_path_buf(), source })
}

/// Class labels from an .npy file of integers (int64, int32 or uint8).
pub fn read_labels(path: &Path) -> Result<Vec<i64>, Error> {
    match read_npy_file(path)?.into_data() {
        Data::I64(v) => Ok(v),
        Data::I32(v) => Ok(v.into_iter().map(i64::from).collect()),
        Data::U8(v) => Ok(v.into_iter().map(i64::from).collect()),
        other => Err(Error::Usage(format!("{}: labels must be integers, got {}", path.display(), other.dtype()))),
    }
}

/// Write an .npy file atomically.
pub fn write_npy_file(path: &Path, a: &Array) -> Result<(), Error> {
    io::write_atomic(path, &npy::write_npy(a)).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// Run a graph on inputs that may hold a batch: when an input is declared with batch 1 and
/// the array has N rows, the graph runs N times and the outputs are stacked along axis 0. An
/// array missing the batch dimension is treated as one sample.
pub fn run_batched(g: &Graph, inputs: Vec<Array>) -> Result<Vec<Array>, Error> {
    run_batched_with(g, inputs, Kernels::Reference, 1)
}

/// [`run_batched`] with a choice of integer kernels and threads (the same bytes either way).
pub fn run_batched_with(g: &Graph, inputs: Vec<Array>, kernels: Kernels, threads: usize) -> Result<Vec<Array>, Error> {
    use qlite_ir::Dim;
    let interp = Interpreter::new(g)?.kernels(kernels).threads(threads);
    let mut rows: Option<usize> = None;
    let mut prepared = Vec::with_capacity(inputs.len());
    for (i, a) in inputs.into_iter().enumerate() {
        let t = g
            .inputs()
            .get(i)
            .and_then(|t| g.tensor(*t))
            .ok_or_else(|| Error::Usage(format!("model has no input {i}")))?;
        let d = t.shape.dims();
        let fits = |decl: &[Dim], s: &[usize]| {
            decl.len() == s.len() && decl.iter().zip(s).all(|(d, &n)| d.fixed().is_none_or(|f| f == n))
        };
        let name = g.input_name(i).unwrap_or("").to_string();
        let (a, n) = if fits(d, a.shape()) && d.first() != Some(&Dim::Fixed(1)) {
            (a, None)
        } else if d.first() == Some(&Dim::Fixed(1)) && a.shape().len() == d.len() && fits(&d[1..], &a.shape()[1..]) {
            let n = a.shape()[0];
            (a, Some(n))
        } else if d.first() == Some(&Dim::Fixed(1)) && fits(&d[1..], a.shape()) {
            let mut s = vec![1];
            s.extend_from_slice(a.shape());
            (a.reshaped(s).map_err(|e| Error::Usage(e.to_string()))?, Some(1))
        } else {
            return Err(Error::Usage(format!(
                "input {i} ({name:?}) expects {}{} (or a batch of rows of it), got {}{:?}",
                t.dtype,
                t.shape,
                a.dtype(),
                a.shape()
            )));
        };
        if let Some(n) = n {
            if rows.is_some_and(|r| r != n) {
                return Err(Error::Usage(format!(
                    "input {i} ({name:?}) has {n} rows but an earlier input has {}",
                    rows.unwrap_or(0)
                )));
            }
            rows = Some(n);
        }
        prepared.push(a);
    }
    match rows {
        None => Ok(interp.run(prepared)?),
        Some(n) => {
            let mut per_output: Vec<Vec<Array>> = vec![Vec::with_capacity(n); g.outputs().len()];
            for r in 0..n {
                let row: Vec<Array> = prepared
                    .iter()
                    .map(|a| a.row(r).ok_or_else(|| Error::Usage("empty batch".into())))
                    .collect::<Result<_, _>>()?;
                for (k, y) in interp.run(row)?.into_iter().enumerate() {
                    per_output[k].push(y);
                }
            }
            per_output
                .iter()
                .map(|parts| Array::stack_rows(parts).ok_or_else(|| Error::Usage("outputs cannot be stacked".into())))
                .collect()
        }
    }
}

/// Float32 inputs given to a model that takes int8 / uint8 / int16 are quantized with the
/// input tensor's scale and zero point, rounding exactly like TFLite's QUANTIZE. Returns the
/// inputs and one note per converted input (callers print them).
pub fn quantize_inputs(g: &Graph, inputs: Vec<Array>) -> Result<(Vec<Array>, Vec<String>), Error> {
    let mut notes = Vec::new();
    let mut out = Vec::with_capacity(inputs.len());
    for (i, a) in inputs.into_iter().enumerate() {
        let t = g.inputs().get(i).and_then(|t| g.tensor(*t));
        match t {
            Some(t) if t.dtype.is_quantizable_int() && a.dtype() == qlite_ir::DType::F32 => {
                let q = t.quant.as_ref().ok_or_else(|| {
                    Error::Usage(format!(
                        "input {i} ({:?}) is {} without quantization parameters: give {} data",
                        g.input_name(i).unwrap_or(""),
                        t.dtype,
                        t.dtype
                    ))
                })?;
                let data = qlite_interp::kernels::quantize(&a, None, t.dtype, q).map_err(Error::Usage)?;
                notes.push(format!(
                    "input {i} ({:?}): float32 values quantized to {} with scale {} and zero point {}",
                    g.input_name(i).unwrap_or(""),
                    t.dtype,
                    q.scale(),
                    q.zero_point()
                ));
                out.push(Array::new(a.shape().to_vec(), data).map_err(|e| Error::Usage(e.to_string()))?);
            }
            _ => out.push(a),
        }
    }
    Ok((out, notes))
}

/// Dequantize integer outputs with their tensor's parameters (for `--dequantize`).
pub fn dequantize_outputs(g: &Graph, outputs: Vec<Array>) -> Result<Vec<Array>, Error> {
    outputs
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let q = g.outputs().get(i).and_then(|t| g.tensor(*t)).and_then(|t| t.quant.as_ref());
            match (a.dtype(), q) {
                (qlite_ir::DType::F32, _) | (_, None) => Ok(a),
                (_, Some(q)) => {
                    let v = qlite_interp::kernels::dequantize(&a, Some(q)).map_err(Error::Usage)?;
                    Array::f32(a.shape().to_vec(), v).map_err(|e| Error::Usage(e.to_string()))
                }
            }
        })
        .collect()
}
