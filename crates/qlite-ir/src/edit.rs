//! How passes change a graph: an [`Editor`] over it, with node keys that stay valid while
//! nodes are inserted and removed, successor lists (the readers of every tensor, O(1) to
//! find), and [`Patch`]es — every change a pass makes is one patch the editor applies.
//!
//! Because all changes go through [`Editor::apply`], the pass manager counts them, enforces
//! `--stop-after` (a patch over the budget is refused and the pass stops), verifies and prints
//! the graph after a pass that applied any, without the pass doing anything for it.
//! [`Editor::rewrite_each`] is the worklist driver local rewrites use: every node once in
//! execution order, then the nodes a patch touched (its nodes, their producers and readers),
//! until nothing applies — no restart from the first node after each rewrite.
//!
//! Global passes (layout assignment, quantization) compute a new graph from a
//! [`snapshot`](Editor::snapshot) and apply it as one patch ([`Patch::replace_graph`]).

use crate::graph::{Graph, Node, TensorId};
use crate::pass::PassError;
use crate::tensor::Tensor;
use std::collections::VecDeque;

/// A node of the graph being edited. Keys never change while the editor lives: inserting or
/// removing other nodes leaves them valid; a removed node's key is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey(u32);

impl NodeKey {
    pub fn index(self) -> usize {
        self.0 as usize
    }
    fn from_index(i: usize) -> Self {
        NodeKey(u32::try_from(i).unwrap_or(u32::MAX))
    }
}

impl std::fmt::Display for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

const NIL: u32 = u32::MAX;

/// The rewrite budget of one pipeline run (`--stop-after N`): how many patches may still be
/// applied, over all passes.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    limit: Option<usize>,
    used: usize,
}

impl Budget {
    pub fn new(limit: Option<usize>) -> Self {
        Budget { limit, used: 0 }
    }

    fn take(&mut self) -> bool {
        if self.limit.is_some_and(|l| self.used >= l) {
            return false;
        }
        self.used += 1;
        true
    }

    /// Whether another patch would be accepted.
    pub fn left(&self) -> bool {
        self.limit.is_none_or(|l| self.used < l)
    }

    /// Patches applied so far.
    pub fn used(&self) -> usize {
        self.used
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Set(NodeKey, Node),
    Remove(NodeKey),
    Insert { anchor: Option<NodeKey>, after: bool, node: Node },
    SetTensor(TensorId, Box<Tensor>),
    ScaleChannels { t: TensorId, name: String, last: bool, scale: Vec<f32> },
    ReplaceUses { from: TensorId, to: TensorId },
    SetOutputs(Vec<TensorId>),
    Replace(Box<Graph>),
}

/// One rewrite: a list of edits applied together, in order. New tensors are added directly
/// with [`Editor::add_tensor`] (a tensor nothing references changes nothing and is dropped when
/// the pass ends); everything else goes into the patch.
#[derive(Debug, Clone, Default)]
#[must_use = "a patch does nothing until Editor::apply applies it"]
pub struct Patch {
    edits: Vec<Edit>,
}

impl Patch {
    pub fn new() -> Self {
        Patch::default()
    }

    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// Replace node `k` (op, inputs and outputs) by `node`.
    pub fn set(&mut self, k: NodeKey, node: Node) -> &mut Self {
        self.edits.push(Edit::Set(k, node));
        self
    }

    /// Remove node `k`.
    pub fn remove(&mut self, k: NodeKey) -> &mut Self {
        self.edits.push(Edit::Remove(k));
        self
    }

    /// Insert `node` right after node `k` in the execution order.
    pub fn insert_after(&mut self, k: NodeKey, node: Node) -> &mut Self {
        self.edits.push(Edit::Insert { anchor: Some(k), after: true, node });
        self
    }

    /// Insert `node` right before node `k` in the execution order.
    pub fn insert_before(&mut self, k: NodeKey, node: Node) -> &mut Self {
        self.edits.push(Edit::Insert { anchor: Some(k), after: false, node });
        self
    }

    /// Append `node` at the end of the execution order.
    pub fn push(&mut self, node: Node) -> &mut Self {
        self.edits.push(Edit::Insert { anchor: None, after: true, node });
        self
    }

    /// Replace tensor `t`'s description and data.
    pub fn set_tensor(&mut self, t: TensorId, tensor: Tensor) -> &mut Self {
        self.edits.push(Edit::SetTensor(t, Box::new(tensor)));
        self
    }

