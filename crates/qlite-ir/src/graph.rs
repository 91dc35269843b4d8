//! The graph: tensors, nodes in execution order, inputs and outputs.

use crate::op::Op;
use crate::tensor::Tensor;
use std::fmt;

/// Index of a tensor in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u32);

/// Index of a node in its graph's execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl TensorId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
    /// Id for an index; used by readers and builders. The verifier range-checks every id.
    pub fn from_index(i: usize) -> Self {
        TensorId(u32::try_from(i).unwrap_or(u32::MAX))
    }
}

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
    pub fn from_index(i: usize) -> Self {
        NodeId(u32::try_from(i).unwrap_or(u32::MAX))
    }
}

impl fmt::Display for TensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// One operator application.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    /// `None` marks an omitted optional input (e.g. a FullyConnected without bias).
    pub inputs: Vec<Option<TensorId>>,
    pub outputs: Vec<TensorId>,
}

impl Node {
    pub fn new(name: impl Into<String>, op: Op, inputs: Vec<Option<TensorId>>, outputs: Vec<TensorId>) -> Self {
        Node { name: name.into(), op, inputs, outputs }
    }

    /// Present inputs.
    pub fn input_ids(&self) -> impl Iterator<Item = TensorId> + '_ {
        self.inputs.iter().flatten().copied()
    }

    pub fn input(&self, i: usize) -> Option<TensorId> {
        self.inputs.get(i).copied().flatten()
    }
}

