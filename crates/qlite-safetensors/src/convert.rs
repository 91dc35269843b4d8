//! `qlite weights`: convert big checkpoints (single files or sharded directories) to f16, bf16
//! or int8, streamed: tensors are read with positioned reads in bounded chunks, converted in
//! parallel (rayon) and written in order to a temporary file that is renamed into place.
//! Peak memory is a few chunks, whatever the file size.

use crate::format::{Entry, StError, byte_len, check_header, header};
use half::{bf16, f16};
use rayon::prelude::*;
use regex::Regex;
use safetensors::{Dtype, SafeTensors};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Target of a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    F16,
    BF16,
    /// int8 symmetric per output channel (axis 0), with an F32 `NAME.qscale` companion.
    Int8,
}

impl Target {
    pub fn parse(s: &str) -> Option<Target> {
        Some(match s {
            "f16" | "float16" => Target::F16,
            "bf16" | "bfloat16" => Target::BF16,
            "int8" => Target::Int8,
            _ => return None,
        })
    }
}

/// Which tensors to convert.
#[derive(Debug, Clone, Default)]
pub struct Select {
    /// Never convert names matching this.
    pub keep: Option<Regex>,
    /// Convert only names matching this (default: every float tensor of rank ≥ 2 whose name
    /// does not look like a norm or a bias).
    pub only: Option<Regex>,
}

impl Select {
    fn wants(&self, name: &str, dtype: Dtype, shape: &[usize]) -> bool {
        let float = matches!(dtype, Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16);
        if !float || self.keep.as_ref().is_some_and(|r| r.is_match(name)) {
            return false;
        }
        match &self.only {
            Some(r) => r.is_match(name),
            None => {
                let lower = name.to_ascii_lowercase();
                shape.len() >= 2 && !lower.contains("norm") && !lower.contains("bias")
            }
        }
    }
}

/// What a conversion did.
#[derive(Debug, Clone, Default)]
pub struct WeightsReport {
    pub files: usize,
    pub tensors: usize,
    pub converted: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Chunk size for reading and converting (elements are never split across chunks).
const CHUNK: usize = 16 << 20;

#[derive(Debug)]
struct Plan {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the input file.
    start: u64,
    len: usize,
    convert: bool,
}

fn read_values(file: &File, start: u64, len: usize, dtype: Dtype) -> Result<Vec<f32>, StError> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, start).map_err(|e| StError::Format(format!("read failed: {e}")))?;
    Ok(match dtype {
        Dtype::F32 => buf.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F64 => buf
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::F16 => buf.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => buf.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(StError::Format(format!("cannot convert {other}"))),
    })
}

/// Little-endian source bytes → f16 / bf16 bytes, round to nearest even (numpy's and torch's
/// rounding), in parallel blocks; f32 → f16 uses the CPU's F16C instructions when present.
fn encode_chunk(src: &[u8], dtype: Dtype, t: Target, out: &mut [u8]) {
    use half::slice::HalfFloatSliceExt;
    const BLOCK: usize = 1 << 14;
    let elem = dtype.bitsize() / 8;
    out.par_chunks_mut(BLOCK * 2).zip(src.par_chunks(BLOCK * elem)).for_each(|(o, i)| {
        let vals: Vec<f32> = match dtype {
            Dtype::F32 => i.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F64 => i
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                .collect(),
            Dtype::F16 => i.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            _ => i.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        };
        let bits: Vec<u16> = if t == Target::BF16 {
            let mut h = vec![bf16::ZERO; vals.len()];
            h.convert_from_f32_slice(&vals);
            h.iter().map(|x| x.to_bits()).collect()
        } else {
            let mut h = vec![f16::ZERO; vals.len()];
            h.convert_from_f32_slice(&vals);
            h.iter().map(|x| x.to_bits()).collect()
        };
        for (d, b) in o.chunks_exact_mut(2).zip(bits) {
            d.copy_from_slice(&b.to_le_bytes());
        }
    });
}

