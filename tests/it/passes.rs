//! The pass manager and the generic passes.

use crate::common::Builder;
use qlite::ir::op::*;
use qlite::ir::pass::pipeline_from_names;
use qlite::ir::passes::{DeadCodeElimination, FoldConstants, FuseActivations, PASSES};
use qlite::ir::{Editor, Graph, Pass, PassError, PassManager, Patch};

fn relu_after_conv() -> (Graph, Vec<qlite::Array>) {
    let mut b = Builder::new("fuse");
    let x = b.input("x", &[1, 5, 5, 2], -1.0, 1.0);
    let w = b.konst("w", &[3, 3, 3, 2]);
    let c = b.node(
        Op::Conv2d(Conv2d { padding: Padding::Same, stride: [1, 1], dilation: [1, 1], activation: Activation::None }),
        &[Some(x), Some(w), None],
        None,
    );
    let r = b.node(Op::Unary(Unary { kind: UnaryKind::Relu }), &[Some(c)], None);
    // A dead branch and a foldable constant reshape feeding an Add.
    let _dead = b.node(Op::Unary(Unary { kind: UnaryKind::Tanh }), &[Some(x)], None);
    let k = b.konst("k", &[3]);
    let k2 = b.node(Op::Reshape(Reshape { shape: vec![1, 1, 1, 3] }), &[Some(k)], None);
    let out =
        b.node(Op::Binary(Binary { kind: BinaryKind::Add, activation: Activation::None }), &[Some(r), Some(k2)], None);
    b.finish(&[out])
}

#[test]
fn cleanup_pipeline_folds_fuses_and_removes_dead_code() {
    let (mut g, inputs) = relu_after_conv();
    let before = qlite::run(&g, inputs.clone()).unwrap();
    let records = qlite::ir::passes::cleanup_pipeline().run(&mut g).unwrap();
    let changed: Vec<&str> = records.iter().filter(|r| r.changed).map(|r| r.pass).collect();
    assert_eq!(changed, ["fold-constants", "fuse-activations", "dce"], "{records:?}");
    let names: Vec<&str> = g.nodes().iter().map(|n| n.op.name()).collect();
    assert_eq!(names, ["Conv2d", "Add"]);
    assert_eq!(g.nodes()[0].op.fused_activation(), Some(Activation::Relu));
    assert_eq!(qlite::run(&g, inputs).unwrap(), before);
    insta::assert_snapshot!("cleanup_after", qlite::ir::print_graph(&g));
}

#[test]
fn stop_after_limits_rewrites() {
    let (mut g, _) = relu_after_conv();
    let n = g.nodes().len();
    PassManager::new()
        .with(DeadCodeElimination)
        .with(FoldConstants)
        .with(FuseActivations)
        .stop_after(Some(1))
        .run(&mut g)
        .unwrap();
    assert_eq!(g.nodes().len(), n - 1, "exactly one rewrite happened");
    let (mut g0, _) = relu_after_conv();
    PassManager::new().with(FuseActivations).stop_after(Some(0)).run(&mut g0).unwrap();
    assert_eq!(g0.nodes().len(), n);
}

struct Breaks;
impl Pass for Breaks {
    fn name(&self) -> &'static str {
        "breaks-graph"
    }
    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        // Drop the first node: its output is now read before anything produces it.
        let mut p = Patch::new();
        p.remove(ed.keys()[0]);
        let _ = ed.apply(p);
        Ok(())
    }
}

struct Fails;
impl Pass for Fails {
    fn name(&self) -> &'static str {
        "fails"
    }
    fn run(&self, _: &mut Editor<'_>) -> Result<(), PassError> {
        Err(PassError::Failed("no can do".into()))
    }
}

#[test]
fn failures_name_the_pass_and_restore_the_graph() {
    let (g0, _) = relu_after_conv();
    let mut g = g0.clone();
    let e = PassManager::new().verify_each(true).with(Breaks).run(&mut g).unwrap_err();
    assert_eq!(e.pass, "breaks-graph");
    assert_eq!(g, g0, "graph restored");
    let e2 = PassManager::new().with(Fails).run(&mut g).unwrap_err();
    insta::assert_snapshot!("pass_errors", format!("{e}\n{e2}"));
    // A caller that drops the graph on failure keeps no copy: the pass is still named, the
    // graph is left as the pass left it.
    let e3 = PassManager::new().verify_each(true).restore_on_error(false).with(Breaks).run(&mut g).unwrap_err();
    assert_eq!(e3.pass, "breaks-graph");
    assert_eq!(g.nodes().len(), g0.nodes().len() - 1, "not restored");
}

