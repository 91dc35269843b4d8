//! Randomized DAGs for the pass engine: NCHW graphs as the ONNX importer builds them (every
//! convolution between layout Transposes) with fan-outs, residual adds, channel concatenations,
//! squeeze-excite gates, pads before VALID convolutions, inference BatchNorms, spelled-out GELUs
//! and Relus to fuse. Every pass alone, the whole cleanup pipeline, and the pipeline stopped
//! after a random number of rewrites must leave a graph that verifies and computes the same
//! outputs within 1e-5 of the largest output value.

use crate::common::Builder;
use qlite::ir::op::*;
use qlite::ir::passes::{PASSES, cleanup_pipeline};
use qlite::ir::{Graph, PassManager, TensorId};

struct Gen {
    b: Builder,
    /// NCHW activations and their channel counts.
    pool: Vec<(TensorId, usize)>,
}

const TO_NHWC: [usize; 4] = [0, 2, 3, 1];
const TO_NCHW: [usize; 4] = [0, 3, 1, 2];

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        (self.b.rng.next_u64() % n as u64) as usize
    }

    fn pick(&mut self) -> (TensorId, usize) {
        let n = self.pool.len();
        // Recent tensors more often, so chains get deep, but any tensor may fan out again.
        let i = if self.below(3) == 0 { self.below(n) } else { n - 1 - self.below(n.min(3)) };
        self.pool[i]
    }

    fn node(&mut self, op: Op, ins: &[Option<TensorId>]) -> TensorId {
        self.b.node(op, ins, None)
    }

    fn bin(&mut self, kind: BinaryKind, a: TensorId, c: TensorId) -> TensorId {
        self.node(Op::Binary(Binary { kind, activation: Activation::None }), &[Some(a), Some(c)])
    }

    fn unary(&mut self, kind: UnaryKind, x: TensorId) -> TensorId {
        self.node(Op::Unary(Unary { kind }), &[Some(x)])
    }

    fn konst(&mut self, dims: &[usize]) -> TensorId {
        let name = format!("k{}", self.b.g.tensors().len());
        self.b.konst(&name, dims)
    }

    /// NCHW → Transpose → conv (NHWC) [→ BatchNorm as MUL + ADD] [→ Relu] → Transpose back.
    fn conv(&mut self, x: TensorId, cin: usize, pad_first: bool) -> (TensorId, usize) {
        let cout = [2, 4, 6][self.below(3)];
        let k = if pad_first { 3 } else { [1, 3][self.below(2)] };
        let mut src = x;
        if pad_first {
            // SAME padding spelled out: a PAD then a VALID convolution.
            src = self.node(Op::Pad(Pad { paddings: vec![[0, 0], [0, 0], [1, 1], [1, 1]] }), &[Some(x)]);
        }
        let h = self.node(Op::Transpose(Transpose { perm: TO_NHWC.to_vec() }), &[Some(src)]);
        let w = self.konst(&[cout, k, k, cin]);
        let bias = if self.below(2) == 0 { Some(self.konst(&[cout])) } else { None };
        let padding = if pad_first || k == 1 { Padding::Valid } else { Padding::Same };
        let depthwise = cin == cout && !pad_first && self.below(4) == 0;
        let mut y = if depthwise {
            let w = self.konst(&[1, 3, 3, cin]);
            self.node(
                Op::DepthwiseConv2d(DepthwiseConv2d {
                    padding: Padding::Same,
                    stride: [1, 1],
                    dilation: [1, 1],
                    depth_multiplier: 1,
                    activation: Activation::None,
                }),
                &[Some(h), Some(w), bias],
            )
        } else {
            self.node(
                Op::Conv2d(Conv2d { padding, stride: [1, 1], dilation: [1, 1], activation: Activation::None }),
                &[Some(h), Some(w), bias],
            )
        };
        if self.below(2) == 0 {
            let s = self.konst(&[cout]);
            let t = self.konst(&[cout]);
            y = self.bin(BinaryKind::Mul, y, s);
            y = self.bin(BinaryKind::Add, y, t);
        }
        if self.below(2) == 0 {
            let kind = [UnaryKind::Relu, UnaryKind::Relu6][self.below(2)];
            y = self.unary(kind, y);
        }
        (self.node(Op::Transpose(Transpose { perm: TO_NCHW.to_vec() }), &[Some(y)]), cout)
    }

    /// `x · 0.5 · (1 + erf(x / √2))`, as PyTorch exports it.
    fn gelu(&mut self, x: TensorId) -> TensorId {
        let r2 = self.scalar(std::f32::consts::SQRT_2);
        let one = self.scalar(1.0);
        let half = self.scalar(0.5);
        let d = self.bin(BinaryKind::Div, x, r2);
        let e = self.unary(UnaryKind::Erf, d);
        let p = self.bin(BinaryKind::Add, e, one);
        let m = self.bin(BinaryKind::Mul, x, p);
        self.bin(BinaryKind::Mul, m, half)
    }

    fn scalar(&mut self, v: f32) -> TensorId {
        let name = format!("s{}", self.b.g.tensors().len());
        self.b.raw_const(qlite::ir::Tensor::constant(
            name,
            qlite::ir::DType::F32,
            qlite::ir::Shape::fixed(&[]),
            qlite::ir::tensor::f32_bytes(&[v]),
        ))
    }

    fn step(&mut self) {
        let (x, c) = self.pick();
        let made = match self.below(9) {
            0 | 1 => self.conv(x, c, false),
            2 => self.conv(x, c, true),
            3 => {
                let kind = [UnaryKind::Relu, UnaryKind::Abs, UnaryKind::Neg, UnaryKind::Tanh, UnaryKind::Logistic]
                    [self.below(5)];
                (self.unary(kind, x), c)
            }
            4 => {
                // A residual: add another tensor of the same channels (the skip fans out).
                let same: Vec<TensorId> = self.pool.iter().filter(|p| p.1 == c).map(|p| p.0).collect();
                let other = same[self.below(same.len())];
                let kind = [BinaryKind::Add, BinaryKind::Mul, BinaryKind::Sub][self.below(3)];
                (self.bin(kind, x, other), c)
            }
            5 => {
                // A per-channel constant in NCHW broadcast form.
                let k = self.konst(&[c, 1, 1]);
                (self.bin(BinaryKind::Mul, x, k), c)
            }
            6 => {
                let (o, oc) = self.pick();
                let cat = Op::Concatenation(Concatenation { axis: 1, activation: Activation::None });
                (self.node(cat, &[Some(x), Some(o)]), c + oc)
            }
            7 => {
                // Squeeze-excite: a kept-dims mean over H and W gates the channels.
                let m = self.node(Op::Mean(Mean { axes: vec![2, 3], keep_dims: true }), &[Some(x)]);
                let g = self.unary(UnaryKind::Logistic, m);
                (self.bin(BinaryKind::Mul, x, g), c)
            }
            _ => (self.gelu(x), c),
        };
        self.pool.push(made);
    }
}

