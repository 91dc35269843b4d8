//! The quantization rewrites, as passes.
//!
//! Full integer runs in the three phases of TensorFlow's quantizer, inside one pass:
//! **prepare** decides every activation's parameters from the calibration table and the op
//! specs; **quantize** rebuilds the graph with integer ops, int8 weights and int32 biases,
//! creating QUANTIZE / DEQUANTIZE / requantize ops only where a tensor crosses between domains
//! or parameters; **post-quantize** sets the I/O types. Dead code elimination then removes
//! what nothing reads.

use crate::QuantError;
use crate::calib::CalibrationTable;
use crate::config::{IoType, QuantConfig, QuantMode};
use crate::params::{
    activation_params_for, quantize_bias, quantize_bias_i64, quantize_weights, quantize_weights_dynamic, to_f16,
};
use crate::spec::{INT16_UNIT_OUTPUT, OutputRule, has_int16_kernel, op_spec};
use bytes::Bytes;
use qlite_ir::passes::DeadCodeElimination;
use qlite_ir::tensor::{i32_bytes, read_f32s};
use qlite_ir::{
    DType, Editor, Graph, Node, Op, Pass, PassError, PassManager, Patch, QuantParams, Signature, Tensor, TensorId,
};
use std::collections::HashMap;

fn node_err(n: &Node, message: impl Into<String>) -> QuantError {
    QuantError::Node { node: n.name.clone(), op: n.op.name(), message: message.into() }
}

/// Refuse graphs that already carry quantized tensors or QUANTIZE/DEQUANTIZE ops.
fn check_float(g: &Graph) -> Result<(), QuantError> {
    if let Some(n) = g.nodes().iter().find(|n| matches!(n.op, Op::Quantize | Op::Dequantize)) {
        return Err(QuantError::AlreadyQuantized(format!("it has a {} op ({:?})", n.op.name(), n.name)));
    }
    if let Some(t) =
        g.tensors().iter().find(|t| t.quant.is_some() || matches!(t.dtype, DType::I8 | DType::U8 | DType::F16))
    {
        return Err(QuantError::AlreadyQuantized(format!("tensor {:?} is {}", t.name, t.dtype)));
    }
    Ok(())
}

fn const_f32(g: &Graph, t: TensorId) -> Option<(Vec<f32>, Vec<usize>)> {
    let t = g.tensor(t)?;
    if t.dtype != DType::F32 {
        return None;
    }
    Some((read_f32s(t.data.as_ref()?), t.shape.to_fixed()?))
}

fn i8_bytes(v: &[i8]) -> Bytes {
    Bytes::from(v.iter().map(|&x| x as u8).collect::<Vec<u8>>())
}

/// Names of the source graph's I/O, kept on the quantized graph's signature.
fn keep_signature(src: &Graph, dst: &mut Graph) {
    let inputs = (0..src.inputs().len()).map(|i| src.input_name(i).unwrap_or("").to_string()).collect();
    let outputs = (0..src.outputs().len()).map(|i| src.output_name(i).unwrap_or("").to_string()).collect();
    let key = src.signature().map_or_else(|| "serving_default".to_string(), |s| s.key.clone());
    dst.set_signature(Some(Signature { key, inputs, outputs }));
    dst.set_description(src.description().map(str::to_string));
}

// ---------------------------------------------------------------- float16

/// Every float32 constant an op reads becomes a float16 buffer with one DEQUANTIZE op,
/// shared by all its consumers (TensorFlow's float16 mode). Activations and I/O stay float32.
pub fn float16(g: &Graph) -> Result<Graph, QuantError> {
    check_float(g)?;
    let mut dst = g.clone();
    let mut new_nodes = Vec::new();
    let mut replaced: HashMap<TensorId, TensorId> = HashMap::new();
    let consts: Vec<TensorId> = g
        .tensor_ids()
        .filter(|&t| {
            let tensor = &g.tensors()[t.index()];
            tensor.dtype == DType::F32 && tensor.is_const() && !g.outputs().contains(&t)
        })
        .collect();
    for t in consts {
        if g.consumers(t).is_empty() {
            continue;
        }
        let Some(tensor) = dst.tensor(t).cloned() else { continue };
        let values = read_f32s(tensor.data.as_ref().map_or(&[][..], |d| d));
        let halves: Vec<u8> = to_f16(&values).iter().flat_map(|h| h.to_le_bytes()).collect();
        let half =
            dst.add_tensor(Tensor::constant(tensor.name.clone(), DType::F16, tensor.shape.clone(), halves.into()));
        // The float32 tensor keeps its id and becomes the DEQUANTIZE output.
        if let Some(t32) = dst.tensor_mut(t) {
            t32.data = None;
            t32.name = format!("{}/dequantized", tensor.name);
        }
        new_nodes.push(Node::new(format!("{}/dequantize", tensor.name), Op::Dequantize, vec![Some(half)], vec![t]));
        replaced.insert(t, half);
    }
    // DEQUANTIZE ops run first, then the original nodes in order.
    let old: Vec<Node> = dst.nodes().to_vec();
    dst.retain_nodes(|_| false);
    for n in new_nodes.into_iter().chain(old) {
        dst.add_node(n);
    }
    Ok(dst)
}

