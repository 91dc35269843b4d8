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

    /// Convert one node. `Ok(false)`: the op is not supported.
    fn node(&mut self, n: &NodeProto, op_type: &str, name: &str) -> R<bool> {
        let first = n.input.first().cloned().unwrap_or_default();
        match op_type {
            "Identity" | "Dropout" => {
                let v = self.vals.get(&first).cloned().ok_or_else(|| format!("input {first:?} names no tensor"))?;
                self.alias(n, v);
            }
            "Constant" => {
                let a = n.attribute.first().ok_or("Constant without a value")?;
                let c = match (a.name.as_deref(), &a.t) {
                    (Some("value"), Some(t)) => tensor_value(t, &Ctx { model_dir: None }).map_err(|e| e.to_string())?,
                    (Some("value_float"), _) => f32_const(&[a.f.unwrap_or(0.0)], vec![]),
                    (Some("value_floats"), _) => f32_const(&a.floats, vec![a.floats.len()]),
                    (Some("value_int"), _) => {
                        ConstVal { dtype: DType::I64, dims: vec![], data: i64_bytes(&[a.i.unwrap_or(0)]) }
                    }
                    (Some("value_ints"), _) => ints_const(&a.ints),
                    _ => return Ok(false),
                };
                self.alias(n, Val::Const(c));
            }
            "Elu" if attr_f(n, "alpha", 1.0) != 1.0 => {
                // TFLite's ELU has α = 1: α·elu(x) + (1 − α)·relu(x) (one of the two is x).
                let alpha = attr_f(n, "alpha", 1.0);
                if !alpha.is_finite() {
                    return Err(format!("Elu alpha {alpha} is not finite"));
                }
                let x = self.input(n, 0)?;
                let bin = |kind| Op::Binary(Binary { kind, activation: Activation::None });
                let e = self.push(&format!("{name}/elu"), Op::Unary(Unary { kind: UnaryKind::Elu }), vec![Some(x)])?;
                let r =
                    self.push(&format!("{name}/relu"), Op::Unary(Unary { kind: UnaryKind::Relu }), vec![Some(x)])?;
                let a = self.new_const(&format!("{name}/alpha"), DType::F32, &[], f32_bytes(&[alpha]));
                let b = self.new_const(&format!("{name}/one_minus_alpha"), DType::F32, &[], f32_bytes(&[1.0 - alpha]));
                let ea = self.push(&format!("{name}/scaled_elu"), bin(BinaryKind::Mul), vec![Some(e), Some(a)])?;
                let rb = self.push(&format!("{name}/scaled_relu"), bin(BinaryKind::Mul), vec![Some(r), Some(b)])?;
                let y = self.push(name, bin(BinaryKind::Add), vec![Some(ea), Some(rb)])?;
                self.output(n, y);
            }
            "Gelu" if !matches!(attr_s(n, "approximate").as_deref(), None | Some("none") | Some("tanh")) => {
                return Ok(false);
            }
            "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Sqrt" | "Neg" | "Abs" | "Elu" | "Gelu" | "Erf" => {
                let x = self.input(n, 0)?;
                let kind = match op_type {
                    "Erf" => UnaryKind::Erf,
                    "Elu" => UnaryKind::Elu,
                    "Gelu" if attr_s(n, "approximate").as_deref() == Some("tanh") => UnaryKind::GeluTanh,
                    "Gelu" => UnaryKind::Gelu,
                    "Relu" => UnaryKind::Relu,
                    "Sigmoid" => UnaryKind::Logistic,
                    "Exp" => UnaryKind::Exp,
                    "Sqrt" => UnaryKind::Sqrt,
                    "Neg" => UnaryKind::Neg,
                    "Abs" => UnaryKind::Abs,
                    _ => UnaryKind::Tanh,
                };
                let y = self.push(name, Op::Unary(Unary { kind }), vec![Some(x)])?;
                if kind == UnaryKind::Relu {
                    self.nonneg.insert(y);
                }
                self.output(n, y);
            }
            "Clip" => {
                let (lo, hi) = if self.opset < 11 {
                    (attr_f(n, "min", f32::MIN), attr_f(n, "max", f32::MAX))
                } else {
                    let get = |i: usize, d: f32| -> R<f32> {
                        match n.input.get(i).filter(|s| !s.is_empty()) {
                            None => Ok(d),
                            Some(s) => self
                                .constant(s)
                                .and_then(|c| c.f32s())
                                .and_then(|v| v.first().copied())
                                .ok_or_else(|| "Clip bounds must be constants".to_string()),
                        }
                    };
                    (get(1, f32::MIN)?, get(2, f32::MAX)?)
                };
                let kind = if lo == 0.0 && hi == 6.0 {
                    UnaryKind::Relu6
                } else if lo == -1.0 && hi == 1.0 {
                    UnaryKind::ReluN1To1
                } else if lo == 0.0 && hi >= f32::MAX {
                    UnaryKind::Relu
                } else {
                    // General bounds: MINIMUM then MAXIMUM with scalar constants.
                    let mut y = self.input(n, 0)?;
                    if hi < f32::MAX {
                        y = self.scalar_binary(&format!("{name}/upper"), BinaryKind::Minimum, y, hi)?;
                    }
                    if lo > f32::MIN {
                        y = self.scalar_binary(&format!("{name}/lower"), BinaryKind::Maximum, y, lo)?;
                    }
                    self.output(n, y);
                    return Ok(true);
                };
                let x = self.input(n, 0)?;
                let y = self.push(name, Op::Unary(Unary { kind }), vec![Some(x)])?;
                if kind != UnaryKind::ReluN1To1 {
                    self.nonneg.insert(y);
                }
                self.output(n, y);
            }
            "LeakyRelu" | "PRelu" => {
                let x = self.input(n, 0)?;
                let slope = if op_type == "LeakyRelu" {
                    self.new_const(&format!("{name}/alpha"), DType::F32, &[], f32_bytes(&[attr_f(n, "alpha", 0.01)]))
                } else {
                    let sname = n.input.get(1).cloned().unwrap_or_default();
                    let c = self.constant(&sname).ok_or("PRelu slope must be a constant")?;
                    let v = c.f32s().ok_or("PRelu slope must be float")?;
                    // Before opset 7 (no broadcasting) a 1-D slope is per channel (axis 1).
                    let rank = self.shape_of(x).rank();
                    let dims = if c.dims.len() == 1 && rank > 2 && v.len() > 1 {
                        let mut d = vec![v.len()];
                        d.extend(std::iter::repeat_n(1, rank - 2));
                        d
                    } else {
                        c.dims.clone()
                    };
                    self.new_const(&sname, DType::F32, &dims, f32_bytes(&v))
                };
                // One PRELU (x where x >= 0, else x · slope): LiteRT's op, int8 included.
                let y = self.push(name, Op::Prelu, vec![Some(x), Some(slope)])?;
                self.output(n, y);
            }
            "HardSwish" => {
                // x · max(0, min(1, x/6 + 1/2)) = x · relu6(x + 3) / 6: TFLite's HARD_SWISH.
                let x = self.input(n, 0)?;
                let y = self.push(name, Op::Unary(Unary { kind: UnaryKind::HardSwish }), vec![Some(x)])?;
                self.output(n, y);
            }
            "HardSigmoid" => {
                // max(0, min(1, alpha·x + beta)).
                let (alpha, beta) = (attr_f(n, "alpha", 0.2), attr_f(n, "beta", 0.5));
                let x = self.input(n, 0)?;
                let t = self.scalar_binary(&format!("{name}/scale"), BinaryKind::Mul, x, alpha)?;
                let t = self.scalar_binary(&format!("{name}/shift"), BinaryKind::Add, t, beta)?;
                let t = self.scalar_binary(&format!("{name}/upper"), BinaryKind::Minimum, t, 1.0)?;
                let y = self.push(name, Op::Unary(Unary { kind: UnaryKind::Relu }), vec![Some(t)])?;
                self.output(n, y);
            }
            "Max" | "Min" => {
                let kind = if op_type == "Max" { BinaryKind::Maximum } else { BinaryKind::Minimum };
                self.fold_binary(n, name, kind)?;
            }
            "Pow" => {
                let e = n.input.get(1).and_then(|s| self.constant(s)).and_then(|c| c.f32s());
                let Some(&[e]) = e.as_deref() else { return Ok(false) };
                let x = self.input(n, 0)?;
                let y = if e == 1.0 {
                    self.alias(n, Val::Tensor(x));
                    return Ok(true);
                } else if e == 2.0 {
                    let op = Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::None });
                    self.push(name, op, vec![Some(x), Some(x)])?
                } else if e == 0.5 {
                    self.push(name, Op::Unary(Unary { kind: UnaryKind::Sqrt }), vec![Some(x)])?
                } else {
                    return Ok(false);
                };
                self.output(n, y);
            }
            "Add" | "Sub" | "Mul" | "Div"
                if n.input.len() == 2 && n.input.iter().any(|i| matches!(self.vals.get(i), Some(Val::Sym(_)))) =>
            {
                // Shape arithmetic (PyTorch's `x.view(b, c * h * w)`): folded, never a tensor.
                let (Some(a), Some(b)) = (self.shape_value(&n.input[0]), self.shape_value(&n.input[1])) else {
                    return Err(format!("{op_type} of a shape value and a tensor that is not one"));
                };
                let op = match op_type {
                    "Add" => SymOp::Add,
                    "Sub" => SymOp::Sub,
                    "Mul" => SymOp::Mul,
                    _ => SymOp::TruncDiv,
                };
                self.alias(n, Val::Sym(sym::binary(op, &a, &b).map_err(|e| e.to_string())?));
            }
            "Add" | "Sub" | "Mul" | "Div" | "Sum" => {
                if op_type == "Sum" && n.input.len() == 1 {
                    let v = self.vals.get(&first).cloned().ok_or("Sum input missing")?;
                    self.alias(n, v);
                    return Ok(true);
                }
                if op_type == "Div" {
                    // x / c → x · (1/c) for a constant divisor.
                    let c = n.input.get(1).and_then(|s| self.constant(s)).and_then(|c| c.f32s().map(|v| (v, c.dims)));
                    let Some((v, dims)) = c else {
                        // A runtime divisor: DIV (float only).
                        for i in 0..2 {
                            let t = self.input(n, i)?;
                            if self.g.tensors()[t.index()].dtype != DType::F32 {
                                return Ok(false);
                            }
                        }
                        self.fold_binary(n, name, BinaryKind::Div)?;
                        return Ok(true);
                    };
                    let inv: Vec<f32> = v.iter().map(|x| 1.0 / x).collect();
                    let x = self.input(n, 0)?;
                    let r = self.new_const(&format!("{name}/reciprocal"), DType::F32, &dims, f32_bytes(&inv));
                    let y = self.push(
                        name,
                        Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::None }),
                        vec![Some(x), Some(r)],
                    )?;
                    self.output(n, y);
                    return Ok(true);
                }
                for i in n.input.iter().filter(|i| self.constant(i).is_none()) {
                    if let Some(Val::Tensor(t)) = self.vals.get(i)
                        && self.g.tensors()[t.index()].dtype != DType::F32
                    {
                        return Ok(false); // integer arithmetic on runtime tensors: no kernel yet
                    }
                }
                let kind = match op_type {
                    "Sub" => BinaryKind::Sub,
                    "Mul" => BinaryKind::Mul,
                    _ => BinaryKind::Add,
                };
                self.fold_binary(n, name, kind)?;
            }
            // Both operands at run time (attention scores, values): BATCH_MATMUL.
            "MatMul" if n.input.get(1).is_some_and(|s| self.constant(s).is_none()) => {
                let (a, b) = (self.input(n, 0)?, self.input(n, 1)?);
                if self.shape_of(a).rank() < 2 || self.shape_of(b).rank() < 2 {
                    return Ok(false);
                }
                let y = self.push(
                    name,
                    Op::BatchMatMul(BatchMatMul { adj_x: false, adj_y: false }),
                    vec![Some(a), Some(b)],
                )?;
                self.output(n, y);
            }
            "Gemm" | "MatMul" => {
                let mut x = self.input(n, 0)?;
                let bname = n.input.get(1).cloned().unwrap_or_default();
                let Some(b) = self.constant(&bname).filter(|c| c.dims.len() == 2) else { return Ok(false) };
                if b.dtype != DType::F32 {
                    return Err("weights must be float".into());
                }
                let (trans_a, trans_b) =
                    if op_type == "Gemm" { (attr_i(n, "transA", 0), attr_i(n, "transB", 0)) } else { (0, 0) };
                if trans_a != 0 {
                    if self.shape_of(x).rank() != 2 {
                        return Err(format!("Gemm input must be 2-D, got {}", self.shape_of(x)));
                    }
                    x = self.transpose(&format!("{name}/transpose_a"), x, vec![1, 0])?;
                }
                let alpha = if op_type == "Gemm" { attr_f(n, "alpha", 1.0) } else { 1.0 };
                let beta = if op_type == "Gemm" { attr_f(n, "beta", 1.0) } else { 1.0 };
                // FULLY_CONNECTED wants [units, depth].
                let bv = || b.f32s().unwrap_or_default();
                let (units, depth, w): (usize, usize, Vec<f32>) = if trans_b != 0 && alpha == 1.0 {
                    (b.dims[0], b.dims[1], Vec::new())
                } else if trans_b != 0 {
                    (b.dims[0], b.dims[1], bv().iter().map(|v| v * alpha).collect())
                } else {
                    let (k, m) = (b.dims[0], b.dims[1]);
                    let bv = bv();
                    let mut t = vec![0f32; k * m];
                    for r in 0..k {
                        for c in 0..m {
                            t[c * k + r] = bv[r * m + c] * alpha;
                        }
                    }
                    (m, k, t)
                };
                let xr = self.shape_of(x).rank();
                if op_type == "Gemm" && xr != 2 {
                    return Err(format!("Gemm input must be 2-D, got {}", self.shape_of(x)));
                }
                // transB = 1 with alpha = 1 (PyTorch's nn.Linear) is already FULLY_CONNECTED's
                // layout: keep the initializer's bytes (memory-mapped), no copy.
                let data = if trans_b != 0 && alpha == 1.0 { b.data.clone() } else { f32_bytes(&w) };
                let wt = self.new_const(&bname, DType::F32, &[units, depth], data);
                let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
                    Some(cn) => {
                        let c = self.constant(cn).and_then(|c| c.f32s()).ok_or("Gemm C must be a float constant")?;
                        let full: Vec<f32> = if c.len() == units {
                            c.iter().map(|v| v * beta).collect()
                        } else if c.len() == 1 {
                            vec![c[0] * beta; units]
                        } else {
                            return Ok(false);
                        };
                        Some(self.new_const(cn, DType::F32, &[units], f32_bytes(&full)))
                    }
                    None => None,
                };
                let op = Op::FullyConnected(FullyConnected {
                    activation: Activation::None,
                    keep_num_dims: xr > 2,
                    asymmetric_inputs: false,
                });
                let y = self.push(name, op, vec![Some(x), Some(wt), bias])?;
                if let Some(o) = n.output.first() {
                    self.convs.insert(o.clone(), (self.g.nodes().len() - 1, wt, bias, 0));
                }
                self.output(n, y);
            }
            "Conv" | "MaxPool" | "AveragePool" if self.input(n, 0).map(|x| self.shape_of(x).rank()) == Ok(3) => {
                return self.lift_1d(n, name, op_type);
            }
            "Conv" => return self.conv(n, name),
            "ConvTranspose" => return self.conv_transpose(n, name),
            "BatchNormalization" => return self.batch_norm(n, name),
            "MaxPool" | "AveragePool" => return self.pool(n, name, op_type),
            "GlobalAveragePool" => {
                let x = self.input(n, 0)?;
                if self.shape_of(x).rank() != 4 {
                    return Ok(false);
                }
                let y = self.push(name, Op::Mean(Mean { axes: vec![2, 3], keep_dims: true }), vec![Some(x)])?;
                self.output(n, y);
            }
            "Flatten" => {
                let x = self.input(n, 0)?;
                let s = self.shape_of(x);
                let axis = norm_axis(attr_i(n, "axis", 1), s.rank() + 1)?;
                let prod = |d: &[Dim]| d.iter().try_fold(1usize, |a, d| d.fixed().map(|v| a * v));
                let target = match (prod(&s.dims()[..axis]), prod(&s.dims()[axis..])) {
                    (_, Some(inner)) => vec![-1, inner as i64],
                    (Some(outer), None) => vec![outer as i64, -1],
                    (None, None) => {
                        return Err(format!("Flatten needs static dimensions on one side of axis {axis}, got {s}"));
                    }
                };
                let y = self.push(name, Op::Reshape(Reshape { shape: target }), vec![Some(x)])?;
                self.output(n, y);
            }
            "Reshape" if n.input.get(1).is_some_and(|t| self.is_sym(t)) => {
                let x = self.input(n, 0)?;
                let xs = sym::shape_of(&self.shape_of(x), x.index());
                let target = self.shape_value(&n.input[1]).map(|v| v.elements()).unwrap_or_default();
                // ONNX's 0 copies the input's dim (unless allowzero).
                let allowzero = attr_i(n, "allowzero", 0) != 0;
                let target: Vec<SymDim> = target
                    .iter()
                    .enumerate()
                    .map(|(i, d)| match d {
                        SymDim::Known(0) if !allowzero => xs.get(i).copied().unwrap_or(*d),
                        _ => *d,
                    })
                    .collect();
                let target = sym::reshape_target(&xs, &target).map_err(|e| e.to_string())?;
                let y = self.push(name, Op::Reshape(Reshape { shape: target }), vec![Some(x)])?;
                self.output(n, y);
            }
            "Reshape" => {
                let shape = self
                    .const_ints(n, 1, "Reshape shape")?
                    .or_else(|| attr_ints(n, "shape"))
                    .ok_or("Reshape needs a shape")?;
                let allowzero = attr_i(n, "allowzero", 0) != 0;
                if let Some(c) = self.constant(&first) {
                    // Folded at import time (shape arithmetic).
                    let target = resolve_reshape(&c.dims, &shape, allowzero)?;
                    self.alias(n, Val::Const(ConstVal { dims: target, ..c }));
                    return Ok(true);
                }
                let x = self.input(n, 0)?;
                let s = self.shape_of(x);
                let mut target: Vec<i64> = shape.clone();
                for (i, d) in target.iter_mut().enumerate() {
                    if *d == 0 && !allowzero {
                        *d = s.dim(i).and_then(|d| d.fixed()).map(|v| v as i64).unwrap_or(-1);
                    }
                }
                let y = self.push(name, Op::Reshape(Reshape { shape: target }), vec![Some(x)])?;
                self.output(n, y);
            }
            "Transpose" => {
                if let Some(c) = self.constant(&first) {
                    // A transposed initializer (older PyTorch exports of Linear): fold it.
                    let rank = c.dims.len();
                    let perm: Vec<usize> = attr_ints(n, "perm")
                        .map(|p| p.iter().map(|&a| a as usize).collect())
                        .unwrap_or_else(|| (0..rank).rev().collect());
                    let mut seen = vec![false; rank];
                    if perm.len() != rank || perm.iter().any(|&p| p >= rank || std::mem::replace(&mut seen[p], true)) {
                        return Err(format!("perm {perm:?} is not a permutation of rank {rank}"));
                    }
                    let size = c.dtype.size();
                    let dims: Vec<usize> = perm.iter().map(|&p| c.dims[p]).collect();
                    let mut in_strides = vec![1usize; rank];
                    for i in (0..rank.saturating_sub(1)).rev() {
                        in_strides[i] = in_strides[i + 1] * c.dims[i + 1];
                    }
                    let total: usize = dims.iter().product();
                    let mut out = Vec::with_capacity(total * size);
                    let mut idx = vec![0usize; rank];
                    for _ in 0..total {
                        let src: usize = (0..rank).map(|k| idx[k] * in_strides[perm[k]]).sum();
                        out.extend_from_slice(&c.data[src * size..(src + 1) * size]);
                        for k in (0..rank).rev() {
                            idx[k] += 1;
                            if idx[k] < dims[k] {
                                break;
                            }
                            idx[k] = 0;
                        }
                    }
                    self.alias(n, Val::Const(ConstVal { dtype: c.dtype, dims, data: Bytes::from(out) }));
                    return Ok(true);
                }
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                let perm = attr_ints(n, "perm")
                    .map(|p| p.iter().map(|&a| a as usize).collect())
                    .unwrap_or_else(|| (0..rank).rev().collect());
                let y = self.transpose(name, x, perm)?;
                self.output(n, y);
            }
            "Concat" if n.input.iter().any(|i| self.is_sym(i)) => {
                let parts = n
                    .input
                    .iter()
                    .map(|i| self.shape_value(i).ok_or_else(|| format!("Concat of shape values: {i:?} is not one")))
                    .collect::<R<Vec<_>>>()?;
                self.alias(n, Val::Sym(sym::concat(&parts)));
            }
            "Concat" => {
                let consts: Option<Vec<ConstVal>> = n.input.iter().map(|i| self.constant(i)).collect();
                if let Some(cs) = consts.filter(|cs| cs.iter().all(|c| c.dims.len() == 1 && c.dtype == DType::I64)) {
                    let v: Vec<i64> = cs.iter().flat_map(|c| c.i64s().unwrap_or_default()).collect();
                    self.alias(n, Val::Const(ints_const(&v)));
                    return Ok(true);
                }
                let xs: Vec<TensorId> = (0..n.input.len()).map(|i| self.input(n, i)).collect::<R<_>>()?;
                let rank = self.shape_of(xs[0]).rank();
                let axis = norm_axis(attr_i(n, "axis", 0), rank)?;
                let y = self.push(
                    name,
                    Op::Concatenation(Concatenation { axis, activation: Activation::None }),
                    xs.into_iter().map(Some).collect(),
                )?;
                self.output(n, y);
            }
            "Squeeze" | "Unsqueeze" if self.is_sym(&first) => {
                let v = self.shape_value(&first).ok_or("missing shape value")?;
                let axes = if self.opset >= 13 { self.const_ints(n, 1, "axes")? } else { attr_ints(n, "axes") };
                let out = match (op_type, &v, axes.as_deref()) {
                    ("Unsqueeze", SymVal::Scalar(d), Some([0] | [-1])) => SymVal::Vector(vec![*d]),
                    ("Squeeze", SymVal::Vector(e), None | Some([0] | [-1])) if e.len() == 1 => SymVal::Scalar(e[0]),
                    _ => return Err(format!("{op_type} of a shape value along axes {axes:?}")),
                };
                self.alias(n, Val::Sym(out));
            }
            "Squeeze" | "Unsqueeze" => {
                let axes = if self.opset >= 13 { self.const_ints(n, 1, "axes")? } else { attr_ints(n, "axes") };
                let dims: Vec<Dim> = match self.constant(&first) {
                    Some(c) => c.dims.iter().map(|&d| Dim::Fixed(d)).collect(),
                    None => {
                        let x = self.input(n, 0)?;
                        self.shape_of(x).dims().to_vec()
                    }
                };
                let out_dims: Vec<Dim> = if op_type == "Squeeze" {
                    match axes {
                        Some(a) => {
                            let ax: Vec<usize> = a.iter().map(|&v| norm_axis(v, dims.len())).collect::<R<_>>()?;
                            if ax.iter().any(|&i| dims[i] != Dim::Fixed(1)) {
                                return Err(format!("Squeeze of axes {a:?} of {}: each must be 1", Shape::new(dims)));
                            }
                            dims.iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect()
                        }
                        None if dims.contains(&Dim::Dynamic) => {
                            return Err(format!(
                                "Squeeze without axes of {}: which dimensions are 1 is known only at run time",
                                Shape::new(dims)
                            ));
                        }
                        None => dims.iter().copied().filter(|&d| d != Dim::Fixed(1)).collect(),
                    }
                } else {
                    let a = axes.ok_or("Unsqueeze needs axes")?;
                    let out_rank = dims.len() + a.len();
                    let ax: Vec<usize> = a.iter().map(|&v| norm_axis(v, out_rank)).collect::<R<_>>()?;
                    let mut it = dims.iter();
                    (0..out_rank)
                        .map(
                            |i| {
                                if ax.contains(&i) {
                                    Dim::Fixed(1)
                                } else {
                                    it.next().copied().unwrap_or(Dim::Fixed(1))
                                }
                            },
                        )
                        .collect()
                };
                if let Some(c) = self.constant(&first) {
                    let dims = out_dims.iter().map(|d| d.fixed().unwrap_or(1)).collect();
                    self.alias(n, Val::Const(ConstVal { dims, ..c }));
                    return Ok(true);
                }
                // A reshape: one dimension known only at run time is its -1.
                if out_dims.iter().filter(|d| **d == Dim::Dynamic).count() > 1 {
                    return Err(format!(
                        "{op_type} to {} keeps more than one dimension known only at run time (fix them with --input-shape)",
                        Shape::new(out_dims)
                    ));
                }
                let x = self.input(n, 0)?;
                let y = self.push(
                    name,
                    Op::Reshape(Reshape {
                        shape: out_dims.iter().map(|d| d.fixed().map_or(-1, |v| v as i64)).collect(),
                    }),
                    vec![Some(x)],
                )?;
                self.output(n, y);
            }
            "Resize" | "Upsample" => {
                let x = self.input(n, 0)?;
                let xs = self.shape_of(x);
                if xs.rank() != 4 {
                    return Ok(false);
                }
                let (Some(ih), Some(iw)) = (xs.dim(2).and_then(|d| d.fixed()), xs.dim(3).and_then(|d| d.fixed()))
                else {
                    // TFLite resizes to a size: a scale of a height or width known only at run
                    // time has none until the input shape is fixed.
                    return Err(format!(
                        "the input's height and width are known only at run time ({xs}); TFLite resizes to a fixed size"
                    ));
                };
                // The output size: `sizes`, else the scales (an input from opset 9, an attribute
                // before). Only exact integer sizes map: TFLite resizes to a size, not a scale.
                let sizes_input = if op_type == "Resize" && self.opset >= 11 { 3 } else { usize::MAX };
                let scales_input = match (op_type, self.opset) {
                    ("Resize", o) if o >= 11 => 2,
                    ("Resize", _) | ("Upsample", 9) => 1,
                    _ => usize::MAX,
                };
                let sizes = self.const_ints(n, sizes_input, "sizes")?;
                let scales: Option<Vec<f32>> = match n.input.get(scales_input).filter(|s| !s.is_empty()) {
                    Some(sname) => match self.constant(sname) {
                        Some(c) => c.f32s().filter(|v| !v.is_empty()),
                        None => return Ok(false),
                    },
                    None => attr(n, "scales").map(|a| a.floats.clone()).filter(|v| !v.is_empty()),
                };
                let (oh, ow) = match (&sizes, &scales) {
                    (Some(sz), _) if sz.len() == 4 => {
                        if sz[0] != xs.dim(0).and_then(|d| d.fixed()).map_or(sz[0], |v| v as i64)
                            || Some(sz[1] as usize) != xs.dim(1).and_then(|d| d.fixed())
                        {
                            return Ok(false);
                        }
                        (sz[2], sz[3])
                    }
                    (_, Some(sc)) if sc.len() == 4 && sc[0] == 1.0 && sc[1] == 1.0 => {
                        let (h, w) = (ih as f32 * sc[2], iw as f32 * sc[3]);
                        if h.fract() != 0.0 || w.fract() != 0.0 {
                            return Ok(false);
                        }
                        (h as i64, w as i64)
                    }
                    _ => return Ok(false),
                };
                if !(1..=1 << 20).contains(&oh) || !(1..=1 << 20).contains(&ow) {
                    return Err(format!("resize to {oh}x{ow}: sizes must be between 1 and 2^20"));
                }
                let mode = attr_s(n, "mode").unwrap_or_else(|| "nearest".into());
                let ctm = if op_type == "Upsample" || self.opset < 11 {
                    "asymmetric".to_string()
                } else {
                    attr_s(n, "coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into())
                };
                let nearest_mode = if op_type == "Upsample" || self.opset < 11 {
                    "floor".to_string()
                } else {
                    attr_s(n, "nearest_mode").unwrap_or_else(|| "round_prefer_floor".into())
                };
                // TensorFlow's three coordinate rules, as ONNX spells them.
                let both_gt1 = oh > 1 && ow > 1;
                let flags = match (mode.as_str(), ctm.as_str(), nearest_mode.as_str()) {
                    ("linear" | "bilinear", "asymmetric", _) => Some((ResizeMode::Bilinear, false, false)),
                    ("linear" | "bilinear", "align_corners", _) => Some((ResizeMode::Bilinear, true, false)),
                    ("linear" | "bilinear", "half_pixel", _) => Some((ResizeMode::Bilinear, false, true)),
                    ("linear" | "bilinear", "pytorch_half_pixel", _) if both_gt1 => {
                        Some((ResizeMode::Bilinear, false, true))
                    }
                    ("nearest", "asymmetric", "floor") => Some((ResizeMode::NearestNeighbor, false, false)),
                    ("nearest", "align_corners", "round_prefer_ceil") => {
                        Some((ResizeMode::NearestNeighbor, true, false))
                    }
                    ("nearest", "half_pixel", "round_prefer_ceil") | ("nearest", "tf_half_pixel_for_nn", "floor") => {
                        Some((ResizeMode::NearestNeighbor, false, true))
                    }
                    _ => None,
                };
                let Some((rmode, align_corners, half_pixel_centers)) = flags else { return Ok(false) };
                let t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
                let op = Op::Resize(Resize {
                    mode: rmode,
                    size: [oh as usize, ow as usize],
                    align_corners,
                    half_pixel_centers,
                });
                let y = self.push(&format!("{name}/nhwc"), op, vec![Some(t)])?;
                let y = self.transpose(name, y, vec![0, 3, 1, 2])?;
                self.output(n, y);
            }
            "DepthToSpace" | "SpaceToDepth" => {
                // ONNX is NCHW; DCR's channel order (block row, block column, channel) is
                // TensorFlow's. CRD is not.
                if op_type == "DepthToSpace" && attr_s(n, "mode").is_some_and(|m| m != "DCR") {
                    return Ok(false);
                }
                let block = attr_i(n, "blocksize", 0);
                if !(1..=64).contains(&block) {
                    return Err(format!("blocksize {block} must be between 1 and 64"));
                }
                let x = self.input(n, 0)?;
                if self.shape_of(x).rank() != 4 {
                    return Ok(false);
                }
                let t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
                let sd = SpaceDepth { block: block as usize };
                let op = if op_type == "DepthToSpace" { Op::DepthToSpace(sd) } else { Op::SpaceToDepth(sd) };
                let y = self.push(&format!("{name}/nhwc"), op, vec![Some(t)])?;
                let y = self.transpose(name, y, vec![0, 3, 1, 2])?;
                self.output(n, y);
            }
            "Tile" => {
                let reps = self.const_ints(n, 1, "repeats")?.ok_or("Tile needs constant repeats")?;
                let x = self.input(n, 0)?;
                if reps.len() != self.shape_of(x).rank() || reps.iter().any(|&r| !(0..=1 << 20).contains(&r)) {
                    return Err(format!("Tile repeats {reps:?} do not fit the input"));
                }
                let multiples = reps.into_iter().map(|r| r as usize).collect();
                let y = self.push(name, Op::Tile(Tile { multiples }), vec![Some(x)])?;
                self.output(n, y);
            }
            "Pad" => {
                let mode = attr_s(n, "mode").unwrap_or_else(|| "constant".into());
                if mode == "reflect" {
                    let pads = if self.opset >= 11 { self.const_ints(n, 1, "pads")? } else { attr_ints(n, "pads") }
                        .ok_or("Pad needs pads")?;
                    let x = self.input(n, 0)?;
                    let rank = self.shape_of(x).rank();
                    if pads.len() != 2 * rank || pads.iter().any(|&p| p < 0) {
                        return Ok(false);
                    }
                    let paddings = (0..rank).map(|i| [pads[i] as usize, pads[i + rank] as usize]).collect();
                    let op = Op::MirrorPad(MirrorPad { paddings, mode: MirrorMode::Reflect });
                    let y = self.push(name, op, vec![Some(x)])?;
                    self.output(n, y);
                    return Ok(true);
                }
                if mode != "constant" {
                    return Ok(false);
                }
                let pads = if self.opset >= 11 { self.const_ints(n, 1, "pads")? } else { attr_ints(n, "pads") }
                    .ok_or("Pad needs pads")?;
                let mut val = if self.opset < 11 { attr_f(n, "value", 0.0) } else { 0.0 };
                if let Some(v) = n.input.get(2).filter(|s| !s.is_empty()) {
                    val = self
                        .constant(v)
                        .and_then(|c| c.f32s())
                        .and_then(|v| v.first().copied())
                        .ok_or("Pad value must be a constant")?;
                }
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                if pads.len() != 2 * rank || pads.iter().any(|&p| p < 0) {
                    return Ok(false);
                }
                let paddings = (0..rank).map(|i| [pads[i] as usize, pads[i + rank] as usize]).collect();
                let mut inputs = vec![Some(x)];
                if val != 0.0 {
                    // PADV2: pad with the value.
                    inputs.push(Some(self.new_const(&format!("{name}/value"), DType::F32, &[], f32_bytes(&[val]))));
                }
                let y = self.push(name, Op::Pad(Pad { paddings }), inputs)?;
                self.output(n, y);
            }
            // LayerNormalization (opset 17), the form transformers export: over the axes from
            // `axis` on, `(x − mean) · rsqrt(mean((x − mean)²) + ε) · γ + β` in the IR's ops
            // (TFLite has no layer norm op; TF's converter writes the same decomposition).
            "LayerNormalization" => {
                if n.output.len() > 1 && n.output[1..].iter().any(|o| !o.is_empty()) {
                    return Ok(false);
                }
                let x = self.input(n, 0)?;
                let xs = self.shape_of(x);
                let rank = xs.rank();
                let axis = norm_axis(attr_i(n, "axis", -1), rank)?;
                let eps = attr_f(n, "epsilon", 1e-5);
                let axes: Vec<usize> = (axis..rank).collect();
                let normalized: Vec<usize> = axes
                    .iter()
                    .map(|&a| xs.dim(a).and_then(|d| d.fixed()))
                    .collect::<Option<_>>()
                    .ok_or("LayerNormalization needs static normalized axes")?;
                let get = |i: usize| -> R<Option<Vec<f32>>> {
                    match n.input.get(i).filter(|s| !s.is_empty()) {
                        None => Ok(None),
                        Some(s) => self
                            .constant(s)
                            .and_then(|c| c.f32s())
                            .map(Some)
                            .ok_or_else(|| format!("LayerNormalization input {i} must be a float constant")),
                    }
                };
                let (Some(gamma), beta) = (get(1)?, get(2)?) else {
                    return Err("LayerNormalization needs a scale".into());
                };
                let bin = |kind| Op::Binary(Binary { kind, activation: Activation::None });
                let mean = self.push(
                    &format!("{name}/mean"),
                    Op::Mean(Mean { axes: axes.clone(), keep_dims: true }),
                    vec![Some(x)],
                )?;
                let centered =
                    self.push(&format!("{name}/centered"), bin(BinaryKind::Sub), vec![Some(x), Some(mean)])?;
                let sq = self.push(
                    &format!("{name}/squared"),
                    bin(BinaryKind::SquaredDifference),
                    vec![Some(x), Some(mean)],
                )?;
                let var =
                    self.push(&format!("{name}/variance"), Op::Mean(Mean { axes, keep_dims: true }), vec![Some(sq)])?;
                let e = self.new_const(&format!("{name}/epsilon"), DType::F32, &[], f32_bytes(&[eps]));
                let ve = self.push(&format!("{name}/variance_eps"), bin(BinaryKind::Add), vec![Some(var), Some(e)])?;
                let inv =
                    self.push(&format!("{name}/rsqrt"), Op::Unary(Unary { kind: UnaryKind::Rsqrt }), vec![Some(ve)])?;
                let norm =
                    self.push(&format!("{name}/normalized"), bin(BinaryKind::Mul), vec![Some(centered), Some(inv)])?;
                let g = self.new_const(&format!("{name}/scale"), DType::F32, &normalized, f32_bytes(&gamma));
                let mut y = self.push(&format!("{name}/scaled"), bin(BinaryKind::Mul), vec![Some(norm), Some(g)])?;
                if let Some(beta) = beta {
                    let b = self.new_const(&format!("{name}/bias"), DType::F32, &normalized, f32_bytes(&beta));
                    y = self.push(name, bin(BinaryKind::Add), vec![Some(y), Some(b)])?;
                }
                self.output(n, y);
            }
            "ReduceMean" | "ReduceSum" => {
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                let axes_input = if op_type == "ReduceSum" { 13 } else { 18 };
                let axes = if self.opset >= axes_input { self.const_ints(n, 1, "axes")? } else { attr_ints(n, "axes") };
                if axes.as_ref().is_none_or(|a| a.is_empty()) && attr_i(n, "noop_with_empty_axes", 0) != 0 {
                    self.alias(n, Val::Tensor(x));
                    return Ok(true);
                }
                let mut ax: Vec<usize> = match axes {
                    Some(a) if !a.is_empty() => a.iter().map(|&v| norm_axis(v, rank)).collect::<R<_>>()?,
                    _ => (0..rank).collect(),
                };
                ax.sort_unstable();
                ax.dedup();
                let keep = attr_i(n, "keepdims", 1) != 0;
                let attrs = Mean { axes: ax, keep_dims: keep };
                let op = if op_type == "ReduceSum" { Op::Sum(attrs) } else { Op::Mean(attrs) };
                let y = self.push(name, op, vec![Some(x)])?;
                self.output(n, y);
            }
            "LRN" => {
                let size = attr_i(n, "size", 0);
                // ONNX's window is [c - floor((size-1)/2), c + ceil((size-1)/2)]: symmetric, as
                // TFLite's radius is, only for an odd size.
                if size < 1 || size % 2 == 0 {
                    return Ok(false);
                }
                let x = self.input(n, 0)?;
                if self.shape_of(x).rank() != 4 {
                    return Ok(false);
                }
                let op = LocalResponseNorm {
                    radius: ((size - 1) / 2) as usize,
                    bias: attr_f(n, "bias", 1.0),
                    alpha: attr_f(n, "alpha", 1e-4) / size as f32,
                    beta: attr_f(n, "beta", 0.75),
                };
                let t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
                let y = self.push(&format!("{name}/nhwc"), Op::LocalResponseNorm(op), vec![Some(t)])?;
                let back = self.transpose(name, y, vec![0, 3, 1, 2])?;
                self.output(n, back);
            }
            "LogSoftmax" => {
                // Over the last axis only (opset 13's default, or an explicit last axis).
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                let default = if self.opset >= 13 { -1 } else { 1 };
                let axis = norm_axis(attr_i(n, "axis", default), rank)?;
                if axis + 1 != rank {
                    return Ok(false);
                }
                let y = self.push(name, Op::LogSoftmax, vec![Some(x)])?;
                self.output(n, y);
            }
            "Softmax" => {
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                let default = if self.opset >= 13 { -1 } else { 1 };
                let axis = norm_axis(attr_i(n, "axis", default), rank)?;
                if axis + 1 == rank {
                    let y = self.push(name, Op::Softmax(Softmax { beta: 1.0 }), vec![Some(x)])?;
                    self.output(n, y);
                } else if self.opset >= 13 {
                    // Move the axis last, softmax, move it back.
                    let mut perm: Vec<usize> = (0..rank).filter(|&i| i != axis).collect();
                    perm.push(axis);
                    let mut inv = vec![0; rank];
                    for (i, &p) in perm.iter().enumerate() {
                        inv[p] = i;
                    }
                    let t = self.transpose(&format!("{name}/to_last"), x, perm)?;
                    let s = self.push(&format!("{name}/softmax"), Op::Softmax(Softmax { beta: 1.0 }), vec![Some(t)])?;
                    let y = self.transpose(name, s, inv)?;
                    self.output(n, y);
                } else {
                    // Before opset 13: softmax over the flattened dims from `axis` on.
                    let xs = self.shape_of(x);
                    let inner = (axis..rank).try_fold(1usize, |a, i| xs.dim(i).and_then(|d| d.fixed()).map(|v| a * v));
                    let Some(inner) = inner else { return Ok(false) };
                    let back: Option<Vec<i64>> =
                        (0..rank).map(|i| xs.dim(i).and_then(|d| d.fixed()).map(|v| v as i64)).collect();
                    let back = back.unwrap_or_else(|| {
                        let mut v: Vec<i64> =
                            (0..rank).map(|i| xs.dim(i).and_then(|d| d.fixed()).map_or(-1, |v| v as i64)).collect();
                        if v.iter().filter(|&&d| d == -1).count() > 1 {
                            v.clear();
                        }
                        v
                    });
                    if back.is_empty() {
                        return Ok(false);
                    }
                    let flat = self.push(
                        &format!("{name}/flatten"),
                        Op::Reshape(Reshape { shape: vec![-1, inner as i64] }),
                        vec![Some(x)],
                    )?;
                    let s =
                        self.push(&format!("{name}/softmax"), Op::Softmax(Softmax { beta: 1.0 }), vec![Some(flat)])?;
                    let y = self.push(name, Op::Reshape(Reshape { shape: back }), vec![Some(s)])?;
                    self.output(n, y);
                }
            }
            "Shape" => {
                let dims: Vec<SymDim> = match self.constant(&first) {
                    Some(c) => c.dims.iter().map(|&d| SymDim::Known(d as i64)).collect(),
                    None => {
                        let x = self.input(n, 0)?;
                        sym::shape_of(&self.shape_of(x), x.index())
                    }
                };
                // Opset 15's start / end: a slice of the shape.
                let len = dims.len() as i64;
                let (start, end) = (attr_i(n, "start", 0), attr_i(n, "end", len));
                let axis = SliceAxis { begin: start, end, stride: 1, ..Default::default() };
                let v = sym::strided_slice(&dims, axis).map_err(|e| e.to_string())?;
                self.alias(
                    n,
                    match sym_const(&v) {
                        Some(c) => Val::Const(c),
                        None => Val::Sym(v),
                    },
                );
            }
            "Gather" if self.is_sym(&first) => {
                let v = self.shape_value(&first).map(|v| v.elements()).unwrap_or_default();
                if attr_i(n, "axis", 0) != 0 {
                    return Err("Gather of a shape value along an axis other than 0".into());
                }
                let idx = n.input.get(1).and_then(|i| self.constant(i)).ok_or("Gather indices must be a constant")?;
                let ix = idx.i64s().ok_or("Gather indices must be integers")?;
                self.alias(n, Val::Sym(sym::gather(&v, &ix, idx.dims.is_empty()).map_err(|e| e.to_string())?));
            }
            "Cast" if self.is_sym(&first) => {
                let v = self.shape_value(&first).ok_or("missing shape value")?;
                self.alias(n, Val::Sym(v));
            }
            "Slice" if self.is_sym(&first) => {
                let v = self.shape_value(&first).map(|v| v.elements()).unwrap_or_default();
                let one = |k: usize, what: &str| -> R<Option<i64>> {
                    match self.const_ints(n, k, what)? {
                        None => Ok(None),
                        Some(v) if v.len() == 1 => Ok(Some(v[0])),
                        Some(v) => Err(format!("Slice of a shape value with {} {what}", v.len())),
                    }
                };
                if self.opset < 10 {
                    return Err("Slice of a shape value needs opset 10".into());
                }
                if one(3, "axes")?.is_some_and(|a| a != 0 && a != -1) {
                    return Err("Slice of a shape value along an axis other than 0".into());
                }
                let axis = SliceAxis {
                    begin: one(1, "starts")?.ok_or("Slice needs starts")?,
                    end: one(2, "ends")?.ok_or("Slice needs ends")?,
                    stride: one(4, "steps")?.unwrap_or(1),
                    ..Default::default()
                };
                self.alias(n, Val::Sym(sym::strided_slice(&v, axis).map_err(|e| e.to_string())?));
            }
            "Gather" if n.input.get(1).is_some_and(|s| self.constant(s).is_none()) => {
                // Run-time indices (an embedding lookup): GATHER of the data, constant or not.
                let x = self.input(n, 0)?;
                let idx = self.input(n, 1)?;
                let rank = self.shape_of(x).rank() as i64;
                let axis = attr_i(n, "axis", 0);
                if axis < -rank || axis >= rank {
                    return Err(format!("Gather axis {axis} is outside rank {rank}"));
                }
                let axis = if axis < 0 { axis + rank } else { axis } as usize;
                let y = self.push(name, Op::Gather(Gather { axis }), vec![Some(x), Some(idx)])?;
                self.output(n, y);
            }
            "Gather" if self.constant(&first).is_none() => {
                // A runtime tensor gathered at constant indices: GATHER (negative indices
                // resolved here; LiteRT refuses them).
                let Some(idx) = n.input.get(1).and_then(|s| self.constant(s)) else { return Ok(false) };
                let Some(ix) = idx.i64s() else { return Ok(false) };
                let x = self.input(n, 0)?;
                let xs = self.shape_of(x);
                let rank = xs.rank() as i64;
                let axis = attr_i(n, "axis", 0);
                if axis < -rank || axis >= rank {
                    return Err(format!("Gather axis {axis} is outside rank {rank}"));
                }
                let axis = if axis < 0 { axis + rank } else { axis } as usize;
                let Some(len) = xs.dim(axis).and_then(|d| d.fixed()) else { return Ok(false) };
                let mut resolved = Vec::with_capacity(ix.len());
                for &i in &ix {
                    let j = if i < 0 { i + len as i64 } else { i };
                    if j < 0 || j >= len as i64 {
                        return Err(format!("Gather index {i} is outside [0, {len})"));
                    }
                    resolved.push(j as i32);
                }
                let dims: Vec<usize> = idx.dims.clone();
                let indices = self.new_const(&format!("{name}/indices"), DType::I32, &dims, i32_bytes(&resolved));
                let y = self.push(name, Op::Gather(Gather { axis }), vec![Some(x), Some(indices)])?;
                self.output(n, y);
            }
            "Gather" => {
                let (Some(data), Some(idx)) = (self.constant(&first), n.input.get(1).and_then(|s| self.constant(s)))
                else {
                    return Ok(false);
                };
                let (Some(d), Some(ix)) = (data.i64s(), idx.i64s()) else { return Ok(false) };
                if data.dims.len() != 1 || attr_i(n, "axis", 0) != 0 {
                    return Ok(false);
                }
                let mut out = Vec::with_capacity(ix.len());
                for &i in &ix {
                    let j = if i < 0 { i + d.len() as i64 } else { i };
                    out.push(
                        *d.get(usize::try_from(j).map_err(|_| format!("index {i} out of range"))?)
                            .ok_or_else(|| format!("index {i} out of range"))?,
                    );
                }
                self.alias(
                    n,
                    Val::Const(ConstVal { dtype: DType::I64, dims: idx.dims.clone(), data: i64_bytes(&out) }),
                );
            }
            "Cast" => {
                let Some(c) = self.constant(&first) else { return Ok(false) };
                let to = attr_i(n, "to", 1);
                use proto::tensor_proto::DataType as D;
                let v = match (D::try_from(to as i32), c.i64s(), c.f32s()) {
                    (Ok(D::Int64 | D::Int32), Some(v), _) => ints_const(&v),
                    (Ok(D::Int64 | D::Int32), None, Some(f)) => {
                        ints_const(&f.iter().map(|&x| x as i64).collect::<Vec<_>>())
                    }
                    (Ok(D::Float), Some(v), _) => {
                        f32_const(&v.iter().map(|&x| x as f32).collect::<Vec<_>>(), c.dims.clone())
                    }
                    (Ok(D::Float), None, Some(f)) => f32_const(&f, c.dims.clone()),
                    _ => return Ok(false),
                };
                let dims = c.dims.clone();
                self.alias(n, Val::Const(ConstVal { dims, ..v }));
            }
            "Slice" if self.constant(&first).is_none() && !self.is_sym(&first) => {
                // A slice of a run-time tensor: STRIDED_SLICE over the listed axes.
                let x = self.input(n, 0)?;
                let rank = self.shape_of(x).rank();
                let (starts, ends, axes, steps) = if self.opset >= 10 {
                    (
                        self.const_ints(n, 1, "starts")?.ok_or("Slice needs starts")?,
                        self.const_ints(n, 2, "ends")?.ok_or("Slice needs ends")?,
                        self.const_ints(n, 3, "axes")?,
                        self.const_ints(n, 4, "steps")?,
                    )
                } else {
                    (
                        attr_ints(n, "starts").ok_or("Slice needs starts")?,
                        attr_ints(n, "ends").ok_or("Slice needs ends")?,
                        attr_ints(n, "axes"),
                        None,
                    )
                };
                let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
                if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
                    return Err("Slice starts, ends, axes and steps differ in length".into());
                }
                let mut dims = vec![SliceDim::ALL; rank];
                for k in 0..starts.len() {
                    let a = norm_axis(axes[k], rank)?;
                    if steps[k] == 0 {
                        return Err("Slice step 0".into());
                    }
                    dims[a] = SliceDim { begin: Some(starts[k]), end: Some(ends[k]), stride: steps[k], shrink: false };
                }
                let y = self.push(name, Op::StridedSlice(StridedSlice { axes: dims }), vec![Some(x)])?;
                self.output(n, y);
            }
            "Slice" => {
                let Some(c) = self.constant(&first).filter(|c| c.dims.len() == 1) else { return Ok(false) };
                let v = c.i64s().ok_or("Slice of a non-integer constant")?;
                let (starts, ends) = if self.opset >= 10 {
                    (
                        self.const_ints(n, 1, "starts")?.unwrap_or_default(),
                        self.const_ints(n, 2, "ends")?.unwrap_or_default(),
                    )
                } else {
                    (attr_ints(n, "starts").unwrap_or_default(), attr_ints(n, "ends").unwrap_or_default())
                };
                let len = v.len() as i64;
                let clamp = |x: i64| if x < 0 { (x + len).max(0) } else { x.min(len) } as usize;
                let (s, e) = (clamp(*starts.first().unwrap_or(&0)), clamp(*ends.first().unwrap_or(&len)));
                let out: Vec<i64> = if s < e { v[s..e].to_vec() } else { vec![] };
                self.alias(n, Val::Const(ints_const(&out)));
            }
            "ConstantOfShape" => {
                let dims = self.const_ints(n, 0, "shape")?.ok_or("ConstantOfShape needs a shape")?;
                let dims: Vec<usize> = dims
                    .iter()
                    .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
                    .collect::<R<_>>()?;
                let lim = &self.limits;
                let count = qlite_ir::shape::checked_product(&dims)
                    .filter(|&c| c as u64 <= lim.max_elements && (c as u64).saturating_mul(8) <= lim.max_tensor_bytes)
                    .ok_or_else(|| {
                        format!(
                            "ConstantOfShape {dims:?} is over the limits ({} elements, {} bytes; raise them with --max-elements / --max-tensor-bytes)",
                            lim.max_elements, lim.max_tensor_bytes
                        )
                    })?;
                let value = attr(n, "value")
                    .and_then(|a| a.t.as_ref())
                    .map(|t| tensor_value(t, &Ctx { model_dir: None }))
                    .transpose()
                    .map_err(|e| e.to_string())?;
                let c = match value {
                    Some(v) if v.dtype == DType::I64 => ConstVal {
                        dtype: DType::I64,
                        dims,
                        data: i64_bytes(&vec![v.i64s().and_then(|x| x.first().copied()).unwrap_or(0); count]),
                    },
                    Some(v) => f32_const(&vec![v.f32s().and_then(|x| x.first().copied()).unwrap_or(0.0); count], dims),
                    None => f32_const(&vec![0.0; count], dims),
                };
                self.alias(n, Val::Const(c));
            }
            _ => {
                // No arm for this op type: what `node`'s caller reports even behind an
                // unsupported node (the arms are the list of known ops; none is kept by hand).
                self.unknown_op = true;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Conv (2-D): NCHW → Transpose → Conv2d / DepthwiseConv2d (NHWC) → Transpose → NCHW.
    fn conv(&mut self, n: &NodeProto, name: &str) -> R<bool> {
        let x = self.input(n, 0)?;
        let xs = self.shape_of(x);
        let wname = n.input.get(1).cloned().unwrap_or_default();
        let Some(w) = self.constant(&wname).filter(|c| c.dims.len() == 4) else { return Ok(false) };
        if xs.rank() != 4 {
            return Ok(false);
        }
        let wv = w.f32s().ok_or("Conv weights must be float")?;
        let (o, ig, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
        let group = attr_i(n, "group", 1).max(1) as usize;
        let strides = attr_ints(n, "strides").unwrap_or_else(|| vec![1, 1]);
        let dil = attr_ints(n, "dilations").unwrap_or_else(|| vec![1, 1]);
        if strides.len() != 2 || dil.len() != 2 || strides.iter().chain(&dil).any(|&v| !(1..=MAX_WINDOW).contains(&v)) {
            return Err(format!("strides {strides:?} / dilations {dil:?} must be two values in [1, {MAX_WINDOW}]"));
        }
        let (stride, dilation) = ([strides[0] as usize, strides[1] as usize], [dil[0] as usize, dil[1] as usize]);
        let c = xs.dim(1).and_then(|d| d.fixed()).ok_or("Conv needs a known channel count")?;
        let hw = [xs.dim(2).unwrap_or(Dim::Fixed(1)), xs.dim(3).unwrap_or(Dim::Fixed(1))];
        let (padding, explicit) = window_padding(n, hw, [kh, kw], stride, dilation)?;
        let mut t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
        if let Some(p) = explicit {
            t = self.push(
                &format!("{name}/pad"),
                Op::Pad(Pad { paddings: vec![[0, 0], [p[0], p[2]], [p[1], p[3]], [0, 0]] }),
                vec![Some(t)],
            )?;
        }
        let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(bn) => {
                let b = self.constant(bn).and_then(|c| c.f32s()).ok_or("Conv bias must be a float constant")?;
                Some(self.new_const(bn, DType::F32, &[o], f32_bytes(&b)))
            }
            None => None,
        };
        let (op, wt, axis) = if ig * group == c && o % group == 0 && !(group == c && ig == 1 && group > 1) {
            // Plain or grouped (CONV_2D infers the groups from input / filter depth).
            // OIHW → OHWI
            let mut ohwi = vec![0f32; wv.len()];
            for a in 0..o {
                for b in 0..ig {
                    for y in 0..kh {
                        for z in 0..kw {
                            ohwi[((a * kh + y) * kw + z) * ig + b] = wv[((a * ig + b) * kh + y) * kw + z];
                        }
                    }
                }
            }
            let wt = self.new_const(&wname, DType::F32, &[o, kh, kw, ig], f32_bytes(&ohwi));
            (Op::Conv2d(Conv2d { padding, stride, dilation, activation: Activation::None }), wt, 0)
        } else if group == c && ig == 1 && o % c == 0 {
            // Depthwise: [C*M, 1, kh, kw] → [1, kh, kw, C*M].
            let mut dw = vec![0f32; wv.len()];
            for a in 0..o {
                for k in 0..kh * kw {
                    dw[k * o + a] = wv[a * kh * kw + k];
                }
            }
            let wt = self.new_const(&wname, DType::F32, &[1, kh, kw, o], f32_bytes(&dw));
            (
                Op::DepthwiseConv2d(DepthwiseConv2d {
                    padding,
                    stride,
                    dilation,
                    depth_multiplier: o / c,
                    activation: Activation::None,
                }),
                wt,
                3,
            )
        } else {
            return Ok(false);
        };
        let y = self.push(&format!("{name}/nhwc"), op, vec![Some(t), Some(wt), bias])?;
        let conv_node = self.g.nodes().len() - 1;
        let back = self.transpose(name, y, vec![0, 3, 1, 2])?;
        if let Some(out) = n.output.first() {
            self.convs.insert(out.clone(), (conv_node, wt, bias, axis));
        }
        self.output(n, back);
        Ok(true)
    }

    /// ConvTranspose (2-D, one group, no dilation): TRANSPOSE_CONV with VALID padding over at
    /// least the whole scatter, `max(pad_begin + out, (in − 1)·s + k)` rows and columns (VALID
    /// adds no padding before, LiteRT wants that size to give back the input's, and what lies
    /// past the scatter, ONNX's `output_padding`, is the bias alone in both), then the window
    /// `[pad_begin, pad_begin + out)` cut by a STRIDED_SLICE.
    fn conv_transpose(&mut self, n: &NodeProto, name: &str) -> R<bool> {
        let x = self.input(n, 0)?;
        let xs = self.shape_of(x);
        let wname = n.input.get(1).cloned().unwrap_or_default();
        let Some(w) = self.constant(&wname).filter(|c| c.dims.len() == 4) else { return Ok(false) };
        if xs.rank() != 4 || attr_i(n, "group", 1) != 1 {
            return Ok(false);
        }
        if attr_ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Ok(false);
        }
        let wv = w.f32s().ok_or("ConvTranspose weights must be float")?;
        let (ic, o, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
        let strides = attr_ints(n, "strides").unwrap_or_else(|| vec![1, 1]);
        if strides.len() != 2 || strides.iter().any(|&v| !(1..=MAX_WINDOW).contains(&v)) {
            return Err(format!("strides {strides:?} must be two values in [1, {MAX_WINDOW}]"));
        }
        let stride = [strides[0] as usize, strides[1] as usize];
        let (Some(ih), Some(iw)) = (xs.dim(2).and_then(|d| d.fixed()), xs.dim(3).and_then(|d| d.fixed())) else {
            return Ok(false);
        };
        if xs.dim(1).and_then(|d| d.fixed()) != Some(ic) {
            return Err(format!("ConvTranspose input {xs} and weights {:?} disagree on channels", w.dims));
        }
        let op_pad = attr_ints(n, "output_padding").unwrap_or_else(|| vec![0, 0]);
        if op_pad.len() != 2 || op_pad.iter().any(|&p| !(0..MAX_WINDOW).contains(&p)) {
            return Err(format!("output_padding {op_pad:?} is invalid"));
        }
        let full = [(ih - 1) * stride[0] + kh, (iw - 1) * stride[1] + kw];
        let auto = attr_s(n, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        // pads [top, left, bottom, right]
        let pads: [i64; 4] = match (attr_ints(n, "output_shape"), auto.as_str()) {
            (Some(os), a) if os.len() >= 2 => {
                let out = [os[os.len() - 2], os[os.len() - 1]];
                let mut p = [0i64; 4];
                for i in 0..2 {
                    let total = full[i] as i64 + op_pad[i] - out[i];
                    let (begin, end) =
                        if a == "SAME_UPPER" { (total / 2, total - total / 2) } else { (total - total / 2, total / 2) };
                    p[i] = begin;
                    p[i + 2] = end;
                }
                p
            }
            (_, "SAME_UPPER" | "SAME_LOWER") => {
                let mut p = [0i64; 4];
                for i in 0..2 {
                    let total = full[i] as i64 + op_pad[i] - ([ih, iw][i] * stride[i]) as i64;
                    let (begin, end) = if auto == "SAME_UPPER" {
                        (total / 2, total - total / 2)
                    } else {
                        (total - total / 2, total / 2)
                    };
                    p[i] = begin;
                    p[i + 2] = end;
                }
                p
            }
            _ => {
                let p = attr_ints(n, "pads").unwrap_or_else(|| vec![0; 4]);
                let &[a, b, c, d] = p.as_slice() else { return Err(format!("pads {p:?} must have 4 values")) };
                [a, b, c, d]
            }
        };
        if pads.iter().any(|&p| p < 0) {
            return Ok(false);
        }
        let out = [0, 1].map(|i| full[i] as i64 + op_pad[i] - pads[i] - pads[i + 2]);
        if out.iter().any(|&v| v < 1) {
            return Err(format!("ConvTranspose output {out:?} is empty"));
        }
        // LiteRT requires the VALID output to give back the input size: at least the full scatter.
        let scatter = [0, 1].map(|i| ((pads[i] + out[i]) as usize).max(full[i]));
        // IOHW → OHWI
        let ohwi = qlite_ir::passes::transpose_bytes(&f32_bytes(&wv), &[ic, o, kh, kw], &[1, 2, 3, 0], 4)
            .ok_or("ConvTranspose weights do not match their shape")?;
        let wt = self.new_const(&wname, DType::F32, &[o, kh, kw, ic], ohwi.into());
        let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(bn) => {
                let b =
                    self.constant(bn).and_then(|c| c.f32s()).ok_or("ConvTranspose bias must be a float constant")?;
                Some(self.new_const(bn, DType::F32, &[o], f32_bytes(&b)))
            }
            None => None,
        };
        let t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
        let op = Op::TransposeConv2d(TransposeConv2d {
            padding: Padding::Valid,
            stride,
            output: scatter,
            activation: Activation::None,
        });
        let mut y = self.push(&format!("{name}/nhwc"), op, vec![Some(t), Some(wt), bias])?;
        if (0..2).any(|i| pads[i] > 0 || (pads[i] + out[i]) as usize != scatter[i]) {
            let mut axes = vec![SliceDim::ALL; 4];
            for i in 0..2 {
                axes[i + 1] = SliceDim { begin: Some(pads[i]), end: Some(pads[i] + out[i]), stride: 1, shrink: false };
            }
            y = self.push(&format!("{name}/crop"), Op::StridedSlice(StridedSlice { axes }), vec![Some(y)])?;
        }
        let back = self.transpose(name, y, vec![0, 3, 1, 2])?;
        self.output(n, back);
        Ok(true)
    }

    /// BatchNormalization (inference): folded into the preceding Conv / Gemm when that is its
    /// only consumer, else `x · scale + shift` with per-channel constants.
    fn batch_norm(&mut self, n: &NodeProto, name: &str) -> R<bool> {
        let first = n.input.first().cloned().unwrap_or_default();
        let get = |i: usize| n.input.get(i).and_then(|s| self.constant(s)).and_then(|c| c.f32s());
        let (Some(gamma), Some(beta), Some(mean), Some(var)) = (get(1), get(2), get(3), get(4)) else {
            return Ok(false);
        };
        let eps = attr_f(n, "epsilon", 1e-5);
        let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
        let shift: Vec<f32> = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        let ch = scale.len();
        if let Some(&(node, w, b, axis)) = self.convs.get(&first)
            && self.uses.get(&first).copied() == Some(1)
        {
            let wt = self.g.tensor(w).cloned().ok_or("weights vanished")?;
            let dims = wt.shape.to_fixed().ok_or("weights shape")?;
            if dims.get(axis) == Some(&ch) {
                let mut wv = read_f32s(wt.data.as_ref().ok_or("weights data")?);
                let stride: usize = dims[axis + 1..].iter().product();
                for (i, v) in wv.iter_mut().enumerate() {
                    *v *= scale[(i / stride) % ch];
                }
                let bv: Vec<f32> = match b.and_then(|b| self.g.tensor(b)).and_then(|t| t.data.as_ref()) {
                    Some(d) => read_f32s(d).iter().zip(&scale).zip(&shift).map(|((b, s), sh)| b * s + sh).collect(),
                    None => shift.clone(),
                };
                let nw = self.new_const(&format!("{}/bn", wt.name), DType::F32, &dims, f32_bytes(&wv));
                let nb = self.new_const(&format!("{name}/bias"), DType::F32, &[ch], f32_bytes(&bv));
                if let Some(nd) = self.g.node_mut(qlite_ir::NodeId::from_index(node)) {
                    nd.inputs[1] = Some(nw);
                    if nd.inputs.len() < 3 {
                        nd.inputs.push(Some(nb));
                    } else {
                        nd.inputs[2] = Some(nb);
                    }
                }
                let v = self.vals.get(&first).cloned().ok_or("input missing")?;
                self.alias(n, v);
                return Ok(true);
            }
        }
        let x = self.input(n, 0)?;
        let rank = self.shape_of(x).rank();
        let mut dims = vec![1usize; rank];
        if rank >= 2 {
            dims[1] = ch;
        }
        let s = self.new_const(&format!("{name}/scale"), DType::F32, &dims, f32_bytes(&scale));
        let sh = self.new_const(&format!("{name}/shift"), DType::F32, &dims, f32_bytes(&shift));
        let m = self.push(
            &format!("{name}/mul"),
            Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::None }),
            vec![Some(x), Some(s)],
        )?;
        let y = self.push(
            name,
            Op::Binary(Binary { kind: BinaryKind::Add, activation: Activation::None }),
            vec![Some(m), Some(sh)],
        )?;
        self.output(n, y);
        Ok(true)
    }

    /// A variadic elementwise node (Sum, Max, Min, or a plain Add/Sub/Mul) as a chain of
    /// binary ops from left to right.
    fn fold_binary(&mut self, n: &NodeProto, name: &str, kind: BinaryKind) -> R<()> {
        let mut acc = self.input(n, 0)?;
        for i in 1..n.input.len() {
            let b = self.input(n, i)?;
            let nm = if i + 1 == n.input.len() { name.to_string() } else { format!("{name}/{i}") };
            acc =
                self.push(&nm, Op::Binary(Binary { kind, activation: Activation::None }), vec![Some(acc), Some(b)])?;
        }
        self.output(n, acc);
        Ok(())
    }

    /// `x (op) c` for a float scalar constant `c`.
    fn scalar_binary(&mut self, name: &str, kind: BinaryKind, x: TensorId, c: f32) -> R<TensorId> {
        let k = self.new_const(&format!("{name}/value"), DType::F32, &[], f32_bytes(&[c]));
        self.push(name, Op::Binary(Binary { kind, activation: Activation::None }), vec![Some(x), Some(k)])
    }

    /// A 1-D Conv / pool on [N, C, W]: run the 2-D form on [N, C, 1, W] between Reshapes.
    fn lift_1d(&mut self, n: &NodeProto, name: &str, op_type: &str) -> R<bool> {
        let x = self.input(n, 0)?;
        let xs = self.shape_of(x);
        let fixed = |i: usize| xs.dim(i).and_then(|d| d.fixed()).map(|v| v as i64);
        let (Some(c), Some(w)) = (fixed(1), fixed(2)) else { return Ok(false) };
        let batch = fixed(0).unwrap_or(-1);
        let x2 =
            self.push(&format!("{name}/to_2d"), Op::Reshape(Reshape { shape: vec![batch, c, 1, w] }), vec![Some(x)])?;
        let mut n2 = n.clone();
        let x2name = format!("{name}/input_2d");
        self.vals.insert(x2name.clone(), Val::Tensor(x2));
        n2.input[0] = x2name;
        if op_type == "Conv" {
            let wname = n.input.get(1).cloned().unwrap_or_default();
            let Some(wc) = self.constant(&wname).filter(|c| c.dims.len() == 3) else { return Ok(false) };
            let w2name = format!("{name}/weights_2d");
            let dims = vec![wc.dims[0], wc.dims[1], 1, wc.dims[2]];
            self.vals.insert(w2name.clone(), Val::Const(ConstVal { dims, ..wc }));
            n2.input[1] = w2name;
        }
        for a in &mut n2.attribute {
            match a.name.as_deref() {
                Some("kernel_shape" | "strides" | "dilations") if a.ints.len() == 1 => a.ints.insert(0, 1),
                Some("pads") if a.ints.len() == 2 => a.ints = vec![0, a.ints[0], 0, a.ints[1]],
                _ => {}
            }
        }
        let y2name = format!("{name}/output_2d");
        n2.output = vec![y2name.clone()];
        let ok = if op_type == "Conv" { self.conv(&n2, name)? } else { self.pool(&n2, name, op_type)? };
        if !ok {
            return Ok(false);
        }
        let y2 = self.tensor(&y2name)?;
        let ys = self.shape_of(y2);
        let fixed = |i: usize| ys.dim(i).and_then(|d| d.fixed()).map(|v| v as i64);
        let (Some(o), Some(wo)) = (fixed(1), fixed(3)) else { return Err(format!("output shape {ys} is not static")) };
        let y =
            self.push(&format!("{name}/to_1d"), Op::Reshape(Reshape { shape: vec![batch, o, wo] }), vec![Some(y2)])?;
        self.output(n, y);
        Ok(true)
    }

    fn pool(&mut self, n: &NodeProto, name: &str, op_type: &str) -> R<bool> {
        let x = self.input(n, 0)?;
        let xs = self.shape_of(x);
        let k = attr_ints(n, "kernel_shape").unwrap_or_default();
        if k.iter().any(|&v| v > MAX_WINDOW) {
            return Err(format!("kernel_shape {k:?} is larger than {MAX_WINDOW}"));
        }
        if xs.rank() != 4 || k.len() != 2 || k.iter().any(|&v| v < 1) {
            return Ok(false);
        }
        let ceil_mode = attr_i(n, "ceil_mode", 0) != 0;
        if attr_ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
            return Ok(false);
        }
        let s = attr_ints(n, "strides").unwrap_or_else(|| vec![1, 1]);
        if s.len() != 2 || s.iter().any(|&v| !(1..=MAX_WINDOW).contains(&v)) {
            return Err(format!("strides {s:?} must be two values in [1, {MAX_WINDOW}]"));
        }
        let filter = [k[0] as usize, k[1] as usize];
        let stride = [s[0] as usize, s[1] as usize];
        let hwd = [xs.dim(2).unwrap_or(Dim::Fixed(1)), xs.dim(3).unwrap_or(Dim::Fixed(1))];
        let (mut padding, explicit) = window_padding(n, hwd, filter, stride, [1, 1])?;
        let kind = if op_type == "MaxPool" { PoolKind::Max } else { PoolKind::Average };
        let include_pad = kind == PoolKind::Average && attr_i(n, "count_include_pad", 0) != 0;
        if (ceil_mode || include_pad) && hwd.contains(&Dim::Dynamic) {
            return Err(format!(
                "{op_type} with ceil_mode or count_include_pad on {xs}: the padding depends on a size known only at run time (fix it with --input-shape)"
            ));
        }
        let hw = hwd.map(|d| d.fixed().unwrap_or(1));
        if n.output.len() > 1 {
            return Ok(false);
        }
        // TFLite pools pad implicitly (SAME) and leave the padding out of every window. Other
        // paddings are an explicit zero PAD before a VALID pool, exact when zeros are what the
        // window should see: an average pool with count_include_pad, or a max pool over
        // values known to be >= 0 (the output of a ReLU, as in ResNet / VGG / SqueezeNet).
        let mut pads = explicit;
        if include_pad && padding == Padding::Same && pads.is_none() {
            pads = Some(same_pads(hw, filter, stride));
        }
        let declared = pads;
        if ceil_mode {
            let p = pads.get_or_insert(match padding {
                Padding::Same => same_pads(hw, filter, stride),
                Padding::Valid => [0; 4],
            });
            for i in 0..2 {
                let padded = hw[i] + p[i] + p[i + 2];
                if padded < filter[i] {
                    return Err(format!("kernel {filter:?} is larger than the padded input"));
                }
                let mut out = (padded - filter[i]).div_ceil(stride[i]) + 1;
                // The last window must start inside the input or its leading padding.
                if (out - 1) * stride[i] >= hw[i] + p[i] {
                    out -= 1;
                }
                p[i + 2] += ((out - 1) * stride[i] + filter[i]).saturating_sub(padded);
            }
        }
        // An average pool over a zero-padded input divides by the full window; where ONNX
        // divides by fewer elements (padding excluded, or windows cut by ceil_mode), a constant
        // per-position factor `window / count` corrects it.
        let mut correction: Option<(Vec<f32>, [usize; 2])> = None;
        if let Some(p) = pads {
            if kind == PoolKind::Max && !self.nonneg.contains(&x) && p != [0; 4] {
                return Ok(false);
            }
            if kind == PoolKind::Average && p != [0; 4] {
                if hwd.contains(&Dim::Dynamic) {
                    return Err(format!(
                        "AveragePool with explicit pads on {xs}: how many elements each window averages depends on a size known only at run time (fix it with --input-shape)"
                    ));
                }
                let d = declared.unwrap_or([0; 4]);
                let outs = [0, 1].map(|i| (hw[i] + p[i] + p[i + 2]).saturating_sub(filter[i]) / stride[i] + 1);
                if outs[0].saturating_mul(outs[1]) > 1 << 24 {
                    return Err(format!("an average pool output of {}x{} is too large", outs[0], outs[1]));
                }
                let counts = |i: usize| -> Vec<usize> {
                    let out = outs[i];
                    (0..out)
                        .map(|o| {
                            let start = (o * stride[i]) as isize - p[i] as isize;
                            let end = start + filter[i] as isize;
                            let (lo, hi) = if include_pad {
                                (-(d[i] as isize), (hw[i] + d[i + 2]) as isize)
                            } else {
                                (0, hw[i] as isize)
                            };
                            (end.min(hi) - start.max(lo)).max(1) as usize
                        })
                        .collect()
                };
                let (ch, cw) = (counts(0), counts(1));
                let full = (filter[0] * filter[1]) as f32;
                let map: Vec<f32> = ch.iter().flat_map(|&a| cw.iter().map(move |&b| full / (a * b) as f32)).collect();
                if map.iter().any(|&v| v != 1.0) {
                    correction = Some((map, [ch.len(), cw.len()]));
                }
            }
        }
        let mut t = self.transpose(&format!("{name}/to_nhwc"), x, vec![0, 2, 3, 1])?;
        if let Some(p) = pads.filter(|p| *p != [0; 4]) {
            t = self.push(
                &format!("{name}/pad"),
                Op::Pad(Pad { paddings: vec![[0, 0], [p[0], p[2]], [p[1], p[3]], [0, 0]] }),
                vec![Some(t)],
            )?;
            padding = Padding::Valid;
        } else if pads.is_some() {
            padding = Padding::Valid;
        }
        let y = self.push(
            &format!("{name}/nhwc"),
            Op::Pool2d(Pool2d { kind, filter, stride, padding, activation: Activation::None }),
            vec![Some(t)],
        )?;
        let y = match correction {
            Some((map, [oh, ow])) => {
                let c =
                    self.new_const(&format!("{name}/count_correction"), DType::F32, &[1, oh, ow, 1], f32_bytes(&map));
                self.push(
                    &format!("{name}/corrected"),
                    Op::Binary(Binary { kind: BinaryKind::Mul, activation: Activation::None }),
                    vec![Some(y), Some(c)],
                )?
            }
            None => y,
        };
        let back = self.transpose(name, y, vec![0, 3, 1, 2])?;
        if kind == PoolKind::Max && self.nonneg.contains(&x) {
            self.nonneg.insert(back);
        }
        self.output(n, back);
        Ok(true)
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
