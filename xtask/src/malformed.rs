//! `cargo xtask malformed` (also part of `cargo xtask fixtures`): write `fixtures/malformed/`,
//! the catalogue of hostile inputs (../shared/design/reliability.md §7) that every reader must
//! refuse with a clear error, without a panic, a large allocation or an output file. The test
//! `tests/it/malformed.rs` runs each file through qlite and snapshots the error.

use super::{R, root};
use prost::Message;
use qlite::onnx::proto;
use qlite_tflite::fb;
use std::path::Path;

/// (shape, type, buffer, name, scales, zero points)
type RawTensor = (Vec<i32>, fb::TensorType, u32, &'static str, Vec<f32>, Vec<i64>);

/// A hand-built .tflite whose every field can be broken. The default is a valid 4 → 2 fully
/// connected model.
#[derive(Clone)]
struct Raw {
    version: u32,
    subgraphs: usize,
    tensors: Vec<RawTensor>,
    buffers: Vec<Option<Vec<u8>>>,
    opcodes: Vec<i32>,
    /// (opcode index, inputs, outputs)
    ops: Vec<(u32, Vec<i32>, Vec<i32>)>,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    /// Give the operators Conv2DOptions instead of FullyConnectedOptions.
    wrong_options: bool,
    /// (tensor, shape_signature): tensors with a dimension known only at run time.
    signatures: Vec<(usize, Vec<i32>)>,
    /// Sparsity parameters for tensor 1: traversal order, block map, and per level either
    /// `Err(dense size)` or `Ok((segments, indices))`.
    sparse: Option<RawSparsity>,
}

type RawSparsity = (Vec<i32>, Vec<i32>, Vec<Result<(Vec<i32>, Vec<i32>), i32>>);

impl Default for Raw {
    fn default() -> Self {
        Raw {
            version: 3,
            subgraphs: 1,
            tensors: vec![
                (vec![1, 4], fb::TensorType::FLOAT32, 0, "x", vec![], vec![]),
                (vec![2, 4], fb::TensorType::FLOAT32, 1, "w", vec![], vec![]),
                (vec![1, 2], fb::TensorType::FLOAT32, 0, "y", vec![], vec![]),
            ],
            buffers: vec![None, Some(vec![0u8; 32])],
            opcodes: vec![fb::BuiltinOperator::FULLY_CONNECTED.0],
            ops: vec![(0, vec![0, 1, -1], vec![2])],
            inputs: vec![0],
            outputs: vec![2],
            wrong_options: false,
            signatures: Vec::new(),
            sparse: None,
        }
    }
}

impl Raw {
    fn build(&self) -> Vec<u8> {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let buffers: Vec<_> = self
            .buffers
            .iter()
            .map(|b| {
                let data = b.as_ref().map(|d| fbb.create_vector(d));
                fb::Buffer::create(&mut fbb, &fb::BufferArgs { data, ..Default::default() })
            })
            .collect();
        let buffers = fbb.create_vector(&buffers);
        let tensors: Vec<_> = self
            .tensors
            .iter()
            .enumerate()
            .map(|(i, (shape, ty, buffer, name, scales, zps))| {
                let shape_signature =
                    self.signatures.iter().find(|(t, _)| *t == i).map(|(_, sig)| fbb.create_vector(sig));
                let shape = Some(fbb.create_vector(shape));
                let name = Some(fbb.create_string(name));
                let scale = Some(fbb.create_vector(scales));
                let zero_point = Some(fbb.create_vector(zps));
                let quantization = Some(fb::QuantizationParameters::create(
                    &mut fbb,
                    &fb::QuantizationParametersArgs { scale, zero_point, ..Default::default() },
                ));
                let sparsity = self.sparse.as_ref().filter(|_| i == 1).map(|(order, blocks, levels)| {
                    let levels: Vec<_> = levels
                        .iter()
                        .map(|l| match l {
                            Err(n) => fb::DimensionMetadata::create(
                                &mut fbb,
                                &fb::DimensionMetadataArgs { dense_size: *n, ..Default::default() },
                            ),
                            Ok((seg, idx)) => {
                                let v = Some(fbb.create_vector(seg));
                                let seg = fb::Int32Vector::create(&mut fbb, &fb::Int32VectorArgs { values: v });
                                let v = Some(fbb.create_vector(idx));
                                let idx = fb::Int32Vector::create(&mut fbb, &fb::Int32VectorArgs { values: v });
                                fb::DimensionMetadata::create(
                                    &mut fbb,
                                    &fb::DimensionMetadataArgs {
                                        format: fb::DimensionType::SPARSE_CSR,
                                        dense_size: 0,
                                        array_segments_type: fb::SparseIndexVector::Int32Vector,
                                        array_segments: Some(seg.as_union_value()),
                                        array_indices_type: fb::SparseIndexVector::Int32Vector,
                                        array_indices: Some(idx.as_union_value()),
                                    },
                                )
                            }
                        })
                        .collect();
                    let dim_metadata = Some(fbb.create_vector(&levels));
                    let traversal_order = Some(fbb.create_vector(order));
                    let block_map = Some(fbb.create_vector(blocks));
                    fb::SparsityParameters::create(
                        &mut fbb,
                        &fb::SparsityParametersArgs { traversal_order, block_map, dim_metadata },
                    )
                });
                fb::Tensor::create(
                    &mut fbb,
                    &fb::TensorArgs {
                        shape,
                        type_: *ty,
                        buffer: *buffer,
                        name,
                        quantization,
                        shape_signature,
                        sparsity,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let tensors = fbb.create_vector(&tensors);
        let ops: Vec<_> = self
            .ops
            .iter()
            .map(|(oc, ins, outs)| {
                let inputs = Some(fbb.create_vector(ins));
                let outputs = Some(fbb.create_vector(outs));
                let (ty, opts) = if self.wrong_options {
                    let o = fb::Conv2DOptions::create(&mut fbb, &Default::default()).as_union_value();
                    (fb::BuiltinOptions::Conv2DOptions, o)
                } else {
                    let o = fb::FullyConnectedOptions::create(&mut fbb, &Default::default()).as_union_value();
                    (fb::BuiltinOptions::FullyConnectedOptions, o)
                };
                fb::Operator::create(
                    &mut fbb,
                    &fb::OperatorArgs {
                        opcode_index: *oc,
                        inputs,
                        outputs,
                        builtin_options_type: ty,
                        builtin_options: Some(opts),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let operators = Some(fbb.create_vector(&ops));
        let inputs = Some(fbb.create_vector(&self.inputs));
        let outputs = Some(fbb.create_vector(&self.outputs));
        let sg = fb::SubGraph::create(
            &mut fbb,
            &fb::SubGraphArgs {
                tensors: Some(tensors),
                inputs,
                outputs,
                operators,
                name: None,
                debug_metadata_index: -1,
            },
        );
        let sgs: Vec<_> = (0..self.subgraphs).map(|_| sg).collect();
        let subgraphs = Some(fbb.create_vector(&sgs));
        let codes: Vec<_> = self
            .opcodes
            .iter()
            .map(|&c| {
                fb::OperatorCode::create(
                    &mut fbb,
                    &fb::OperatorCodeArgs {
                        deprecated_builtin_code: c.min(127) as i8,
                        custom_code: None,
                        version: 1,
                        builtin_code: fb::BuiltinOperator(c),
                    },
                )
            })
            .collect();
        let operator_codes = Some(fbb.create_vector(&codes));
        let model = fb::Model::create(
            &mut fbb,
            &fb::ModelArgs {
                version: self.version,
                operator_codes,
                subgraphs,
                buffers: Some(buffers),
                ..Default::default()
            },
        );
        fbb.finish(model, Some("TFL3"));
        fbb.finished_data().to_vec()
    }
}

/// Named files of one format.
type Cases = Vec<(&'static str, Vec<u8>)>;

/// One way to break the default model.
type Breakage = Box<dyn Fn(&mut Raw)>;

fn int8_weights(r: &mut Raw, scales: Vec<f32>, zps: Vec<i64>) {
    r.tensors[1].1 = fb::TensorType::INT8;
    r.buffers[1] = Some(vec![0u8; 8]);
    r.tensors[1].4 = scales;
    r.tensors[1].5 = zps;
}

fn tflite_cases() -> Vec<(&'static str, Vec<u8>)> {
    let valid = Raw::default().build();
    let mut out: Vec<(&'static str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("three_bytes", vec![1, 2, 3]),
        ("wrong_identifier", {
            let mut v = valid.clone();
            v[4..8].copy_from_slice(b"ONNX");
            v
        }),
        ("truncated", valid[..valid.len() / 2].to_vec()),
        ("identifier_then_garbage", {
            let mut v = vec![0xffu8; 64];
            v[4..8].copy_from_slice(b"TFL3");
            v
        }),
        ("root_offset_past_the_end", {
            let mut v = valid.clone();
            v[..4].copy_from_slice(&u32::MAX.to_le_bytes());
            v
        }),
    ];
    let cases: Vec<(&'static str, Breakage)> = vec![
        ("buffer_index_out_of_range", Box::new(|r| r.tensors[1].2 = 7)),
        ("op_input_index_out_of_range", Box::new(|r| r.ops[0].1[1] = 42)),
        ("op_output_index_negative", Box::new(|r| r.ops[0].2[0] = -5)),
        ("required_input_missing", Box::new(|r| r.ops[0].1[1] = -1)),
        ("opcode_index_out_of_range", Box::new(|r| r.ops[0].0 = 3)),
        ("subgraph_input_out_of_range", Box::new(|r| r.inputs[0] = 99)),
        ("no_subgraph", Box::new(|r| r.subgraphs = 0)),
        // Sparse weights (CSR over the columns of w[2,4], 2 stored values).
        (
            "sparse_index_out_of_range",
            Box::new(|r| {
                r.buffers[1] = Some(vec![0u8; 8]);
                r.sparse = Some((vec![0, 1], vec![], vec![Err(2), Ok((vec![0, 1, 2], vec![0, 9]))]));
            }),
        ),
        (
            "sparse_segments_past_indices",
            Box::new(|r| {
                r.buffers[1] = Some(vec![0u8; 8]);
                r.sparse = Some((vec![0, 1], vec![], vec![Err(2), Ok((vec![0, 7, 2], vec![0, 1]))]));
            }),
        ),
        (
            "sparse_value_count_lies",
            Box::new(|r| {
                r.buffers[1] = Some(vec![0u8; 4]);
                r.sparse = Some((vec![0, 1], vec![], vec![Err(2), Ok((vec![0, 1, 2], vec![0, 1]))]));
            }),
        ),
        (
            // One stored value claiming a [1, 100000000] dense tensor (400 MB from a 1 KB file).
            "sparse_expands_past_the_file",
            Box::new(|r| {
                r.buffers[1] = Some(vec![0u8; 4]);
                r.tensors[1].0 = vec![1, 100_000_000];
                r.sparse = Some((vec![0, 1], vec![], vec![Err(1), Ok((vec![0, 1], vec![0]))]));
            }),
        ),
        ("schema_version_2", Box::new(|r| r.version = 2)),
        ("buffer_shorter_than_shape", Box::new(|r| r.buffers[1] = Some(vec![0u8; 31]))),
        ("buffer_longer_than_shape", Box::new(|r| r.buffers[1] = Some(vec![0u8; 33]))),
        ("element_count_overflows", Box::new(|r| r.tensors[1].0 = vec![i32::MAX; 5])),
        ("huge_activation_shape", Box::new(|r| r.tensors[0].0 = vec![65536, 65536, 65536])),
        ("negative_dimension", Box::new(|r| r.tensors[1].0 = vec![2, -4])),
        ("rank_too_large", Box::new(|r| r.tensors[0].0 = vec![1; 100])),
        ("nan_scale", Box::new(|r| int8_weights(r, vec![f32::NAN], vec![0]))),
        ("negative_scale", Box::new(|r| int8_weights(r, vec![-0.5], vec![0]))),
        ("infinite_scale", Box::new(|r| int8_weights(r, vec![f32::INFINITY], vec![0]))),
        ("zero_point_outside_int8", Box::new(|r| int8_weights(r, vec![0.5], vec![300]))),
        ("scale_without_zero_point", Box::new(|r| int8_weights(r, vec![0.5], vec![]))),
        ("per_channel_count_mismatch", Box::new(|r| int8_weights(r, vec![0.5, 0.5, 0.5], vec![0, 0, 0]))),
        (
            "cycle",
            Box::new(|r| {
                r.tensors.push((vec![1, 4], fb::TensorType::FLOAT32, 0, "x2", vec![], vec![]));
                r.tensors.push((vec![4, 2], fb::TensorType::FLOAT32, 2, "w2", vec![], vec![]));
                r.buffers.push(Some(vec![0u8; 32]));
                r.ops = vec![(0, vec![3, 1, -1], vec![2]), (0, vec![2, 4, -1], vec![3])];
            }),
        ),
        ("op_writes_a_constant", Box::new(|r| r.ops[0].2[0] = 1)),
        ("op_reads_its_own_output", Box::new(|r| r.ops[0].1[0] = 2)),
        ("output_produced_twice", Box::new(|r| r.ops.push((0, vec![0, 1, -1], vec![2])))),
        ("op_writes_a_graph_input", Box::new(|r| r.ops[0].2[0] = 0)),
        ("shape_disagrees_with_inference", Box::new(|r| r.tensors[2].0 = vec![1, 3])),
        ("options_of_another_op", Box::new(|r| r.wrong_options = true)),
        (
            "unsupported_ops_all_named",
            Box::new(|r| {
                r.opcodes = vec![fb::BuiltinOperator::CUMSUM.0, 9999, fb::BuiltinOperator::FULLY_CONNECTED.0];
                r.tensors.push((vec![1, 2], fb::TensorType::FLOAT32, 0, "z", vec![], vec![]));
                r.tensors.push((vec![1, 2], fb::TensorType::FLOAT32, 0, "z2", vec![], vec![]));
                r.ops = vec![(2, vec![0, 1, -1], vec![2]), (0, vec![2], vec![3]), (1, vec![3], vec![4])];
                r.outputs = vec![4];
            }),
        ),
        ("string_tensor", Box::new(|r| r.tensors[0].1 = fb::TensorType::STRING)),
        (
            // RESHAPE(x, CONCATENATION(SHAPE(x), SHAPE(x))) of a dynamic batch: two dims known
            // only at run time in the target, one -1 cannot say both.
            "symbolic_shape_unresolvable",
            Box::new(|r| {
                use fb::BuiltinOperator as B;
                r.opcodes = vec![B::SHAPE.0, B::CONCATENATION.0, B::RESHAPE.0];
                r.tensors = vec![
                    (vec![1, 4], fb::TensorType::FLOAT32, 0, "x", vec![], vec![]),
                    (vec![2], fb::TensorType::INT32, 0, "shape", vec![], vec![]),
                    (vec![4], fb::TensorType::INT32, 0, "twice", vec![], vec![]),
                    (vec![1, 4, 1, 4], fb::TensorType::FLOAT32, 0, "y", vec![], vec![]),
                ];
                r.signatures = vec![(0, vec![-1, 4]), (3, vec![-1, 4, -1, 4])];
                r.buffers = vec![None];
                r.ops = vec![(0, vec![0], vec![1]), (1, vec![1, 1], vec![2]), (2, vec![0, 2], vec![3])];
                r.outputs = vec![3];
            }),
        ),
        (
            "resize_to_zero_size",
            Box::new(|r| {
                r.opcodes = vec![fb::BuiltinOperator::RESIZE_NEAREST_NEIGHBOR.0];
                r.tensors = vec![
                    (vec![1, 2, 2, 1], fb::TensorType::FLOAT32, 0, "x", vec![], vec![]),
                    (vec![2], fb::TensorType::INT32, 1, "size", vec![], vec![]),
                    (vec![1, 0, 4, 1], fb::TensorType::FLOAT32, 0, "y", vec![], vec![]),
                ];
                r.buffers = vec![None, Some([0i32, 4].iter().flat_map(|v| v.to_le_bytes()).collect())];
                r.ops = vec![(0, vec![0, 1], vec![2])];
            }),
        ),
        (
            // STRIDED_SLICE of a shape vector whose begin is a model input.
            "strided_slice_runtime_begin",
            Box::new(|r| {
                use fb::BuiltinOperator as B;
                r.opcodes = vec![B::SHAPE.0, B::STRIDED_SLICE.0, B::RESHAPE.0];
                r.tensors = vec![
                    (vec![1, 4], fb::TensorType::FLOAT32, 0, "x", vec![], vec![]),
                    (vec![1], fb::TensorType::INT32, 0, "begin", vec![], vec![]),
                    (vec![1], fb::TensorType::INT32, 1, "end", vec![], vec![]),
                    (vec![1], fb::TensorType::INT32, 2, "strides", vec![], vec![]),
                    (vec![2], fb::TensorType::INT32, 0, "shape", vec![], vec![]),
                    (vec![1], fb::TensorType::INT32, 0, "sliced", vec![], vec![]),
                    (vec![4], fb::TensorType::FLOAT32, 0, "y", vec![], vec![]),
                ];
                r.signatures = vec![(0, vec![-1, 4]), (6, vec![-1])];
                r.buffers = vec![None, Some(2i32.to_le_bytes().to_vec()), Some(1i32.to_le_bytes().to_vec())];
                r.ops = vec![(0, vec![0], vec![4]), (1, vec![4, 1, 2, 3], vec![5]), (2, vec![0, 5], vec![6])];
                r.inputs = vec![0, 1];
                r.outputs = vec![6];
            }),
        ),
        (
            // Found by the fuzzer: a weight scale so large the int8 rescale has no Q31 form.
            "int8_rescale_without_fixed_point_form",
            Box::new(|r| {
                int8_weights(r, vec![1e30], vec![0]);
                r.tensors[0].1 = fb::TensorType::INT8;
                r.tensors[0].4 = vec![1.0 / 255.0];
                r.tensors[0].5 = vec![-128];
                r.tensors[2].1 = fb::TensorType::INT8;
                r.tensors[2].4 = vec![0.1];
                r.tensors[2].5 = vec![0];
            }),
        ),
    ];
    for (name, f) in cases {
        let mut r = Raw::default();
        f(&mut r);
        out.push((name, r.build()));
    }
    // Found by the tflite fuzzer (kept as it found it, `xtask/malformed/`): an op qlite does not
    // model whose options offset lies past the end of the file. The flatbuffers verifier does
    // not follow a union of a type the schema does not know, so its accessor read out of range.
    let found = root().join("xtask/malformed/unknown_options_offset_past_the_end.tflite");
    out.push((
        "unknown_options_offset_past_the_end",
        std::fs::read(&found).unwrap_or_else(|e| panic!("{}: {e}", found.display())),
    ));
    // Offset buffers (constants after the flatbuffer, as in files over 2 GiB): the tiny model
    // written that way, with the weights' offset moved past the end of the file, and with the
    // bias moved to overlap the weights.
    let outside = qlite_tflite::write_model_with(&qlite::sample::tiny_graph(), qlite_tflite::BufferPlacement::Outside)
        .expect("the tiny model writes")
        .to_vec();
    let fb_len = u64::try_from(outside.len()).unwrap_or(u64::MAX);
    let patch = |at: u64, to: u64| {
        let mut v = outside.clone();
        let pat = at.to_le_bytes();
        let hits: Vec<usize> = (0..v.len() - 8).filter(|&i| v[i..i + 8] == pat).collect();
        assert_eq!(hits.len(), 1, "offset {at} occurs once in the flatbuffer");
        v[hits[0]..hits[0] + 8].copy_from_slice(&to.to_le_bytes());
        v
    };
    let offsets = offset_buffer_offsets(&outside);
    out.push(("offset_buffer_past_the_end", patch(offsets[0], fb_len - 8)));
    out.push(("offset_buffers_overlap", patch(offsets[1], offsets[0] + 4)));
    out
}

/// The offsets of the buffers kept after the flatbuffer, in buffer order.
fn offset_buffer_offsets(bytes: &[u8]) -> Vec<u64> {
    let model = flatbuffers::root::<fb::Model>(bytes).expect("a valid model");
    model.buffers().into_iter().flatten().map(|b| b.offset()).filter(|&o| o > 1).collect()
}

// ------------------------------------------------------------------ ONNX

fn onnx_value(name: &str, dims: &[i64]) -> proto::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| proto::tensor_shape_proto::Dimension {
            value: Some(proto::tensor_shape_proto::dimension::Value::DimValue(d)),
            denotation: None,
        })
        .collect();
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(proto::type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(proto::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn onnx_model(op: &str, inputs: &[&str], inits: Vec<proto::TensorProto>, x: &[i64]) -> Vec<u8> {
    onnx_model_with(op, inputs, inits, x, &[])
}

/// One-node model with integer-list attributes.
fn onnx_model_with(
    op: &str,
    inputs: &[&str],
    inits: Vec<proto::TensorProto>,
    x: &[i64],
    attrs: &[(&str, Vec<i64>)],
) -> Vec<u8> {
    let attribute = attrs
        .iter()
        .map(|(k, v)| proto::AttributeProto {
            name: Some((*k).into()),
            ints: v.clone(),
            r#type: Some(7),
            ..Default::default()
        })
        .collect();
    proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        graph: Some(proto::GraphProto {
            node: vec![proto::NodeProto {
                op_type: Some(op.into()),
                name: Some(format!("{op}_node")),
                input: inputs.iter().map(|s| s.to_string()).collect(),
                output: vec!["y".into()],
                attribute,
                ..Default::default()
            }],
            name: Some("g".into()),
            initializer: inits,
            input: vec![onnx_value("x", x)],
            output: vec![onnx_value("y", x)],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn onnx_cases() -> Vec<(&'static str, Vec<u8>)> {
    let w = |dims: Vec<i64>, bytes: usize| proto::TensorProto {
        name: Some("w".into()),
        dims,
        data_type: Some(1),
        raw_data: Some(vec![0u8; bytes].into()),
        ..Default::default()
    };
    let external = |entries: &[(&str, &str)]| proto::TensorProto {
        name: Some("w".into()),
        dims: vec![4],
        data_type: Some(1),
        data_location: Some(1),
        external_data: entries
            .iter()
            .map(|(k, v)| proto::StringStringEntryProto { key: Some((*k).into()), value: Some((*v).into()) })
            .collect(),
        ..Default::default()
    };
    let valid = onnx_model("Add", &["x", "w"], vec![w(vec![4], 16)], &[1, 4]);
    vec![
        ("truncated", valid[..valid.len() - 7].to_vec()),
        ("wrong_wire_type", {
            // Field 7 (graph) announced as a varint instead of length-delimited.
            let mut v = vec![0x08, 0x08, 0x38, 0x01];
            v.extend_from_slice(&valid[2..]);
            v
        }),
        ("length_past_the_end", vec![0x08, 0x08, 0x3a, 0xff, 0xff, 0xff, 0x7f, 0x00]),
        ("negative_dimension", onnx_model("Add", &["x", "w"], vec![w(vec![-4], 16)], &[1, 4])),
        ("dims_product_overflows", onnx_model("Add", &["x", "w"], vec![w(vec![i64::MAX, 4], 16)], &[1, 4])),
        (
            "absolute_external_path",
            onnx_model("Add", &["x", "w"], vec![external(&[("location", "/etc/passwd")])], &[1, 4]),
        ),
        (
            "percent_encoded_external_path",
            onnx_model("Add", &["x", "w"], vec![external(&[("location", "..%2fw.bin")])], &[1, 4]),
        ),
        (
            "external_huge_length",
            onnx_model(
                "Add",
                &["x", "w"],
                vec![external(&[
                    ("location", "external_weights.bin"),
                    ("offset", "0"),
                    ("length", "1000000000000000"),
                ])],
                &[1, 4],
            ),
        ),
        (
            "external_negative_offset",
            onnx_model(
                "Add",
                &["x", "w"],
                vec![external(&[("location", "external_weights.bin"), ("offset", "-4")])],
                &[1, 4],
            ),
        ),
        ("gemm_with_too_few_inputs", onnx_model("Gemm", &["x"], vec![], &[1, 4])),
        ("unknown_op", onnx_model("NoSuchOp", &["x"], vec![], &[1, 4])),
        ("huge_input_shape", onnx_model("Relu", &["x"], vec![], &[1 << 40, 1 << 40])),
        (
            // Found by the ONNX fuzzer: an empty strides list indexed a pool's strides[0].
            "pool_with_empty_strides",
            onnx_model_with(
                "MaxPool",
                &["x"],
                vec![],
                &[1, 1, 4, 4],
                &[("kernel_shape", vec![2, 2]), ("strides", vec![])],
            ),
        ),
        (
            // Found by the ONNX fuzzer: enormous pads sized an average pool's count map.
            "pool_with_enormous_pads",
            onnx_model_with(
                "AveragePool",
                &["x"],
                vec![],
                &[1, 1, 4, 4],
                &[("kernel_shape", vec![2, 2]), ("pads", vec![1 << 40, 0, 1 << 40, 0])],
            ),
        ),
        (
            "conv_with_one_stride",
            onnx_model_with("Conv", &["x", "w"], vec![w(vec![1, 1, 2, 2], 16)], &[1, 1, 4, 4], &[("strides", vec![2])]),
        ),
        (
            "external_past_the_end",
            onnx_model(
                "Add",
                &["x", "w"],
                vec![external(&[("location", "external_weights.bin"), ("offset", "8"), ("length", "16")])],
                &[1, 4],
            ),
        ),
    ]
}

// ------------------------------------------------------------------ TensorFlow GraphDef

fn graphdef_cases() -> Cases {
    use qlite_savedmodel::proto::{
        AttrValue, FunctionDef, FunctionDefLibrary, GraphDef, NameAttrList, NodeDef, OpDef, TensorProto,
        TensorShapeProto, attr_value, op_def, tensor_shape_proto,
    };
    let node = |name: &str, op: &str, inputs: &[&str]| NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let placeholder = || {
        let mut n = node("x", "Placeholder", &[]);
        n.attr.insert("dtype".into(), AttrValue { value: Some(attr_value::Value::Type(1)) });
        let dim = [1i64, 4].iter().map(|&size| tensor_shape_proto::Dim { size, name: String::new() }).collect();
        n.attr.insert(
            "shape".into(),
            AttrValue { value: Some(attr_value::Value::Shape(TensorShapeProto { dim, unknown_rank: false })) },
        );
        n
    };
    let konst = |name: &str, dims: &[i64], t: TensorProto| {
        let mut n = node(name, "Const", &[]);
        let dim = dims.iter().map(|&size| tensor_shape_proto::Dim { size, name: String::new() }).collect();
        let t = TensorProto { dtype: 1, tensor_shape: Some(TensorShapeProto { dim, unknown_rank: false }), ..t };
        n.attr.insert("value".into(), AttrValue { value: Some(attr_value::Value::Tensor(t)) });
        n
    };
    let graph = |nodes: Vec<NodeDef>, library: Option<FunctionDefLibrary>| {
        prost::Message::encode_to_vec(&GraphDef { node: nodes, library })
    };
    let call = |name: &str, f: &str, inputs: &[&str]| {
        let mut n = node(name, "PartitionedCall", inputs);
        n.attr.insert(
            "f".into(),
            AttrValue {
                value: Some(attr_value::Value::Func(NameAttrList { name: f.into(), attr: Default::default() })),
            },
        );
        n
    };
    let arg = |name: &str| op_def::ArgDef { name: name.into(), r#type: 1, ..Default::default() };
    let recursive = FunctionDef {
        signature: Some(OpDef { name: "again".into(), input_arg: vec![arg("a")], output_arg: vec![arg("r")] }),
        node_def: vec![call("inner", "again", &["a"])],
        ret: [("r".to_string(), "inner:output:0".to_string())].into(),
    };
    vec![
        ("reads_a_file", graph(vec![placeholder(), node("y", "ReadFile", &["x"])], None)),
        (
            "py_func_and_write_file",
            graph(vec![placeholder(), node("p", "PyFunc", &["x"]), node("y", "WriteFile", &["p"])], None),
        ),
        ("input_names_no_node", graph(vec![placeholder(), node("y", "Relu", &["nope"])], None)),
        (
            "cycle",
            graph(
                vec![placeholder(), node("a", "Relu", &["b"]), node("b", "Relu", &["a"]), node("y", "Relu", &["b"])],
                None,
            ),
        ),
        (
            "recursive_function",
            graph(
                vec![placeholder(), call("y", "again", &["x"])],
                Some(FunctionDefLibrary { function: vec![recursive.encode_to_vec().into()] }),
            ),
        ),
        (
            // A called function whose name decodes and whose body does not (a node list cut
            // inside a varint): refused when called, naming the function.
            "function_body_corrupt",
            graph(
                vec![placeholder(), call("y", "broken", &["x"])],
                Some(FunctionDefLibrary {
                    function: vec![{
                        let head = FunctionDef {
                            signature: Some(OpDef { name: "broken".into(), ..Default::default() }),
                            ..Default::default()
                        };
                        let mut b = head.encode_to_vec();
                        b.extend_from_slice(&[0x1a, 0x02, 0xff, 0xff]);
                        b.into()
                    }],
                }),
            ),
        ),
        (
            "huge_splat_constant",
            graph(
                vec![
                    placeholder(),
                    konst("c", &[1 << 40], TensorProto { float_val: vec![1.0], ..Default::default() }),
                    node("y", "AddV2", &["x", "c"]),
                ],
                None,
            ),
        ),
        (
            "constant_content_disagrees_with_shape",
            graph(
                vec![
                    placeholder(),
                    konst("c", &[4], TensorProto { tensor_content: vec![0u8; 7].into(), ..Default::default() }),
                    node("y", "AddV2", &["x", "c"]),
                ],
                None,
            ),
        ),
        ("truncated", vec![0x0a, 0x40, 0x0a, 0x01]),
    ]
}

// ------------------------------------------------------------------ safetensors

fn safetensors_cases() -> Vec<(&'static str, Vec<u8>)> {
    let with_header = |h: &str, data_len: usize| -> Vec<u8> {
        let mut v = (h.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(h.as_bytes());
        v.extend(std::iter::repeat_n(0u8, data_len));
        v
    };
    let valid = with_header(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 8);
    let set_len = |n: u64| {
        let mut v = valid.clone();
        v[..8].copy_from_slice(&n.to_le_bytes());
        v
    };
    vec![
        ("under_8_bytes", vec![1, 2, 3]),
        ("header_length_beyond_the_file", set_len(1 << 40)),
        ("header_length_u64_max", set_len(u64::MAX)),
        ("header_over_100_mb", {
            let mut v = (200_000_000u64).to_le_bytes().to_vec();
            v.extend_from_slice(b"{}");
            v
        }),
        ("header_not_utf8", {
            let mut v = with_header("{\"a\":  }", 0);
            v[14] = 0xff;
            v
        }),
        ("header_not_json", with_header("{\"a\": [1, 2", 0)),
        ("header_not_an_object", with_header("[1, 2, 3]", 0)),
        (
            "overlapping_offsets",
            with_header(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                12,
            ),
        ),
        (
            "gap_between_tensors",
            with_header(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#,
                20,
            ),
        ),
        ("end_before_begin", with_header(r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, 8)),
        ("shape_times_dtype_differs", with_header(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8)),
        ("unknown_dtype", with_header(r#"{"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}"#, 8)),
        ("trailing_bytes", {
            let mut v = valid.clone();
            v.extend_from_slice(&[0; 4]);
            v
        }),
        (
            "duplicate_names",
            with_header(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                4,
            ),
        ),
        (
            "element_count_overflow",
            with_header(r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#, 8),
        ),
        (
            "metadata_not_strings",
            with_header(r#"{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 8),
        ),
        ("truncated_data", valid[..valid.len() - 3].to_vec()),
    ]
}

// ------------------------------------------------------------------ npy

fn npy_cases() -> Vec<(&'static str, Vec<u8>)> {
    let npy = |header: &str, data: usize| -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&(h.len() as u16).to_le_bytes());
        v.extend_from_slice(h.as_bytes());
        v.extend(std::iter::repeat_n(0u8, data));
        v
    };
    vec![
        ("bad_magic", b"\x93NUMPX\x01\x00\x10\x00{}".to_vec()),
        ("object_dtype", npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16)),
        ("big_endian", npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8)),
        ("fortran_order", npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16)),
        ("truncated_data", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 9)),
        ("header_length_past_the_end", b"\x93NUMPY\x01\x00\xff\xff{'descr'".to_vec()),
        ("huge_shape", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 8)),
        ("negative_shape", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8)),
        ("no_shape_key", npy("{'descr': '<f4', 'fortran_order': False, }", 8)),
    ]
}

pub fn malformed() -> R {
    let dir = root().join("fixtures").join("malformed");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut n = 0;
    let sets: [(&str, Cases); 5] = [
        ("tflite", tflite_cases()),
        ("pb", graphdef_cases()),
        ("onnx", onnx_cases()),
        ("safetensors", safetensors_cases()),
        ("npy", npy_cases()),
    ];
    for (ext, cases) in sets {
        for (name, bytes) in cases {
            write(&dir, &format!("{ext}_{name}.{ext}"), &bytes)?;
            n += 1;
        }
    }
    // The side file the external-data cases point at (16 bytes: one [4] f32 tensor).
    write(&dir, "external_weights.bin", &[0u8; 16])?;
    eprintln!("malformed: wrote {n} files to {}", dir.display());
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> R {
    std::fs::write(dir.join(name), bytes).map_err(|e| format!("{name}: {e}"))
}
