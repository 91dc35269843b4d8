//! The pass manager and the generic passes.

use crate::common::Builder;
use qlite::ir::op::*;
use qlite::ir::pass::pipeline_from_names;
use qlite::ir::passes::{DeadCodeElimination, FoldConstants, FuseActivations, PASSES};
use qlite::ir::{Graph, Pass, PassCx, PassError, PassManager};

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
    fn run(&self, g: &mut Graph, _: &mut PassCx) -> Result<bool, PassError> {
        // Drop the first node: its output is now read before anything produces it.
        let mut first = true;
        g.retain_nodes(|_| !std::mem::take(&mut first));
        Ok(true)
    }
}

struct Fails;
impl Pass for Fails {
    fn name(&self) -> &'static str {
        "fails"
    }
    fn run(&self, _: &mut Graph, _: &mut PassCx) -> Result<bool, PassError> {
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
}

#[test]
fn pass_table_builds_pipelines_by_name() {
    let names: Vec<&str> = PASSES.iter().map(|p| p.name).collect();
    assert_eq!(names, ["dce", "fold-constants", "fuse-activations", "sink-transposes"]);
    assert_eq!(
        pipeline_from_names(PASSES, &["dce", "fuse-activations"]).unwrap().pass_names(),
        ["dce", "fuse-activations"]
    );
    let err = pipeline_from_names(PASSES, &["dce", "nope", "also-nope"]).unwrap_err();
    assert!(err.contains("nope, also-nope"), "{err}");
}
