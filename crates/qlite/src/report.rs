//! Renderings of the per-layer error report: one self-contained HTML page (inline SVG, no
//! script, no network) and Model Explorer's node-data JSON.

use crate::quantize::{ErrorReport, RangeHistogram};
use qlite_quant::LayerError;
use std::fmt::Write;

/// Escape text for HTML / XML content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// The SQNR bands shared by the page and the node data: (upper bound in dB, colour, label).
const BANDS: [(f64, &str, &str); 4] = [
    (20.0, "#d73027", "below 20 dB"),
    (30.0, "#fc8d59", "20–30 dB"),
    (40.0, "#fee08b", "30–40 dB"),
    (f64::INFINITY, "#91cf60", "40 dB and above"),
];

fn band_color(sqnr: f64) -> &'static str {
    BANDS.iter().find(|b| sqnr <= b.0).map_or(BANDS[3].1, |b| b.1)
}

fn sqnr_text(v: f64) -> String {
    if v >= 999.0 { "identical".to_string() } else { format!("{v:.2} dB") }
}

/// Bar chart of every layer's SQNR, worst first: one `<rect class="bar">` per layer.
fn layer_chart(layers: &[LayerError]) -> String {
    const ROW: f64 = 18.0;
    const LABEL: f64 = 330.0;
    const BAR: f64 = 420.0;
    const SCALE_DB: f64 = 60.0;
    let h = ROW * layers.len() as f64 + 30.0;
    let w = LABEL + BAR + 150.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"per-layer SQNR\">\n"
    );
    for db in [0.0, 20.0, 40.0, 60.0] {
        let x = LABEL + BAR * db / SCALE_DB;
        let _ = writeln!(
            s,
            "<line x1=\"{x}\" y1=\"0\" x2=\"{x}\" y2=\"{}\" stroke=\"#ccc\"/><text x=\"{x}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{db} dB</text>",
            h - 18.0,
            h - 5.0
        );
    }
    for (i, l) in layers.iter().enumerate() {
        let y = ROW * i as f64;
        let width = (BAR * l.sqnr_db.clamp(0.0, SCALE_DB) / SCALE_DB).max(1.0);
        let name = if l.tensor.chars().count() > 48 {
            format!("…{}", l.tensor.chars().rev().take(47).collect::<Vec<_>>().into_iter().rev().collect::<String>())
        } else {
            l.tensor.clone()
        };
        let _ = writeln!(
            s,
            "<g><title>{} ({}): SQNR {}, cosine {:.5}, max |err| {:.4e}</title><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text><rect class=\"bar\" x=\"{LABEL}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{} · {}</text></g>",
            esc(&l.tensor),
            esc(&l.op),
            sqnr_text(l.sqnr_db),
            l.cosine,
            l.max_abs,
            LABEL - 6.0,
            y + 13.0,
            esc(&name),
            y + 3.0,
            ROW - 5.0,
            band_color(l.sqnr_db),
            LABEL + width + 6.0,
            y + 13.0,
            sqnr_text(l.sqnr_db),
            esc(&l.op)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A histogram of one layer's float values over the range its quantized tensor can hold.
fn histogram(hg: &RangeHistogram) -> String {
    const W: f64 = 360.0;
    const H: f64 = 110.0;
    let peak = hg.bins.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bw = W / hg.bins.len().max(1) as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"hist\" width=\"{W}\" height=\"{}\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"value histogram\">\n",
        H + 30.0,
        H + 30.0
    );
    for (i, &c) in hg.bins.iter().enumerate() {
        let bh = H * c as f64 / peak;
        let _ = writeln!(
            s,
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"#4575b4\"/>",
            bw * i as f64,
            H - bh,
            (bw - 0.5).max(0.5)
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"0\" y1=\"{H}\" x2=\"{W}\" y2=\"{H}\" stroke=\"#333\"/><text x=\"0\" y=\"{}\" font-size=\"10\">{:.4}</text><text x=\"{W}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{:.4}</text>",
        H + 14.0,
        hg.lo,
        H + 14.0,
        hg.hi
    );
    s.push_str("</svg>\n");
    s
}

/// One self-contained page: the per-layer SQNR chart (worst first), the model outputs, and the
/// value histograms of the worst layers. Well-formed XHTML; no script, no external resource.
pub fn render_html(r: &ErrorReport, model: &str, decisions: &[String]) -> String {
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    let _ = writeln!(s, "<title>qlite quantization report: {}</title>", esc(model));
    s.push_str(
        "<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}\
th{background:#f4f4f4}td.l{text-align:left;word-break:break-all;max-width:480px}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}\
.hists{display:flex;flex-wrap:wrap;gap:18px}.hists figure{margin:0}figcaption{font-size:12px;max-width:360px;word-break:break-all}li{overflow-wrap:anywhere}</style>\n</head>\n<body>\n",
    );
    let _ = writeln!(s, "<h1>Quantization report: {}</h1>", esc(model));
    let _ = writeln!(
        s,
        "<p>Mode <b>{}</b>, {} calibration sample(s), {} layer(s) compared with the float model (SQNR of each layer's output, dequantized, against the float model's; worst first).</p>",
        esc(&r.mode),
        r.samples,
        r.layers.len()
    );
    s.push_str(
        "<h2>Model outputs</h2>\n<table>\n<tr><th>output</th><th>SQNR</th><th>cosine</th><th>max |err|</th></tr>\n",
    );
    for o in &r.outputs {
        let _ = writeln!(
            s,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{:.5}</td><td>{:.4e}</td></tr>",
            esc(&o.tensor),
            sqnr_text(o.sqnr_db),
            o.cosine,
            o.max_abs
        );
    }
    s.push_str("</table>\n<h2>Per-layer SQNR, worst first</h2>\n<p class=\"legend\">");
    for (_, color, label) in BANDS {
        let _ = write!(s, "<span style=\"background:{color}\"></span>{label}");
    }
    s.push_str("</p>\n");
    s.push_str(&layer_chart(&r.layers));
    if !r.histograms.is_empty() {
        s.push_str("<h2>Value ranges of the worst layers</h2>\n<p>The float model's values at each layer, over the range the quantized tensor can represent (values outside it are clipped).</p>\n<div class=\"hists\">\n");
        for hg in &r.histograms {
            let clipped = hg.below + hg.above;
            let total: u64 = hg.bins.iter().sum::<u64>() + clipped;
            let _ = writeln!(
                s,
                "<figure>{}<figcaption>{}: range [{:.4}, {:.4}]{}, {} value(s), {} clipped ({:.3}%)</figcaption></figure>",
                histogram(hg),
                esc(&hg.tensor),
                hg.lo,
                hg.hi,
                hg.quant.as_ref().map_or(String::new(), |q| format!(", {}", esc(q))),
                total,
                clipped,
                if total > 0 { 100.0 * clipped as f64 / total as f64 } else { 0.0 }
            );
        }
        s.push_str("</div>\n");
    }
    s.push_str("<h2>Decisions</h2>\n");
    if decisions.is_empty() {
        s.push_str("<p>Every layer was quantized as the mode asks; none was kept in higher precision.</p>\n");
    } else {
        s.push_str("<ul class=\"decisions\">\n");
        for d in decisions {
            let _ = writeln!(s, "<li>{}</li>", esc(d));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("<h2>All layers</h2>\n<table>\n<tr><th>tensor</th><th>op</th><th>SQNR</th><th>cosine</th><th>max |err|</th><th>values</th></tr>\n");
    for l in &r.layers {
        let _ = writeln!(
            s,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{:.5}</td><td>{:.4e}</td><td>{}</td></tr>",
            esc(&l.tensor),
            esc(&l.op),
            sqnr_text(l.sqnr_db),
            l.cosine,
            l.max_abs,
            l.values
        );
    }
    s.push_str("</table>\n</body>\n</html>\n");
    s
}

/// Model Explorer's node data (per-node SQNR, keyed by output tensor name, coloured by the
/// same bands as the page) for the graph named `graph`.
pub fn node_data_json(r: &ErrorReport, graph: &str) -> String {
    let results: serde_json::Map<String, serde_json::Value> = r
        .layers
        .iter()
        .map(|l| (l.tensor.clone(), serde_json::json!({ "value": (l.sqnr_db * 100.0).round() / 100.0 })))
        .collect();
    let thresholds: Vec<serde_json::Value> = BANDS
        .iter()
        .map(|&(v, color, _)| serde_json::json!({ "value": if v.is_finite() { v } else { 1000.0 }, "bgColor": color }))
        .collect();
    let doc = serde_json::json!({ graph: { "results": results, "thresholds": thresholds } });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