/// Names of the model's signature: a key and one name per graph input and output, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub key: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// A dataflow graph. Nodes are kept in a valid execution order (every input is a graph
/// input, a constant or an output of an earlier node); [`Graph::verify`](crate::verify) checks it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    name: String,
    tensors: Vec<Tensor>,
    nodes: Vec<Node>,
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
    signature: Option<Signature>,
    description: Option<String>,
    /// Free-form key/value metadata carried from the source file (e.g. safetensors
    /// `__metadata__`).
    metadata: Vec<(String, String)>,
    /// Further graphs kept with this one, in the source file's order: TFLite's control-flow
    /// bodies (WHILE's condition and body, IF's branches, CALL_ONCE's initializer), which
    /// opaque operators name by position (`subgraphs()[k]` is the file's subgraph `k + 1`).
    /// Passes and the interpreter work on this graph only; writers write these back in order.
    subgraphs: Vec<Graph>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Graph { name: name.into(), ..Default::default() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    pub fn set_description(&mut self, d: Option<String>) {
        self.description = d;
    }
    /// Key/value pairs in source order.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }
    pub fn metadata_mut(&mut self) -> &mut Vec<(String, String)> {
        &mut self.metadata
    }

    // ---- tensors ----

    pub fn add_tensor(&mut self, t: Tensor) -> TensorId {
        let id = TensorId::from_index(self.tensors.len());
        self.tensors.push(t);
        id
    }

    pub fn tensor(&self, id: TensorId) -> Option<&Tensor> {
        self.tensors.get(id.index())
    }

    pub fn tensor_mut(&mut self, id: TensorId) -> Option<&mut Tensor> {
        self.tensors.get_mut(id.index())
    }

    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    pub fn tensor_ids(&self) -> impl Iterator<Item = TensorId> + use<> {
        (0..self.tensors.len()).map(TensorId::from_index)
    }

    // ---- nodes ----

    /// Append a node at the end of the execution order.
    pub fn add_node(&mut self, node: Node) -> NodeId {
        let id = NodeId::from_index(self.nodes.len());
        self.nodes.push(node);
        id
    }

    /// Move the node list out (the graph is left without nodes); the pass editor's start.
    pub fn take_nodes(&mut self) -> Vec<Node> {
        std::mem::take(&mut self.nodes)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.index())
    }

    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.nodes.get_mut(id.index())
    }

    /// Replace the node list (a pass that rebuilds the graph in one sweep); the order must be a
    /// valid execution order, as `verify` checks.
    pub fn set_nodes(&mut self, nodes: Vec<Node>) {
        self.nodes = nodes;
    }

    /// Keep only nodes for which `keep` returns true; order is preserved.
    pub fn retain_nodes(&mut self, mut keep: impl FnMut(&Node) -> bool) {
        self.nodes.retain(|n| keep(n));
    }

    /// Replace every use of `from` (as a node input or graph output) with `to`.
    pub fn replace_uses(&mut self, from: TensorId, to: TensorId) {
        for n in &mut self.nodes {
            for i in n.inputs.iter_mut().flatten() {
                if *i == from {
                    *i = to;
                }
            }
        }
        for o in &mut self.outputs {
            if *o == from {
                *o = to;
            }
        }
    }

    /// Nodes consuming `t`, as (node, input slot).
    pub fn consumers(&self, t: TensorId) -> Vec<(NodeId, usize)> {
        let mut out = Vec::new();
        for (ni, n) in self.nodes.iter().enumerate() {
            for (slot, i) in n.inputs.iter().enumerate() {
                if *i == Some(t) {
                    out.push((NodeId::from_index(ni), slot));
                }
            }
        }
        out
    }

    /// The node producing `t`, if any.
    pub fn producer(&self, t: TensorId) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.outputs.contains(&t)).map(NodeId::from_index)
    }

    /// Drop tensors that no node, input or output references, renumbering the rest.
    /// Returns how many were removed.
    pub fn compact_tensors(&mut self) -> usize {
        let mut used = vec![false; self.tensors.len()];
        let mut mark = |t: TensorId| {
            if let Some(u) = used.get_mut(t.index()) {
                *u = true;
            }
        };
        for n in &self.nodes {
            n.input_ids().for_each(&mut mark);
            n.outputs.iter().copied().for_each(&mut mark);
        }
        self.inputs.iter().copied().for_each(&mut mark);
        self.outputs.iter().copied().for_each(&mut mark);
        let removed = used.iter().filter(|u| !**u).count();
        if removed == 0 {
            return 0;
        }
        let mut remap = vec![None; self.tensors.len()];
        let old = std::mem::take(&mut self.tensors);
        for (i, (t, u)) in old.into_iter().zip(&used).enumerate() {
            if *u {
                remap[i] = Some(TensorId::from_index(self.tensors.len()));
                self.tensors.push(t);
            }
        }
        let map = |t: &mut TensorId| {
            if let Some(Some(n)) = remap.get(t.index()) {
                *t = *n;
            }
        };
        for n in &mut self.nodes {
            n.inputs.iter_mut().flatten().for_each(map);
            n.outputs.iter_mut().for_each(map);
        }
        self.inputs.iter_mut().for_each(map);
        self.outputs.iter_mut().for_each(map);
        removed
    }

    // ---- inputs / outputs ----

    pub fn inputs(&self) -> &[TensorId] {
        &self.inputs
    }
    pub fn outputs(&self) -> &[TensorId] {
        &self.outputs
    }
    pub fn set_inputs(&mut self, ids: Vec<TensorId>) {
        self.inputs = ids;
    }
    pub fn set_outputs(&mut self, ids: Vec<TensorId>) {
        self.outputs = ids;
    }

    pub fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }
    pub fn set_signature(&mut self, s: Option<Signature>) {
        self.signature = s;
    }

    /// The signature name of input `i` (signature if present, else the tensor name).
    pub fn input_name(&self, i: usize) -> Option<&str> {
        if let Some(s) = self.signature.as_ref().and_then(|s| s.inputs.get(i)) {
            return Some(s);
        }
        self.inputs.get(i).and_then(|t| self.tensor(*t)).map(|t| t.name.as_str())
    }

    /// The signature name of output `i` (signature if present, else the tensor name).
    pub fn output_name(&self, i: usize) -> Option<&str> {
        if let Some(s) = self.signature.as_ref().and_then(|s| s.outputs.get(i)) {
            return Some(s);
        }
        self.outputs.get(i).and_then(|t| self.tensor(*t)).map(|t| t.name.as_str())
    }

    /// Total bytes of constant data, the subgraphs' included.
    pub fn constant_bytes(&self) -> usize {
        self.tensors.iter().filter_map(|t| t.data.as_ref()).map(|d| d.len()).sum::<usize>()
            + self.subgraphs.iter().map(Graph::constant_bytes).sum::<usize>()
    }

    // ---- subgraphs ----

    /// The further graphs kept with this one (see the field's docs).
    pub fn subgraphs(&self) -> &[Graph] {
        &self.subgraphs
    }
    pub fn set_subgraphs(&mut self, subgraphs: Vec<Graph>) {
        self.subgraphs = subgraphs;
    }
}
