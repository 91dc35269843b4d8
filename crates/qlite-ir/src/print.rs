//! Deterministic text form of a graph, for snapshots, `--print-ir-after-change` and debugging.

use crate::graph::{Graph, TensorId};
use std::fmt::Write;

fn tensor_type(g: &Graph, id: TensorId) -> String {
    match g.tensor(id) {
        Some(t) => {
            let mut s = format!("{}{}", t.dtype, t.shape);
            if let Some(q) = &t.quant {
                let _ = write!(s, " {q}");
            }
            s
        }
        None => "<invalid>".to_string(),
    }
}

fn tensor_name(g: &Graph, id: TensorId) -> String {
    g.tensor(id).map_or_else(|| "<invalid>".to_string(), |t| format!("{:?}", t.name))
}

/// Print `g` as text. The output depends only on the graph (no addresses, times or maps).
pub fn print_graph(g: &Graph) -> String {
    let mut s = print_one(g, "graph");
    for (k, sg) in g.subgraphs().iter().enumerate() {
        s.push_str(&print_one(sg, &format!("subgraph {}", k + 1)));
    }
    s
}

fn print_one(g: &Graph, what: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{what} {:?} {{", g.name());
    for (i, &t) in g.inputs().iter().enumerate() {
        let _ = writeln!(
            s,
            "  input {t} {} : {}  # {:?}",
            tensor_name(g, t),
            tensor_type(g, t),
            g.input_name(i).unwrap_or("")
        );
    }
    for id in g.tensor_ids() {
        let t = &g.tensors()[id.index()];
        if let Some(d) = &t.data {
            let sparse = t.sparse.as_ref().map_or(String::new(), |sp| {
                format!(", sparse ({} stored bytes, fnv1a {:016x})", sp.values.len(), fnv1a(&sp.values))
            });
            let _ = writeln!(
                s,
                "  const {id} {:?} : {}  # {} bytes, fnv1a {:016x}{sparse}",
                t.name,
                tensor_type(g, id),
                d.len(),
                fnv1a(d)
            );
        }
    }
    for n in g.nodes() {
        let outs: Vec<String> =
            n.outputs.iter().map(|&o| format!("{o} {} : {}", tensor_name(g, o), tensor_type(g, o))).collect();
        let ins: Vec<String> = n.inputs.iter().map(|i| i.map_or("none".to_string(), |t| t.to_string())).collect();
        let attrs: Vec<String> = n.op.attrs().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let attrs = if attrs.is_empty() { String::new() } else { format!("{{{}}}", attrs.join(", ")) };
        let _ = writeln!(s, "  {} = {}{}({})  # {:?}", outs.join(", "), n.op.name(), attrs, ins.join(", "), n.name);
    }
    for (i, &t) in g.outputs().iter().enumerate() {
        let _ = writeln!(s, "  output {t} {}  # {:?}", tensor_name(g, t), g.output_name(i).unwrap_or(""));
    }
    s.push_str("}\n");
    s
}

/// 64-bit FNV-1a hash: a stable fingerprint of constant data for text dumps.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