    /// Multiply float32 tensor `t`'s values by a per-channel scale (its channels the last axis,
    /// or the first) and rename it `name`. The bytes are scaled where they are when nothing
    /// else holds them (a weight the importer reordered), else into a copy. A scale that does
    /// not fit the data leaves the tensor as it is.
    pub fn scale_channels(&mut self, t: TensorId, name: String, last: bool, scale: Vec<f32>) -> &mut Self {
        self.edits.push(Edit::ScaleChannels { t, name, last, scale });
        self
    }

    /// Every read of `from` (node inputs and graph outputs) reads `to` instead.
    pub fn replace_uses(&mut self, from: TensorId, to: TensorId) -> &mut Self {
        self.edits.push(Edit::ReplaceUses { from, to });
        self
    }

    pub fn set_outputs(&mut self, outputs: Vec<TensorId>) -> &mut Self {
        self.edits.push(Edit::SetOutputs(outputs));
        self
    }

    /// The whole graph becomes `g` (a global pass's result).
    pub fn replace_graph(g: Graph) -> Self {
        Patch { edits: vec![Edit::Replace(Box::new(g))] }
    }
}

/// What an applied patch did: the keys of the nodes it inserted, in edit order, and every node
/// it touched (changed or inserted nodes, and the producers and readers around every change).
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub inserted: Vec<NodeKey>,
    pub touched: Vec<NodeKey>,
}

/// A graph opened for editing by one pass (see the module docs).
#[derive(Debug)]
pub struct Editor<'a> {
    g: &'a mut Graph,
    slots: Vec<Option<Node>>,
    prev: Vec<u32>,
    next: Vec<u32>,
    head: u32,
    tail: u32,
    live: usize,
    /// Per tensor: the node writing it.
    producer: Vec<u32>,
    /// Per tensor: the nodes reading it, with the input slot.
    readers: Vec<Vec<(NodeKey, usize)>>,
    is_output: Vec<bool>,
    budget: &'a mut Budget,
    applied: usize,
    closed: bool,
}

/// What an editing session did, returned by [`Editor::finish`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EditStats {
    /// Patches applied.
    pub patches: usize,
    /// Tensors dropped because nothing references them any more.
    pub dropped_tensors: usize,
}

impl<'a> Editor<'a> {
    /// Open `g` for editing under `budget`. The graph's nodes move into the editor; they are put
    /// back in execution order by [`finish`](Self::finish) (or when the editor is dropped).
    pub fn new(g: &'a mut Graph, budget: &'a mut Budget) -> Self {
        let nodes = g.take_nodes();
        let mut ed = Editor {
            g,
            slots: Vec::new(),
            prev: Vec::new(),
            next: Vec::new(),
            head: NIL,
            tail: NIL,
            live: 0,
            producer: Vec::new(),
            readers: Vec::new(),
            is_output: Vec::new(),
            budget,
            applied: 0,
            closed: false,
        };
        ed.load(nodes);
        ed
    }

    fn load(&mut self, nodes: Vec<Node>) {
        let n = nodes.len();
        let nt = self.g.tensors().len();
        self.producer = vec![NIL; nt];
        self.readers = vec![Vec::new(); nt];
        self.is_output = vec![false; nt];
        for &o in self.g.outputs() {
            if let Some(x) = self.is_output.get_mut(o.index()) {
                *x = true;
            }
        }
        self.slots = Vec::with_capacity(n);
        self.prev = Vec::with_capacity(n);
        self.next = Vec::with_capacity(n);
        self.head = NIL;
        self.tail = NIL;
        self.live = 0;
        for node in nodes {
            let k = self.alloc(node);
            self.link_last(k);
            self.index_node(k);
        }
    }

    // ---- reading ----

    /// Tensors, inputs, outputs and the rest of the graph; its node list is empty while editing
    /// (use [`keys`](Self::keys) and [`node`](Self::node)).
    pub fn tensor(&self, t: TensorId) -> Option<&Tensor> {
        self.g.tensor(t)
    }

    pub fn tensor_count(&self) -> usize {
        self.g.tensors().len()
    }

    pub fn inputs(&self) -> &[TensorId] {
        self.g.inputs()
    }

    pub fn outputs(&self) -> &[TensorId] {
        self.g.outputs()
    }

    pub fn is_output(&self, t: TensorId) -> bool {
        self.is_output.get(t.index()).copied().unwrap_or(false)
    }

    pub fn is_input(&self, t: TensorId) -> bool {
        self.g.inputs().contains(&t)
    }