/// Convert one file. `progress(bytes_done, bytes_total)` is called as data is written.
pub fn convert_file(
    input: &Path,
    output: &Path,
    target: Target,
    select: &Select,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<WeightsReport, StError> {
    let io = |e: std::io::Error, p: &Path| StError::Format(format!("{}: {e}", p.display()));
    let file = File::open(input).map_err(|e| io(e, input))?;
    let file_len = file.metadata().map_err(|e| io(e, input))?.len();
    // Validate the header with the reference parser over a map of the file: only the header
    // pages are touched, the data is read below with positioned reads.
    let map = crate::map_file(input).map_err(|e| io(e, input))?;
    check_header(&map)?;
    let (n, meta) = SafeTensors::read_metadata(&map).map_err(|e| StError::Format(e.to_string()))?;
    let data_start = 8 + n as u64;
    let names = meta.offset_keys();
    let infos = meta.tensors();
    let mut plans = Vec::with_capacity(names.len());
    for name in names {
        let info = infos.get(&name).ok_or_else(|| StError::Format(format!("tensor {name:?} vanished")))?;
        let (b, e) = info.data_offsets;
        let convert =
            select.wants(&name, info.dtype, &info.shape) && !(target == Target::Int8 && info.shape.is_empty());
        plans.push(Plan {
            name,
            dtype: info.dtype,
            shape: info.shape.clone(),
            start: data_start + b as u64,
            len: e - b,
            convert,
        });
    }
    // Output header.
    let mut entries = Vec::new();
    for p in &plans {
        if !p.convert {
            entries.push(Entry { name: p.name.clone(), dtype: p.dtype, shape: p.shape.clone(), len: p.len });
            continue;
        }
        let (dtype, elem) = match target {
            Target::F16 => (Dtype::F16, 2),
            Target::BF16 => (Dtype::BF16, 2),
            Target::Int8 => (Dtype::I8, 1),
        };
        let n = p.shape.iter().product::<usize>();
        entries.push(Entry { name: p.name.clone(), dtype, shape: p.shape.clone(), len: n * elem });
        if target == Target::Int8 {
            let rows = p.shape.first().copied().unwrap_or(1);
            entries.push(Entry {
                name: format!("{}.qscale", p.name),
                dtype: Dtype::F32,
                shape: vec![rows],
                len: rows * 4,
            });
        }
    }
    let source = meta.metadata().clone().unwrap_or_default();
    let mut metadata: Vec<(String, String)> = crate::format::metadata_keys(&map)
        .into_iter()
        .filter_map(|k| source.get(&k).map(|v| (k.clone(), v.clone())))
        .collect();
    if target == Target::Int8 {
        for p in plans.iter().filter(|p| p.convert) {
            metadata.push((format!("{}.qaxis", p.name), "0".into()));
        }
    }
    let head = header(&entries, &metadata);
    let total: u64 = entries.iter().map(|e| e.len as u64).sum();
    let tmp = qlite_io::temp_beside(output).map_err(|e| io(e, output))?;
    let mut w = BufWriter::with_capacity(8 << 20, tmp.as_file());
    w.write_all(&head).map_err(|e| io(e, output))?;
    let mut done = 0u64;
    // Two input chunk buffers (read-ahead) and one output buffer, reused for every tensor.
    let mut bufs = (vec![0u8; CHUNK], vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut report = WeightsReport { files: 1, tensors: plans.len(), bytes_in: file_len, ..Default::default() };
    for p in &plans {
        if !p.convert {
            // Copy through in chunks.
            let mut off = 0usize;
            let mut buf = vec![0u8; CHUNK.min(p.len)];
            while off < p.len {
                let k = CHUNK.min(p.len - off);
                file.read_exact_at(&mut buf[..k], p.start + off as u64).map_err(|e| io(e, input))?;
                w.write_all(&buf[..k]).map_err(|e| io(e, output))?;
                off += k;
                done += k as u64;
                progress(done, total);
            }
            continue;
        }
        report.converted += 1;
        let elem = p.dtype.bitsize() / 8;
        match target {
            Target::F16 | Target::BF16 => {
                // Chunks of whole elements: the next chunk is read while the current one is
                // converted in parallel; output is written in order. The three buffers are
                // reused (no fresh pages per chunk).
                let chunk_elems = (CHUNK / elem).max(1);
                let n = p.len / elem;
                let mut first = 0usize;
                let mut count = chunk_elems.min(n);
                file.read_exact_at(&mut bufs.0[..count * elem], p.start).map_err(|e| io(e, input))?;
                while count > 0 {
                    let next_first = first + count;
                    let next_count = chunk_elems.min(n - next_first);
                    let (cur, next) = (&bufs.0[..count * elem], &mut bufs.1[..next_count * elem]);
                    let out = &mut bufs.2[..count * 2];
                    let (read, ()) = rayon::join(
                        || {
                            if next_count > 0 {
                                file.read_exact_at(next, p.start + (next_first * elem) as u64)
                            } else {
                                Ok(())
                            }
                        },
                        || encode_chunk(cur, p.dtype, target, out),
                    );
                    read.map_err(|e| io(e, input))?;
                    w.write_all(out).map_err(|e| io(e, output))?;
                    done += out.len() as u64;
                    progress(done, total);
                    std::mem::swap(&mut bufs.0, &mut bufs.1);
                    first = next_first;
                    count = next_count;
                }
            }
            Target::Int8 => {
                let rows = p.shape.first().copied().unwrap_or(1).max(1);
                let row_elems = p.len / elem / rows;
                let row_bytes = row_elems * elem;
                let rows_per_chunk = (CHUNK / row_bytes.max(1)).max(1);
                let mut scales = Vec::with_capacity(rows);
                let mut r = 0usize;
                while r < rows {
                    let k = rows_per_chunk.min(rows - r);
                    let v = read_values(&file, p.start + (r * row_bytes) as u64, k * row_bytes, p.dtype)?;
                    let parts: Vec<(Vec<u8>, f32)> = v
                        .par_chunks(row_elems.max(1))
                        .map(|row| {
                            let m = row.iter().fold(0f32, |a, &x| a.max(x.abs()));
                            let s = if m > 0.0 { m / 127.0 } else { 1.0 };
                            let inv = 1.0 / s;
                            (row.iter().map(|&x| (x * inv).round().clamp(-127.0, 127.0) as i8 as u8).collect(), s)
                        })
                        .collect();
                    for (q, s) in parts {
                        w.write_all(&q).map_err(|e| io(e, output))?;
                        done += q.len() as u64;
                        scales.push(s);
                    }
                    progress(done, total);
                    r += k;
                }
                let sb: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
                w.write_all(&sb).map_err(|e| io(e, output))?;
                done += sb.len() as u64;
            }
        }
    }
    w.flush().map_err(|e| io(e, output))?;
    drop(w);
    report.bytes_out = head.len() as u64 + total;
    qlite_io::finish(tmp, output).map_err(|e| io(e, output))?;
    let _ = byte_len;
    Ok(report)
}

/// Convert a file, or a sharded directory (`model.safetensors.index.json` plus shards) into a
/// directory with the same shard names and an updated index.
pub fn convert(
    input: &Path,
    output: &Path,
    target: Target,
    select: &Select,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<WeightsReport, StError> {
    if !input.is_dir() {
        return convert_file(input, output, target, select, progress);
    }
    let index_path = input.join("model.safetensors.index.json");
    let text =
        std::fs::read_to_string(&index_path).map_err(|e| StError::Format(format!("{}: {e}", index_path.display())))?;
    let mut index: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| StError::Format(format!("{}: {e}", index_path.display())))?;
    let weight_map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .cloned()
        .ok_or_else(|| StError::Format(format!("{}: no weight_map", index_path.display())))?;
    let mut shards: Vec<String> = weight_map.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
    shards.sort();
    shards.dedup();
    std::fs::create_dir_all(output).map_err(|e| StError::Format(format!("{}: {e}", output.display())))?;
    let mut total = WeightsReport::default();
    let mut new_map = serde_json::Map::new();
    for shard in &shards {
        if shard.contains('/') || shard.contains('\\') || shard == ".." {
            return Err(StError::Format(format!("shard name {shard:?} leaves the directory")));
        }
        let r = convert_file(&input.join(shard), &output.join(shard), target, select, progress)?;
        total.files += 1;
        total.tensors += r.tensors;
        total.converted += r.converted;
        total.bytes_in += r.bytes_in;
        total.bytes_out += r.bytes_out;
        // Record every tensor of the new shard, companions included.
        let bytes = crate::map_file(&output.join(shard)).map_err(|e| StError::Format(e.to_string()))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| StError::Format(e.to_string()))?;
        for name in meta.offset_keys() {
            new_map.insert(name, serde_json::Value::String(shard.clone()));
        }
    }
    let data_bytes: u64 = total.bytes_out;
    if let Some(obj) = index.as_object_mut() {
        obj.insert("weight_map".into(), serde_json::Value::Object(new_map));
        let meta = obj.entry("metadata").or_insert_with(|| serde_json::json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.insert("total_size".into(), serde_json::json!(data_bytes));
        }
    }
    let out_index = output.join("model.safetensors.index.json");
    let json = serde_json::to_string_pretty(&index).map_err(|e| StError::Format(e.to_string()))?;
    crate::write_atomic(&out_index, json.as_bytes())
        .map_err(|e| StError::Format(format!("{}: {e}", out_index.display())))?;
    Ok(total)
}
