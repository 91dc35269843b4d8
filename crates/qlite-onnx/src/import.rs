//! The importer proper.

use crate::proto::{self, AttributeProto, ModelProto, NodeProto, TensorProto};
use bytes::Bytes;
use prost::Message;
use qlite_ir::op::*;
use qlite_ir::sym::{self, SliceAxis, SymDim, SymOp, SymVal};
use qlite_ir::tensor::{f32_bytes, i32_bytes, i64_bytes, read_f32s};
use qlite_ir::{DType, Dim, Graph, Node, Shape, Signature, Tensor, TensorId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Why an ONNX model could not be imported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OnnxError {
    #[error("not an ONNX model: {0}")]
    Decode(String),
    #[error("the model has no graph")]
    NoGraph,
    #[error("initializer {name:?}: {message}")]
    Initializer { name: String, message: String },
    #[error("node {node:?} ({op_type}): {message}")]
    Node { node: String, op_type: String, message: String },
    #[error("unsupported ONNX operators: {0}")]
    Unsupported(String),
    #[error("input {name:?}: {message}")]
    Input { name: String, message: String },
    #[error("output {0:?} is never produced")]
    Output(String),
    #[error("output {name:?}: {message}")]
    OutputValue { name: String, message: String },
    #[error("invalid graph: {0}")]
    Invalid(String),
}

/// Options of [`import`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Directory of the model file: external data is resolved inside it only.
    pub model_dir: Option<PathBuf>,
    /// Input shapes that override the model's (e.g. a symbolic batch).
    pub input_shapes: BTreeMap<String, Vec<Dim>>,
    /// Rank-4 graph inputs and outputs in NHWC instead of ONNX's NCHW (a Transpose at each,
    /// which the layout passes then cancel against the convolutions' own).
    pub nhwc_io: bool,
    /// What the import may allocate for a tensor it makes (ConstantOfShape).
    pub limits: qlite_ir::Limits,
}

/// A value of the ONNX graph during import: an IR tensor, or a constant known at import time
/// (initializers, Constant nodes and everything folded from them).
#[derive(Debug, Clone)]
enum Val {
    Tensor(TensorId),
    Const(ConstVal),
    /// Shape arithmetic with dims known only at run time (a dynamic batch's `Shape` and what
    /// is computed from it), folded into the Reshape that reads it (`qlite_ir::sym`).
    Sym(SymVal),
}

/// A fully known shape value as an int64 constant (a scalar for a scalar).
fn sym_const(v: &SymVal) -> Option<ConstVal> {
    let k = v.known()?;
    let dims = match v {
        SymVal::Scalar(_) => vec![],
        SymVal::Vector(_) => vec![k.len()],
    };
    Some(ConstVal { dtype: DType::I64, dims, data: i64_bytes(&k) })
}

#[derive(Debug, Clone)]
struct ConstVal {
    dtype: DType,
    dims: Vec<usize>,
    /// Little-endian bytes (zero-copy from the model when possible).
    data: Bytes,
}

impl ConstVal {
    fn f32s(&self) -> Option<Vec<f32>> {
        match self.dtype {
            DType::F32 => Some(read_f32s(&self.data)),
            _ => None,
        }
    }
    fn i64s(&self) -> Option<Vec<i64>> {
        match self.dtype {
            DType::I64 => Some(qlite_ir::tensor::read_i64s(&self.data)),
            DType::I32 => Some(qlite_ir::tensor::read_i32s(&self.data).into_iter().map(i64::from).collect()),
            _ => None,
        }
    }
}

fn ints_const(v: &[i64]) -> ConstVal {
    ConstVal { dtype: DType::I64, dims: vec![v.len()], data: i64_bytes(v) }
}

fn f32_const(v: &[f32], dims: Vec<usize>) -> ConstVal {
    ConstVal { dtype: DType::F32, dims, data: f32_bytes(v) }
}

