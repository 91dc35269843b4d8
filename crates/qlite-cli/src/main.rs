//! The `qlite` command-line tool. Parsing and printing only: the work is in the `qlite` crate.

/// `print!` that ends the process quietly when stdout is a closed pipe (`qlite inspect | head`)
/// instead of panicking as std's does; any other write error is one line on stderr, exit 1.
macro_rules! print {
    ($($t:tt)*) => { $crate::write_stdout(format_args!($($t)*)) };
}

/// `println!` with [`print!`]'s handling of a closed stdout.
macro_rules! println {
    () => { $crate::write_stdout(format_args!("\n")) };
    ($($t:tt)*) => { $crate::write_stdout(format_args!("{}\n", format_args!($($t)*))) };
}

fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

mod demo;

/// The system allocator, counting allocation calls so `qlite bench` can report how many an
/// inference makes (a relaxed atomic increment per call).
struct CountingAlloc;

static ALLOCATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter changes.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> usize {
    ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

use clap::{Parser, Subcommand};
use qlite::{Array, CalibrationMethod, ConvertOptions, Data, IoType, QuantConfig, QuantMode, Registry};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "qlite", version, about = "Convert, quantize, inspect and run neural-network models")]
struct Cli {
    /// Print elapsed time and peak memory to stderr when done (for benchmarks).
    #[arg(long, global = true)]
    stats: bool,
    /// Refuse models with a tensor larger than this many bytes.
    #[arg(long, global = true, value_name = "BYTES")]
    max_tensor_bytes: Option<u64>,
    /// Refuse models whose constants add up to more than this many bytes.
    #[arg(long, global = true, value_name = "BYTES")]
    max_total_bytes: Option<u64>,
    /// Refuse models with more nodes than this.
    #[arg(long, global = true, value_name = "N")]
    max_nodes: Option<usize>,
    /// Refuse tensors of higher rank than this.
    #[arg(long, global = true, value_name = "N")]
    max_rank: Option<usize>,
    /// Refuse tensors with more elements than this.
    #[arg(long, global = true, value_name = "N")]
    max_elements: Option<u64>,
    #[command(subcommand)]
    cmd: Cmd,
}

