//! TensorFlow's tensor bundle (`variables/variables.index` + `variables.data-NNNNN-of-MMMMM`).
//!
//! The index is a LevelDB-format table: data blocks of prefix-compressed key/value entries
//! with restart points, an index block pointing at them, and a 48-byte footer ending in a
//! magic number. Each block is followed by a compression byte and a masked CRC32C. The key ""
//! holds a `BundleHeaderProto`; every other key a `BundleEntryProto` (dtype, shape, shard,
//! offset, size, CRC32C of the bytes). Shards are memory-mapped; tensors are slices of them.

use crate::SmError;
use crate::proto::{BundleEntryProto, BundleHeaderProto, DataType};
use bytes::Bytes;
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
const FOOTER_LEN: usize = 48;
/// A sane ceiling on index entries (each costs a decoded proto in memory).
const MAX_ENTRIES: usize = 1 << 20;

// ------------------------------------------------------------------ CRC32C

fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    for (i, e) in t.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82f6_3b78 } else { c >> 1 };
        }
        *e = c;
    }
    t
}

/// CRC32C (Castagnoli) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE 4.2 (checked just above).
        #[allow(unsafe_code)]
        return unsafe { crc32c_sse42(data) };
    }
    crc32c_table(data)
}

/// CRC-32C a byte at a time through a table: the portable path, and the tests' oracle.
fn crc32c_table(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(crc_table);
    let mut c = !0u32;
    for &b in data {
        c = t[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// CRC-32C with SSE 4.2's `crc32` instruction, 8 bytes at a time (the checksums of a
/// SavedModel's variables were a quarter of converting Keras ResNet-50 with the table).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn crc32c_sse42(data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let mut c = !0u32 as u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        c = _mm_crc32_u64(c, u64::from_le_bytes(b));
    }
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

/// LevelDB's masked CRC, as stored in tables and bundle entries.
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

// ------------------------------------------------------------------ table

fn varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn bad(file: &Path, what: impl std::fmt::Display) -> SmError {
    SmError::Invalid(format!("{}: {what}", file.display()))
}

/// Decompress a Snappy block (the raw format LevelDB tables use): a varint length, then
/// literals and back-references, every offset and length checked.
pub fn snappy_decompress(src: &[u8], max_len: usize) -> Option<Vec<u8>> {
    let mut pos = 0;
    let len = usize::try_from(varint(src, &mut pos)?).ok().filter(|&l| l <= max_len)?;
    let mut out: Vec<u8> = Vec::with_capacity(len);
    while pos < src.len() {
        let tag = src[pos];
        pos += 1;
        let (copy_len, offset) = match tag & 3 {
            0 => {
                let mut n = (tag >> 2) as usize;
                if n >= 60 {
                    let bytes = n - 59;
                    let raw = src.get(pos..pos + bytes)?;
                    n = raw.iter().rev().fold(0usize, |a, &b| (a << 8) | b as usize);
                    pos += bytes;
                }
                let lit = src.get(pos..pos.checked_add(n)?.checked_add(1)?)?;
                out.extend_from_slice(lit);
                pos += n + 1;
                if out.len() > len {
                    return None;
                }
                continue;
            }
            1 => {
                let b = *src.get(pos)? as usize;
                pos += 1;
                (((tag >> 2) & 7) as usize + 4, (((tag >> 5) as usize) << 8) | b)
            }
            2 => {
                let b = src.get(pos..pos + 2)?;
                pos += 2;
                ((tag >> 2) as usize + 1, u16::from_le_bytes([b[0], b[1]]) as usize)
            }
            _ => {
                let b = src.get(pos..pos + 4)?;
                pos += 4;
                ((tag >> 2) as usize + 1, u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            }
        };
        if offset == 0 || offset > out.len() || out.len() + copy_len > len {
            return None;
        }
        let start = out.len() - offset;
        for i in 0..copy_len {
            let v = out[start + i];
            out.push(v);
        }
    }
    (out.len() == len).then_some(out)
}

/// Read the block at (offset, size), checking its trailer; Snappy blocks are decompressed.
fn block<'a>(data: &'a [u8], file: &Path, offset: u64, size: u64) -> Result<std::borrow::Cow<'a, [u8]>, SmError> {
    let end = offset.checked_add(size).and_then(|e| e.checked_add(5)).filter(|&e| e <= data.len() as u64);
    let Some(end) = end else {
        return Err(bad(file, format!("block [{offset}, +{size}) runs past the {}-byte file", data.len())));
    };
    let (o, s) = (offset as usize, size as usize);
    let contents = &data[o..o + s];
    let kind = data[o + s];
    let stored = u32::from_le_bytes([data[o + s + 1], data[o + s + 2], data[o + s + 3], data[o + s + 4]]);
    let _ = end;
    let actual = mask(crc32c(&data[o..o + s + 1]));
    if stored != actual {
        return Err(bad(
            file,
            format!("block at {offset}: CRC32C mismatch (stored {stored:#010x}, computed {actual:#010x})"),
        ));
    }
    match kind {
        0 => Ok(std::borrow::Cow::Borrowed(contents)),
        1 => snappy_decompress(contents, 64 << 20)
            .map(std::borrow::Cow::Owned)
            .ok_or_else(|| bad(file, format!("block at {offset}: malformed Snappy data"))),
        k => Err(bad(file, format!("block at {offset} has unknown compression type {k}"))),
    }
}

/// Every (key, value) of one block.
fn entries(b: &[u8], file: &Path, out: &mut Entries) -> Result<(), SmError> {
    if b.len() < 4 {
        return Err(bad(file, "block shorter than its restart count"));
    }
    let n = u32::from_le_bytes([b[b.len() - 4], b[b.len() - 3], b[b.len() - 2], b[b.len() - 1]]) as usize;
    let restarts = n.checked_mul(4).and_then(|r| r.checked_add(4)).filter(|&r| r <= b.len());
    let Some(restarts) = restarts else { return Err(bad(file, format!("block claims {n} restart points"))) };
    let body = &b[..b.len() - restarts];
    let mut pos = 0;
    let mut key: Vec<u8> = Vec::new();
    while pos < body.len() {
        let err = || bad(file, "truncated block entry");
        let shared = varint(body, &mut pos).ok_or_else(err)? as usize;
        let non_shared = varint(body, &mut pos).ok_or_else(err)? as usize;
        let value_len = varint(body, &mut pos).ok_or_else(err)? as usize;
        if shared > key.len() {
            return Err(bad(file, format!("entry shares {shared} bytes of a {}-byte key", key.len())));
        }
        let k_end = pos.checked_add(non_shared).filter(|&e| e <= body.len()).ok_or_else(err)?;
        let v_end = k_end.checked_add(value_len).filter(|&e| e <= body.len()).ok_or_else(err)?;
        key.truncate(shared);
        key.extend_from_slice(&body[pos..k_end]);
        out.push((key.clone(), body[k_end..v_end].to_vec()));
        if out.len() > MAX_ENTRIES {
            return Err(bad(file, format!("more than {MAX_ENTRIES} entries")));
        }
        pos = v_end;
    }
    Ok(())
}

/// Key/value pairs of a table.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// All key/value pairs of a LevelDB-format table, in order.
pub fn read_table(data: &[u8], file: &Path) -> Result<Entries, SmError> {
    if data.len() < FOOTER_LEN {
        return Err(bad(file, format!("{} bytes is too short for a table footer", data.len())));
    }
    let footer = &data[data.len() - FOOTER_LEN..];
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&footer[40..48]);
    if u64::from_le_bytes(magic) != TABLE_MAGIC {
        return Err(bad(file, "not a LevelDB-format table (bad magic number)"));
    }
    let mut pos = 0;
    let err = || bad(file, "malformed table footer");
    let _meta = (varint(footer, &mut pos).ok_or_else(err)?, varint(footer, &mut pos).ok_or_else(err)?);
    let (io, is) = (varint(footer, &mut pos).ok_or_else(err)?, varint(footer, &mut pos).ok_or_else(err)?);
    let index = block(data, file, io, is)?;
    let mut handles = Vec::new();
    entries(&index, file, &mut handles)?;
    let mut out = Vec::new();
    for (_, h) in handles {
        let mut p = 0;
        let (o, s) = (varint(&h, &mut p).ok_or_else(err)?, varint(&h, &mut p).ok_or_else(err)?);
        entries(&block(data, file, o, s)?, file, &mut out)?;
    }
    Ok(out)
}