// ---------------------------------------------------------------- dynamic range

/// int8 per-channel weights for FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D with at least
/// `cfg.dynamic_min_elements` elements; activations and biases stay float (hybrid kernels).
pub fn dynamic_range(g: &Graph, cfg: &QuantConfig) -> Result<Graph, QuantError> {
    check_float(g)?;
    let mut dst = g.clone();
    for ni in 0..g.nodes().len() {
        let n = &g.nodes()[ni];
        let spec = op_spec(&n.op);
        let Some((wi, axis)) = spec.weights else { continue };
        // qlite has no hybrid TRANSPOSE_CONV kernel: it stays float.
        if excluded(cfg, g, n) || matches!(n.op, Op::TransposeConv2d(_)) {
            continue;
        }
        let Some(w) = n.input(wi) else { continue };
        let Some((values, dims)) = const_f32(g, w) else { continue };
        if values.len() < cfg.dynamic_min_elements {
            continue;
        }
        let (q, params) = quantize_weights_dynamic(&values, &dims, Some(axis));
        let name = g.tensors()[w.index()].name.clone();
        let wq = dst.add_tensor(
            Tensor::constant(name, DType::I8, g.tensors()[w.index()].shape.clone(), i8_bytes(&q)).with_quant(params),
        );
        if let Some(node) = dst.node_mut(qlite_ir::NodeId::from_index(ni)) {
            node.inputs[wi] = Some(wq);
            if let Op::FullyConnected(fc) = &mut node.op {
                fc.asymmetric_inputs = cfg.asymmetric_inputs;
            }
        }
    }
    dst.compact_tensors();
    Ok(dst)
}

/// Whether the node becomes an integer op in this mode (else it stays float, between
/// DEQUANTIZE and QUANTIZE): it has an integer kernel, in int16x8 an int16 one, and it is not
/// excluded.
fn integer_op(cfg: &QuantConfig, g: &Graph, n: &Node) -> bool {
    op_spec(&n.op).quantizable
        && (node_dtype(cfg, g, n) != DType::I16 || has_int16_kernel(&n.op))
        && !excluded(cfg, g, n)
}

/// The integer type of a node's activations: the mode's, or int16 for an int8-mode layer
/// promoted by `QuantConfig::int16` that has an int16 kernel.
fn node_dtype(cfg: &QuantConfig, g: &Graph, n: &Node) -> DType {
    let ad = cfg.mode.activation_dtype();
    if ad == DType::I8 && has_int16_kernel(&n.op) && matches_any(&cfg.int16, g, n) { DType::I16 } else { ad }
}

fn matches_any(patterns: &[crate::config::Exclude], g: &Graph, n: &Node) -> bool {
    patterns
        .iter()
        .any(|e| e.matches(&n.name) || n.outputs.iter().any(|&o| g.tensor(o).is_some_and(|t| e.matches(&t.name))))
}

fn excluded(cfg: &QuantConfig, g: &Graph, n: &Node) -> bool {
    matches_any(&cfg.exclude, g, n)
}