impl Cli {
    /// The default resource limits with the command line's overrides.
    fn limits(&self) -> qlite::ir::Limits {
        let mut l = qlite::ir::Limits::default();
        if let Some(v) = self.max_tensor_bytes {
            l.max_tensor_bytes = v;
        }
        if let Some(v) = self.max_total_bytes {
            l.max_total_bytes = v;
        }
        if let Some(v) = self.max_nodes {
            l.max_nodes = v;
        }
        if let Some(v) = self.max_rank {
            l.max_rank = v;
        }
        if let Some(v) = self.max_elements {
            l.max_elements = v;
        }
        l
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum QuantArg {
    None,
    Float16,
    Dynamic,
    Int8,
    /// int16 activations, int8 weights (TFLite's 16x8 mode).
    Int16x8,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum MethodArg {
    Minmax,
    Percentile,
    Mse,
    /// Per tensor, the method that gives the lowest output error (a search: slower).
    Auto,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum IoArg {
    Float32,
    Int8,
    Uint8,
    /// With --quantize int16x8.
    Int16,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum IoLayout {
    /// Keep the source format's layout (NCHW for ONNX).
    Source,
    /// NHWC rank-4 inputs and outputs (what TFLite users feed).
    Nhwc,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Convert a model to another file (format chosen by the output extension).
    Convert {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// The TensorFlow SavedModel signature to convert (default: serving_default).
        #[arg(long, value_name = "NAME")]
        signature: Option<String>,
        /// Comma-separated passes to run instead of the default pipeline (see `qlite passes`).
        #[arg(long, value_delimiter = ',')]
        passes: Option<Vec<String>>,
        /// Print the IR to stderr after every pass that changed it.
        #[arg(long)]
        print_ir_after_change: bool,
        /// Stop rewriting after N rewrites (to bisect a bad rewrite).
        #[arg(long, value_name = "N")]
        stop_after: Option<usize>,
        /// Print how long each pass took.
        #[arg(long)]
        time_passes: bool,
        /// Post-training quantization mode.
        #[arg(long, value_enum, default_value_t = QuantArg::None)]
        quantize: QuantArg,
        /// Calibration data: an .npy of N samples, or a directory of NAME.npy, one per input.
        #[arg(long, value_name = "X.npy|DIR")]
        calibration: Option<PathBuf>,
        /// How calibration turns observed values into ranges.
        #[arg(long, value_enum, default_value_t = MethodArg::Minmax)]
        calibration_method: MethodArg,
        /// Percentile kept by `--calibration-method percentile`.
        #[arg(long, default_value_t = 99.99)]
        percentile: f64,
        /// Kernels calibration runs the float model on: `fast` (the default: vectorized, within
        /// 1e-5 of the reference, so a range can move by as much from one CPU to another) or
        /// `reference` (the same table on every CPU).
        #[arg(long, default_value = "fast")]
        calibration_kernels: qlite::Kernels,
        /// Threads calibration spreads its samples over (default: every core). The table is
        /// the same for any number.
        #[arg(long)]
        threads: Option<usize>,
        /// Reuse a saved calibration table instead of calibrating.
        #[arg(long, value_name = "FILE")]
        calibration_table: Option<PathBuf>,
        /// Save the calibration table (JSON).
        #[arg(long, value_name = "FILE")]
        save_calibration: Option<PathBuf>,
        /// Full-integer modes: type of the model's inputs and outputs (int8 / uint8 with --quantize int8, int16 with int16x8).
        #[arg(long, value_enum, default_value_t = IoArg::Float32)]
        io_type: IoArg,
        /// Keep ops whose name or output tensor name matches (exactly or as a regex) in float.
        #[arg(long, value_name = "NAME_OR_REGEX")]
        exclude: Vec<String>,
        /// --quantize int8: run ops whose name or output tensor name matches on int16
        /// activations (16x8 kernels, int8 weights), requantized from and to their int8
        /// neighbours; ops LiteRT has no int16 kernel for stay int8.
        #[arg(long, value_name = "NAME_OR_REGEX")]
        int16: Vec<String>,
        /// Cross-layer equalization before calibration: consecutive conv / depthwise / FC
        /// layers joined by a ReLU or nothing get balanced per-channel weight ranges (the float
        /// function is unchanged).
        #[arg(long)]
        equalize: bool,
        /// dynamic mode: quantize each FULLY_CONNECTED input row asymmetrically (the default).
        #[arg(long, conflicts_with = "symmetric_inputs")]
        asymmetric_inputs: bool,
        /// dynamic mode: quantize FULLY_CONNECTED inputs symmetrically (qlite's default before;
        /// asymmetric inputs measure 3-5 dB better).
        #[arg(long)]
        symmetric_inputs: bool,
        /// Write the per-layer error report; needs --calibration. R.json: the numbers;
        /// R.html: one self-contained page (SQNR chart worst first, value histograms of the
        /// worst layers; no script, no network).
        #[arg(long, value_name = "R.json|R.html")]
        report: Option<PathBuf>,
        /// Write the per-layer SQNR as Model Explorer node data, to overlay on the graph in
        /// that tool; needs --calibration.
        #[arg(long, value_name = "F.json")]
        report_node_data: Option<PathBuf>,
        /// Mixed precision: keep the layers that add the most error in float, one by one,
        /// until the output SQNR against the float model reaches DB (measured on --validation,
        /// else on --calibration).
        #[arg(long, value_name = "DB", conflicts_with = "max_accuracy_drop")]
        min_sqnr: Option<f64>,
        /// Mixed precision: keep the most sensitive layers in float until the top-1 accuracy
        /// lost against the float model on --validation (with --labels) is at most PCT points.
        #[arg(long, value_name = "PCT", requires_all = ["validation", "labels"])]
        max_accuracy_drop: Option<f64>,
        /// One integer class label per --validation sample (.npy).
        #[arg(long, value_name = "Y.npy")]
        labels: Option<PathBuf>,
        /// int8: subtract each conv / FC layer's mean output error over the calibration set
        /// from its bias.
        #[arg(long)]
        bias_correction: bool,
        /// Samples to measure --min-sqnr on (.npy, or a directory of NAME.npy).
        #[arg(long, value_name = "X.npy|DIR")]
        validation: Option<PathBuf>,
        /// Architecture sidecar (TOML) that builds a model from a safetensors weights file.
        #[arg(long, value_name = "model.toml")]
        arch: Option<PathBuf>,
        /// Bind these safetensors weights by name onto the model's constants.
        #[arg(long, value_name = "W.safetensors")]
        weights: Option<PathBuf>,
        /// Override an input's shape, e.g. a symbolic batch: NAME=1,3,8,8; `?` keeps a dimension known only at run time: NAME=1,3,48,? (repeatable).
        #[arg(long, value_name = "NAME=D,D,...")]
        input_shape: Vec<String>,
        /// Layout of rank-4 inputs and outputs of an NCHW (ONNX) model.
        #[arg(long, value_enum, default_value = "source")]
        io_layout: IoLayout,
        /// Check the output against a runtime (litert, tflm, xnnpack) before writing it; any
        /// unsupported operator fails the conversion and nothing is written.
        #[arg(long, value_name = "RUNTIME")]
        target: Option<String>,
    },
    /// Convert a big safetensors checkpoint (file or sharded directory) to f16, bf16 or int8,
    /// streamed with bounded memory.
    Weights {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, value_parser = ["f16", "bf16", "int8"])]
        to: String,
        /// Never convert tensors whose name matches this regex.
        #[arg(long, value_name = "REGEX")]
        keep: Option<String>,
        /// Convert only tensors whose name matches this regex (default: float tensors of rank
        /// ≥ 2 that are not norms or biases).
        #[arg(long, value_name = "REGEX")]
        only: Option<String>,
    },
    /// Top-1 accuracy of a model on labelled data, optionally against a reference model.
    Eval {
        model: PathBuf,
        /// Samples (.npy, float32; quantized automatically for int8 / uint8 models).
        #[arg(long)]
        data: PathBuf,
        /// Class labels (.npy, integer).
        #[arg(long)]
        labels: PathBuf,
        /// Float model to compare top-1 and outputs with.
        #[arg(long)]
        reference: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Describe a model: signature, ops with versions, tensors, sizes.
    Inspect {
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print the IR text instead of the summary.
        #[arg(long, conflicts_with = "json")]
        ir: bool,
    },
    /// Run a model on .npy inputs (one --input per model input, in order).
    Run {
        model: PathBuf,
        #[arg(short, long, required = true)]
        input: Vec<PathBuf>,
        /// Where to write each output (.npy), in order. Without it, a summary is printed.
        #[arg(short, long)]
        output: Vec<PathBuf>,
        /// Write every intermediate tensor of a single-sample run to DIR/<tensor index>.npy.
        #[arg(long, value_name = "DIR")]
        dump: Option<PathBuf>,
        /// Write integer outputs as float32, dequantized with their scale and zero point.
        #[arg(long)]
        dequantize: bool,
        /// Kernels: `fast` (packed weights, vectorized; float layers as SGEMM) or `reference`
        /// (the plain loops the fast ones are checked against, bit-exact with LiteRT's reference
        /// kernels). Integer outputs are the same bytes; float ones agree within 1e-5.
        #[arg(long, default_value = "fast")]
        kernels: qlite::Kernels,
        /// The TensorFlow SavedModel signature to run (default: serving_default).
        #[arg(long, value_name = "NAME")]
        signature: Option<String>,
        /// Threads one inference splits its large layers over (convolutions, depthwise,
        /// element-wise ops; default: every core). The output is the same for any number.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Read, write and re-read each model; fail with a diff if anything changed.
    Roundtrip {
        #[arg(required = true)]
        models: Vec<PathBuf>,
        /// Seed of the random inputs both versions are run on.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Time single inferences of a model in qlite's interpreter.
    Bench {
        model: PathBuf,
        /// Input (.npy); its first row is used. Default: seeded random input.
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Timed single-sample inferences (after 10 warm-up runs).
        #[arg(long, alias = "runs", default_value_t = 100)]
        iterations: usize,
        /// Kernels: fast or reference (see `qlite run --help`).
        #[arg(long, default_value = "fast")]
        kernels: qlite::Kernels,
        /// Print one JSON object (median_us, min_us, mean_us, iterations, kernels, threads).
        #[arg(long)]
        json: bool,
        /// Threads one inference splits its large layers over (default 1: benchmarks compare
        /// single-thread latency unless asked).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Also time every node (mean per node over a second set of runs).
        #[arg(long)]
        profile: bool,
    },
    /// Compare two models (any formats qlite reads): signature, ops added / removed / changed
    /// (matched by output tensor name), quantization parameters, weights and, with --data,
    /// every layer's output. Exit 0 when equivalent, 1 when different, 2 on error.
    Diff {
        a: PathBuf,
        b: PathBuf,
        /// Samples (.npy, float32; a directory of NAME.npy for several inputs) to run both
        /// models on and compare layer by layer (integer inputs are quantized for each model).
        #[arg(long, value_name = "X.npy|DIR")]
        data: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Rows shown per list in the text output.
        #[arg(long, default_value_t = 20, value_name = "N")]
        max_rows: usize,
    },
    /// Check every operator of a model against what a runtime supports: litert (LiteRT's
    /// builtin kernels, with op versions), tflm (TensorFlow Lite Micro) or xnnpack (LiteRT's
    /// XNNPACK delegate). Exit 0 when all are supported, 1 when any is not, 2 on error.
    Check {
        /// One or more models (any format qlite reads; .tflite files are checked as they are).
        #[arg(required = true)]
        model: Vec<PathBuf>,
        #[arg(long, value_name = "RUNTIME")]
        target: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the passes `convert --passes` accepts.
    Passes,
    /// The bundled demo: digits models converted and evaluated.
    Demo {
        /// Keep the converted models in this directory.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.cmd, Cmd::Check { .. }) {
        return match check_cmd(cli) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(msg) => {
                eprintln!("error: {msg}");
                ExitCode::from(2)
            }
        };
    }
    if matches!(cli.cmd, Cmd::Diff { .. }) {
        // diff(1)'s convention: 0 equivalent, 1 different, 2 trouble.
        return match diff_cmd(cli) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(msg) => {
                eprintln!("error: {msg}");
                ExitCode::from(2)
            }
        };
    }
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// `qlite check`: whether every operator is supported.
fn check_cmd(cli: Cli) -> Result<bool, String> {
    let reg = Registry::default().with_limits(cli.limits());
    let Cmd::Check { model, target, json } = cli.cmd else { return Err("not a check".into()) };
    let target: qlite::check::Target = target.parse()?;
    let mut reports = Vec::with_capacity(model.len());
    for m in &model {
        reports.push(qlite::check::check_file(&reg, m, target).map_err(|e| e.to_string())?);
    }
    if json {
        // One object for one model, an array for several.
        let text = match &reports[..] {
            [one] => serde_json::to_string_pretty(one),
            all => serde_json::to_string_pretty(all),
        };
        println!("{}", text.map_err(|e| e.to_string())?);
    } else {
        for (m, r) in model.iter().zip(&reports) {
            if model.len() > 1 {
                println!("{}:", m.display());
            }
            print!("{}", qlite::check::render_text(r));
        }
    }
    Ok(reports.iter().all(|r| r.ok()))
}

/// `qlite diff`: whether the models are equivalent.
fn diff_cmd(cli: Cli) -> Result<bool, String> {
    let reg = Registry::default().with_limits(cli.limits());
    let Cmd::Diff { a, b, data, json, max_rows } = cli.cmd else { return Err("not a diff".into()) };
    let ga = qlite::load(&reg, &a).map_err(|e| e.to_string())?;
    let gb = qlite::load(&reg, &b).map_err(|e| e.to_string())?;
    let set = match &data {
        Some(p) => {
            qlite::diff::check_same_inputs(&ga, &gb).map_err(|e| e.to_string())?;
            Some(qlite::quantize::open_samples(&ga, p, "comparison").map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let names = (a.display().to_string(), b.display().to_string());
    let d = qlite::diff::diff(&ga, &gb, (&names.0, &names.1), set.as_ref()).map_err(|e| e.to_string())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&d).map_err(|e| e.to_string())?);
    } else {
        print!("{}", qlite::diff::render_text(&d, max_rows));
    }
    Ok(d.equivalent)
}

fn real_main(cli: Cli) -> Result<(), String> {
    let _stats = Stats { on: cli.stats, start: std::time::Instant::now() };
    let reg = Registry::default().with_limits(cli.limits());
    match cli.cmd {
        Cmd::Convert {
            input,
            output,
            signature,
            passes,
            print_ir_after_change,
            stop_after,
            time_passes,
            quantize,
            calibration,
            calibration_method,
            percentile,
            calibration_table,
            save_calibration,
            io_type,
            exclude,
            int16,
            equalize,
            asymmetric_inputs,
            symmetric_inputs,
            report,
            report_node_data,
            min_sqnr,
            max_accuracy_drop,
            labels,
            bias_correction,
            validation,
            arch,
            weights,
            input_shape,
            io_layout,
            target,
            calibration_kernels,
            threads,
        } => {
            let mut calibration_run =
                qlite::quantize::CalibrationRun { kernels: calibration_kernels, ..Default::default() };
            if let Some(t) = threads {
                calibration_run.threads = t.max(1);
            }
            let mut quant = QuantConfig::new(match quantize {
                QuantArg::None => QuantMode::None,
                QuantArg::Float16 => QuantMode::Float16,
                QuantArg::Dynamic => QuantMode::Dynamic,
                QuantArg::Int8 => QuantMode::Int8,
                QuantArg::Int16x8 => QuantMode::Int16x8,
            });
            quant.method = match calibration_method {
                MethodArg::Minmax => CalibrationMethod::MinMax,
                MethodArg::Percentile => CalibrationMethod::Percentile { percentile },
                MethodArg::Mse => CalibrationMethod::Mse,
                MethodArg::Auto => CalibrationMethod::Auto,
            };
            quant.io_type = match io_type {
                IoArg::Float32 => IoType::Float32,
                IoArg::Int8 => IoType::Int8,
                IoArg::Uint8 => IoType::Uint8,
                IoArg::Int16 => IoType::Int16,
            };
            quant.exclude = exclude.iter().map(|e| qlite::quant::Exclude::new(e)).collect();
            quant.int16 = int16.iter().map(|e| qlite::quant::Exclude::new(e)).collect();
            quant.equalize = equalize;
            quant.asymmetric_inputs = asymmetric_inputs || !symmetric_inputs;
            let opts = ConvertOptions {
                passes,
                print_ir_after_change,
                stop_after,
                quant,
                calibration,
                calibration_table,
                save_calibration,
                report,
                report_node_data,
                model_name: input.file_name().map(|n| n.to_string_lossy().into_owned()),
                min_sqnr,
                max_accuracy_drop,
                labels,
                bias_correction,
                validation,
                arch,
                weights,
                input_shapes: parse_input_shapes(&input_shape)?,
                nhwc_io: io_layout == IoLayout::Nhwc,
                signature,
                target: target.map(|t| t.parse()).transpose()?,
                calibration_run,
            };
            // Calibration, then (mixed precision) the sensitivity of each layer.
            let mut bar = Progress::new("quantizing");
            let r = qlite::convert_with_progress(&reg, &input, &output, &opts, &mut |d, t| bar.update(d, t))
                .map_err(|e| e.to_string())?;
            bar.finish();
            if let Some(rep) = &r.error_report {
                print!("{}", qlite::quantize::render_report(rep, 10));
            }
            if let Some(m) = &r.mixed {
                print!("{}", qlite::mixed::render_text(m));
            }
            if !r.calibration.is_zero() {
                println!("calibration: {:.2} ms", r.calibration.as_secs_f64() * 1e3);
            }
            if time_passes {
                for p in &r.passes {
                    let what = match (p.rewrites, p.changed) {
                        (0, false) => String::new(),
                        (0, true) => "  (unreferenced tensors dropped)".into(),
                        (1, _) => "  (1 rewrite)".into(),
                        (n, _) => format!("  ({n} rewrites)"),
                    };
                    eprintln!("pass {:<24} {:>9.3} ms{what}", p.pass, p.elapsed.as_secs_f64() * 1e3);
                }
            }
            println!(
                "{} -> {}: {} ops, {} -> {} bytes in {:.2} ms",
                input.display(),
                output.display(),
                r.nodes,
                r.input_bytes,
                r.output_bytes,
                r.elapsed.as_secs_f64() * 1e3
            );
            Ok(())
        }
        Cmd::Inspect { model, json, ir } => {
            if ir {
                let g = qlite::load(&reg, &model).map_err(|e| e.to_string())?;
                print!("{}", qlite::ir::print_graph(&g));
                return Ok(());
            }
            let s = qlite::inspect::inspect_file(&reg, &model).map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?);
            } else {
                print!("{}", qlite::inspect::render_text(&s));
            }
            Ok(())
        }
        Cmd::Run { model, input, output, dump, dequantize, kernels, signature, threads } => {
            let run = RunOptions {
                dump: dump.as_deref(),
                dequantize,
                kernels,
                signature: signature.as_deref(),
                threads: threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            };
            run_cmd(&reg, &model, &input, &output, &run)
        }
        Cmd::Roundtrip { models, seed } => {
            let mut failed = 0;
            for m in &models {
                let r = qlite::roundtrip::roundtrip_file(&reg, m, seed).map_err(|e| e.to_string())?;
                if r.differences.is_empty() && r.stable_bytes {
                    match &r.not_run {
                        Some(why) => {
                            println!("ok   {} (structure and bytes; outputs not compared: {why})", m.display())
                        }
                        None => println!("ok   {}", m.display()),
                    }
                } else {
                    failed += 1;
                    println!("FAIL {}", m.display());
                    for d in &r.differences {
                        println!("{d}");
                    }
                    if !r.stable_bytes {
                        println!("  writing the re-read model gave different bytes");
                    }
                }
            }
            if failed > 0 {
                return Err(format!("{failed} of {} models changed in the round trip", models.len()));
            }
            Ok(())
        }
        Cmd::Eval { model, data, labels, reference, json } => {
            let g = qlite::load(&reg, &model).map_err(|e| e.to_string())?;
            let x = qlite::read_npy_file(&data).map_err(|e| e.to_string())?;
            let y = qlite::read_labels(&labels).map_err(|e| e.to_string())?;
            let r = match &reference {
                Some(p) => Some(qlite::load(&reg, p).map_err(|e| e.to_string())?),
                None => None,
            };
            let e = qlite::quantize::evaluate(&g, &x, &y, r.as_ref()).map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&e).map_err(|e| e.to_string())?);
            } else {
                print!(
                    "{}: top-1 {:.2}% on {} samples, mean latency {:.1} µs",
                    model.display(),
                    100.0 * e.top1,
                    e.samples,
                    e.mean_latency_us
                );
                if let (Some(a), Some(s)) = (e.agreement, e.sqnr_db) {
                    print!(", top-1 agreement with the reference {:.2}%, output SQNR {:.2} dB", 100.0 * a, s);
                }
                println!();
            }
            Ok(())
        }
        Cmd::Weights { input, output, to, keep, only } => {
            let target = qlite::st::convert::Target::parse(&to).ok_or_else(|| format!("unknown target {to}"))?;
            let re = |s: Option<String>, flag: &str| -> Result<Option<regex::Regex>, String> {
                s.map(|s| regex::Regex::new(&s).map_err(|e| format!("--{flag}: {e}"))).transpose()
            };
            let select = qlite::st::convert::Select { keep: re(keep, "keep")?, only: re(only, "only")? };
            let mut bar = Progress::new("converting");
            let t = std::time::Instant::now();
            let r = qlite::st::convert::convert(&input, &output, target, &select, &mut |d, total| {
                bar.update((d >> 20) as usize, (total >> 20).max(1) as usize)
            })
            .map_err(|e| format!("{}: {e}", input.display()))?;
            bar.finish();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{} -> {}: {} files, {} of {} tensors converted, {:.1} MB -> {:.1} MB in {:.2} s ({:.0} MB/s read)",
                input.display(),
                output.display(),
                r.files,
                r.converted,
                r.tensors,
                r.bytes_in as f64 / 1e6,
                r.bytes_out as f64 / 1e6,
                secs,
                r.bytes_in as f64 / 1e6 / secs.max(1e-9)
            );
            Ok(())
        }
        Cmd::Bench { model, input, iterations, kernels, json, threads, profile } => {
            let o = BenchOpts { runs: iterations, kernels, json, threads, profile };
            bench_cmd(&reg, &model, input.as_deref(), &o)
        }
        Cmd::Diff { .. } => diff_cmd(cli).map(|_| ()),
        Cmd::Check { .. } => check_cmd(cli).map(|_| ()),
        Cmd::Passes => {
            for p in qlite::pass_table() {
                println!("{:<20} {}", p.name, p.description);
            }
            Ok(())
        }
        Cmd::Demo { out_dir } => demo::run(&reg, out_dir.as_deref()),
    }
}