#[test]
fn pass_table_builds_pipelines_by_name() {
    let names: Vec<&str> = PASSES.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "dce",
            "fold-constants",
            "fuse-activations",
            "fuse-gelu",
            "fold-pad",
            "fold-scale-shift",
            "assign-layout",
            "sink-transposes",
            "cross-layer-equalization"
        ]
    );
    assert_eq!(
        pipeline_from_names(PASSES, &["dce", "fuse-activations"]).unwrap().pass_names(),
        ["dce", "fuse-activations"]
    );
    let err = pipeline_from_names(PASSES, &["dce", "nope", "also-nope"]).unwrap_err();
    assert!(err.contains("nope, also-nope"), "{err}");
}

/// `fuse-gelu` turns the spellings of the exact GELU, `(x · (1 + erf(x/√2))) · 0.5`,
/// `(0.5 · x) · (1 + erf(x · 1/√2))` and TF's `(0.5 · x) · erfc(neg(x) · 1/√2)`, into one GELU with the same outputs; with an intermediate
/// read elsewhere it leaves the graph alone.
#[test]
fn erf_spelled_gelu_fuses() {
    use qlite::ir::op::{Binary, BinaryKind, Unary, UnaryKind};
    use qlite::ir::{Activation, DType, Op, Shape, Tensor, tensor::f32_bytes};
    let bin = |kind| Op::Binary(Binary { kind, activation: Activation::None });
    for (form, leak) in [(0, false), (1, false), (2, false), (0, true)] {
        let mut b = crate::common::Builder::new("gelu");
        let x = b.input("x", &[1, 16], -3.0, 3.0);
        let c = |b: &mut crate::common::Builder, name: &str, v: f32| {
            b.raw_const(Tensor::constant(name, DType::F32, Shape::fixed(&[]), f32_bytes(&[v])))
        };
        let (one, half) = (c(&mut b, "one", 1.0), c(&mut b, "half", 0.5));
        if form == 2 {
            // TF's gelu: (0.5 · x) · erfc(neg(x) · 1/√2).
            let inv = c(&mut b, "inv_sqrt2", std::f32::consts::FRAC_1_SQRT_2);
            let hx = b.node(bin(BinaryKind::Mul), &[Some(x), Some(half)], None);
            let nx = b.node(Op::Unary(Unary { kind: UnaryKind::Neg }), &[Some(x)], None);
            let s = b.node(bin(BinaryKind::Mul), &[Some(nx), Some(inv)], None);
            let e = b.node(Op::Unary(Unary { kind: UnaryKind::Erfc }), &[Some(s)], None);
            let y = b.node(bin(BinaryKind::Mul), &[Some(hx), Some(e)], None);
            let (g, inputs) = b.finish(&[y]);
            let want = qlite::run(&g, inputs.clone()).unwrap();
            let mut fused = g.clone();
            qlite::ir::passes::cleanup_pipeline().run(&mut fused).unwrap();
            assert_eq!(fused.nodes().len(), 1, "{}", qlite::ir::print_graph(&fused));
            assert_eq!(fused.nodes()[0].op.name(), "Gelu");
            let got = qlite::run(&fused, inputs).unwrap();
            crate::common::assert_agrees(&got[0], &want[0], qlite::Tolerance::close(1e-6, 1e-7), "fused erfc GELU");
            continue;
        }
        let scaled = if form == 0 {
            let s = c(&mut b, "sqrt2", std::f32::consts::SQRT_2);
            b.node(bin(BinaryKind::Div), &[Some(x), Some(s)], None)
        } else {
            let s = c(&mut b, "inv_sqrt2", std::f32::consts::FRAC_1_SQRT_2);
            b.node(bin(BinaryKind::Mul), &[Some(x), Some(s)], None)
        };
        let e = b.node(Op::Unary(Unary { kind: UnaryKind::Erf }), &[Some(scaled)], None);
        let e1 = b.node(bin(BinaryKind::Add), &[Some(e), Some(one)], None);
        let y = if form == 0 {
            let m = b.node(bin(BinaryKind::Mul), &[Some(x), Some(e1)], None);
            b.node(bin(BinaryKind::Mul), &[Some(m), Some(half)], None)
        } else {
            let hx = b.node(bin(BinaryKind::Mul), &[Some(half), Some(x)], None);
            b.node(bin(BinaryKind::Mul), &[Some(hx), Some(e1)], None)
        };
        let outs = if leak { vec![y, e] } else { vec![y] };
        let (g, inputs) = b.finish(&outs);
        let want = qlite::run(&g, inputs.clone()).unwrap();
        let mut fused = g.clone();
        qlite::ir::passes::cleanup_pipeline().run(&mut fused).unwrap();
        let gelus = fused.nodes().iter().filter(|n| n.op.name() == "Gelu").count();
        if leak {
            assert_eq!(gelus, 0, "erf is also a graph output: nothing fuses");
            continue;
        }
        assert_eq!((gelus, fused.nodes().len()), (1, 1), "form {form}: {}", qlite::ir::print_graph(&fused));
        let got = qlite::run(&fused, inputs).unwrap();
        crate::common::assert_agrees(&got[0], &want[0], qlite::Tolerance::close(1e-6, 1e-7), "fused GELU");
    }
}

