//! Shared by the fuzz targets: run a graph the parsers accepted, when it is small enough to
//! run quickly, on both kernel sets and in a session (twice, reusing its arena); they must
//! agree.

use qlite_interp::{Array, Data, Interpreter, Kernels};
use qlite_ir::{DType, Graph};

/// Largest tensor (elements) a fuzzed graph may declare for it to be run.
const MAX_RUN_ELEMENTS: usize = 1 << 14;

/// Integer outputs: the same bytes. Float outputs: the same shape only. The fast kernels sum in
/// blocks (SGEMM), the reference kernels in sequence, and a fuzzed graph can amplify that
/// rounding without bound (a LayerNorm over a near-constant row, an RSQRT of a tiny variance):
/// float agreement is held on well-posed models instead (`FAST_FLOAT_TOL` in tests/it, the
/// published models in `cargo xtask published`).
fn agree(x: &Array, y: &Array) -> bool {
    if x.shape() != y.shape() || x.dtype() != y.dtype() {
        return false;
    }
    matches!(x.data(), Data::F32(_)) || x.to_le_bytes() == y.to_le_bytes()
}

pub fn run_small(g: &Graph) {
    let small = g.tensors().iter().all(|t| {
        t.shape.to_fixed().and_then(|d| qlite_ir::shape::checked_product(&d)).is_some_and(|n| n <= MAX_RUN_ELEMENTS)
    });
    if !small || g.nodes().len() > 64 {
        return;
    }
    let mut inputs = Vec::new();
    for &t in g.inputs() {
        let Some(t) = g.tensor(t) else { return };
        let Some(dims) = t.shape.to_fixed() else { return };
        let n: usize = dims.iter().product();
        let data = match t.dtype {
            DType::F32 => Data::F32((0..n).map(|i| (i % 7) as f32 - 3.0).collect()),
            DType::I8 => Data::I8((0..n).map(|i| (i * 37 % 256) as u8 as i8).collect()),
            DType::U8 => Data::U8((0..n).map(|i| (i * 37 % 256) as u8).collect()),
            _ => return,
        };
        let Ok(a) = Array::new(dims, data) else { return };
        inputs.push(a);
    }
    let Ok(reference) = Interpreter::new(g) else { return };
    let r = reference.run(inputs.clone());
    let fast_interp = reference.kernels(Kernels::Fast);
    let fast = fast_interp.run(inputs.clone());
    // Bytes, not values: NaN outputs must agree too.
    let bytes = |v: &[&Array]| v.iter().map(|x| (x.shape().to_vec(), x.dtype(), x.to_le_bytes())).collect::<Vec<_>>();
    if let (Ok(a), Ok(b)) = (&r, &fast) {
        assert_eq!(a.len(), b.len(), "fast and reference kernels give different output counts");
        for (x, y) in a.iter().zip(b) {
            assert!(agree(x, y), "fast and reference kernels disagree");
        }
    }
    assert_eq!(r.is_ok(), fast.is_ok(), "only one kernel set failed: {r:?} vs {fast:?}");
    let mut session = fast_interp.session();
    for _ in 0..2 {
        let s = session.run(&inputs).and_then(|()| session.outputs());
        assert_eq!(s.is_ok(), fast.is_ok(), "the session and a plain run disagree on failing: {s:?} vs {fast:?}");
        if let (Ok(a), Ok(b)) = (s, &fast) {
            assert!(bytes(&a) == bytes(&b.iter().collect::<Vec<_>>()), "a session and a plain run disagree");
        }
    }
}