/// Decode a serialized TensorProto (e.g. the backend test cases' `input_0.pb`): dtype, dims
/// and little-endian element bytes, with the same checks as initializers. External data is
/// not followed.
pub fn read_tensor_proto(bytes: Bytes) -> Result<(DType, Vec<usize>, Bytes), OnnxError> {
    let t = TensorProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    let c = tensor_value(&t, &Ctx { model_dir: None })?;
    Ok((c.dtype, c.dims, c.data))
}

/// Read an ONNX tensor (initializer or attribute) into a constant. float16 / double are
/// converted to float32; int32 / int64 / uint8 / int8 / bool are kept.
fn tensor_value(t: &TensorProto, ctx: &Ctx) -> Result<ConstVal, OnnxError> {
    let name = t.name.clone().unwrap_or_default();
    let err = |m: String| OnnxError::Initializer { name: name.clone(), message: m };
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        dims.push(usize::try_from(d).map_err(|_| err(format!("negative dimension {d}")))?);
    }
    if dims.len() > qlite_ir::MAX_RANK {
        return Err(err(format!("rank {} exceeds {}", dims.len(), qlite_ir::MAX_RANK)));
    }
    let n =
        qlite_ir::shape::checked_product(&dims).ok_or_else(|| err(format!("element count of {dims:?} overflows")))?;
    let dt = proto::tensor_proto::DataType::try_from(t.data_type.unwrap_or(0))
        .unwrap_or(proto::tensor_proto::DataType::Undefined);
    use proto::tensor_proto::DataType as D;
    let (dtype, elem) = match dt {
        D::Float => (DType::F32, 4),
        D::Float16 => (DType::F16, 2),
        D::Double => (DType::F32, 8),
        D::Int64 => (DType::I64, 8),
        D::Int32 => (DType::I32, 4),
        D::Int8 => (DType::I8, 1),
        D::Uint8 => (DType::U8, 1),
        D::Bool => (DType::Bool, 1),
        other => return Err(err(format!("data type {other:?} is not supported"))),
    };
    let need = n.checked_mul(elem).ok_or_else(|| err("byte size overflows".into()))?;
    let external = t.data_location == Some(proto::tensor_proto::DataLocation::External as i32);
    let raw: Option<Bytes> = if external { Some(ctx.external(t, need).map_err(err)?) } else { t.raw_data.clone() };
    let typed_len =
        t.float_data.len() + t.int32_data.len() + t.int64_data.len() + t.double_data.len() + t.uint64_data.len();
    let bytes: Bytes = match raw {
        Some(r) => {
            if typed_len > 0 {
                return Err(err("has both raw_data and typed data fields".into()));
            }
            if r.len() != need {
                return Err(err(format!("raw_data has {} bytes but shape {dims:?} of {dt:?} needs {need}", r.len())));
            }
            r
        }
        None => {
            let count = match dt {
                D::Float => t.float_data.len(),
                D::Double => t.double_data.len(),
                D::Int64 => t.int64_data.len(),
                _ => t.int32_data.len(),
            };
            if count != n {
                return Err(err(format!("holds {count} values but shape {dims:?} needs {n}")));
            }
            match dt {
                D::Float => f32_bytes(&t.float_data),
                D::Double => Bytes::from(t.double_data.iter().flat_map(|&v| v.to_le_bytes()).collect::<Vec<u8>>()),
                D::Int64 => i64_bytes(&t.int64_data),
                D::Int32 => qlite_ir::tensor::i32_bytes(&t.int32_data),
                D::Float16 => {
                    Bytes::from(t.int32_data.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect::<Vec<u8>>())
                }
                _ => Bytes::from(t.int32_data.iter().map(|&v| v as u8).collect::<Vec<u8>>()),
            }
        }
    };
    // float16 and double become float32 (the float kernels' type).
    let (dtype, bytes) = match dt {
        D::Float16 => (
            DType::F32,
            f32_bytes(
                &bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect::<Vec<_>>(),
            ),
        ),
        D::Double => (
            DType::F32,
            f32_bytes(
                &bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                    .collect::<Vec<_>>(),
            ),
        ),
        _ => (dtype, bytes),
    };
    Ok(ConstVal { dtype, dims, data: bytes })
}