/// Every exclude pattern must match something (a typo would silently quantize everything).
fn check_excludes(g: &Graph, cfg: &QuantConfig) -> Result<(), QuantError> {
    let flagged = cfg.exclude.iter().map(|e| ("--exclude", e)).chain(cfg.int16.iter().map(|e| ("--int16", e)));
    for (flag, e) in flagged {
        let hit = g.nodes().iter().any(|n| e.matches(&n.name)) || g.tensors().iter().any(|t| e.matches(&t.name));
        if !hit {
            return Err(QuantError::ExcludeMatchesNothing { flag, pattern: e.pattern.clone() });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- full integer

struct Int8Rewrite<'a> {
    src: &'a Graph,
    dst: Graph,
    /// Decided parameters of each source activation tensor, in its producer's type.
    params: Vec<Option<(DType, QuantParams)>>,
    /// Source tensor → its float32 version in dst.
    float: HashMap<TensorId, TensorId>,
    /// Source tensor → integer versions in dst, with their type and parameters.
    int8: HashMap<TensorId, Vec<(DType, QuantParams, TensorId)>>,
}

impl Int8Rewrite<'_> {
    fn src_tensor(&self, t: TensorId) -> &Tensor {
        &self.src.tensors()[t.index()]
    }

    /// The float32 version of a source tensor (dequantizing the int8 one if needed).
    fn float_of(&mut self, t: TensorId) -> TensorId {
        if let Some(&f) = self.float.get(&t) {
            return f;
        }
        let src = self.src_tensor(t).clone();
        if src.is_const() {
            let id = self.dst.add_tensor(src);
            self.float.insert(t, id);
            return id;
        }
        let q8 = self.int8.get(&t).and_then(|v| v.first()).map_or(t, |v| v.2);
        let out =
            self.dst.add_tensor(Tensor::activation(format!("{}/dequantized", src.name), DType::F32, src.shape.clone()));
        self.dst.add_node(Node::new(format!("{}/dequantize", src.name), Op::Dequantize, vec![Some(q8)], vec![out]));
        self.float.insert(t, out);
        out
    }

    /// A version of a source tensor of integer type `dt` with parameters `p` (quantizing the
    /// float one, or requantizing another integer one, if needed).
    fn int_of(&mut self, t: TensorId, dt: DType, p: &QuantParams) -> TensorId {
        if let Some(v) = self.int8.get(&t)
            && let Some((_, _, id)) = v.iter().find(|(d, q, _)| *d == dt && q == p)
        {
            return *id;
        }
        let src = self.src_tensor(t).clone();
        if let Some(data) = &src.data {
            // A float constant used as an activation (e.g. the addend of ADD).
            let values = read_f32s(data);
            let (lo, hi) = dt.int_range().unwrap_or((-128, 127));
            let q: Vec<i64> =
                values.iter().map(|&v| ((v / p.scale()).round() as i64 + p.zero_point()).clamp(lo, hi)).collect();
            let bytes: Bytes = if dt == DType::I16 {
                q.iter().flat_map(|&v| (v as i16).to_le_bytes()).collect::<Vec<u8>>().into()
            } else {
                q.iter().map(|&v| v as i8 as u8).collect::<Vec<u8>>().into()
            };
            let id = self
                .dst
                .add_tensor(Tensor::constant(src.name.clone(), dt, src.shape.clone(), bytes).with_quant(p.clone()));
            self.int8.entry(t).or_default().push((dt, p.clone(), id));
            return id;
        }
        // Another version of the same type is requantized; across types (int8 <-> int16, where
        // mixed precision promoted a layer) the float version is quantized if there is one,
        // else the other type's version is requantized.
        let versions = self.int8.get(&t);
        let same = versions.and_then(|v| v.iter().find(|x| x.0 == dt)).map(|x| x.2);
        let other = versions.and_then(|v| v.first()).map(|x| x.2);
        let (from, name) = match (same, self.float.contains_key(&t), other) {
            (Some(id), _, _) => (id, format!("{}/requantized", src.name)),
            (None, false, Some(id)) => (id, format!("{}/{}", src.name, dt.name())),
            _ => (self.float_of(t), format!("{}/quantized", src.name)),
        };
        let out = self.dst.add_tensor(Tensor::activation(name.clone(), dt, src.shape.clone()).with_quant(p.clone()));
        self.dst.add_node(Node::new(name, Op::Quantize, vec![Some(from)], vec![out]));
        self.int8.entry(t).or_default().push((dt, p.clone(), out));
        out
    }

    fn range_params(&self, table: &CalibrationTable, t: TensorId, dt: DType) -> Result<QuantParams, QuantError> {
        let name = &self.src_tensor(t).name;
        let r = table.ranges.get(name).ok_or_else(|| QuantError::MissingRange(name.clone()))?;
        Ok(activation_params_for(dt, r.min, r.max))
    }

    /// The parameters of source tensor `t` for a consumer of integer type `dt`: its producer's,
    /// or, where the types differ, its calibrated range's in `dt`.
    fn params_in(&self, table: &CalibrationTable, t: TensorId, dt: DType) -> Result<QuantParams, QuantError> {
        match &self.params[t.index()] {
            Some((d, p)) if *d == dt => Ok(p.clone()),
            _ => self.range_params(table, t, dt),
        }
    }
}

/// Activations that must share one set of parameters, with those parameters: TFLite's int8
/// CONCATENATION (and MAXIMUM / MINIMUM) need every input quantized as the output. Where an input
/// is produced with parameters of its own choosing (a calibrated output or a graph input, not a
/// fixed-range op's), it joins the output's class, and the class is quantized over the union of
/// its members' ranges, as TF's converter does; no QUANTIZE op is then needed to requantize
/// it. Classes chain (DenseNet's concatenation feeds the next one), and reach back through ops
/// whose output takes their input's parameters (a pool, a reshape, a pad) to the producer
/// that chooses them (DenseNet's first concatenation of a block takes a pool's output: the
/// convolution before the pool is quantized with the concatenation's parameters). As in TF's
/// converter, only the class's own tensors set its range: a producer reached through a pool
/// takes the parameters without widening them (average pooling narrows the range; the
/// producer's few values beyond it saturate).
fn shared_params(g: &Graph, table: &CalibrationTable, cfg: &QuantConfig) -> HashMap<TensorId, QuantParams> {
    use qlite_ir::op::BinaryKind;
    let ad = cfg.mode.activation_dtype();
    let nt = g.tensors().len();
    let mut parent: Vec<usize> = (0..nt).collect();
    fn find(p: &mut [usize], x: usize) -> usize {
        let mut r = x;
        while p[r] != r {
            r = p[r];
        }
        let mut c = x;
        while p[c] != r {
            let next = p[c];
            p[c] = r;
            c = next;
        }
        r
    }
    let mut producer: HashMap<TensorId, usize> = HashMap::new();
    for (i, n) in g.nodes().iter().enumerate() {
        for &o in &n.outputs {
            producer.insert(o, i);
        }
    }
    // The tensors that must join `t`'s class for it to take shared parameters: `t` itself
    // and, through ops that pass their input's parameters on, their inputs back to a producer
    // free to choose; `None` when a fixed-range op is on the way.
    let joinable = |t: TensorId| -> Option<Vec<TensorId>> {
        let mut chain = Vec::new();
        let mut t = t;
        loop {
            let tensor = &g.tensors()[t.index()];
            if tensor.is_const() || tensor.dtype != DType::F32 || chain.len() > g.nodes().len() {
                return None;
            }
            chain.push(t);
            let Some(&i) = producer.get(&t) else {
                return g.inputs().contains(&t).then_some(chain);
            };
            let p = &g.nodes()[i];
            let spec = op_spec(&p.op);
            if spec.output == OutputRule::Calibrated || !integer_op(cfg, g, p) || node_dtype(cfg, g, p) != ad {
                return Some(chain);
            }
            if spec.output != OutputRule::SameAsInput {
                return None;
            }
            t = p.input(0)?;
        }
    };
    let mut joined = false;
    // Tensors whose calibrated range counts towards their class's parameters.
    let mut sets_range = vec![false; nt];
    for n in g.nodes() {
        let shares = match &n.op {
            Op::Concatenation(_) => true,
            Op::Binary(b) => matches!(b.kind, BinaryKind::Maximum | BinaryKind::Minimum),
            _ => false,
        };
        if !shares || !integer_op(cfg, g, n) || node_dtype(cfg, g, n) != ad {
            continue;
        }
        let Some(&out) = n.outputs.first() else { continue };
        sets_range[out.index()] = true;
        for t in n.input_ids() {
            let chain = joinable(t).unwrap_or_default();
            if let Some(first) = chain.first() {
                sets_range[first.index()] = true;
            }
            for m in chain {
                let (a, b) = (find(&mut parent, m.index()), find(&mut parent, out.index()));
                if a != b {
                    parent[a] = b;
                    joined = true;
                }
            }
        }
    }
    let mut shared = HashMap::new();
    if !joined {
        return shared;
    }
    let mut classes: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..nt {
        let r = find(&mut parent, i);
        if r != i || classes.contains_key(&r) {
            classes.entry(r).or_default().push(i);
        }
    }
    for (root, mut members) in classes {
        members.push(root);
        let setting: Vec<usize> = members.iter().copied().filter(|&m| sets_range[m]).collect();
        let ranges: Vec<(f32, f32)> =
            setting.iter().filter_map(|&m| table.ranges.get(&g.tensors()[m].name).map(|r| (r.min, r.max))).collect();
        if ranges.is_empty() || ranges.len() != setting.len() {
            continue; // a member without a range: the missing range is reported where it is read
        }
        let lo = ranges.iter().map(|r| r.0).fold(f32::INFINITY, f32::min);
        let hi = ranges.iter().map(|r| r.1).fold(f32::NEG_INFINITY, f32::max);
        let p = activation_params_for(cfg.mode.activation_dtype(), lo, hi);
        for m in members {
            shared.insert(TensorId::from_index(m), p.clone());
        }
    }
    shared
}

/// The least input scale a 16x8 convolution / FULLY_CONNECTED may read so that its int64
/// accumulator stays within `MultiplyByQuantizedMultiplier`'s range (|acc| < 2^47: LiteRT's
/// release kernels multiply it by a 16-bit multiplier in int64 and would overflow past it): the
/// bias, quantized with `s_in · s_w[c]`, must stay below 2^46 (a SE block's `+3` folded into a
/// convolution that reads a vanishing range reached 3·10^18). Its input is requantized up to
/// it where needed.
fn int16_input_floor(g: &Graph, n: &Node) -> f32 {
    let spec = op_spec(&n.op);
    let (Some((wi, axis)), Some(bi)) = (spec.weights, spec.bias) else { return 0.0 };
    let (Some((w, dims)), Some((b, _))) =
        (n.input(wi).and_then(|t| const_f32(g, t)), n.input(bi).and_then(|t| const_f32(g, t)))
    else {
        return 0.0;
    };
    let channels = b.len();
    if channels == 0 || dims.get(axis) != Some(&channels) {
        return 0.0;
    }
    let inner: usize = dims[axis + 1..].iter().product::<usize>().max(1);
    let mut m = vec![0f32; channels];
    for (i, &v) in w.iter().enumerate() {
        let c = (i / inner) % channels;
        m[c] = m[c].max(v.abs());
    }
    let limit = (1u64 << 46) as f64;
    b.iter()
        .zip(&m)
        .map(|(&bv, &mc)| {
            let s_w = if mc > 0.0 { mc as f64 / 127.0 } else { 1.0 };
            (bv.abs() as f64 / (s_w * limit)) as f32
        })
        .fold(0f32, f32::max)
}

/// The least scale an int16 output may take so that LiteRT's kernels can run it, given its
/// producer: a vanishing calibrated range (random-weight networks, dead channels) gives scales
/// so small that LiteRT refuses or overflows. TF's converter writes such files (its 16x8
/// MobileNetV2 with random weights fails to load: "no_integer_overflow_from_quantization");
/// qlite widens the scale instead, to the least that works:
/// - a fused or standalone RELU6 / RELU_N1_TO_1 quantizes its bound as int32: `6/s < 2^31`;
/// - a convolution requantizes with the int64 `MultiplyByQuantizedMultiplier`, whose rounding
///   shift `15 − shift` must stay positive: `s_in · s_w[c] / s_out < 2^14` for every channel,
///   kept below 2^13 (LiteRT's debug builds assert a shift below 8; its release builds, which
///   users run, compute up to 14, and TF's converter writes such files). FULLY_CONNECTED
///   rescales in double (no shift): no floor;
/// - ADD / SUB rescale with `2·max(s1, s2) / (2^15 · s_out) < 1`; MUL, MEAN and RELU with an
///   int32 fixed-point multiplier, kept below 2^29.
fn int16_output_floor(g: &Graph, n: &Node, in_scales: &[Option<f32>], p: QuantParams) -> QuantParams {
    use qlite_ir::Activation;
    use qlite_ir::op::BinaryKind;
    let in_scale = |i: usize| in_scales.get(i).copied().flatten();
    let mut floor = 0f64;
    let bounded = matches!(n.op.fused_activation(), Some(Activation::Relu6 | Activation::ReluN1To1))
        || matches!(&n.op, Op::Unary(u) if u.kind == qlite_ir::UnaryKind::Relu6);
    if bounded {
        floor = floor.max(6.0 / (1u64 << 30) as f64);
    }
    let spec = op_spec(&n.op);
    if let (Some((wi, _)), Some(s_in)) = (spec.weights, in_scale(0))
        && !matches!(n.op, Op::FullyConnected(_))
        && let Some((w, _)) = n.input(wi).and_then(|t| const_f32(g, t))
    {
        let max_w = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        // Per-channel scales are at most the tensor's: m/127.
        floor = floor.max(s_in as f64 * (max_w as f64 / 127.0) / (1u32 << 13) as f64);
    }
    if let Op::Binary(b) = &n.op
        && let (Some(s1), Some(s2)) = (in_scale(0), in_scale(1))
    {
        match b.kind {
            BinaryKind::Add | BinaryKind::Sub => floor = floor.max(2.0 * s1.max(s2) as f64 / 16384.0),
            // `QuantizeMultiplier(s1 · s2 / s_out)` then an int32 left shift: below 2^30.
            BinaryKind::Mul => floor = floor.max(s1 as f64 * s2 as f64 / (1u64 << 29) as f64),
            _ => {}
        }
    }
    // Requantizing ops (MEAN, RELU / RELU6, pooling's and data movement's passed-on
    // parameters aside): a multiplier `s_in / s_out` below 2^29.
    if matches!(n.op, Op::Mean(_) | Op::Unary(_))
        && let Some(s_in) = in_scale(0)
    {
        floor = floor.max(s_in as f64 / (1u64 << 29) as f64);
    }
    if (p.scale() as f64) < floor { QuantParams::per_tensor(floor as f32, 0) } else { p }
}

/// Full-integer quantization: the prepare, quantize and post-quantize phases.
pub fn full_integer(g: &Graph, table: &CalibrationTable, cfg: &QuantConfig) -> Result<Graph, QuantError> {
    check_float(g)?;
    check_excludes(g, cfg)?;
    let ad = cfg.mode.activation_dtype();
    let io_mismatch = |io: &'static str, hint: &'static str| QuantError::IoType { io, mode: cfg.mode.name(), hint };
    match (cfg.io_type, ad) {
        (IoType::Int8 | IoType::Uint8, DType::I16) => {
            return Err(io_mismatch(
                if cfg.io_type == IoType::Int8 { "int8" } else { "uint8" },
                "16x8 models take float32 or int16 inputs and outputs",
            ));
        }
        (IoType::Int16, DType::I8) => {
            return Err(io_mismatch("int16", "int16 inputs and outputs need --quantize int16x8"));
        }
        _ => {}
    }
    let mut rw = Int8Rewrite {
        src: g,
        dst: Graph::new(g.name()),
        params: vec![None; g.tensors().len()],
        float: HashMap::new(),
        int8: HashMap::new(),
    };

    // ---- prepare: parameters of every activation, in its producer's integer type.
    let shared = shared_params(g, table, cfg);
    for &t in g.inputs() {
        let p = match shared.get(&t) {
            Some(p) => p.clone(),
            None => rw.range_params(table, t, ad)?,
        };
        rw.params[t.index()] = Some((ad, p));
    }
    for n in g.nodes() {
        let spec = op_spec(&n.op);
        let nd = node_dtype(cfg, g, n);
        let integer = integer_op(cfg, g, n);
        // An op left in float gets the parameters of its calibrated range in 16x8 (int8 keeps
        // TF's converter's choice: the rule of the op).
        let rule = if ad == DType::I16 && !integer { OutputRule::Calibrated } else { spec.output };
        // Class parameters are the mode's type: a promoted layer chooses its own.
        let shared_here = |o: &TensorId| if nd == ad { shared.get(o) } else { None };
        for &o in &n.outputs {
            let p = match rule {
                OutputRule::Fixed(_, _) if nd == DType::I16 => {
                    QuantParams::per_tensor(INT16_UNIT_OUTPUT.0, INT16_UNIT_OUTPUT.1)
                }
                OutputRule::Fixed(s, z) => QuantParams::per_tensor(s, z),
                OutputRule::SameAsInput => match n.input(0) {
                    Some(i) if rw.params[i.index()].is_some() => rw.params_in(table, i, nd)?,
                    _ => rw.range_params(table, o, nd)?,
                },
                OutputRule::Calibrated => match shared_here(&o) {
                    Some(p) => p.clone(),
                    None => rw.range_params(table, o, nd)?,
                },
            };
            let p = if nd == DType::I16 && rule == OutputRule::Calibrated && shared_here(&o).is_none() {
                let floor_in = int16_input_floor(g, n);
                let in_scales: Vec<Option<f32>> = n
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(k, i)| {
                        // A float constant operand is quantized from its own values (as the
                        // quantize phase does); an activation has its producer's parameters.
                        let s = i.and_then(|t| match const_f32(g, t) {
                            Some((v, _)) => {
                                let (lo, hi) = v.iter().fold((0f32, 0f32), |(a, b), &x| (a.min(x), b.max(x)));
                                Some(activation_params_for(nd, lo, hi).scale())
                            }
                            None => rw.params_in(table, t, nd).ok().map(|q| q.scale()),
                        });
                        if k == 0 { s.map(|s| s.max(floor_in)) } else { s }
                    })
                    .collect();
                int16_output_floor(g, n, &in_scales, p)
            } else {
                p
            };
            rw.params[o.index()] = Some((nd, p));
        }
    }

    // ---- quantize: graph inputs first.
    let mut new_inputs = Vec::new();
    for &t in g.inputs() {
        let src = g.tensors()[t.index()].clone();
        let (_, p) = rw.params[t.index()].clone().ok_or_else(|| QuantError::MissingRange(src.name.clone()))?;
        match cfg.io_type {
            IoType::Float32 => {
                let id = rw.dst.add_tensor(src);
                rw.float.insert(t, id);
                new_inputs.push(id);
            }
            IoType::Int8 | IoType::Int16 => {
                let id = rw.dst.add_tensor(Tensor { dtype: ad, quant: Some(p.clone()), ..src });
                rw.int8.entry(t).or_default().push((ad, p, id));
                new_inputs.push(id);
            }
            IoType::Uint8 => {
                let pu = QuantParams::per_tensor(p.scale(), p.zero_point() + 128);
                let id = rw.dst.add_tensor(Tensor { dtype: DType::U8, quant: Some(pu), ..src.clone() });
                let q8 = rw.dst.add_tensor(
                    Tensor::activation(format!("{}/int8", src.name), DType::I8, src.shape.clone())
                        .with_quant(p.clone()),
                );
                rw.dst.add_node(Node::new(format!("{}/quantize", src.name), Op::Quantize, vec![Some(id)], vec![q8]));
                rw.int8.entry(t).or_default().push((DType::I8, p, q8));
                new_inputs.push(id);
            }
        }
    }

    for n in g.nodes() {
        let spec = op_spec(&n.op);
        if !integer_op(cfg, g, n) {
            let inputs = n.inputs.iter().map(|i| i.map(|t| rw.float_of(t))).collect();
            let outputs = n
                .outputs
                .iter()
                .map(|&o| {
                    let id = rw.dst.add_tensor(g.tensors()[o.index()].clone());
                    rw.float.insert(o, id);
                    id
                })
                .collect();
            rw.dst.add_node(Node::new(n.name.clone(), n.op.clone(), inputs, outputs));
            continue;
        }
        let out = *n.outputs.first().ok_or_else(|| node_err(n, "has no output"))?;
        let (nd, out_p) = rw.params[out.index()].clone().ok_or_else(|| node_err(n, "output has no parameters"))?;
        let mut inputs = Vec::with_capacity(n.inputs.len());
        let mut in_scale = 1.0f32;
        let mut w_params: Option<QuantParams> = None;
        for (slot, i) in n.inputs.iter().enumerate() {
            let Some(t) = *i else {
                inputs.push(None);
                continue;
            };
            if spec.weights.map(|w| w.0) == Some(slot) {
                let (values, dims) =
                    const_f32(g, t).ok_or_else(|| node_err(n, "weights must be a float32 constant"))?;
                let axis = spec.weights.map(|w| w.1);
                let (q, p) = quantize_weights(&values, &dims, axis);
                let name = g.tensors()[t.index()].name.clone();
                let id = rw.dst.add_tensor(
                    Tensor::constant(name, DType::I8, g.tensors()[t.index()].shape.clone(), i8_bytes(&q))
                        .with_quant(p.clone()),
                );
                w_params = Some(p);
                inputs.push(Some(id));
            } else if spec.bias == Some(slot) {
                let (values, _) = const_f32(g, t).ok_or_else(|| node_err(n, "bias must be a float32 constant"))?;
                let wp = w_params.clone().ok_or_else(|| node_err(n, "bias before weights"))?;
                let name = g.tensors()[t.index()].name.clone();
                let shape = g.tensors()[t.index()].shape.clone();
                let id = if nd == DType::I16 {
                    let (q, p) = quantize_bias_i64(&values, in_scale, &wp);
                    let bytes: Vec<u8> = q.iter().flat_map(|v| v.to_le_bytes()).collect();
                    rw.dst.add_tensor(Tensor::constant(name, DType::I64, shape, bytes.into()).with_quant(p))
                } else {
                    let (q, p) = quantize_bias(&values, in_scale, &wp);
                    rw.dst.add_tensor(Tensor::constant(name, DType::I32, shape, i32_bytes(&q)).with_quant(p))
                };
                inputs.push(Some(id));
            } else if g.tensors()[t.index()].dtype != DType::F32 {
                // Integer operands (GATHER's indices) are not quantized.
                inputs.push(Some(rw.float_of(t)));
            } else {
                let p = if spec.inputs_like_output {
                    out_p.clone()
                } else if g.tensors()[t.index()].is_const() {
                    let (values, _) = const_f32(g, t).ok_or_else(|| node_err(n, "constant input must be float32"))?;
                    let (lo, hi) = values.iter().fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
                    activation_params_for(nd, lo, hi)
                } else {
                    let p = rw.params_in(table, t, nd).map_err(|_| node_err(n, "input has no parameters"))?;
                    let floor_in = if slot == 0 && nd == DType::I16 { int16_input_floor(g, n) } else { 0.0 };
                    if p.scale() < floor_in { QuantParams::per_tensor(floor_in, 0) } else { p }
                };
                if slot == 0 {
                    in_scale = p.scale();
                }
                inputs.push(Some(rw.int_of(t, nd, &p)));
            }
        }
        let src_out = &g.tensors()[out.index()];
        let out_id = rw
            .dst
            .add_tensor(Tensor::activation(src_out.name.clone(), nd, src_out.shape.clone()).with_quant(out_p.clone()));
        rw.int8.entry(out).or_default().push((nd, out_p, out_id));
        rw.dst.add_node(Node::new(n.name.clone(), n.op.clone(), inputs, vec![out_id]));
    }

    // ---- post-quantize: the I/O types.
    let mut new_outputs = Vec::new();
    for &t in g.outputs() {
        // Outputs take the mode's type (a promoted last layer is requantized to it).
        let p = rw.params[t.index()].as_ref().map(|_| rw.params_in(table, t, ad)).transpose()?;
        let id = match (cfg.io_type, p) {
            (IoType::Float32, _) | (_, None) => {
                let f = rw.float_of(t);
                // The float output keeps the source tensor name when it was dequantized here.
                f
            }
            (IoType::Int8 | IoType::Int16, Some(p)) => rw.int_of(t, ad, &p),
            (IoType::Uint8, Some(p)) => {
                let q8 = rw.int_of(t, DType::I8, &p);
                let src = g.tensors()[t.index()].clone();
                let pu = QuantParams::per_tensor(p.scale(), p.zero_point() + 128);
                let out = rw.dst.add_tensor(
                    Tensor::activation(format!("{}/uint8", src.name), DType::U8, src.shape.clone()).with_quant(pu),
                );
                rw.dst.add_node(Node::new(format!("{}/to_uint8", src.name), Op::Quantize, vec![Some(q8)], vec![out]));
                out
            }
        };
        new_outputs.push(id);
    }
    rw.dst.set_inputs(new_inputs);
    rw.dst.set_outputs(new_outputs);
    let mut dst = rw.dst;
    keep_signature(g, &mut dst);
    Ok(dst)
}