fn random_dag(seed: usize) -> (Graph, Vec<qlite::Array>) {
    let hw = 3 + seed % 3;
    let mut b = Builder::new(&format!("dag{seed}"));
    let x = b.input("x", &[1, 4, hw, hw], -1.5, 1.5);
    let mut g = Gen { b, pool: vec![(x, 4)] };
    for _ in 0..6 + seed % 10 {
        g.step();
    }
    let last = g.pool.last().map(|p| p.0).unwrap();
    // A second output read elsewhere too, now and then.
    let mut outs = vec![last];
    if seed.is_multiple_of(3) && g.pool.len() > 2 {
        outs.push(g.pool[g.pool.len() / 2].0);
    }
    outs.dedup();
    g.b.finish(&outs)
}

fn check_same(name: &str, g: &Graph, inputs: &[qlite::Array], want: &[qlite::Array]) {
    qlite::ir::verify::verify(g).unwrap_or_else(|e| panic!("{name}: {e}\n{}", qlite::ir::print_graph(g)));
    let got = qlite::run(g, inputs.to_vec()).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (k, (a, e)) in got.iter().zip(want).enumerate() {
        let scale = e.as_f32().unwrap_or(&[]).iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3) as f64;
        crate::common::assert_agrees(
            a,
            e,
            qlite::Tolerance::close(1e-5, 1e-5 * scale),
            &format!("{name}, output {k}:\n{}", qlite::ir::print_graph(g)),
        );
    }
}

#[test]
fn every_pass_keeps_random_nchw_dags_valid_and_exact() {
    let mut rewrites = [0usize; 3];
    let mut cle = 0;
    for seed in 0..400 {
        let (g, inputs) = random_dag(seed);
        let want = qlite::run(&g, inputs.clone()).unwrap();
        for p in PASSES {
            let mut h = g.clone();
            let records = PassManager::new().verify_each(true).with_boxed((p.make)()).run(&mut h).unwrap();
            check_same(&format!("dag{seed} after {}", p.name), &h, &inputs, &want);
            rewrites[0] += records[0].rewrites;
        }
        let mut h = g.clone();
        let records = cleanup_pipeline().verify_each(true).run(&mut h).unwrap();
        let total: usize = records.iter().map(|r| r.rewrites).sum();
        rewrites[1] += total;
        check_same(&format!("dag{seed} after the cleanup pipeline"), &h, &inputs, &want);
        // Cross-layer equalization on the cleaned graph (convolutions now adjacent): the same
        // function.
        let records =
            PassManager::new().verify_each(true).with(qlite::ir::passes::CrossLayerEqualization).run(&mut h).unwrap();
        cle += records[0].rewrites;
        check_same(&format!("dag{seed} after cross-layer equalization"), &h, &inputs, &want);
        // Every prefix of the pipeline's rewrites is itself a valid, equal graph.
        for cut in [total / 3, total / 2, total.saturating_sub(1)] {
            let mut h = g.clone();
            let records = cleanup_pipeline().verify_each(true).stop_after(Some(cut)).run(&mut h).unwrap();
            let done: usize = records.iter().map(|r| r.rewrites).sum();
            assert_eq!(done, cut, "dag{seed}: stop after {cut}");
            rewrites[2] += done;
            check_same(&format!("dag{seed} stopped after {cut} rewrites"), &h, &inputs, &want);
        }
    }
    // The graphs give the passes work to do.
    assert!(rewrites.iter().all(|&r| r > 500), "{rewrites:?}");
    assert!(cle > 100, "cross-layer equalization found {cle} pairs to balance");
}

/// The cleanup pipeline leaves none of the layout Transposes inside the random NCHW graphs
/// converted with NCHW I/O except at the input and the outputs.
#[test]
fn the_cleanup_pipeline_removes_inner_transposes_from_random_dags() {
    for seed in 0..400 {
        let (g, _) = random_dag(seed);
        let mut h = g.clone();
        cleanup_pipeline().run(&mut h).unwrap();
        let transposes = h.nodes().iter().filter(|n| n.op.name() == "Transpose").count();
        let boundary = 1 + h.outputs().len();
        assert!(transposes <= boundary, "dag{seed}: {transposes} transposes\n{}", qlite::ir::print_graph(&h));
    }
}