/// A layout Transpose read by three elementwise ops (and by one of them twice): every reader
/// gets its own copy, which sinks below it; the outputs do not change. (Three or more readers once rewired the wrong nodes:
/// inserting a copy shifted the readers' ids.)
#[test]
fn a_transpose_read_by_three_ops_sinks_without_rewiring_the_wrong_node() {
    use qlite::ir::passes::SinkTransposes;
    let un = |kind| Op::Unary(Unary { kind });
    let bin = |kind| Op::Binary(Binary { kind, activation: Activation::None });
    let mut b = Builder::new("fanout3");
    let x = b.input("x", &[1, 3, 4, 2], -2.0, 2.0);
    let t = b.node(Op::Transpose(Transpose { perm: vec![0, 2, 3, 1] }), &[Some(x)], None);
    let z = b.input("z", &[1, 4, 2, 3], -2.0, 2.0);
    let r = b.node(un(UnaryKind::Relu), &[Some(t)], None);
    // A node that does not read the Transpose, between two that do.
    let l = b.node(un(UnaryKind::Logistic), &[Some(z)], None);
    let n = b.node(un(UnaryKind::Neg), &[Some(t)], None);
    let a = b.node(un(UnaryKind::Abs), &[Some(t)], None);
    let s = b.node(bin(BinaryKind::Add), &[Some(r), Some(n)], None);
    let m = b.node(bin(BinaryKind::Mul), &[Some(s), Some(a)], None);
    let m = b.node(bin(BinaryKind::Add), &[Some(m), Some(l)], None);
    let back = b.node(Op::Transpose(Transpose { perm: vec![0, 3, 1, 2] }), &[Some(m)], None);
    let (g, inputs) = b.finish(&[back]);
    let want = qlite::run(&g, inputs.clone()).unwrap();
    let mut sunk = g.clone();
    PassManager::new().with(SinkTransposes).with(DeadCodeElimination).run(&mut sunk).unwrap();
    qlite::ir::verify::verify(&sunk).unwrap();
    // Each reader's copy sank below it: Relu, Neg and Abs read the input itself.
    let x_in = sunk.inputs()[0];
    for op in ["Relu", "Neg", "Abs"] {
        let node = sunk.nodes().iter().find(|n| n.op.name() == op).unwrap();
        assert_eq!(node.input(0), Some(x_in), "{op}: {}", qlite::ir::print_graph(&sunk));
    }
    assert_eq!(qlite::run(&sunk, inputs).unwrap(), want, "{}", qlite::ir::print_graph(&sunk));
}