struct Ctx {
    model_dir: Option<PathBuf>,
}

impl Ctx {
    /// External data, resolved inside the model directory only.
    fn external(&self, t: &TensorProto, need: usize) -> Result<Bytes, String> {
        let mut location = None;
        let mut offset = 0u64;
        let mut length = None;
        for e in &t.external_data {
            let v = e.value.clone().unwrap_or_default();
            match e.key.as_deref() {
                Some("location") => location = Some(v),
                Some("offset") => offset = v.parse().map_err(|_| format!("bad external offset {v:?}"))?,
                Some("length") => length = Some(v.parse::<u64>().map_err(|_| format!("bad external length {v:?}"))?),
                _ => {}
            }
        }
        let location = location.ok_or("external data without a location")?;
        let dir = self.model_dir.as_ref().ok_or("external data needs the model's directory")?;
        let base = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
        let rel = Path::new(&location);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(format!("external data location {location:?} leaves the model directory"));
        }
        let path = base.join(rel);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("external data {location:?}: {e}"))?;
        if meta.file_type().is_symlink() {
            return Err(format!("external data {location:?} is a symbolic link"));
        }
        let real = path.canonicalize().map_err(|e| format!("external data {location:?}: {e}"))?;
        if !real.starts_with(&base) {
            return Err(format!("external data {location:?} resolves outside the model directory"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if meta.nlink() > 1 {
                return Err(format!("external data {location:?} has several hard links"));
            }
        }
        let len = length.unwrap_or(need as u64);
        if len != need as u64 {
            return Err(format!("external length {len} but the shape needs {need} bytes"));
        }
        let file_len = meta.len();
        let end = offset.checked_add(len).filter(|&e| e <= file_len).ok_or_else(|| {
            format!("external data [{offset}, +{len}) runs past the {file_len}-byte file {location:?}")
        })?;
        let bytes = qlite_io::map_file(&real).map_err(|e| format!("external data {location:?}: {e}"))?;
        Ok(bytes.slice(offset as usize..end as usize))
    }
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}
fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}
fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}
fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}
fn attr_s(n: &NodeProto, name: &str) -> Option<String> {
    attr(n, name).and_then(|a| a.s.as_ref()).map(|s| String::from_utf8_lossy(s).into_owned())
}

/// Import state.
struct Importer {
    g: Graph,
    vals: HashMap<String, Val>,
    opset: i64,
    unsupported: Vec<String>,
    uses: HashMap<String, usize>,
    /// Convolutions whose weights a following BatchNormalization may fold into:
    /// ONNX output name → (node index, weights, bias, channel axis of the weights).
    convs: HashMap<String, (usize, TensorId, Option<TensorId>, usize)>,
    /// Outputs of unsupported nodes (placeholders).
    opaque: HashSet<String>,
    /// Tensors known to hold only values >= 0 (ReLU outputs), where zero padding acts as -inf.
    nonneg: HashSet<TensorId>,
    limits: qlite_ir::Limits,
    /// Set by `node` when no arm handles the op type at all.
    unknown_op: bool,
}

type R<T> = Result<T, String>;

mod conv;
mod elementwise;
mod fc;
mod graph;
mod movement;
mod norm;
mod pool;
mod resize;

impl Importer {
    fn shape_of(&self, t: TensorId) -> Shape {
        self.g.tensor(t).map(|t| t.shape.clone()).unwrap_or_default()
    }

