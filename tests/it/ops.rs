//! Every op of the IR: builder → qlite interpreter → write → read → write → LiteRT.

use crate::common::{Builder, arrays_text, cycle};
use qlite::ir::op::*;
use qlite::ir::tensor::f32_bytes;
use qlite::ir::{DType, Graph, QuantParams, Shape, Tensor};
use qlite::{Array, Data};

fn fc(act: Activation, keep: bool) -> Op {
    Op::FullyConnected(FullyConnected { activation: act, keep_num_dims: keep, asymmetric_inputs: false })
}

fn conv(padding: Padding, stride: usize, dilation: usize, act: Activation) -> Op {
    Op::Conv2d(Conv2d { padding, stride: [stride, stride], dilation: [dilation, dilation], activation: act })
}

fn unary(kind: UnaryKind) -> Op {
    Op::Unary(Unary { kind })
}

/// (name, graph, inputs, how LiteRT's outputs are compared)
type Case = (&'static str, Graph, Vec<Array>, &'static str);

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    let mut add = |name: &'static str, f: &dyn Fn(&mut Builder) -> Vec<qlite::ir::TensorId>, cmp: &'static str| {
        let mut b = Builder::new(name);
        let outs = f(&mut b);
        let (g, ins) = b.finish(&outs);
        v.push((name, g, ins, cmp));
    };
    add(
        "fully_connected",
        &|b| {
            let x = b.input("x", &[2, 8], -1.0, 1.0);
            let w = b.konst("w", &[4, 8]);
            let bias = b.konst("b", &[4]);
            vec![b.node(fc(Activation::Relu, false), &[Some(x), Some(w), Some(bias)], None)]
        },
        "float",
    );
    add(
        "fully_connected_keep_dims_no_bias",
        &|b| {
            let x = b.input("x", &[1, 3, 8], -1.0, 1.0);
            let w = b.konst("w", &[5, 8]);
            vec![b.node(fc(Activation::None, true), &[Some(x), Some(w), None], None)]
        },
        "float",
    );
    add(
        "conv2d_same_stride2_relu6",
        &|b| {
            let x = b.input("x", &[1, 9, 9, 3], -2.0, 2.0);
            let w = b.konst("w", &[4, 3, 3, 3]);
            let bias = b.konst("b", &[4]);
            vec![b.node(conv(Padding::Same, 2, 1, Activation::Relu6), &[Some(x), Some(w), Some(bias)], None)]
        },
        "float",
    );
    add(
        "conv2d_valid_dilated",
        &|b| {
            let x = b.input("x", &[1, 10, 10, 2], -1.0, 1.0);
            let w = b.konst("w", &[3, 3, 3, 2]);
            let bias = b.konst("b", &[3]);
            vec![b.node(conv(Padding::Valid, 1, 2, Activation::None), &[Some(x), Some(w), Some(bias)], None)]
        },
        "float",
    );
    add(
        "depthwise_multiplier2_relu",
        &|b| {
            let x = b.input("x", &[1, 7, 7, 3], -1.0, 1.0);
            let w = b.konst("w", &[1, 3, 3, 6]);
            let bias = b.konst("b", &[6]);
            let op = Op::DepthwiseConv2d(DepthwiseConv2d {
                padding: Padding::Same,
                stride: [1, 1],
                dilation: [1, 1],
                depth_multiplier: 2,
                activation: Activation::Relu,
            });
            vec![b.node(op, &[Some(x), Some(w), Some(bias)], None)]
        },
        "float",
    );
    add(
        "depthwise_dilated_stride2",
        &|b| {
            let x = b.input("x", &[1, 11, 11, 4], -1.0, 1.0);
            let w = b.konst("w", &[1, 3, 3, 4]);
            let bias = b.konst("b", &[4]);
            let op = Op::DepthwiseConv2d(DepthwiseConv2d {
                padding: Padding::Valid,
                stride: [2, 2],
                dilation: [2, 2],
                depth_multiplier: 1,
                activation: Activation::None,
            });
            vec![b.node(op, &[Some(x), Some(w), Some(bias)], None)]
        },
        "float",
    );
    add(
        "add_broadcast_relu",
        &|b| {
            let x = b.input("x", &[1, 4, 4, 3], -1.0, 1.0);
            let c = b.konst("c", &[3]);
            vec![b.node(
                Op::Binary(Binary { kind: BinaryKind::Add, activation: Activation::Relu }),
                &[Some(x), Some(c)],
                None,
            )]
        },
        "float",
    );
    add(
        "sub_two_inputs",
        &|b| {
            let x = b.input("x", &[1, 4, 3], -1.0, 1.0);
            let y = b.input("y", &[1, 1, 3], -1.0, 1.0);
            vec![b.node(
                Op::Binary(Binary { kind: BinaryKind::Sub, activation: Activation::None }),
                &[Some(x), Some(y)],
                None,
            )]
        },
        "float",
    );
    add(
        "mul_relu_n1_to_1",
        &|b| {
            let x = b.input("x", &[2, 3], -2.0, 2.0);
            let y = b.input("y", &[2, 3], -2.0, 2.0);
            vec![b.node(
                Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::ReluN1To1 }),
                &[Some(x), Some(y)],
                None,
            )]
        },
        "float",
    );
    add(
        "maximum_broadcast",
        &|b| {
            let x = b.input("x", &[2, 3], -2.0, 2.0);
            let y = b.input("y", &[3], -2.0, 2.0);
            vec![b.node(
                Op::Binary(Binary { kind: BinaryKind::Maximum, activation: Activation::None }),
                &[Some(x), Some(y)],
                None,
            )]
        },
        "float",
    );
    add(
        "minimum",
        &|b| {
            let x = b.input("x", &[2, 3], -2.0, 2.0);
            let y = b.input("y", &[2, 3], -2.0, 2.0);
            vec![b.node(
                Op::Binary(Binary { kind: BinaryKind::Minimum, activation: Activation::None }),
                &[Some(x), Some(y)],
                None,
            )]
        },
        "float",
    );
    add(
        "max_pool_same",
        &|b| {
            let x = b.input("x", &[1, 7, 7, 2], -1.0, 1.0);
            let op = Op::Pool2d(Pool2d {
                kind: PoolKind::Max,
                filter: [3, 3],
                stride: [2, 2],
                padding: Padding::Same,
                activation: Activation::None,
            });
            vec![b.node(op, &[Some(x)], None)]
        },
        "float",
    );
    add(
        "average_pool_same_relu",
        &|b| {
            let x = b.input("x", &[1, 7, 6, 2], -1.0, 1.0);
            let op = Op::Pool2d(Pool2d {
                kind: PoolKind::Average,
                filter: [3, 2],
                stride: [2, 1],
                padding: Padding::Same,
                activation: Activation::Relu,
            });
            vec![b.node(op, &[Some(x)], None)]
        },
        "float",
    );
    add(
        "mean_spatial_keep_dims",
        &|b| {
            let x = b.input("x", &[1, 5, 5, 3], -1.0, 1.0);
            vec![b.node(Op::Mean(Mean { axes: vec![1, 2], keep_dims: true }), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "mean_last_axis",
        &|b| {
            let x = b.input("x", &[2, 3, 4], -1.0, 1.0);
            vec![b.node(Op::Mean(Mean { axes: vec![2], keep_dims: false }), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "reshape",
        &|b| {
            let x = b.input("x", &[1, 12], -1.0, 1.0);
            vec![b.node(Op::Reshape(Reshape { shape: vec![1, -1, 4] }), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "transpose",
        &|b| {
            let x = b.input("x", &[2, 3, 4], -1.0, 1.0);
            vec![b.node(Op::Transpose(Transpose { perm: vec![2, 0, 1] }), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "concatenation",
        &|b| {
            let x = b.input("x", &[1, 2, 3], -1.0, 1.0);
            let y = b.input("y", &[1, 4, 3], -1.0, 1.0);
            let c = b.konst("c", &[1, 1, 3]);
            vec![b.node(
                Op::Concatenation(Concatenation { axis: 1, activation: Activation::None }),
                &[Some(x), Some(y), Some(c)],
                None,
            )]
        },
        "float",
    );
    add(
        "pad",
        &|b| {
            let x = b.input("x", &[1, 3, 3, 2], -1.0, 1.0);
            vec![b.node(Op::Pad(Pad { paddings: vec![[0, 0], [1, 2], [2, 1], [0, 0]] }), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "softmax_beta",
        &|b| {
            let x = b.input("x", &[2, 5], -4.0, 4.0);
            vec![b.node(Op::Softmax(Softmax { beta: 0.5 }), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "div_two_inputs",
        &|b| {
            let x = b.input("x", &[1, 4, 3], -2.0, 2.0);
            let y = b.input("y", &[1, 1, 3], 0.5, 2.0);
            vec![b.node(
                Op::Binary(Binary { kind: BinaryKind::Div, activation: Activation::Relu6 }),
                &[Some(x), Some(y)],
                None,
            )]
        },
        "float",
    );
    add(
        "local_response_norm",
        &|b| {
            let x = b.input("x", &[1, 3, 3, 8], -2.0, 2.0);
            let op = Op::LocalResponseNorm(LocalResponseNorm { radius: 2, bias: 1.0, alpha: 0.01, beta: 0.75 });
            vec![b.node(op, &[Some(x)], None)]
        },
        "float",
    );
    add(
        "strided_slice_masks_negative_stride_shrink",
        &|b| {
            let x = b.input("x", &[2, 5, 6, 3], -1.0, 1.0);
            let axes = vec![
                SliceDim { begin: Some(1), end: None, stride: 1, shrink: true },
                SliceDim { begin: Some(-1), end: Some(0), stride: -2, shrink: false },
                SliceDim { begin: Some(1), end: Some(100), stride: 2, shrink: false },
                SliceDim::ALL,
            ];
            vec![b.node(Op::StridedSlice(StridedSlice { axes }), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "resize_nearest_half_pixel_up_and_down",
        &|b| {
            let x = b.input("x", &[2, 5, 3, 2], -1.0, 1.0);
            let op = Op::Resize(Resize {
                mode: ResizeMode::NearestNeighbor,
                size: [7, 2],
                align_corners: false,
                half_pixel_centers: true,
            });
            vec![b.node(op, &[Some(x)], None)]
        },
        "float",
    );
    add(
        "hard_swish",
        &|b| {
            let x = b.input("x", &[1, 40], -5.0, 5.0);
            vec![b.node(unary(UnaryKind::HardSwish), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "logistic",
        &|b| {
            let x = b.input("x", &[1, 32], -8.0, 8.0);
            vec![b.node(unary(UnaryKind::Logistic), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "tanh",
        &|b| {
            let x = b.input("x", &[1, 32], -4.0, 4.0);
            vec![b.node(unary(UnaryKind::Tanh), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "relu",
        &|b| {
            let x = b.input("x", &[1, 32], -4.0, 4.0);
            vec![b.node(unary(UnaryKind::Relu), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "relu6",
        &|b| {
            let x = b.input("x", &[1, 32], -10.0, 10.0);
            vec![b.node(unary(UnaryKind::Relu6), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "exp",
        &|b| {
            let x = b.input("x", &[1, 32], -4.0, 3.0);
            vec![b.node(unary(UnaryKind::Exp), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "sqrt",
        &|b| {
            let x = b.input("x", &[1, 32], 0.0, 9.0);
            vec![b.node(unary(UnaryKind::Sqrt), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "neg",
        &|b| {
            let x = b.input("x", &[1, 32], -4.0, 4.0);
            vec![b.node(unary(UnaryKind::Neg), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "abs",
        &|b| {
            let x = b.input("x", &[1, 32], -4.0, 4.0);
            vec![b.node(unary(UnaryKind::Abs), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "relu_n1_to_1",
        &|b| {
            let x = b.input("x", &[1, 32], -3.0, 3.0);
            vec![b.node(unary(UnaryKind::ReluN1To1), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "quantize_int8",
        &|b| {
            let x = b.input("x", &[1, 64], -8.0, 8.0);
            vec![b.node(Op::Quantize, &[Some(x)], Some((DType::I8, QuantParams::per_tensor(0.05, -3))))]
        },
        "exact",
    );
    add(
        "quantize_uint8",
        &|b| {
            let x = b.input("x", &[1, 64], -3.0, 3.0);
            vec![b.node(Op::Quantize, &[Some(x)], Some((DType::U8, QuantParams::per_tensor(0.02, 128))))]
        },
        "exact",
    );
    add(
        "dequantize_int8",
        &|b| {
            let vals: Vec<i8> = (-128..=127).step_by(5).collect();
            let n = vals.len();
            let t =
                Tensor::activation("q", DType::I8, Shape::fixed(&[1, n])).with_quant(QuantParams::per_tensor(0.1, 5));
            let q = b.input_with(t, Array::new(vec![1, n], Data::I8(vals)).unwrap());
            vec![b.node(Op::Dequantize, &[Some(q)], None)]
        },
        "exact",
    );
    add(
        "float16_weights_fully_connected",
        &|b| {
            let x = b.input("x", &[1, 8], -1.0, 1.0);
            let w: Vec<u8> = b.rng.vec(32, -1.0, 1.0).iter().flat_map(|&f| qlite_f16_bits(f).to_le_bytes()).collect();
            let w16 = b.raw_const(Tensor::constant("w_f16", DType::F16, Shape::fixed(&[4, 8]), w.into()));
            let w32 = b.node(Op::Dequantize, &[Some(w16)], None);
            let bias =
                b.raw_const(Tensor::constant("b", DType::F32, Shape::fixed(&[4]), f32_bytes(&[0.5, -0.5, 0.0, 1.0])));
            vec![b.node(fc(Activation::None, false), &[Some(x), Some(w32), Some(bias)], None)]
        },
        "float",
    );
    for (name, ac, hpc) in [
        ("resize_bilinear", false, false),
        ("resize_bilinear_align_corners", true, false),
        ("resize_bilinear_half_pixel", false, true),
    ] {
        add(
            name,
            &move |b| {
                let x = b.input("x", &[1, 3, 4, 2], -1.0, 1.0);
                let op = Op::Resize(Resize {
                    mode: ResizeMode::Bilinear,
                    size: [5, 7],
                    align_corners: ac,
                    half_pixel_centers: hpc,
                });
                vec![b.node(op, &[Some(x)], None)]
            },
            "float",
        );
    }
    for (name, padding, stride, output) in [
        ("transpose_conv_same", Padding::Same, [2, 2], [6, 8]),
        ("transpose_conv_valid", Padding::Valid, [2, 1], [7, 6]),
    ] {
        add(
            name,
            &move |b| {
                let x = b.input("x", &[1, 3, 4, 2], -1.0, 1.0);
                let wv: Vec<f32> = b.rng.vec(3 * 3 * 3 * 2, -0.5, 0.5);
                let w = b.raw_const(Tensor::constant("w", DType::F32, Shape::fixed(&[3, 3, 3, 2]), f32_bytes(&wv)));
                let bias =
                    b.raw_const(Tensor::constant("b", DType::F32, Shape::fixed(&[3]), f32_bytes(&[0.1, -0.2, 0.3])));
                let op = Op::TransposeConv2d(TransposeConv2d { padding, stride, output, activation: Activation::Relu });
                vec![b.node(op, &[Some(x), Some(w), Some(bias)], None)]
            },
            "float",
        );
    }
    for (name, kind, lo) in [
        ("elu", UnaryKind::Elu, -4.0),
        ("gelu", UnaryKind::Gelu, -4.0),
        ("gelu_tanh", UnaryKind::GeluTanh, -4.0),
        ("rsqrt", UnaryKind::Rsqrt, 0.05),
    ] {
        add(
            name,
            &move |b| {
                let x = b.input("x", &[1, 48], lo, 4.0);
                vec![b.node(unary(kind), &[Some(x)], None)]
            },
            "float",
        );
    }
    for (name, da, db, adj_x, adj_y) in [
        ("batch_matmul_2d", vec![3, 4], vec![4, 5], false, false),
        ("batch_matmul_broadcast_adj", vec![2, 3, 4, 3], vec![3, 5, 4], true, true),
    ] {
        add(
            name,
            &move |b| {
                let x = b.input("a", &da, -1.0, 1.0);
                let y = b.input("b", &db, -1.0, 1.0);
                vec![b.node(Op::BatchMatMul(BatchMatMul { adj_x, adj_y }), &[Some(x), Some(y)], None)]
            },
            "float",
        );
    }
    add(
        "padv2",
        &|b| {
            let x = b.input("x", &[1, 3, 4, 2], -1.0, 1.0);
            let v = b.raw_const(Tensor::constant("value", DType::F32, Shape::fixed(&[]), f32_bytes(&[-1.5])));
            vec![b.node(Op::Pad(Pad { paddings: vec![[0, 0], [1, 2], [0, 1], [1, 0]] }), &[Some(x), Some(v)], None)]
        },
        "float",
    );
    add(
        "squared_difference",
        &|b| {
            let x = b.input("x", &[2, 1, 5], -3.0, 3.0);
            let y = b.input("y", &[3, 5], -3.0, 3.0);
            vec![b.node(
                Op::Binary(Binary { kind: BinaryKind::SquaredDifference, activation: Activation::None }),
                &[Some(x), Some(y)],
                None,
            )]
        },
        "float",
    );
    add(
        "sum",
        &|b| {
            let x = b.input("x", &[2, 3, 4, 5], -2.0, 2.0);
            vec![b.node(Op::Sum(Mean { axes: vec![1, 3], keep_dims: false }), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "log_softmax",
        &|b| {
            let x = b.input("x", &[3, 10], -5.0, 5.0);
            vec![b.node(Op::LogSoftmax, &[Some(x)], None)]
        },
        "float",
    );
    add(
        "prelu",
        &|b| {
            let x = b.input("x", &[1, 3, 3, 4], -2.0, 2.0);
            let alpha = b.raw_const(Tensor::constant(
                "alpha",
                DType::F32,
                Shape::fixed(&[1, 1, 4]),
                f32_bytes(&[0.1, 0.25, -0.5, 2.0]),
            ));
            vec![b.node(Op::Prelu, &[Some(x), Some(alpha)], None)]
        },
        "float",
    );
    add(
        "gather",
        &|b| {
            let x = b.input("x", &[2, 5, 3], -1.0, 1.0);
            let idx = b.raw_const(Tensor::constant(
                "indices",
                DType::I32,
                Shape::fixed(&[2, 2]),
                qlite::ir::tensor::i32_bytes(&[4, 0, 2, 2]),
            ));
            vec![b.node(Op::Gather(Gather { axis: 1 }), &[Some(x), Some(idx)], None)]
        },
        "float",
    );
    add(
        "tile",
        &|b| {
            let x = b.input("x", &[1, 2, 3], -1.0, 1.0);
            vec![b.node(Op::Tile(Tile { multiples: vec![2, 1, 3] }), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "depth_to_space",
        &|b| {
            let x = b.input("x", &[1, 2, 3, 8], -1.0, 1.0);
            vec![b.node(Op::DepthToSpace(SpaceDepth { block: 2 }), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "space_to_depth",
        &|b| {
            let x = b.input("x", &[1, 6, 4, 2], -1.0, 1.0);
            vec![b.node(Op::SpaceToDepth(SpaceDepth { block: 2 }), &[Some(x)], None)]
        },
        "float",
    );
    add(
        "mirror_pad",
        &|b| {
            let x = b.input("x", &[1, 3, 4, 2], -1.0, 1.0);
            let r = b.node(
                Op::MirrorPad(MirrorPad { paddings: vec![[0, 0], [2, 1], [1, 3], [0, 0]], mode: MirrorMode::Reflect }),
                &[Some(x)],
                None,
            );
            vec![b.node(
                Op::MirrorPad(MirrorPad {
                    paddings: vec![[0, 0], [1, 1], [0, 2], [1, 0]],
                    mode: MirrorMode::Symmetric,
                }),
                &[Some(r)],
                None,
            )]
        },
        "float",
    );
    add(
        "densify_fully_connected",
        &|b| {
            // Weights with about two thirds zeros, stored CSR (rows dense, columns sparse, uint8
            // indices) and made dense by DENSIFY before the FC, as TF's sparsity mode writes.
            let x = b.input("x", &[1, 8], -1.0, 1.0);
            let w: Vec<f32> = b.rng.vec(32, -1.0, 1.0).iter().map(|&v| if v.abs() < 0.66 { 0.0 } else { v }).collect();
            let t = Tensor::constant("w_sparse", DType::F32, Shape::fixed(&[4, 8]), f32_bytes(&w));
            let w_sparse = b.raw_const(Tensor { sparse: Some(Box::new(csr_rows(&w, 4, 8))), ..t });
            let w_dense = b.node(Op::Densify, &[Some(w_sparse)], None);
            vec![b.node(fc(Activation::None, false), &[Some(x), Some(w_dense), None], None)]
        },
        "float",
    );
    v
}

/// A row-major f32 matrix stored as TFLite's CSR: rows dense, the non-zero columns of each.
fn csr_rows(w: &[f32], rows: usize, cols: usize) -> qlite::ir::SparseForm {
    let (mut segments, mut indices, mut values) = (vec![0u32], Vec::new(), Vec::new());
    for r in 0..rows {
        for c in 0..cols {
            if w[r * cols + c] != 0.0 {
                indices.push(c as u32);
                values.extend_from_slice(&w[r * cols + c].to_le_bytes());
            }
        }
        segments.push(indices.len() as u32);
    }
    qlite::ir::SparseForm {
        traversal_order: vec![0, 1],
        block_map: vec![],
        levels: vec![
            qlite::ir::SparseLevel::Dense(rows),
            qlite::ir::SparseLevel::Csr { segments, indices, segments_width: 1, indices_width: 1 },
        ],
        values: values.into(),
    }
}

fn qlite_f16_bits(f: f32) -> u16 {
    half::f16::from_f32(f).to_bits()
}

#[test]
fn every_op_round_trips_and_is_exported() {
    let mut snap = String::new();
    let cases = cases();
    let covered: std::collections::BTreeSet<&str> =
        cases.iter().flat_map(|c| c.1.nodes().iter().map(|n| n.op.name())).collect();
    // Every op of the IR (the list is generated from the IR's op enum, so a new op fails here
    // until a case covers it). Opaque stands for ops qlite has no kernel for: no runtime can
    // run one, so no case can hold it (the reader's tests keep its bytes instead). Erf has no
    // TFLite op: it only exists until `fuse-gelu` makes the GELU it spells (tests/it/onnx.rs).
    let missing: Vec<&str> = qlite::ir::OpKind::ALL
        .iter()
        .filter(|k| {
            !matches!(k, qlite::ir::OpKind::Opaque | qlite::ir::OpKind::Erf | qlite::ir::OpKind::Erfc)
                && !covered.contains(k.name())
        })
        .map(|k| k.name())
        .collect();
    assert!(missing.is_empty(), "no case covers {missing:?}");
    for (name, g, inputs, cmp) in &cases {
        let (y, g2) = cycle(&format!("op_{name}"), g, inputs, cmp);
        if *name == "elu" {
            // LiteRT's BUILTIN_REF resolver registers no ELU: its default kernel is the oracle.
            crate::common::reference_resolver_fails(
                "op_elu",
                "Didn't find op for builtin opcode 'ELU' version '1'",
                "BUILTIN_REF registers no ELU",
            );
        }
        snap.push_str(&format!("== {name}\n{}{}\n\n", qlite::ir::print_graph(&g2), arrays_text(&y)));
    }
    insta::assert_snapshot!("ops", snap);
}

#[test]
fn float_kernels_match_hand_computed_values() {
    // FC: y = relu(x·Wᵀ + b) with x = [1, -2, 3, -4].
    let g = qlite::sample::tiny_graph();
    let y = qlite::run(&g, vec![Array::f32(vec![1, 4], vec![1.0, -2.0, 3.0, -4.0]).unwrap()]).unwrap();
    // row 0: 0.5 + 2 + 0.75 + 0 + 0.1 = 3.35; row 1: 1 - 2 - 3 - 2 - 0.2 = -6.2 → 0
    assert_eq!(y[0].as_f32().unwrap(), &[3.35, 0.0]);

    // Average pool with SAME padding excludes the padding from the count.
    let mut b = Builder::new("avg");
    let t = Tensor::activation("x", DType::F32, Shape::fixed(&[1, 2, 2, 1]));
    let x = b.input_with(t, Array::f32(vec![1, 2, 2, 1], vec![1.0, 2.0, 3.0, 4.0]).unwrap());
    let op = Op::Pool2d(Pool2d {
        kind: PoolKind::Average,
        filter: [3, 3],
        stride: [1, 1],
        padding: Padding::Same,
        activation: Activation::None,
    });
    let o = b.node(op, &[Some(x)], None);
    let (g, ins) = b.finish(&[o]);
    let y = qlite::run(&g, ins).unwrap();
    assert_eq!(y[0].as_f32().unwrap(), &[2.5, 2.5, 2.5, 2.5]);

    // Quantize rounds half away from zero and saturates.
    let mut b = Builder::new("q");
    let t = Tensor::activation("x", DType::F32, Shape::fixed(&[4]));
    let x = b.input_with(t, Array::f32(vec![4], vec![0.25, -0.25, 1000.0, -1000.0]).unwrap());
    let o = b.node(Op::Quantize, &[Some(x)], Some((DType::I8, QuantParams::per_tensor(0.5, 0))));
    let (g, ins) = b.finish(&[o]);
    assert_eq!(qlite::run(&g, ins).unwrap()[0].data(), &Data::I8(vec![1, -1, 127, -128]));
}