    pub fn node(&self, k: NodeKey) -> Option<&Node> {
        self.slots.get(k.index()).and_then(|n| n.as_ref())
    }

    /// The live nodes, in execution order.
    pub fn keys(&self) -> Vec<NodeKey> {
        let mut out = Vec::with_capacity(self.live);
        let mut k = self.head;
        while k != NIL {
            out.push(NodeKey(k));
            k = self.next[k as usize];
        }
        out
    }

    /// How many nodes the graph has now.
    pub fn node_count(&self) -> usize {
        self.live
    }

    /// The node writing `t`.
    pub fn producer(&self, t: TensorId) -> Option<NodeKey> {
        self.producer.get(t.index()).copied().filter(|&k| k != NIL).map(NodeKey)
    }

    /// The nodes reading `t`, with the input slot, in no particular order.
    pub fn consumers(&self, t: TensorId) -> &[(NodeKey, usize)] {
        self.readers.get(t.index()).map_or(&[], |r| r.as_slice())
    }

    /// Read by exactly one node input and not a graph output.
    pub fn single_use(&self, t: TensorId) -> bool {
        self.consumers(t).len() == 1 && !self.is_output(t)
    }

    /// A copy of the graph as it is now (constants shared, not copied).
    pub fn snapshot(&self) -> Graph {
        let mut g = self.g.clone();
        g.set_nodes(self.ordered().into_iter().filter_map(|k| self.node(k).cloned()).collect());
        g
    }

    /// Whether the budget accepts another patch (so a pass can skip work it could not apply).
    pub fn budget_left(&self) -> bool {
        self.budget.left()
    }

    /// Patches applied by this editor so far.
    pub fn applied(&self) -> usize {
        self.applied
    }

    // ---- writing ----

    /// Add a tensor; it is referenced by nothing until a patch uses it.
    pub fn add_tensor(&mut self, t: Tensor) -> TensorId {
        let id = self.g.add_tensor(t);
        self.grow_tensors();
        id
    }

    fn grow_tensors(&mut self) {
        let nt = self.g.tensors().len();
        if self.producer.len() < nt {
            self.producer.resize(nt, NIL);
            self.readers.resize(nt, Vec::new());
            self.is_output.resize(nt, false);
        }
    }

    /// Apply `patch` as one rewrite. `None` when the budget is spent: nothing was changed and the
    /// pass should stop.
    pub fn apply(&mut self, patch: Patch) -> Option<Applied> {
        if patch.is_empty() || !self.budget.take() {
            return None;
        }
        self.applied += 1;
        let mut applied = Applied::default();
        for e in patch.edits {
            self.apply_edit(e, &mut applied);
        }
        applied.touched.retain(|&k| self.node(k).is_some());
        applied.touched.sort_unstable();
        applied.touched.dedup();
        Some(applied)
    }

    fn apply_edit(&mut self, e: Edit, out: &mut Applied) {
        match e {
            Edit::Set(k, node) => {
                if self.node(k).is_none() {
                    return;
                }
                self.neighbours(k, &mut out.touched);
                self.unindex_node(k);
                self.slots[k.index()] = Some(node);
                self.index_node(k);
                out.touched.push(k);
                self.neighbours(k, &mut out.touched);
            }
            Edit::Remove(k) => {
                if self.node(k).is_none() {
                    return;
                }
                self.neighbours(k, &mut out.touched);
                self.unindex_node(k);
                self.unlink(k);
                self.slots[k.index()] = None;
                self.live -= 1;
            }
            Edit::Insert { anchor, after, node } => {
                let k = self.alloc(node);
                match anchor.filter(|a| self.node(*a).is_some()) {
                    Some(a) if after => self.link_after(a, k),
                    Some(a) => self.link_before(a, k),
                    None => self.link_last(k),
                }
                self.index_node(k);
                out.inserted.push(k);
                out.touched.push(k);
                self.neighbours(k, &mut out.touched);
            }
            Edit::SetTensor(t, tensor) => {
                if let Some(x) = self.g.tensor_mut(t) {
                    *x = *tensor;
                }
                out.touched.extend(self.producer(t));
                out.touched.extend(self.consumers(t).iter().map(|r| r.0));
            }
            Edit::ScaleChannels { t, name, last, scale } => {
                if let Some(x) = self.g.tensor_mut(t)
                    && let Some(d) = x.data.take()
                {
                    x.data = Some(crate::passes::scale_channels_of(d, last, &scale));
                    x.name = name;
                    // A sparse form read with the tensor no longer matches its values.
                    x.sparse = None;
                }
                out.touched.extend(self.producer(t));
                out.touched.extend(self.consumers(t).iter().map(|r| r.0));
            }
            Edit::ReplaceUses { from, to } => {
                self.grow_tensors();
                let readers = self.readers.get_mut(from.index()).map(std::mem::take).unwrap_or_default();
                for &(k, slot) in &readers {
                    if let Some(Some(n)) = self.slots.get_mut(k.index())
                        && let Some(s) = n.inputs.get_mut(slot)
                    {
                        *s = Some(to);
                    }
                    out.touched.push(k);
                }
                if let Some(r) = self.readers.get_mut(to.index()) {
                    r.extend(readers);
                }
                if self.is_output(from) {
                    let outs: Vec<TensorId> =
                        self.g.outputs().iter().map(|&o| if o == from { to } else { o }).collect();
                    self.set_outputs(outs);
                }
                out.touched.extend(self.producer(to));
            }
            Edit::SetOutputs(outs) => {
                for &o in self.g.outputs() {
                    out.touched.extend(self.producer(o));
                }
                self.set_outputs(outs);
                for &o in self.g.outputs() {
                    out.touched.extend(self.producer(o));
                }
            }
            Edit::Replace(mut g) => {
                let nodes = g.take_nodes();
                *self.g = *g;
                self.load(nodes);
                out.touched.extend(self.keys());
            }
        }
    }