    /// The IR tensor of a value, materializing constants.
    fn tensor(&mut self, name: &str) -> R<TensorId> {
        match self.vals.get(name).cloned() {
            Some(Val::Tensor(t)) => Ok(t),
            Some(Val::Sym(v)) => match sym_const(&v) {
                Some(c) => {
                    let id = self.g.add_tensor(Tensor::constant(name, c.dtype, Shape::fixed(&c.dims), c.data));
                    self.vals.insert(name.to_string(), Val::Tensor(id));
                    Ok(id)
                }
                None => Err(format!(
                    "{name:?} is shape arithmetic known only at run time ({}): qlite folds it into a Reshape's target, and cannot compute with it as data",
                    sym::show(&v.elements())
                )),
            },
            Some(Val::Const(c)) => {
                let id = self.g.add_tensor(Tensor::constant(name, c.dtype, Shape::fixed(&c.dims), c.data.clone()));
                self.vals.insert(name.to_string(), Val::Tensor(id));
                Ok(id)
            }
            None => Err(format!(
                "input {name:?} is not produced by any earlier node, initializer or graph input (ONNX graphs are topologically sorted)"
            )),
        }
    }

    fn constant(&self, name: &str) -> Option<ConstVal> {
        match self.vals.get(name) {
            Some(Val::Const(c)) => Some(c.clone()),
            Some(Val::Sym(v)) => sym_const(v),
            Some(Val::Tensor(t)) => {
                let t = self.g.tensor(*t)?;
                Some(ConstVal { dtype: t.dtype, dims: t.shape.to_fixed()?, data: t.data.clone()? })
            }
            None => None,
        }
    }

    /// A shape value: symbolic, or an integer constant of rank 0 or 1.
    fn shape_value(&self, name: &str) -> Option<SymVal> {
        match self.vals.get(name) {
            Some(Val::Sym(v)) => Some(v.clone()),
            _ => {
                let c = self.constant(name)?;
                let v = c.i64s()?;
                match c.dims.len() {
                    0 if v.len() == 1 => Some(SymVal::Scalar(SymDim::Known(v[0]))),
                    1 => Some(SymVal::from_ints(&v)),
                    _ => None,
                }
            }
        }
    }

    /// Is the value `name` symbolic shape arithmetic (not fully known)?
    fn is_sym(&self, name: &str) -> bool {
        matches!(self.vals.get(name), Some(Val::Sym(v)) if v.known().is_none())
    }

    fn new_const(&mut self, name: &str, dtype: DType, dims: &[usize], data: Bytes) -> TensorId {
        self.g.add_tensor(Tensor::constant(name, dtype, Shape::fixed(dims), data))
    }

    /// Add a node; output tensor from inference.
    fn push(&mut self, name: &str, op: Op, inputs: Vec<Option<TensorId>>) -> R<TensorId> {
        let ins: Vec<_> =
            inputs.iter().map(|i| i.and_then(|t| self.g.tensor(t)).map(|t| (t.dtype, &t.shape))).collect();
        let inf = op.infer(&ins).map_err(|e| e.0)?.remove(0);
        let dtype = inf.dtype.unwrap_or(DType::F32);
        let out = self.g.add_tensor(Tensor::activation(name, dtype, inf.shape));
        self.g.add_node(Node::new(name, op, inputs, vec![out]));
        Ok(out)
    }

    fn transpose(&mut self, name: &str, x: TensorId, perm: Vec<usize>) -> R<TensorId> {
        self.push(name, Op::Transpose(Transpose { perm }), vec![Some(x)])
    }

    fn const_ints(&self, n: &NodeProto, idx: usize, what: &str) -> R<Option<Vec<i64>>> {
        match n.input.get(idx).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => self
                .constant(name)
                .and_then(|c| c.i64s())
                .map(Some)
                .ok_or_else(|| format!("{what} must be a constant integer tensor")),
        }
    }
}