/// `assign-layout` on an NCHW graph as the ONNX importer makes it (each convolution wrapped in
/// Transposes): a residual fan-out, a per-channel constant, a channel concatenation, a pad, a
/// kept-dims mean and a flatten into a fully-connected layer. Stored channels-last as a whole,
/// the graph keeps only the input's Transpose, and its outputs do not change.
#[test]
fn assign_layout_leaves_no_inner_transpose_in_an_nchw_graph() {
    use qlite::ir::layout::AssignLayout;
    use qlite::ir::passes::SinkTransposes;
    let bin = |kind| Op::Binary(Binary { kind, activation: Activation::None });
    let to_nhwc = || Op::Transpose(Transpose { perm: vec![0, 2, 3, 1] });
    let to_nchw = || Op::Transpose(Transpose { perm: vec![0, 3, 1, 2] });
    let conv = || {
        Op::Conv2d(Conv2d { padding: Padding::Same, stride: [1, 1], dilation: [1, 1], activation: Activation::None })
    };
    let mut b = Builder::new("nchw");
    let x = b.input("x", &[1, 4, 5, 6], -1.0, 1.0);
    let convolve = |b: &mut Builder, t: qlite::ir::TensorId, name: &str| {
        let w = b.konst(&format!("{name}_w"), &[4, 3, 3, 4]);
        let bias = b.konst(&format!("{name}_b"), &[4]);
        let h = b.node(to_nhwc(), &[Some(t)], None);
        let c = b.node(conv(), &[Some(h), Some(w), Some(bias)], None);
        b.node(to_nchw(), &[Some(c)], None)
    };
    let c1 = convolve(&mut b, x, "c1");
    let r = b.node(Op::Unary(Unary { kind: UnaryKind::Relu }), &[Some(c1)], None);
    let skip = b.node(bin(BinaryKind::Add), &[Some(r), Some(x)], None);
    let scale = b.konst("scale", &[4, 1, 1]);
    let scaled = b.node(bin(BinaryKind::Mul), &[Some(skip), Some(scale)], None);
    let c2 = convolve(&mut b, scaled, "c2");
    let cat = b.node(
        Op::Concatenation(Concatenation { axis: 1, activation: Activation::None }),
        &[Some(c2), Some(skip)],
        None,
    );
    let padded = b.node(Op::Pad(Pad { paddings: vec![[0, 0], [0, 0], [1, 0], [0, 1]] }), &[Some(cat)], None);
    let m = b.node(Op::Mean(Mean { axes: vec![1], keep_dims: true }), &[Some(padded)], None);
    let both = b.node(bin(BinaryKind::Sub), &[Some(padded), Some(m)], None);
    let flat = b.node(Op::Reshape(Reshape { shape: vec![1, 8 * 6 * 7] }), &[Some(both)], None);
    let fw = b.konst("fc_w", &[3, 8 * 6 * 7]);
    let y = b.node(
        Op::FullyConnected(FullyConnected {
            activation: Activation::None,
            keep_num_dims: false,
            asymmetric_inputs: false,
        }),
        &[Some(flat), Some(fw), None],
        None,
    );
    let (g, inputs) = b.finish(&[y, skip]);
    let want = qlite::run(&g, inputs.clone()).unwrap();
    let mut laid = g.clone();
    PassManager::new().with(AssignLayout).with(SinkTransposes).with(DeadCodeElimination).run(&mut laid).unwrap();
    qlite::ir::verify::verify(&laid).unwrap();
    let transposes = laid.nodes().iter().filter(|n| n.op.name() == "Transpose").count();
    // The input's and the NCHW output `skip`'s.
    assert_eq!(transposes, 2, "{}", qlite::ir::print_graph(&laid));
    let got = qlite::run(&laid, inputs).unwrap();
    for (k, (a, e)) in got.iter().zip(&want).enumerate() {
        crate::common::assert_agrees(
            a,
            e,
            qlite::Tolerance::close(1e-5, 1e-6),
            &format!("output {k}: {}", qlite::ir::print_graph(&laid)),
        );
    }
}

