//! Small built-in models for documentation, tests and demos, and a seeded random source.

use qlite_ir::op::{Activation, FullyConnected};
use qlite_ir::tensor::f32_bytes;
use qlite_ir::{DType, Graph, Node, Op, Shape, Tensor};

/// A 4 → 2 fully connected layer with ReLU: `y = relu(x · Wᵀ + b)`.
pub fn tiny_graph() -> Graph {
    let mut g = Graph::new("tiny");
    let x = g.add_tensor(Tensor::activation("x", DType::F32, Shape::fixed(&[1, 4])));
    let w = g.add_tensor(Tensor::constant(
        "w",
        DType::F32,
        Shape::fixed(&[2, 4]),
        f32_bytes(&[0.5, -1.0, 0.25, 0.0, 1.0, 1.0, -1.0, 0.5]),
    ));
    let b = g.add_tensor(Tensor::constant("b", DType::F32, Shape::fixed(&[2]), f32_bytes(&[0.1, -0.2])));
    let y = g.add_tensor(Tensor::activation("y", DType::F32, Shape::fixed(&[1, 2])));
    g.add_node(Node::new(
        "fc",
        Op::FullyConnected(FullyConnected {
            activation: Activation::Relu,
            keep_num_dims: false,
            asymmetric_inputs: false,
        }),
        vec![Some(x), Some(w), Some(b)],
        vec![y],
    ));
    g.set_inputs(vec![x]);
    g.set_outputs(vec![y]);
    g
}

/// [`tiny_graph`] as .tflite bytes.
pub fn tiny_tflite() -> Vec<u8> {
    // The graph is valid by construction, so writing cannot fail.
    qlite_tflite::write_model(&tiny_graph()).map(|b| b.to_vec()).unwrap_or_default()
}

/// A small, seeded pseudo-random generator (SplitMix64): deterministic test inputs without
/// a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}
