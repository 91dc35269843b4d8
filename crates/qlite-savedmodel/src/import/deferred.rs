//! Work the import leaves to its end, then spreads over the cores: verifying the checksums of
//! the variables read and reordering weights (HWIO filters to OHWI, MatMul's [in, out] to
//! FULLY_CONNECTED's [out, in]).
//!
//! The graph walk is sequential; these are most of an import's time (every weight byte is
//! read for its checksum and written once more in its new order, into fresh pages) and are
//! independent of each other. A reordered weight is added to the graph empty and filled here,
//! before anything reads it; a checksum that fails is reported as if it had been checked when
//! the variable was read (the first in reading order, whatever finished first).

use super::*;
use crate::bundle::Checksum;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One deferred piece of work.
pub(super) struct Job {
    /// The variable's checksum, over `data`, and the node that read it (for the error).
    check: Option<(Checksum, String)>,
    /// The tensor that receives `data` permuted by `perm` over `dims` (4-byte elements).
    reorder: Option<(TensorId, Vec<usize>, Vec<usize>)>,
    data: Bytes,
}

/// The deferred work of one import.
#[derive(Default)]
pub(super) struct Deferred {
    jobs: Vec<Job>,
    /// The checksum job of a variable's bytes, by (address, length): a reorder of the same
    /// bytes joins it, so they are read once.
    checks: HashMap<(usize, usize), usize>,
    keys: BTreeSet<String>,
}

impl Deferred {
    /// Verify `data` against `check` at the end (once per variable); `reader` names the node
    /// that read it in the error.
    pub(super) fn check(&mut self, key: &str, data: &Bytes, check: Checksum, reader: String) {
        if self.keys.insert(key.to_string()) {
            self.checks.insert((data.as_ptr() as usize, data.len()), self.jobs.len());
            self.jobs.push(Job { check: Some((check, reader)), reorder: None, data: data.clone() });
        }
    }

    /// Fill tensor `id` with `data` (`dims`, 4-byte elements) permuted by `perm` at the end.
    pub(super) fn reorder(&mut self, id: TensorId, data: &Bytes, dims: &[usize], perm: &[usize]) {
        let r = Some((id, dims.to_vec(), perm.to_vec()));
        match self.checks.remove(&(data.as_ptr() as usize, data.len())) {
            Some(j) => self.jobs[j].reorder = r,
            None => self.jobs.push(Job { check: None, reorder: r, data: data.clone() }),
        }
    }

    /// Run every job, the largest first, on up to one thread per core; fill the reordered
    /// tensors. Errors: the first failed job in the order they were deferred.
    pub(super) fn run(self, g: &mut Graph) -> Result<(), SmError> {
        let jobs = self.jobs;
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&j| std::cmp::Reverse(jobs[j].data.len()));
        let results: Vec<Mutex<Option<Outcome>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let work = || {
            while let Some(&j) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                let r = run_job(&jobs[j]);
                if let Ok(mut slot) = results[j].lock() {
                    *slot = Some(r);
                }
            }
        };
        let bytes: usize = jobs.iter().map(|j| j.data.len()).sum();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        if threads < 2 || jobs.len() < 2 || bytes < 1 << 20 {
            work();
        } else {
            std::thread::scope(|sc| {
                for _ in 1..threads {
                    sc.spawn(work);
                }
                work();
            });
        }
        for (job, r) in jobs.iter().zip(results) {
            let r =
                r.into_inner().ok().flatten().ok_or_else(|| SmError::Invalid("a deferred job did not run".into()))?;
            if let (Some(out), Some((id, _, _))) = (r?, &job.reorder)
                && let Some(t) = g.tensor_mut(*id)
            {
                t.data = Some(out.into());
            }
        }
        Ok(())
    }
}

/// A job's result: the reordered bytes, if it reorders.
type Outcome = Result<Option<Vec<u8>>, SmError>;

fn run_job(job: &Job) -> Outcome {
    if let Some((c, reader)) = &job.check {
        c.verify(&job.data).map_err(|e| SmError::Invalid(format!("{reader}: {e}")))?;
    }
    let Some((_, dims, perm)) = &job.reorder else { return Ok(None) };
    let out = qlite_ir::passes::transpose_bytes_serial(&job.data, dims, perm, 4)
        .ok_or_else(|| SmError::Invalid("a weight does not match its shape".into()))?;
    // The reordered copy replaces the stored bytes: let their mapped pages go.
    qlite_ir::hint::constant_consumed(&job.data);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{crc32c, mask};

    fn bytes(n: usize, seed: u32) -> Bytes {
        (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8).collect::<Vec<u8>>().into()
    }

    /// Enough bytes to take the threads: every reordered tensor equals the one-thread
    /// transpose whichever thread did it, a checksum and a reorder of the same bytes are one
    /// job, and of two bad checksums the first deferred is reported (with its reader), though
    /// the larger one runs first.
    #[test]
    fn deferred_work_equals_the_serial_transposes_and_reports_the_first_failure() {
        let path = std::path::Path::new("shard");
        let good = |k: &str, d: &Bytes| Checksum::new(k, path, mask(crc32c(d)));
        let bad = |k: &str, d: &Bytes| Checksum::new(k, path, mask(crc32c(d)) ^ 1);
        let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
            (vec![3, 3, 64, 128], vec![3, 0, 1, 2]),
            (vec![1, 1, 256, 512], vec![3, 0, 1, 2]),
            (vec![3, 3, 32, 1], vec![2, 0, 1, 3]),
            (vec![700, 300], vec![1, 0]),
        ];
        for fail in [false, true] {
            let mut g = Graph::new("t");
            let mut d = Deferred::default();
            let mut want = Vec::new();
            for (i, (dims, perm)) in cases.iter().enumerate() {
                let data = bytes(dims.iter().product::<usize>() * 4, i as u32);
                if i != 2 {
                    d.check(&format!("v{i}"), &data, good(&format!("v{i}"), &data), format!("reader {i}"));
                }
                let id = g.add_tensor(Tensor::constant(format!("w{i}"), DType::F32, Shape::fixed(&[1]), Bytes::new()));
                d.reorder(id, &data, dims, perm);
                want.push((id, qlite_ir::passes::transpose_bytes_serial(&data, dims, perm, 4).unwrap()));
            }
            assert_eq!(d.jobs.len(), cases.len(), "a checksum and a reorder of the same bytes are one job");
            if fail {
                let small = bytes(1000, 9);
                d.check("small", &small, bad("small", &small), "reader small".into());
                let large = bytes(3 << 20, 10);
                d.check("large", &large, bad("large", &large), "reader large".into());
                let e = d.run(&mut g).unwrap_err().to_string();
                assert!(e.starts_with("reader small: ") && e.contains("\"small\": CRC32C mismatch"), "{e}");
            } else {
                d.run(&mut g).unwrap();
                for (id, w) in want {
                    assert!(g.tensor(id).unwrap().data.as_deref() == Some(&w[..]));
                }
            }
        }
    }
}