// ------------------------------------------------------------------ bundle

/// One variable's bytes and type, as stored.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    pub dtype: DataType,
    pub shape: Vec<i64>,
    pub data: Bytes,
}

/// A variable's stored CRC32C, to verify against its bytes.
#[derive(Debug, Clone)]
pub struct Checksum {
    key: String,
    path: PathBuf,
    expected: u32,
}

impl Checksum {
    /// The checksum `expected` (masked, as bundles store it) of variable `key` in `path`.
    pub fn new(key: &str, path: &Path, expected: u32) -> Self {
        Checksum { key: key.to_string(), path: path.to_path_buf(), expected }
    }

    /// `data` (the variable's bytes) against the stored checksum.
    pub fn verify(&self, data: &[u8]) -> Result<(), SmError> {
        if mask(crc32c(data)) != self.expected {
            return Err(bad(&self.path, format!("variable {:?}: CRC32C mismatch", self.key)));
        }
        Ok(())
    }
}

/// An opened tensor bundle.
#[derive(Debug)]
pub struct Bundle {
    index_path: PathBuf,
    entries: BTreeMap<String, BundleEntryProto>,
    shards: Vec<(PathBuf, Bytes)>,
}

/// Bytes per element of the dtypes qlite reads from bundles.
pub fn dtype_size(d: DataType) -> Option<usize> {
    Some(match d {
        DataType::DtFloat | DataType::DtInt32 | DataType::DtUint32 => 4,
        DataType::DtDouble | DataType::DtInt64 | DataType::DtUint64 => 8,
        DataType::DtHalf | DataType::DtBfloat16 | DataType::DtInt16 | DataType::DtUint16 => 2,
        DataType::DtInt8 | DataType::DtUint8 | DataType::DtBool => 1,
        _ => return None,
    })
}