// ---------------------------------------------------------------- passes

/// Rewrites a float graph for `mode`. Holds configuration only: running it twice on the same
/// input gives the same result.
#[derive(Debug)]
pub struct QuantizePass {
    pub config: QuantConfig,
    pub table: Option<CalibrationTable>,
}

impl Pass for QuantizePass {
    fn name(&self) -> &'static str {
        match self.config.mode {
            QuantMode::None => "quantize-none",
            QuantMode::Float16 => "quantize-float16",
            QuantMode::Dynamic => "quantize-dynamic",
            QuantMode::Int8 => "quantize-int8",
            QuantMode::Int16x8 => "quantize-int16x8",
        }
    }

    /// The whole graph is rebuilt for the mode: one patch.
    fn run(&self, ed: &mut Editor<'_>) -> Result<(), PassError> {
        if self.config.mode == QuantMode::None || !ed.budget_left() {
            return Ok(());
        }
        let g = quantize_graph(&ed.snapshot(), self.table.as_ref(), &self.config)
            .map_err(|e| PassError::Failed(e.to_string()))?;
        let _ = ed.apply(Patch::replace_graph(g));
        Ok(())
    }
}

/// Quantize a float graph (no pipeline around it).
pub fn quantize_graph(g: &Graph, table: Option<&CalibrationTable>, cfg: &QuantConfig) -> Result<Graph, QuantError> {
    if cfg.mode != QuantMode::None {
        crate::check_supported(g)?;
    }
    if !cfg.int16.is_empty() && cfg.mode != QuantMode::Int8 {
        return Err(QuantError::Int16NeedsInt8(cfg.mode.name()));
    }
    // Weights must be constants: sparse ones made dense first (the result stores them dense).
    let mut dense;
    let g = if g.nodes().iter().any(|n| matches!(n.op, Op::Densify)) {
        dense = g.clone();
        qlite_ir::passes::fold_densify(&mut dense);
        &dense
    } else {
        g
    };
    match cfg.mode {
        QuantMode::None => Ok(g.clone()),
        QuantMode::Float16 => float16(g),
        QuantMode::Dynamic => {
            check_excludes(g, cfg)?;
            dynamic_range(g, cfg)
        }
        QuantMode::Int8 | QuantMode::Int16x8 => {
            full_integer(g, table.ok_or(QuantError::NoCalibration(cfg.mode.name()))?, cfg)
        }
    }
}

/// The quantization pipeline: the rewrite for the configured mode, then dead code elimination.
pub fn quantize_pipeline(config: QuantConfig, table: Option<CalibrationTable>) -> PassManager {
    PassManager::new().with(QuantizePass { config, table }).with(DeadCodeElimination)
}