/// `fold-scale-shift`: an inference BatchNorm after a convolution, a depthwise convolution and a
/// fully-connected layer (MUL by a per-channel scale, ADD of a per-channel shift, then ReLU)
/// folds into the layer's weights and bias; the outputs stay within float rounding. A scale
/// read twice, or one varying along another axis, is left alone.
#[test]
fn batchnorm_after_a_layer_folds_into_its_weights() {
    use qlite::ir::passes::{FoldScaleShift, cleanup_pipeline};
    let bin = |kind| Op::Binary(Binary { kind, activation: Activation::None });
    let mut b = Builder::new("bn");
    let x = b.input("x", &[1, 5, 5, 3], -1.0, 1.0);
    let w = b.konst("w", &[4, 3, 3, 3]);
    let bias = b.konst("b", &[4]);
    let conv =
        Op::Conv2d(Conv2d { padding: Padding::Same, stride: [1, 1], dilation: [1, 1], activation: Activation::None });
    let c = b.node(conv, &[Some(x), Some(w), Some(bias)], None);
    let s = b.konst("scale", &[4]);
    let t = b.konst("shift", &[1, 1, 1, 4]);
    let m = b.node(bin(BinaryKind::Mul), &[Some(s), Some(c)], None);
    let a = b.node(bin(BinaryKind::Add), &[Some(m), Some(t)], None);
    let r = b.node(Op::Unary(Unary { kind: UnaryKind::Relu }), &[Some(a)], None);
    let dw = b.konst("dw", &[1, 3, 3, 4]);
    let dconv = Op::DepthwiseConv2d(DepthwiseConv2d {
        padding: Padding::Valid,
        stride: [1, 1],
        dilation: [1, 1],
        depth_multiplier: 1,
        activation: Activation::None,
    });
    let d = b.node(dconv, &[Some(r), Some(dw), None], None);
    let s2 = b.konst("scale2", &[4]);
    let d2 = b.node(bin(BinaryKind::Mul), &[Some(d), Some(s2)], None);
    let flat = b.node(Op::Reshape(Reshape { shape: vec![1, 36] }), &[Some(d2)], None);
    let fw = b.konst("fw", &[3, 36]);
    let f = b.node(
        Op::FullyConnected(FullyConnected {
            activation: Activation::None,
            keep_num_dims: false,
            asymmetric_inputs: false,
        }),
        &[Some(flat), Some(fw), None],
        None,
    );
    let shift3 = b.konst("shift3", &[3]);
    let y = b.node(bin(BinaryKind::Add), &[Some(f), Some(shift3)], None);
    // Not folded: the scale varies along height.
    let odd = b.konst("odd", &[1, 5, 1, 1]);
    let z = b.node(bin(BinaryKind::Mul), &[Some(r), Some(odd)], None);
    let (g, inputs) = b.finish(&[y, z]);
    let want = qlite::run(&g, inputs.clone()).unwrap();
    let mut folded = g.clone();
    cleanup_pipeline().run(&mut folded).unwrap();
    let ops: Vec<&str> = folded.nodes().iter().map(|n| n.op.name()).collect();
    assert_eq!(
        ops,
        ["Conv2d", "DepthwiseConv2d", "Reshape", "FullyConnected", "Mul"],
        "{}",
        qlite::ir::print_graph(&folded)
    );
    assert!(matches!(&folded.nodes()[0].op, Op::Conv2d(c) if c.activation == Activation::Relu));
    let got = qlite::run(&folded, inputs).unwrap();
    for (k, (a, e)) in got.iter().zip(&want).enumerate() {
        crate::common::assert_agrees(a, e, qlite::Tolerance::close(1e-5, 1e-6), &format!("output {k}"));
    }
    // The pass on its own reports the change.
    let mut alone = g.clone();
    let records = PassManager::new().with(FoldScaleShift).run(&mut alone).unwrap();
    assert!(records[0].changed);
    // Weights nothing else holds are scaled where they are (the shared ones above were
    // copied): the same bytes, in the same buffer.
    let mut own = g.clone();
    for id in own.tensor_ids() {
        let t = own.tensor_mut(id).unwrap();
        t.data = t.data.as_ref().map(|d| bytes::Bytes::from(d.to_vec()));
    }
    let at = |g: &qlite::ir::Graph, name: &str| {
        g.tensors().iter().find(|t| t.name.starts_with(name)).and_then(|t| t.data.as_ref()).unwrap().as_ptr()
    };
    let before = at(&own, "w");
    PassManager::new().with(FoldScaleShift).restore_on_error(false).run(&mut own).unwrap();
    assert_eq!(at(&own, "w/folded"), before, "the conv weight was copied, not scaled in place");
    assert_ne!(at(&alone, "w/folded"), before);
    for (a, b) in own.tensors().iter().zip(alone.tensors()) {
        assert_eq!((&a.name, &a.data), (&b.name, &b.data));
    }
}