/// Run a model; a batch of N rows on a batch-1 model runs N times and the outputs are stacked.
/// `qlite run`'s options beyond the model and the files.
struct RunOptions<'a> {
    dump: Option<&'a Path>,
    dequantize: bool,
    kernels: qlite::Kernels,
    signature: Option<&'a str>,
    threads: usize,
}

fn run_cmd(
    reg: &Registry,
    model: &Path,
    inputs: &[PathBuf],
    outputs: &[PathBuf],
    o: &RunOptions<'_>,
) -> Result<(), String> {
    let (dump, dequantize, kernels, signature) = (o.dump, o.dequantize, o.kernels, o.signature);
    let g = match signature {
        None => qlite::load(reg, model),
        Some(sig) => qlite::model_bytes(model)
            .and_then(|b| qlite::load_with(reg, model, b, &Default::default(), false, Some(sig))),
    }
    .map_err(|e| e.to_string())?;
    if inputs.len() != g.inputs().len() {
        return Err(format!(
            "{} has {} inputs but {} --input files were given",
            model.display(),
            g.inputs().len(),
            inputs.len()
        ));
    }
    if !outputs.is_empty() && outputs.len() != g.outputs().len() {
        return Err(format!(
            "{} has {} outputs but {} --output files were given",
            model.display(),
            g.outputs().len(),
            outputs.len()
        ));
    }
    let arrays: Vec<Array> =
        inputs.iter().map(|p| qlite::read_npy_file(p).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    let (arrays, notes) = qlite::quantize_inputs(&g, arrays).map_err(|e| e.to_string())?;
    for n in notes {
        eprintln!("note: {n}");
    }
    let ys = match dump {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let mut obs = DumpObserver { dir: dir.to_path_buf(), error: None };
            let ys = qlite::Interpreter::new(&g)
                .and_then(|i| i.kernels(kernels).threads(o.threads).run_observed(arrays, &mut obs))
                .map_err(|e| e.to_string())?;
            if let Some(e) = obs.error {
                return Err(e);
            }
            ys
        }
        None => qlite::run_batched_with(&g, arrays, kernels, o.threads).map_err(|e| e.to_string())?,
    };
    let ys = if dequantize { qlite::dequantize_outputs(&g, ys).map_err(|e| e.to_string())? } else { ys };
    if outputs.is_empty() {
        for (i, y) in ys.iter().enumerate() {
            println!("output {i} {:?}: {} {:?} {}", g.output_name(i).unwrap_or(""), y.dtype(), y.shape(), preview(y));
        }
    } else {
        for (p, y) in outputs.iter().zip(&ys) {
            qlite::write_npy_file(p, y).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// `NAME=1,3,8,8` → (name, dims); `?` (or -1) keeps a dimension known only at run time.
fn parse_input_shapes(args: &[String]) -> Result<std::collections::BTreeMap<String, Vec<qlite::ir::Dim>>, String> {
    let mut out = std::collections::BTreeMap::new();
    for a in args {
        let (name, dims) = a.rsplit_once('=').ok_or_else(|| format!("--input-shape {a:?}: expected NAME=D,D,..."))?;
        let dims = dims
            .split(',')
            .map(|d| match d.trim() {
                "?" | "-1" => Ok(qlite::ir::Dim::Dynamic),
                d => d.parse::<usize>().map(qlite::ir::Dim::Fixed).map_err(|_| {
                    format!(
                        "--input-shape {a:?}: {d:?} is not a dimension (a size, or ? for one known only at run time)"
                    )
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(name.to_string(), dims);
    }
    Ok(out)
}

/// A one-line progress bar on stderr when it is a terminal; silent when piped.
struct Progress {
    label: &'static str,
    on: bool,
    shown: bool,
}

impl Progress {
    fn new(label: &'static str) -> Self {
        Progress { label, on: std::io::stderr().is_terminal(), shown: false }
    }

    fn update(&mut self, done: usize, total: usize) {
        if !self.on || total == 0 {
            return;
        }
        let width = 30;
        let filled = done * width / total;
        eprint!("\r{} [{}{}] {done}/{total}", self.label, "#".repeat(filled), " ".repeat(width - filled));
        let _ = std::io::stderr().flush();
        self.shown = true;
    }

    fn finish(&mut self) {
        if self.shown {
            eprintln!();
        }
    }
}

/// `qlite bench`: median, mean and best latency of one inference.
fn bench_cmd(reg: &Registry, model: &Path, input: Option<&Path>, o: &BenchOpts) -> Result<(), String> {
    let &BenchOpts { runs, kernels, json, threads, profile } = o;
    let g = qlite::load(reg, model).map_err(|e| e.to_string())?;
    let inputs = match input {
        Some(p) => {
            let a = qlite::read_npy_file(p).map_err(|e| e.to_string())?;
            let row = if a.shape().len() == g.inputs().first().and_then(|t| g.tensor(*t)).map_or(0, |t| t.shape.rank())
            {
                a.row(0).ok_or("empty input")?
            } else {
                a
            };
            qlite::quantize_inputs(&g, vec![row]).map_err(|e| e.to_string())?.0
        }
        None => qlite::roundtrip::random_inputs(&g, 0)?,
    };
    let interp = qlite::Interpreter::new(&g).map_err(|e| e.to_string())?.kernels(kernels).threads(threads);
    // A session: the planned arena is reused, as an application running a model repeatedly
    // would.
    let mut session = interp.session();
    for _ in 0..10 {
        session.run(&inputs).map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(runs.max(1));
    let allocations_before = allocations();
    for _ in 0..runs.max(1) {
        let t = std::time::Instant::now();
        session.run(&inputs).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    // `times` was allocated with its capacity up front: every allocation counted is a run's.
    let allocs_per_run = (allocations() - allocations_before) as f64 / runs.max(1) as f64;
    let arena_bytes = session.arena_bytes();
    let node_profile = if profile {
        let mut timer = NodeTimer::new(&g);
        for _ in 0..runs.max(1) {
            timer.last = std::time::Instant::now();
            session.run_with(&inputs, &mut |node| timer.node_done(node)).map_err(|e| e.to_string())?;
        }
        Some(timer.into_rows(&g, runs.max(1)))
    } else {
        None
    };
    times.sort_by(|a, b| a.total_cmp(b));
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let kernels_name = match kernels {
        qlite::Kernels::Reference => "reference",
        qlite::Kernels::Fast => "fast",
    };
    if json {
        let o = serde_json::json!({
            "model": model.display().to_string(),
            "median_us": times[times.len() / 2],
            "min_us": times[0],
            "mean_us": mean,
            "iterations": times.len(),
            "kernels": kernels_name,
            "fast_nodes": interp.fast_nodes(),
            "threads": threads,
            "arena_bytes": arena_bytes,
            "arena_slots": session.slots(),
            "allocations_per_run": allocs_per_run,
            "isa": interp.current_isa().name(),
            "amx": qlite::isa::Amx::probe().describe(),
        });
        let mut o = o;
        if let Some(rows) = &node_profile {
            o["nodes"] =
                serde_json::json!(rows
                .iter()
                .map(|r| serde_json::json!({"node": r.node, "op": r.op, "output": r.output, "mean_us": r.mean_us}))
                .collect::<Vec<_>>());
        }
        println!("{o}");
        return Ok(());
    }
    println!(
        "{}: median {:.1} µs, mean {:.1} µs, best {:.1} µs over {} runs ({kernels_name} kernels); arena {} in {} slots, {} allocations per run",
        model.display(),
        times[times.len() / 2],
        mean,
        times[0],
        times.len(),
        human_bytes(arena_bytes),
        session.slots(),
        allocs_per_run
    );
    println!("isa: {}; {}", interp.current_isa().name(), qlite::isa::Amx::probe().describe());
    if let Some(rows) = node_profile {
        let total: f64 = rows.iter().map(|r| r.mean_us).sum::<f64>().max(1e-9);
        println!("{:>5}  {:<24} {:<22} {:>10} {:>6}", "node", "op", "output", "mean µs", "%");
        for r in rows {
            println!(
                "{:>5}  {:<24} {:<22} {:>10.2} {:>5.1}%",
                r.node,
                r.op,
                r.output,
                r.mean_us,
                100.0 * r.mean_us / total
            );
        }
    }
    Ok(())
}

fn human_bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

struct BenchOpts {
    runs: usize,
    kernels: qlite::Kernels,
    json: bool,
    threads: usize,
    profile: bool,
}

/// Times every node: the time from the previous node's end to this one's (constant-folded
/// nodes are not run, so they do not appear).
struct NodeTimer {
    last: std::time::Instant,
    total_us: Vec<f64>,
}

struct NodeRow {
    node: usize,
    op: String,
    output: String,
    mean_us: f64,
}

impl NodeTimer {
    fn new(g: &qlite::ir::Graph) -> Self {
        NodeTimer { last: std::time::Instant::now(), total_us: vec![0.0; g.nodes().len()] }
    }

    fn node_done(&mut self, node: usize) {
        let now = std::time::Instant::now();
        if let Some(t) = self.total_us.get_mut(node) {
            *t += (now - self.last).as_secs_f64() * 1e6;
        }
        self.last = now;
    }

    fn into_rows(self, g: &qlite::ir::Graph, runs: usize) -> Vec<NodeRow> {
        g.nodes()
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.total_us[i] > 0.0)
            .map(|(i, n)| NodeRow {
                node: i,
                op: n.op.name().to_string(),
                output: n
                    .outputs
                    .first()
                    .and_then(|o| g.tensor(*o))
                    .map(|t| format!("{}{}", t.dtype, t.shape))
                    .unwrap_or_default(),
                mean_us: self.total_us[i] / runs as f64,
            })
            .collect()
    }
}

/// Writes every value the interpreter computes to DIR/<tensor index>.npy.
struct DumpObserver {
    dir: PathBuf,
    error: Option<String>,
}

impl qlite::Observer for DumpObserver {
    fn observe(&mut self, tensor: qlite::ir::TensorId, value: &Array) {
        let path = self.dir.join(format!("{}.npy", tensor.index()));
        if let Err(e) = qlite::write_npy_file(&path, value)
            && self.error.is_none()
        {
            self.error = Some(e.to_string());
        }
    }
}

/// Prints elapsed time and peak RSS (VmHWM) to stderr when dropped, if enabled.
struct Stats {
    on: bool,
    start: std::time::Instant,
}

impl Drop for Stats {
    fn drop(&mut self) {
        if self.on {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or("0")
                .to_string();
            eprintln!("stats: elapsed_ms={:.3} peak_rss_kib={hwm}", self.start.elapsed().as_secs_f64() * 1e3);
        }
    }
}

fn preview(a: &Array) -> String {
    let vals: Vec<String> = match a.data() {
        Data::F32(v) => v.iter().take(8).map(|x| format!("{x:.6}")).collect(),
        Data::I8(v) => v.iter().take(8).map(|x| x.to_string()).collect(),
        Data::U8(v) => v.iter().take(8).map(|x| x.to_string()).collect(),
        Data::I32(v) => v.iter().take(8).map(|x| x.to_string()).collect(),
        _ => vec![],
    };
    let more = if a.len() > 8 { ", ..." } else { "" };
    format!("[{}{more}]", vals.join(", "))
}
