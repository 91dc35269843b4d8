//! The safetensors container: reading (validated by the `safetensors` crate, plus a duplicate
//! name check it does not make) and a deterministic writer.

use bytes::Bytes;
use safetensors::{Dtype, SafeTensors};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// Why a safetensors file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StError {
    #[error("invalid safetensors file: {0}")]
    Format(String),
    #[error("invalid safetensors file: tensor name {0:?} appears twice in the header")]
    Duplicate(String),
    #[error("tensor {name:?}: {message}")]
    Tensor { name: String, message: String },
    #[error("{0}")]
    Arch(String),
    #[error("{0}")]
    Bind(String),
}

/// One tensor of a safetensors file; `data` points into the file's bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct StTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Bytes,
}

/// A parsed file: tensors in data-offset order and the `__metadata__` entries in header order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StFile {
    pub tensors: Vec<StTensor>,
    pub metadata: Vec<(String, String)>,
}

impl StFile {
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The `__metadata__` keys in the order the header lists them.
struct MetaOrder;
impl<'de> Visitor<'de> for MetaOrder {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut order = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            if k == "__metadata__" {
                let inner: KeysOnly = map.next_value()?;
                order = inner.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(order)
    }
}

struct KeysOnly(Vec<String>);
impl<'de> serde::Deserialize<'de> for KeysOnly {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(KeyCollector).map(KeysOnly)
    }
}

/// The `__metadata__` keys of a file's header, in header order.
pub fn metadata_keys(bytes: &[u8]) -> Vec<String> {
    metadata_order(bytes)
}

fn metadata_order(bytes: &[u8]) -> Vec<String> {
    let n = bytes.get(..8).map_or(0, |b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])) as usize;
    let Some(text) = bytes.get(8..8usize.saturating_add(n)).and_then(|h| std::str::from_utf8(h).ok()) else {
        return Vec::new();
    };
    let mut de = serde_json::Deserializer::from_str(text);
    serde::Deserializer::deserialize_map(&mut de, MetaOrder).unwrap_or_default()
}

/// Collects the top-level keys of the header to find duplicates (serde_json keeps the last).
struct KeyCollector;
impl<'de> Visitor<'de> for KeyCollector {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            keys.push(k);
        }
        Ok(keys)
    }
}

/// Header length and duplicate check (the crate validates everything else).
pub fn check_header(bytes: &[u8]) -> Result<(), StError> {
    let Some(n) = bytes.get(..8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])) else {
        return Err(StError::Format(format!(
            "the file is {} bytes, too short for the 8-byte header length",
            bytes.len()
        )));
    };
    if n > 100_000_000 {
        return Err(StError::Format(format!("the header is {n} bytes, over the 100,000,000-byte limit")));
    }
    let end = usize::try_from(n).ok().and_then(|n| n.checked_add(8));
    let Some(header) = end.and_then(|e| bytes.get(8..e)) else {
        return Err(StError::Format(format!(
            "the header length {n} runs past the end of the {}-byte file",
            bytes.len()
        )));
    };
    if let Ok(text) = std::str::from_utf8(header) {
        let mut de = serde_json::Deserializer::from_str(text);
        if let Ok(keys) = serde::Deserializer::deserialize_map(&mut de, KeyCollector) {
            let mut seen = std::collections::HashSet::new();
            for k in keys {
                if !seen.insert(k.clone()) {
                    return Err(StError::Duplicate(k));
                }
            }
        }
    }
    Ok(())
}

/// Offset of `part` inside `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start.checked_add(part.len())? <= whole.len()).then_some(start)
}

/// Parse and validate a whole file. Tensor data is not copied.
pub fn read(bytes: Bytes) -> Result<StFile, StError> {
    check_header(&bytes)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| StError::Format(e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| StError::Format(e.to_string()))?;
    let mut tensors = Vec::new();
    for name in meta.offset_keys() {
        let view = st.tensor(&name).map_err(|e| StError::Format(e.to_string()))?;
        let data = view.data();
        let start =
            offset_in(&bytes, data).ok_or_else(|| StError::Format(format!("tensor {name:?} lies outside the file")))?;
        tensors.push(StTensor {
            name,
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            data: bytes.slice(start..start + data.len()),
        });
    }
    let map = meta.metadata().clone().unwrap_or_default();
    let metadata =
        metadata_order(&bytes).into_iter().filter_map(|k| map.get(&k).map(|v| (k.clone(), v.clone()))).collect();
    Ok(StFile { tensors, metadata })
}

/// Bytes of `n` elements of `dtype` (sub-byte dtypes included), checked.
pub fn byte_len(dtype: Dtype, shape: &[usize]) -> Option<usize> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    let bits = n.checked_mul(dtype.bitsize())?;
    (bits % 8 == 0).then_some(bits / 8)
}

/// A tensor entry of a header being written.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub len: usize,
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The header bytes (length prefix included) for entries written in the given order: compact
/// JSON with `__metadata__` first, then each tensor as `{"dtype","shape","data_offsets"}`,
/// right-padded with spaces so the data starts 8-byte aligned — the layout the reference
/// implementation writes, so its files round-trip byte for byte.
pub fn header(entries: &[Entry], metadata: &[(String, String)]) -> Vec<u8> {
    let mut json = String::from("{");
    let mut first = true;
    if !metadata.is_empty() {
        json.push_str("\"__metadata__\":{");
        for (i, (k, v)) in metadata.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&json_string(k));
            json.push(':');
            json.push_str(&json_string(v));
        }
        json.push('}');
        first = false;
    }
    let mut offset = 0usize;
    for e in entries {
        if !first {
            json.push(',');
        }
        first = false;
        let shape: Vec<String> = e.shape.iter().map(|d| d.to_string()).collect();
        json.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json_string(&e.name),
            e.dtype,
            shape.join(","),
            offset,
            offset + e.len
        ));
        offset += e.len;
    }
    json.push('}');
    let pad = (8 - json.len() % 8) % 8;
    json.push_str(&" ".repeat(pad));
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

/// Serialize tensors in the given order.
pub fn write(tensors: &[StTensor], metadata: &[(String, String)]) -> Vec<u8> {
    let entries: Vec<Entry> = tensors
        .iter()
        .map(|t| Entry { name: t.name.clone(), dtype: t.dtype, shape: t.shape.clone(), len: t.data.len() })
        .collect();
    let mut out = header(&entries, metadata);
    for t in tensors {
        out.extend_from_slice(&t.data);
    }
    out
}

/// The order the reference implementation writes: larger alignment first, then by name.
pub fn reference_order(tensors: &mut [StTensor]) {
    tensors.sort_by(|a, b| b.dtype.cmp(&a.dtype).then_with(|| a.name.cmp(&b.name)));
}

/// Parse a dtype name ("F32", "BF16", …).
pub fn parse_dtype(s: &str) -> Option<Dtype> {
    serde_json::from_str(&format!("\"{s}\"")).ok()
}
