//! Load a model, convert it, inspect the result.
//!
//! cargo run -p qlite --example convert -- fixtures/digits/cnn.tflite /tmp/cnn.tflite

use qlite::{ConvertOptions, Registry};
use std::path::PathBuf;

fn main() -> Result<(), qlite::Error> {
    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let input = args.next().unwrap_or_else(|| "fixtures/digits/cnn.tflite".into());
    let output = args.next().unwrap_or_else(|| std::env::temp_dir().join("qlite-example.tflite"));
    let reg = Registry::default();

    let report = qlite::convert(&reg, &input, &output, &ConvertOptions::default())?;
    println!("{} ops, {} -> {} bytes in {:?}", report.nodes, report.input_bytes, report.output_bytes, report.elapsed);

    let summary = qlite::inspect::inspect_file(&reg, &output)?;
    print!("{}", qlite::inspect::render_text(&summary));
    Ok(())
}
