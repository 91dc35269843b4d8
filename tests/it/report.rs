//! The quantization report as one HTML page and as Model Explorer node data: parsed, not
//! just written.

use crate::common::fixture;

/// Convert the digits CNN to int8 with the given report paths.
fn convert(report: &std::path::Path, node_data: Option<&std::path::Path>) -> qlite::quantize::ErrorReport {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = qlite::ConvertOptions::default();
    opts.quant.mode = qlite::QuantMode::Int8;
    opts.calibration = Some(fixture("digits/x_calib.npy"));
    opts.report = Some(report.to_path_buf());
    opts.report_node_data = node_data.map(|p| p.to_path_buf());
    opts.model_name = Some("cnn.tflite".into());
    let r =
        qlite::convert(&qlite::Registry::default(), &fixture("digits/cnn.tflite"), &dir.path().join("q.tflite"), &opts)
            .unwrap();
    r.error_report.unwrap()
}

#[test]
fn html_report_is_well_formed_self_contained_with_one_bar_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (html, nd) = (dir.path().join("r.html"), dir.path().join("nd.json"));
    let r = convert(&html, Some(&nd));
    let text = std::fs::read_to_string(&html).unwrap();
    let opts = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(&text, opts).expect("the page is well-formed XHTML");
    let elems = |name: &str| doc.descendants().filter(|n| n.has_tag_name(name)).collect::<Vec<_>>();
    // One bar per compared layer, in the report's order (worst first).
    let bars: Vec<_> = elems("rect").into_iter().filter(|n| n.attribute("class") == Some("bar")).collect();
    assert_eq!(bars.len(), r.layers.len());
    assert!(r.layers.len() >= 8, "every layer of the CNN is compared");
    let widths: Vec<f64> = bars.iter().map(|b| b.attribute("width").unwrap().parse().unwrap()).collect();
    assert!(widths.windows(2).all(|w| w[0] <= w[1]), "worst first: {widths:?}");
    // Each bar's tooltip names its layer.
    for (b, l) in bars.iter().zip(&r.layers) {
        let title = b.parent().unwrap().children().find(|n| n.has_tag_name("title")).unwrap();
        assert!(title.text().unwrap().starts_with(&l.tensor), "{:?}", title.text());
    }
    // Histograms of the worst layers, each over its quantized range.
    assert_eq!(elems("figure").len(), r.histograms.len());
    assert!(!r.histograms.is_empty());
    for h in &r.histograms {
        assert!(h.lo < h.hi && h.bins.iter().sum::<u64>() > 0, "{}", h.tensor);
    }
    // Self-contained: no script, no external resource.
    assert!(elems("script").is_empty() && elems("link").is_empty() && elems("img").is_empty());
    for n in doc.descendants() {
        for a in n.attributes() {
            let v = a.value();
            assert!(a.name() == "xmlns" || !(v.contains("http:") || v.contains("https:")), "{}={v}", a.name());
        }
    }
    assert!(!text.contains("url("), "no external CSS resource");

    // Model Explorer node data: the graph's results keyed by output tensor name.
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&nd).unwrap()).unwrap();
    let graph = v.as_object().unwrap();
    assert_eq!(graph.len(), 1);
    let (name, data) = graph.iter().next().unwrap();
    assert_eq!(name, "main", "the subgraph name the writer gives");
    let results = data["results"].as_object().unwrap();
    assert_eq!(results.len(), r.layers.len());
    for l in &r.layers {
        let got = results[&l.tensor]["value"].as_f64().unwrap();
        assert!((got - l.sqnr_db).abs() < 0.01, "{}: {got} vs {}", l.tensor, l.sqnr_db);
    }
    assert_eq!(data["thresholds"].as_array().unwrap().len(), 4);

    // The JSON report holds the same numbers.
    let json = dir.path().join("r.json");
    let r2 = convert(&json, None);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), r2.layers.len());
    assert_eq!(v["histograms"].as_array().unwrap().len(), r2.histograms.len());
}
