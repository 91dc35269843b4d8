//! `qlite roundtrip`: read → write → read, then compare structure, parameters, weights and
//! outputs on seeded random input. Other projects put this in their CI.

use crate::sample::Rng;
use crate::{Array, Error, Registry, export_bytes, load, load_bytes};
use qlite_interp::{Data, Interpreter};
use qlite_ir::{DType, Graph, print_graph};
use std::path::Path;

/// Outcome of one file's round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundtripResult {
    /// Empty when nothing changed.
    pub differences: Vec<String>,
    /// Whether writing the re-read graph gives the same bytes again.
    pub stable_bytes: bool,
    /// Why outputs were not compared (the model holds ops qlite cannot run; the structure,
    /// parameters and bytes still were).
    pub not_run: Option<String>,
}

/// Seeded inputs for a graph: floats uniform in [-1, 1), integers over their range.
pub fn random_inputs(g: &Graph, seed: u64) -> Result<Vec<Array>, String> {
    let mut rng = Rng::new(seed);
    g.inputs()
        .iter()
        .map(|&t| {
            let t = g.tensor(t).ok_or("bad input id")?;
            let dims: Vec<usize> = t.shape.dims().iter().map(|d| d.fixed().unwrap_or(1)).collect();
            let n: usize = dims.iter().product();
            let data = match t.dtype {
                DType::F32 => Data::F32(rng.vec(n, -1.0, 1.0)),
                DType::I8 => Data::I8((0..n).map(|_| (rng.next_u64() % 256) as u8 as i8).collect()),
                DType::U8 => Data::U8((0..n).map(|_| (rng.next_u64() % 256) as u8).collect()),
                DType::I16 => Data::I16((0..n).map(|_| (rng.next_u64() % 65536) as u16 as i16).collect()),
                d => return Err(format!("random inputs of dtype {d} are not supported")),
            };
            Array::new(dims, data).map_err(|e| e.to_string())
        })
        .collect()
}

fn line_diff(a: &str, b: &str) -> Vec<String> {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = Vec::new();
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i).copied().unwrap_or("<none>"), lb.get(i).copied().unwrap_or("<none>"));
        if x != y {
            out.push(format!("- {x}\n+ {y}"));
        }
    }
    out
}

/// Round-trip one model file through its own format.
pub fn roundtrip_file(reg: &Registry, path: &Path, seed: u64) -> Result<RoundtripResult, Error> {
    let g1 = load(reg, path)?;
    let bytes1 = export_bytes(reg, &g1, path)?;
    let g2 = load_bytes(reg, path, bytes1.clone())?;
    let bytes2 = export_bytes(reg, &g2, path)?;
    let mut differences = line_diff(&print_graph(&g1), &print_graph(&g2));
    let stable_bytes = bytes1 == bytes2;
    let it1 = match Interpreter::new(&g1) {
        Err(e @ qlite_interp::InterpError::Opaque(_)) => {
            return Ok(RoundtripResult { differences, stable_bytes, not_run: Some(e.to_string()) });
        }
        r => r?,
    };
    let inputs = random_inputs(&g1, seed).map_err(Error::Usage)?;
    let y1 = it1.run(inputs.clone())?;
    let y2 = Interpreter::new(&g2)?.run(inputs)?;
    for (i, (a, b)) in y1.iter().zip(&y2).enumerate() {
        if a != b {
            differences.push(format!("output {i} differs after the round trip"));
        }
    }
    Ok(RoundtripResult { differences, stable_bytes, not_run: None })
}