/// An attention block's reshuffle, NHWC `[1, 1, 40, 12]` → NCHW → `[1, 12, 40]` → `[1, 40, 12]`,
/// moves no element: the Transposes and the Reshape become one Reshape, outputs unchanged; a
/// chain that does move elements stays.
#[test]
fn a_transpose_chain_that_moves_nothing_is_one_reshape() {
    use qlite::ir::passes::SinkTransposes;
    for (perm2, moves) in [(vec![0, 2, 1], false), (vec![0, 1, 2], true)] {
        let mut b = Builder::new("chain");
        let x = b.input("x", &[1, 1, 40, 12], -1.0, 1.0);
        let t = b.node(Op::Transpose(Transpose { perm: vec![0, 3, 1, 2] }), &[Some(x)], None);
        let r = b.node(Op::Reshape(Reshape { shape: vec![1, 12, 40] }), &[Some(t)], None);
        let t2 = b.node(Op::Transpose(Transpose { perm: perm2.clone() }), &[Some(r)], None);
        let y = b.node(Op::Unary(Unary { kind: UnaryKind::Relu }), &[Some(t2)], None);
        let (g, inputs) = b.finish(&[y]);
        let want = qlite::run(&g, inputs.clone()).unwrap();
        let mut h = g.clone();
        PassManager::new().with(SinkTransposes).with(DeadCodeElimination).run(&mut h).unwrap();
        qlite::ir::verify::verify(&h).unwrap();
        let transposes = h.nodes().iter().filter(|n| n.op.name() == "Transpose").count();
        assert_eq!(transposes > 0, moves, "{perm2:?}: {}", qlite::ir::print_graph(&h));
        assert_eq!(qlite::run(&h, inputs).unwrap(), want);
    }
}

/// `fold-pad`: Keras's ZeroPadding2D((0,1),(0,1)) before a stride-2 VALID convolution, and a
/// (1,1) pad before a stride-1 3×3 depthwise, are SAME padding: the PADs go, the outputs stay.
/// A (1,1) pad before a stride-2 convolution is not what SAME adds there (0,1): it stays.
#[test]
fn a_zero_pad_that_is_same_padding_folds_into_the_convolution() {
    use qlite::ir::passes::cleanup_pipeline;
    let conv = |stride| {
        Op::Conv2d(Conv2d {
            padding: Padding::Valid,
            stride: [stride, stride],
            dilation: [1, 1],
            activation: Activation::None,
        })
    };
    for (pads, stride, depthwise, folds) in
        [([0, 1], 2, false, true), ([1, 1], 1, true, true), ([1, 1], 2, false, false)]
    {
        let mut b = Builder::new("pad");
        let x = b.input("x", &[1, 8, 8, 3], -1.0, 1.0);
        let p = b.node(Op::Pad(Pad { paddings: vec![[0, 0], pads, pads, [0, 0]] }), &[Some(x)], None);
        let y = if depthwise {
            let w = b.konst("w", &[1, 3, 3, 3]);
            let op = Op::DepthwiseConv2d(DepthwiseConv2d {
                padding: Padding::Valid,
                stride: [stride, stride],
                dilation: [1, 1],
                depth_multiplier: 1,
                activation: Activation::None,
            });
            b.node(op, &[Some(p), Some(w), None], None)
        } else {
            let w = b.konst("w", &[4, 3, 3, 3]);
            b.node(conv(stride), &[Some(p), Some(w), None], None)
        };
        let (g, inputs) = b.finish(&[y]);
        let want = qlite::run(&g, inputs.clone()).unwrap();
        let mut h = g.clone();
        cleanup_pipeline().run(&mut h).unwrap();
        let pads_left = h.nodes().iter().filter(|n| n.op.name() == "Pad").count();
        assert_eq!(pads_left == 0, folds, "{pads:?} stride {stride}: {}", qlite::ir::print_graph(&h));
        let got = qlite::run(&h, inputs).unwrap();
        crate::common::assert_agrees(&got[0], &want[0], qlite::Tolerance::close(1e-6, 1e-7), "folded pad");
    }
}
