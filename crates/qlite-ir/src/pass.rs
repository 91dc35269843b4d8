//! Passes and the pass manager.
//!
//! A pass is stateless: `run` looks at the graph through an [`Editor`] and rewrites it with
//! patches (see [`crate::edit`]). The manager runs a list of passes, counts every pass's patches,
//! verifies the graph after each pass that changed it (in tests and debug builds, or when
//! asked), times them, can print the IR after a pass that changed it, can stop after N rewrites
//! over the whole pipeline to bisect a bad rewrite (the editor refuses the patch over the
//! budget), and on failure names the pass and restores the graph from before it.

use crate::edit::{Budget, Editor};
use crate::graph::Graph;
use crate::print::print_graph;
use crate::verify::{VerifyError, verify};
use std::time::{Duration, Instant};

/// What a pass can report as failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PassError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

/// A pass failed, or left the graph invalid. The graph is restored to its state before the pass
/// (unless [`PassManager::restore_on_error`] turned that off).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("pass `{pass}` {what}: {source}")]
pub struct PipelineError {
    pub pass: String,
    pub what: &'static str,
    pub source: PassError,
}

/// A graph-to-graph transformation.
///
/// A pass changes the graph only through the [`Editor`] it is handed, one [`Patch`](crate::edit::Patch)
/// per rewrite; the manager counts the patches, enforces the rewrite budget, verifies and prints.
pub trait Pass: Send + Sync {
    /// Name used in the pass table, reports and `--passes`.
    fn name(&self) -> &'static str;
    /// Rewrite the graph open in `ed`.
    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError>;
}

/// Timing and change record of one pass run.
#[derive(Debug, Clone)]
pub struct PassRecord {
    pub pass: &'static str,
    pub changed: bool,
    /// Patches the pass applied.
    pub rewrites: usize,
    pub elapsed: Duration,
}

/// A list of passes and how to run them.
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    verify_each: bool,
    print_after_change: bool,
    stop_after: Option<usize>,
    /// Called after every pass that changed the graph (the facade gives freed memory back).
    after_change: Option<fn()>,
    /// Keep the graph from before each pass to restore it on failure (default on).
    restore: bool,
}

impl std::fmt::Debug for PassManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassManager").field("passes", &self.pass_names()).finish()
    }
}

impl Default for PassManager {
    fn default() -> Self {
        Self::new()
    }
}

impl PassManager {
    pub fn new() -> Self {
        PassManager {
            passes: Vec::new(),
            verify_each: cfg!(any(test, debug_assertions)),
            print_after_change: false,
            stop_after: None,
            after_change: None,
            restore: true,
        }
    }

    pub fn with(mut self, p: impl Pass + 'static) -> Self {
        self.passes.push(Box::new(p));
        self
    }

    pub fn with_boxed(mut self, p: Box<dyn Pass>) -> Self {
        self.passes.push(p);
        self
    }

    /// Append every pass of another manager.
    pub fn extend(mut self, other: PassManager) -> Self {
        self.passes.extend(other.passes);
        self
    }

    /// Verify after every pass (default on in tests and debug builds).
    pub fn verify_each(mut self, on: bool) -> Self {
        self.verify_each = on;
        self
    }

    /// Print the IR to stderr after every pass that changed it.
    pub fn print_after_change(mut self, on: bool) -> Self {
        self.print_after_change = on;
        self
    }

    /// Whether a failing pass restores the graph from before it (default on). A caller that
    /// drops the graph on failure turns it off: the copy kept for the restore holds on to every
    /// constant a pass replaces until the pass ends (DenseNet-121's folded BatchNorms: 12 MB
    /// at the conversion's peak).
    pub fn restore_on_error(mut self, on: bool) -> Self {
        self.restore = on;
        self
    }

    /// Call `f` after every pass that changed the graph (the facade returns the memory the
    /// pass freed to the system, so a pipeline's garbage does not add up to a peak).
    pub fn after_change(mut self, f: fn()) -> Self {
        self.after_change = Some(f);
        self
    }

    /// Allow at most `n` rewrites in total, then stop rewriting.
    pub fn stop_after(mut self, n: Option<usize>) -> Self {
        self.stop_after = n;
        self
    }

    pub fn pass_names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Run every pass in order.
    pub fn run(&self, g: &mut Graph) -> Result<Vec<PassRecord>, PipelineError> {
        let mut budget = Budget::new(self.stop_after);
        let mut records = Vec::with_capacity(self.passes.len());
        for p in &self.passes {
            let before = self.restore.then(|| g.clone());
            let start = Instant::now();
            let mut ed = Editor::new(g, &mut budget);
            let result = p.run(&mut ed);
            let stats = ed.finish();
            if let Err(source) = result {
                if let Some(b) = before {
                    *g = b;
                }
                return Err(PipelineError { pass: p.name().to_string(), what: "failed", source });
            }
            let changed = stats.patches > 0 || stats.dropped_tensors > 0;
            if changed
                && self.verify_each
                && let Err(e) = verify(g)
            {
                if let Some(b) = before {
                    *g = b;
                }
                return Err(PipelineError {
                    pass: p.name().to_string(),
                    what: "left an invalid graph",
                    source: e.into(),
                });
            }
            let elapsed = start.elapsed();
            if stats.patches > 0 && self.print_after_change {
                let s = if stats.patches == 1 { "" } else { "s" };
                eprintln!("// IR after {} ({} rewrite{s})\n{}", p.name(), stats.patches, print_graph(g));
            }
            records.push(PassRecord { pass: p.name(), changed, rewrites: stats.patches, elapsed });
            if changed {
                drop(before);
                if let Some(f) = self.after_change {
                    f();
                }
            }
        }
        Ok(records)
    }
}

/// An entry of a pass table: name, one-line description, constructor.
#[derive(Debug, Clone, Copy)]
pub struct PassInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub make: fn() -> Box<dyn Pass>,
}

/// Build a manager from pass names looked up in `table`. Unknown names are all reported.
pub fn pipeline_from_names(table: &[PassInfo], names: &[&str]) -> Result<PassManager, String> {
    let mut pm = PassManager::new();
    let mut unknown = Vec::new();
    for n in names {
        match table.iter().find(|p| p.name == *n) {
            Some(p) => pm = pm.with_boxed((p.make)()),
            None => unknown.push(*n),
        }
    }
    if !unknown.is_empty() {
        let known: Vec<&str> = table.iter().map(|p| p.name).collect();
        return Err(format!("unknown pass(es) {}; known passes: {}", unknown.join(", "), known.join(", ")));
    }
    Ok(pm)
}

/// Run one pass on `g` outside a pipeline (no budget, no verification): an importer's own
/// cleanup. Returns the patches it applied.
pub fn run_pass(p: &dyn Pass, g: &mut Graph) -> Result<usize, PassError> {
    let mut budget = Budget::new(None);
    let mut ed = Editor::new(g, &mut budget);
    let result = p.run(&mut ed);
    let stats = ed.finish();
    result.map(|()| stats.patches)
}