    fn set_outputs(&mut self, outs: Vec<TensorId>) {
        self.g.set_outputs(outs);
        self.is_output.iter_mut().for_each(|x| *x = false);
        for &o in self.g.outputs() {
            if let Some(x) = self.is_output.get_mut(o.index()) {
                *x = true;
            }
        }
    }

    /// Visit every node in execution order, then every node a rewrite touched, until `step` has
    /// nothing more to do; `step` returns the patch for node `k`, if one applies. Stops quietly
    /// when the budget is spent; fails if the rewrites do not settle (a pass that undoes itself).
    pub fn rewrite_each(&mut self, mut step: impl FnMut(&mut Self, NodeKey) -> Option<Patch>) -> Result<(), PassError> {
        let mut queue: VecDeque<NodeKey> = self.keys().into();
        let mut queued = vec![true; self.slots.len()];
        let limit = 64 * (self.live + 16);
        let mut done = 0usize;
        while let Some(k) = queue.pop_front() {
            if let Some(q) = queued.get_mut(k.index()) {
                *q = false;
            }
            if self.node(k).is_none() {
                continue;
            }
            let Some(patch) = step(self, k) else { continue };
            let Some(applied) = self.apply(patch) else { break };
            done += 1;
            if done > limit {
                return Err(PassError::Failed(format!("rewrites did not settle after {done} patches")));
            }
            queued.resize(self.slots.len(), false);
            for t in applied.touched {
                if !std::mem::replace(&mut queued[t.index()], true) {
                    queue.push_back(t);
                }
            }
        }
        Ok(())
    }

    /// Put the nodes back into the graph in execution order and drop unreferenced tensors.
    pub fn finish(mut self) -> EditStats {
        self.close()
    }

    fn close(&mut self) -> EditStats {
        if self.closed {
            return EditStats::default();
        }
        self.closed = true;
        let order = self.ordered();
        let mut nodes = Vec::with_capacity(order.len());
        for k in order {
            if let Some(n) = self.slots.get_mut(k.index()).and_then(Option::take) {
                nodes.push(n);
            }
        }
        self.g.set_nodes(nodes);
        let dropped_tensors = self.g.compact_tensors();
        EditStats { patches: self.applied, dropped_tensors }
    }

