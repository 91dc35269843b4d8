//! Resource limits for graphs read from files: a file cannot make qlite hold more than this.
//!
//! Importers check what they allocate themselves (headers, folded constants); after import the
//! facade checks the whole graph with [`Limits::check`] before anything runs on it, so a small
//! file declaring enormous tensors is refused up front instead of failing (or swapping) later.

use crate::graph::Graph;

/// The ceilings. `Default` is generous for real models and small enough that a lying header
/// cannot exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single tensor (constant or activation with a static shape), in bytes.
    pub max_tensor_bytes: u64,
    /// Largest sum of constant bytes.
    pub max_total_bytes: u64,
    /// Most nodes in a graph.
    pub max_nodes: usize,
    /// Highest tensor rank.
    pub max_rank: usize,
    /// Most elements in one tensor.
    pub max_elements: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tensor_bytes: 4 << 30,
            max_total_bytes: 64 << 30,
            max_nodes: 1_000_000,
            max_rank: crate::shape::MAX_RANK,
            max_elements: 1 << 31,
        }
    }
}

/// A limit a graph goes over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {value}, over the limit of {limit} (raise it with --{flag})")]
pub struct LimitError {
    pub what: String,
    pub value: String,
    pub limit: u64,
    pub flag: &'static str,
}

impl Limits {
    /// Check every tensor and the node count.
    pub fn check(&self, g: &Graph) -> Result<(), LimitError> {
        let over =
            |what: String, value: String, limit: u64, flag: &'static str| Err(LimitError { what, value, limit, flag });
        if g.nodes().len() > self.max_nodes {
            return over("the node count".into(), g.nodes().len().to_string(), self.max_nodes as u64, "max-nodes");
        }
        let mut total: u64 = 0;
        for (i, t) in g.tensors().iter().enumerate() {
            let name = || format!("tensor %{i} ({:?})", t.name);
            if t.shape.rank() > self.max_rank {
                return over(
                    format!("the rank of {}", name()),
                    t.shape.rank().to_string(),
                    self.max_rank as u64,
                    "max-rank",
                );
            }
            let Some(dims) = t.shape.to_fixed() else { continue };
            let elements = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
            let Some(elements) = elements.filter(|&e| e <= self.max_elements) else {
                return over(
                    format!("the element count of {}", name()),
                    elements.map_or_else(|| "beyond u64".to_string(), |e| e.to_string()),
                    self.max_elements,
                    "max-elements",
                );
            };
            let bytes = elements.saturating_mul(t.dtype.size() as u64);
            if bytes > self.max_tensor_bytes {
                return over(
                    format!("the size of {}", name()),
                    format!("{bytes} bytes"),
                    self.max_tensor_bytes,
                    "max-tensor-bytes",
                );
            }
            if let Some(d) = &t.data {
                total = total.saturating_add(d.len() as u64);
                if total > self.max_total_bytes {
                    return over(
                        "the total size of the constants".into(),
                        format!("{total} bytes"),
                        self.max_total_bytes,
                        "max-total-bytes",
                    );
                }
            }
        }
        Ok(())
    }
}