fn norm_axis(a: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    if a < -r || a >= r {
        return Err(format!("axis {a} is outside rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// SAME / VALID / explicit padding for a 2-D window on an NCHW input of spatial size `hw`
/// (a size known only at run time: explicit pads are SAME only where SAME's are the same for
/// every size, at stride 1).
fn window_padding(
    n: &NodeProto,
    hw: [Dim; 2],
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
) -> R<(Padding, Option<[usize; 4]>)> {
    let auto = attr_s(n, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "VALID" => return Ok((Padding::Valid, None)),
        "SAME_UPPER" => return Ok((Padding::Same, None)),
        "SAME_LOWER" => {
            return Err("auto_pad SAME_LOWER puts the extra pixel first, which TFLite cannot express".into());
        }
        _ => {}
    }
    let pads = attr_ints(n, "pads").unwrap_or_else(|| vec![0; 4]);
    if pads.len() != 4 || pads.iter().any(|&p| !(0..=MAX_WINDOW).contains(&p)) {
        return Err(format!("pads {pads:?} must be 4 values in [0, {MAX_WINDOW}]"));
    }
    let p = [pads[0] as usize, pads[1] as usize, pads[2] as usize, pads[3] as usize];
    if p == [0, 0, 0, 0] {
        return Ok((Padding::Valid, None));
    }
    // Does TFLite's SAME rule give exactly these pads?
    let same = (0..2).all(|i| Padding::same_pads(hw[i], k[i], s[i], d[i]) == Some([p[i], p[i + 2]]));
    if same {
        return Ok((Padding::Same, None));
    }
    Ok((Padding::Valid, Some(p)))
}

/// Import an ONNX model.
pub fn import(bytes: Bytes, opts: &ImportOptions) -> Result<Graph, OnnxError> {
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    let graph = model.graph.as_ref().ok_or(OnnxError::NoGraph)?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(1);
    let ctx = Ctx { model_dir: opts.model_dir.clone() };
    let mut im = Importer {
        g: Graph::new(graph.name.clone().unwrap_or_else(|| "main".into())),
        vals: HashMap::new(),
        opset,
        unsupported: Vec::new(),
        uses: HashMap::new(),
        convs: HashMap::new(),
        opaque: HashSet::new(),
        nonneg: HashSet::new(),
        limits: opts.limits,
        unknown_op: false,
    };
    if let Some(doc) = &model.producer_name {
        im.g.set_description(Some(format!("imported from ONNX ({doc})")));
    }
    for t in &graph.initializer {
        let c = tensor_value(t, &ctx)?;
        im.vals.insert(t.name.clone().unwrap_or_default(), Val::Const(c));
    }
    for n in &graph.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            *im.uses.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *im.uses.entry(o.name.clone().unwrap_or_default()).or_default() += 1;
    }
    // Graph inputs (those that are not initializers).
    let mut inputs = Vec::new();
    let mut input_names = Vec::new();
    for vi in &graph.input {
        let name = vi.name.clone().unwrap_or_default();
        if im.vals.contains_key(&name) {
            continue;
        }
        let ierr = |m: String| OnnxError::Input { name: name.clone(), message: m };
        let tt = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(proto::type_proto::Value::TensorType(t)) => t,
            None => return Err(ierr("has no tensor type".into())),
        };
        use proto::tensor_proto::DataType as D;
        let dtype = match D::try_from(tt.elem_type.unwrap_or(0)) {
            Ok(D::Float) => DType::F32,
            Ok(D::Int64) => DType::I64,
            Ok(D::Int32) => DType::I32,
            Ok(D::Int8) => DType::I8,
            Ok(D::Uint8) => DType::U8,
            other => return Err(ierr(format!("element type {other:?} is not supported"))),
        };
        let dims: Vec<Dim> = match opts.input_shapes.get(&name) {
            Some(s) => s.clone(),
            None => tt
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => {
                                Dim::Fixed(v as usize)
                            }
                            _ => Dim::Dynamic,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        let id = if opts.nhwc_io && dims.len() == 4 {
            let nhwc = vec![dims[0], dims[2], dims[3], dims[1]];
            let id = im.g.add_tensor(Tensor::activation(name.clone(), dtype, Shape::new(nhwc)));
            let nchw = im
                .transpose(&format!("{name}/to_nchw"), id, vec![0, 3, 1, 2])
                .map_err(|m| OnnxError::Input { name: name.clone(), message: m })?;
            im.vals.insert(name.clone(), Val::Tensor(nchw));
            id
        } else {
            let id = im.g.add_tensor(Tensor::activation(name.clone(), dtype, Shape::new(dims)));
            im.vals.insert(name.clone(), Val::Tensor(id));
            id
        };
        inputs.push(id);
        input_names.push(name);
    }
    im.g.set_inputs(inputs);
    for (ni, n) in graph.node.iter().enumerate() {
        let op_type = n.op_type.clone().unwrap_or_default();
        let node_name = n.name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| format!("{op_type}_{ni}"));
        let domain = n.domain.clone().unwrap_or_default();
        if !(domain.is_empty() || domain == "ai.onnx") {
            im.unsupported.push(format!("{domain}:{op_type} (node {node_name:?}, opset {opset})"));
            im.mark_opaque(n, &op_type)?;
            continue;
        }
        let fed_by_unsupported = n.input.iter().any(|i| im.opaque.contains(i));
        im.unknown_op = false;
        match im.node(n, &op_type, &node_name) {
            // Its shapes are guesses: downstream errors are not to be reported either.
            Ok(true) if fed_by_unsupported => im.opaque.extend(n.output.iter().cloned()),
            Ok(true) => {}
            Ok(false) if fed_by_unsupported && !im.unknown_op => {
                im.mark_opaque(n, &op_type)?;
            }
            Ok(false) => {
                im.unsupported.push(format!("{op_type} (node {node_name:?}, opset {opset})"));
                im.mark_opaque(n, &op_type)?;
            }
            // A node fed by an unsupported one cannot be checked (its input is a placeholder):
            // the unsupported list is the error then.
            Err(_) if fed_by_unsupported => im.mark_opaque(n, &op_type)?,
            Err(message) => return Err(OnnxError::Node { node: node_name, op_type, message }),
        }
    }
    if !im.unsupported.is_empty() {
        return Err(OnnxError::Unsupported(im.unsupported.join(", ")));
    }
    let mut outputs = Vec::new();
    let mut output_names = Vec::new();
    for vi in &graph.output {
        let name = vi.name.clone().unwrap_or_default();
        let mut id = match im.tensor(&name) {
            Ok(id) => id,
            Err(message) if im.vals.contains_key(&name) => return Err(OnnxError::OutputValue { name, message }),
            Err(_) => return Err(OnnxError::Output(name)),
        };
        if opts.nhwc_io && im.shape_of(id).rank() == 4 {
            if let Some(t) = im.g.tensor_mut(id) {
                t.name = format!("{name}/nchw");
            }
            id = im.transpose(&name, id, vec![0, 2, 3, 1]).map_err(|m| OnnxError::Node {
                node: name.clone(),
                op_type: "output".into(),
                message: m,
            })?;
        }
        outputs.push(id);
        output_names.push(name);
    }
    im.g.set_outputs(outputs);
    im.g.set_signature(Some(Signature { key: "serving_default".into(), inputs: input_names, outputs: output_names }));
    qlite_ir::verify(&im.g).map_err(|e| OnnxError::Invalid(e.to_string()))?;
    Ok(im.g)
}

impl Importer {
    /// Record an unsupported node so later nodes can still be checked (its outputs become
    /// placeholders that nothing will run).
    fn mark_opaque(&mut self, n: &NodeProto, op_type: &str) -> Result<(), OnnxError> {
        for o in &n.output {
            let id = self.g.add_tensor(Tensor::activation(o.clone(), DType::F32, Shape::scalar()));
            self.vals.insert(o.clone(), Val::Tensor(id));
            self.opaque.insert(o.clone());
        }
        let _ = op_type;
        Ok(())
    }

    fn alias(&mut self, n: &NodeProto, v: Val) {
        if let Some(o) = n.output.first() {
            self.vals.insert(o.clone(), v);
        }
    }

    fn output(&mut self, n: &NodeProto, t: TensorId) {
        if let Some(o) = n.output.first() {
            if let Some(tensor) = self.g.tensor_mut(t) {
                tensor.name = o.clone();
            }
            self.vals.insert(o.clone(), Val::Tensor(t));
        }
    }

    fn input(&mut self, n: &NodeProto, i: usize) -> R<TensorId> {
        let name = n.input.get(i).filter(|s| !s.is_empty()).ok_or_else(|| format!("input {i} is missing"))?.clone();
        self.tensor(&name)
    }

    /// Convert one node: each family's mapping in turn (conv before pool: a 1-D Conv /
    /// MaxPool / AveragePool is lifted to 2-D there). `Ok(false)`: the op is not supported.
    fn node(&mut self, n: &NodeProto, op_type: &str, name: &str) -> R<bool> {
        type Family = fn(&mut Importer, &NodeProto, &str, &str) -> R<Option<bool>>;
        const FAMILIES: [Family; 8] = [
            Importer::graph_op,
            Importer::elementwise_op,
            Importer::fc_op,
            Importer::conv_op,
            Importer::pool_op,
            Importer::movement_op,
            Importer::resize_op,
            Importer::norm_op,
        ];
        for family in FAMILIES {
            if let Some(done) = family(self, n, op_type, name)? {
                return Ok(done);
            }
        }
        // No family maps this op type: what `node`'s caller reports even behind an
        // unsupported node (the families' arms are the list of known ops; none is kept by hand).
        self.unknown_op = true;
        Ok(false)
    }
}

/// Largest pad, kernel size, stride or dilation accepted (far above any real model; keeps the
/// window arithmetic and the pool count maps small).
const MAX_WINDOW: i64 = 1 << 16;

/// The [top, left, bottom, right] pads of TFLite's SAME rule.
fn same_pads(hw: [usize; 2], k: [usize; 2], s: [usize; 2]) -> [usize; 4] {
    let mut p = [0; 4];
    for i in 0..2 {
        let out = hw[i].div_ceil(s[i]);
        let total = ((out.max(1) - 1) * s[i] + k[i]).saturating_sub(hw[i]);
        p[i] = total / 2;
        p[i + 2] = total - total / 2;
    }
    p
}

/// Reshape target with ONNX's 0 (copy) and -1 (infer) rules.
fn resolve_reshape(dims: &[usize], shape: &[i64], allowzero: bool) -> R<Vec<usize>> {
    let bad = || format!("cannot reshape {dims:?} to {shape:?}");
    let total = qlite_ir::shape::checked_product(dims).ok_or_else(bad)?;
    let mut out: Vec<Option<usize>> = Vec::with_capacity(shape.len());
    for (i, &s) in shape.iter().enumerate() {
        out.push(match s {
            -1 => None,
            0 if !allowzero => Some(*dims.get(i).ok_or("reshape 0 beyond the input rank")?),
            s if s >= 0 => Some(s as usize),
            s => return Err(format!("bad reshape dimension {s}")),
        });
    }
    let known = out.iter().flatten().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(bad)?;
    let missing = out.iter().filter(|d| d.is_none()).count();
    if missing > 1 || (missing == 1 && (known == 0 || !total.is_multiple_of(known))) || (missing == 0 && known != total)
    {
        return Err(bad());
    }
    Ok(out.into_iter().map(|d| d.unwrap_or(total / known.max(1))).collect())
}