    /// The live nodes in list order, moved where needed so that every node comes after the
    /// producers of its inputs (a patch may insert a node before what it reads); otherwise the
    /// list order is kept.
    fn ordered(&self) -> Vec<NodeKey> {
        let keys = self.keys();
        let mut pos = vec![usize::MAX; self.slots.len()];
        for (i, k) in keys.iter().enumerate() {
            pos[k.index()] = i;
        }
        let before = |k: NodeKey, i: usize| {
            self.node(k).is_none_or(|n| {
                n.input_ids().all(|t| self.producer(t).is_none_or(|p| pos.get(p.index()).is_none_or(|&pp| pp < i)))
            })
        };
        if keys.iter().enumerate().all(|(i, &k)| before(k, i)) {
            return keys;
        }
        // Kahn's algorithm, taking the earliest ready node in list order each time. A cycle
        // (an invalid patch) leaves its nodes at the end for the verifier to report.
        let mut indegree = vec![0usize; self.slots.len()];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); self.slots.len()];
        for &k in &keys {
            let Some(n) = self.node(k) else { continue };
            for t in n.input_ids() {
                if let Some(p) = self.producer(t)
                    && p != k
                    && pos[p.index()] != usize::MAX
                {
                    indegree[k.index()] += 1;
                    users[p.index()].push(k.index());
                }
            }
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<(usize, usize)>> = keys
            .iter()
            .filter(|k| indegree[k.index()] == 0)
            .map(|k| std::cmp::Reverse((pos[k.index()], k.index())))
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        let mut placed = vec![false; self.slots.len()];
        while let Some(std::cmp::Reverse((_, k))) = ready.pop() {
            out.push(NodeKey::from_index(k));
            placed[k] = true;
            for &u in &users[k] {
                indegree[u] -= 1;
                if indegree[u] == 0 {
                    ready.push(std::cmp::Reverse((pos[u], u)));
                }
            }
        }
        out.extend(keys.iter().filter(|k| !placed[k.index()]));
        out
    }

    // ---- internals ----

    fn alloc(&mut self, node: Node) -> NodeKey {
        let k = NodeKey::from_index(self.slots.len());
        self.slots.push(Some(node));
        self.prev.push(NIL);
        self.next.push(NIL);
        self.live += 1;
        k
    }

    fn link_last(&mut self, k: NodeKey) {
        let ki = k.0;
        self.prev[k.index()] = self.tail;
        self.next[k.index()] = NIL;
        if self.tail == NIL {
            self.head = ki;
        } else {
            self.next[self.tail as usize] = ki;
        }
        self.tail = ki;
    }

    fn link_after(&mut self, a: NodeKey, k: NodeKey) {
        let n = self.next[a.index()];
        self.prev[k.index()] = a.0;
        self.next[k.index()] = n;
        self.next[a.index()] = k.0;
        if n == NIL {
            self.tail = k.0;
        } else {
            self.prev[n as usize] = k.0;
        }
    }

    fn link_before(&mut self, a: NodeKey, k: NodeKey) {
        let p = self.prev[a.index()];
        self.next[k.index()] = a.0;
        self.prev[k.index()] = p;
        self.prev[a.index()] = k.0;
        if p == NIL {
            self.head = k.0;
        } else {
            self.next[p as usize] = k.0;
        }
    }

    fn unlink(&mut self, k: NodeKey) {
        let (p, n) = (self.prev[k.index()], self.next[k.index()]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[k.index()] = NIL;
        self.next[k.index()] = NIL;
    }

    fn index_node(&mut self, k: NodeKey) {
        self.grow_tensors();
        let Some(n) = self.slots.get(k.index()).and_then(|n| n.as_ref()) else { return };
        let ins: Vec<(usize, TensorId)> = n.inputs.iter().enumerate().filter_map(|(s, t)| t.map(|t| (s, t))).collect();
        let outs = n.outputs.clone();
        for (slot, t) in ins {
            if let Some(r) = self.readers.get_mut(t.index()) {
                r.push((k, slot));
            }
        }
        for o in outs {
            if let Some(p) = self.producer.get_mut(o.index()) {
                *p = k.0;
            }
        }
    }

    fn unindex_node(&mut self, k: NodeKey) {
        let Some(n) = self.slots.get(k.index()).and_then(|n| n.as_ref()) else { return };
        let ins: Vec<(usize, TensorId)> = n.inputs.iter().enumerate().filter_map(|(s, t)| t.map(|t| (s, t))).collect();
        let outs = n.outputs.clone();
        for (slot, t) in ins {
            if let Some(r) = self.readers.get_mut(t.index()) {
                r.retain(|&(kk, s)| !(kk == k && s == slot));
            }
        }
        for o in outs {
            if let Some(p) = self.producer.get_mut(o.index())
                && *p == k.0
            {
                *p = NIL;
            }
        }
    }

    /// The producers of `k`'s inputs and the readers of its outputs.
    fn neighbours(&self, k: NodeKey, out: &mut Vec<NodeKey>) {
        let Some(n) = self.node(k) else { return };
        out.extend(n.input_ids().filter_map(|t| self.producer(t)));
        for &o in &n.outputs {
            out.extend(self.consumers(o).iter().map(|r| r.0));
        }
    }
}

impl Drop for Editor<'_> {
    fn drop(&mut self) {
        self.close();
    }
}