impl Bundle {
    /// Open `<prefix>.index` and its shards (`<prefix>.data-NNNNN-of-MMMMM`), memory-mapped.
    pub fn open(prefix: &Path, map: &dyn Fn(&Path) -> Result<Bytes, SmError>) -> Result<Self, SmError> {
        let index_path = prefix.with_extension("index");
        let index = map(&index_path)?;
        let mut entries = BTreeMap::new();
        let mut header = None;
        for (k, v) in read_table(&index, &index_path)? {
            if k.is_empty() {
                header = Some(
                    BundleHeaderProto::decode(&v[..]).map_err(|e| bad(&index_path, format!("bundle header: {e}")))?,
                );
                continue;
            }
            let key = String::from_utf8(k).map_err(|_| bad(&index_path, "a key is not UTF-8"))?;
            let e = BundleEntryProto::decode(&v[..]).map_err(|e| bad(&index_path, format!("entry {key:?}: {e}")))?;
            entries.insert(key, e);
        }
        let header = header.ok_or_else(|| bad(&index_path, "no bundle header"))?;
        if header.endianness != 0 {
            return Err(bad(&index_path, "big-endian bundles are not supported"));
        }
        let n = header.num_shards;
        if !(1..=10_000).contains(&n) {
            return Err(bad(&index_path, format!("bundle claims {n} shards")));
        }
        let name = prefix.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let mut shards = Vec::with_capacity(n as usize);
        for i in 0..n {
            let p = prefix.with_file_name(format!("{name}.data-{i:05}-of-{n:05}"));
            let data = map(&p)?;
            shards.push((p, data));
        }
        Ok(Bundle { index_path, entries, shards })
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// A variable's entry, shard path and bytes, with its checksum to verify (none for string
    /// entries, which checksum their length prefixes in another layout and are validated as
    /// protobuf instead, or when the entry stores none).
    fn entry(&self, key: &str) -> Result<(&BundleEntryProto, &Path, Bytes, Option<Checksum>), SmError> {
        let e = self
            .entries
            .get(key)
            .ok_or_else(|| SmError::Invalid(format!("{}: no variable {key:?}", self.index_path.display())))?;
        if !e.slices.is_empty() {
            return Err(SmError::Unsupported(format!("variable {key:?} is partitioned into slices")));
        }
        let (path, shard) = usize::try_from(e.shard_id)
            .ok()
            .and_then(|i| self.shards.get(i))
            .ok_or_else(|| bad(&self.index_path, format!("variable {key:?}: shard {} does not exist", e.shard_id)))?;
        let (o, s) = (e.offset, e.size);
        let range = u64::try_from(o)
            .ok()
            .zip(u64::try_from(s).ok())
            .and_then(|(o, s)| Some((o, o.checked_add(s)?)))
            .filter(|&(_, end)| end <= shard.len() as u64);
        let Some((o, end)) = range else {
            return Err(bad(
                path,
                format!("variable {key:?}: bytes [{o}, +{s}) run past the {}-byte shard", shard.len()),
            ));
        };
        let data = shard.slice(o as usize..end as usize);
        let string = e.dtype == DataType::DtString as i32;
        let check = (!string && e.crc32c != 0).then(|| Checksum::new(key, path, e.crc32c));
        Ok((e, path, data, check))
    }

    /// A numeric variable: its bytes (a slice of the mapped shard), checked against its shape
    /// and its checksum.
    pub fn tensor(&self, key: &str) -> Result<StoredTensor, SmError> {
        let (t, check) = self.tensor_unverified(key)?;
        if let Some(c) = check {
            c.verify(&t.data)?;
        }
        Ok(t)
    }

    /// [`Bundle::tensor`] with the checksum left to the caller (an importer verifies the
    /// variables it read together, spread over the cores), checked against its shape.
    pub fn tensor_unverified(&self, key: &str) -> Result<(StoredTensor, Option<Checksum>), SmError> {
        let (e, path, data, check) = self.entry(key)?;
        let dtype = DataType::try_from(e.dtype).unwrap_or(DataType::DtInvalid);
        let size = dtype_size(dtype)
            .ok_or_else(|| SmError::Unsupported(format!("variable {key:?} has type {}", dtype.as_str_name())))?;
        let shape: Vec<i64> = e.shape.as_ref().map(|s| s.dim.iter().map(|d| d.size).collect()).unwrap_or_default();
        let n = shape.iter().try_fold(1u64, |a, &d| u64::try_from(d).ok().and_then(|d| a.checked_mul(d)));
        let want = n.and_then(|n| n.checked_mul(size as u64));
        if want != Some(data.len() as u64) {
            return Err(bad(
                path,
                format!(
                    "variable {key:?}: shape {shape:?} of {} needs {want:?} bytes, stored {}",
                    dtype.as_str_name(),
                    data.len()
                ),
            ));
        }
        Ok((StoredTensor { dtype, shape, data }, check))
    }

    /// A scalar string variable (e.g. `_CHECKPOINTABLE_OBJECT_GRAPH`): varint length, a
    /// 4-byte checksum of the lengths, the bytes.
    pub fn string_scalar(&self, key: &str) -> Result<Bytes, SmError> {
        let (_, path, data, _) = self.entry(key)?;
        let mut p = 0;
        let len = varint(&data, &mut p).ok_or_else(|| bad(path, format!("{key}: bad string length")))?;
        let start = p + 4;
        let end = u64::try_from(start).ok().and_then(|s| s.checked_add(len)).filter(|&e| e <= data.len() as u64);
        let Some(end) = end else { return Err(bad(path, format!("{key}: string runs past its entry"))) };
        Ok(data.slice(start..end as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The instruction path equals the table on every length and alignment, and the standard
    /// check value ("123456789" → 0xE3069283).
    #[test]
    fn crc32c_paths_agree() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c_table(b"123456789"), 0xe306_9283);
        let data: Vec<u8> = (0..4099u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for start in 0..9 {
            for len in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 1000, 4090] {
                let d = &data[start..start + len];
                assert_eq!(crc32c(d), crc32c_table(d), "start {start} len {len}");
            }
        }
    }
}
