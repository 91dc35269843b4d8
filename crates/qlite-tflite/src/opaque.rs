//! Operators qlite does not model, kept as they were read so they can be written back.
//!
//! An options table of a type this crate's schema does not declare is copied field by field
//! from its vtable. A flatbuffer table does not say which of its fields are offsets, so the
//! few options tables upstream's schema gives vectors or strings are listed in
//! [`offset_fields`]; every other field is an inline scalar, copied with the bytes up to the
//! next field (a scalar is read from its start, so the padding that may come along is never
//! read). The flatbuffers verifier does not look inside a union member of an unknown type:
//! every read here is bounds-checked.

use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};
use qlite_ir::{OpaqueField, OpaqueOptions, OpaqueValue};

/// What a non-scalar field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    /// A vector of scalars of this many bytes.
    Vector(u8),
    String,
}

/// The vector and string fields of upstream's options tables (schema.fbs), by options slot
/// (1 = `BuiltinOptions`, 2 = `BuiltinOptions2`), union type id and field id.
fn offset_fields(slot: u8, type_id: u8) -> &'static [(u16, FieldKind)] {
    use FieldKind::{String as S, Vector as V};
    match (slot, type_id) {
        // ConcatEmbeddingsOptions: num_columns_per_channel, embedding_dim_per_channel
        (1, 3) => &[(1, V(4)), (2, V(4))],
        // ReshapeOptions: new_shape
        (1, 17) => &[(0, V(4))],
        // SqueezeOptions: squeeze_dims
        (1, 30) => &[(0, V(4))],
        // VarHandleOptions: container, shared_name
        (1, 111) => &[(0, S), (1, S)],
        // BucketizeOptions: boundaries
        (1, 115) => &[(0, V(4))],
        // StablehloBroadcastInDimOptions
        (2, 2) => &[(0, V(8))],
        // StablehloSliceOptions
        (2, 3) => &[(0, V(8)), (1, V(8)), (2, V(8))],
        // StablehloConvolutionOptions
        (2, 4) => {
            &[(0, V(8)), (1, V(8)), (2, V(8)), (3, V(8)), (4, V(1)), (7, V(8)), (10, V(8)), (13, V(8)), (16, V(4))]
        }
        // StablehloCustomCallOptions
        (2, 5) => &[(0, S), (2, S), (4, V(4)), (5, V(1))],
        // StablehloReduceOptions
        (2, 6) => &[(0, V(8))],
        // StablehloScatterOptions
        (2, 7) => &[(1, V(8)), (2, V(8)), (3, V(8))],
        // StablehloDynamicSliceOptions
        (2, 9) => &[(0, V(8))],
        // StablehloPadOptions
        (2, 10) => &[(0, V(8)), (1, V(8)), (2, V(8))],
        // StablehloDotGeneralOptions
        (2, 12) => &[(0, V(8)), (1, V(8)), (2, V(8)), (3, V(8)), (4, V(4))],
        // StablehloReduceWindowOptions
        (2, 13) => &[(0, V(8)), (1, V(8)), (2, V(8)), (3, V(8)), (4, V(8))],
        // StablehloGatherOptions
        (2, 16) => &[(0, V(8)), (1, V(8)), (2, V(8)), (4, V(8))],
        // StablehloTransposeOptions
        (2, 17) => &[(0, V(8))],
        // StableHLOCompositeOptions
        (2, 21) => &[(0, S), (2, V(1))],
        // StablehloCaseOptions
        (2, 23) => &[(0, V(4))],
        _ => &[],
    }
}

fn read<const N: usize>(buf: &[u8], at: usize, what: &str) -> Result<[u8; N], String> {
    at.checked_add(N)
        .and_then(|end| buf.get(at..end))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{what} at byte {at} lies outside the file"))
}

fn u16_at(buf: &[u8], at: usize, what: &str) -> Result<usize, String> {
    Ok(u16::from_le_bytes(read::<2>(buf, at, what)?) as usize)
}

fn u32_at(buf: &[u8], at: usize, what: &str) -> Result<usize, String> {
    Ok(u32::from_le_bytes(read::<4>(buf, at, what)?) as usize)
}

/// Where the table that field `field` (a vtable offset) of the table at `table_loc` points to
/// starts, every read bounds-checked: the flatbuffers verifier does not follow a union value
/// of a type the schema does not know, so its accessor may read out of range.
pub(crate) fn follow_field(buf: &[u8], table_loc: usize, field: u16) -> Result<Option<usize>, String> {
    let soffset = i32::from_le_bytes(read::<4>(buf, table_loc, "operator table")?);
    let vt: usize = (table_loc as i64 - soffset as i64)
        .try_into()
        .map_err(|_| "operator vtable lies outside the file".to_string())?;
    let vt_len = u16_at(buf, vt, "operator vtable")?;
    if (field as usize) + 2 > vt_len {
        return Ok(None);
    }
    let off = u16_at(buf, vt + field as usize, "operator vtable")?;
    if off == 0 {
        return Ok(None);
    }
    let at = table_loc.checked_add(off).ok_or("options offset overflows")?;
    let target = at.checked_add(u32_at(buf, at, "options offset")?).ok_or("options offset overflows")?;
    read::<4>(buf, target, "options table")?;
    Ok(Some(target))
}

/// Read the options table at `loc` of `buf` (a table of union type `type_id` in options slot
/// `slot`) into its fields.
pub(crate) fn capture(buf: &[u8], loc: usize, slot: u8, type_id: u8) -> Result<OpaqueOptions, String> {
    let soffset = i32::from_le_bytes(read::<4>(buf, loc, "options table")?);
    let vt =
        (loc as i64 - soffset as i64).try_into().map_err(|_| "options vtable lies outside the file".to_string())?;
    let vt_len = u16_at(buf, vt, "options vtable")?;
    let table_len = u16_at(buf, vt + 2, "options vtable")?;
    if vt_len < 4 || vt_len % 2 != 0 || table_len < 4 {
        return Err(format!("options vtable has size {vt_len} and table size {table_len}"));
    }
    if loc.checked_add(table_len).is_none_or(|end| end > buf.len()) {
        return Err(format!("options table of {table_len} bytes at byte {loc} runs past the file"));
    }
    let n_fields = (vt_len - 4) / 2;
    let mut present = Vec::new();
    for id in 0..n_fields {
        let off = u16_at(buf, vt + 4 + 2 * id, "options vtable")?;
        if off != 0 {
            if off < 4 || off >= table_len {
                return Err(format!("options field {id} at offset {off} is outside its {table_len}-byte table"));
            }
            present.push((id as u16, off));
        }
    }
    let kinds = offset_fields(slot, type_id);
    let mut by_offset: Vec<usize> = present.iter().map(|p| p.1).collect();
    by_offset.sort_unstable();
    let mut fields = Vec::with_capacity(present.len());
    for (id, off) in present {
        let at = loc + off;
        let value = match kinds.iter().find(|k| k.0 == id).map(|k| k.1) {
            Some(kind) => {
                let target = at
                    .checked_add(u32_at(buf, at, "options field")?)
                    .ok_or_else(|| format!("options field {id} points outside the file"))?;
                let len = u32_at(buf, target, "options vector")?;
                let size = match kind {
                    FieldKind::Vector(e) => e as usize,
                    FieldKind::String => 1,
                };
                let bytes = len
                    .checked_mul(size)
                    .and_then(|n| (target + 4).checked_add(n))
                    .and_then(|end| buf.get(target + 4..end))
                    .ok_or_else(|| format!("options field {id}: a vector of {len} elements runs past the file"))?;
                match kind {
                    FieldKind::Vector(e) => OpaqueValue::Vector { elem_size: e, bytes: bytes.to_vec() },
                    FieldKind::String => OpaqueValue::String(
                        std::str::from_utf8(bytes).map_err(|_| format!("options field {id} is not UTF-8"))?.to_string(),
                    ),
                }
            }
            None => {
                // Up to the next field or the table's end, as 1, 2, 4 or 8 bytes.
                let next = by_offset.iter().copied().find(|&o| o > off).unwrap_or(table_len);
                let room = (next - off).min(8);
                let size = [8, 4, 2, 1].into_iter().find(|&s| s <= room).unwrap_or(1);
                OpaqueValue::Scalar(buf[at..at + size].to_vec())
            }
        };
        fields.push(OpaqueField { id, value });
    }
    Ok(OpaqueOptions { slot, type_id, fields })
}

/// Write a captured options table into `fbb`.
pub(crate) fn emit<'a>(fbb: &mut FlatBufferBuilder<'a>, o: &OpaqueOptions) -> WIPOffset<UnionWIPOffset> {
    // Vectors and strings first: a table refers to objects already written.
    let mut offsets = Vec::new();
    for f in &o.fields {
        let off = match &f.value {
            OpaqueValue::Scalar(_) => continue,
            OpaqueValue::String(s) => fbb.create_string(s).value(),
            OpaqueValue::Vector { elem_size, bytes } => match elem_size {
                8 => {
                    let v: Vec<u64> =
                        bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
                    fbb.create_vector(&v).value()
                }
                4 => {
                    let v: Vec<u32> =
                        bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default())).collect();
                    fbb.create_vector(&v).value()
                }
                2 => {
                    let v: Vec<u16> =
                        bytes.chunks_exact(2).map(|c| u16::from_le_bytes(c.try_into().unwrap_or_default())).collect();
                    fbb.create_vector(&v).value()
                }
                _ => fbb.create_vector(bytes).value(),
            },
        };
        offsets.push((f.id, off));
    }
    let start = fbb.start_table();
    for f in &o.fields {
        let slot = 4 + 2 * f.id;
        if let OpaqueValue::Scalar(b) = &f.value {
            let mut v = [0u8; 8];
            v[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
            match b.len() {
                8 => fbb.push_slot_always(slot, u64::from_le_bytes(v)),
                4 => fbb.push_slot_always(slot, u32::from_le_bytes([v[0], v[1], v[2], v[3]])),
                2 => fbb.push_slot_always(slot, u16::from_le_bytes([v[0], v[1]])),
                _ => fbb.push_slot_always(slot, v[0]),
            }
        }
    }
    for (id, off) in offsets {
        fbb.push_slot_always(4 + 2 * id, WIPOffset::<UnionWIPOffset>::new(off));
    }
    let end = fbb.end_table(start);
    WIPOffset::new(end.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with a bool, an int, a long, a vector of ints and a string, built by the
    /// flatbuffers builder, survives capture → emit → capture.
    #[test]
    fn options_table_round_trips() {
        let mut fbb = FlatBufferBuilder::new();
        let v = fbb.create_vector(&[3i32, -1, 7]);
        let s = fbb.create_string("shared");
        let start = fbb.start_table();
        fbb.push_slot_always(4, true);
        fbb.push_slot_always(6, -5i32);
        fbb.push_slot_always(8, 1i64 << 40);
        fbb.push_slot_always(10, v);
        fbb.push_slot_always(12, s);
        let t = fbb.end_table(start);
        fbb.finish_minimal(t);
        let buf = fbb.finished_data().to_vec();
        let loc = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
        // A slot with no offset fields: the scalars are what this test checks.
        let got = capture(&buf, loc, 9, 0).unwrap();
        assert_eq!(got.fields.len(), 5);
        let scalar = |id: u16| match &got.fields.iter().find(|f| f.id == id).unwrap().value {
            OpaqueValue::Scalar(b) => b.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(scalar(0)[0], 1);
        assert_eq!(i32::from_le_bytes(scalar(1)[..4].try_into().unwrap()), -5);
        assert_eq!(i64::from_le_bytes(scalar(2)[..8].try_into().unwrap()), 1 << 40);

        let mut fbb2 = FlatBufferBuilder::new();
        let u = emit(&mut fbb2, &got);
        fbb2.finish_minimal(u);
        let buf2 = fbb2.finished_data().to_vec();
        let loc2 = u32::from_le_bytes(buf2[..4].try_into().unwrap()) as usize;
        let again = capture(&buf2, loc2, 9, 0).unwrap();
        let scalar2 = |id: u16| match &again.fields.iter().find(|f| f.id == id).unwrap().value {
            OpaqueValue::Scalar(b) => b.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(scalar2(0)[0], 1);
        assert_eq!(i32::from_le_bytes(scalar2(1)[..4].try_into().unwrap()), -5);
        assert_eq!(i64::from_le_bytes(scalar2(2)[..8].try_into().unwrap()), 1 << 40);
    }

    #[test]
    fn vectors_and_strings_round_trip() {
        let mut fbb = FlatBufferBuilder::new();
        let s0 = fbb.create_string("target");
        let s2 = fbb.create_string("config");
        let v4 = fbb.create_vector(&[1i32, 2, 3]);
        let v5 = fbb.create_vector(&[9u8, 8]);
        let start = fbb.start_table();
        fbb.push_slot_always(4, s0);
        fbb.push_slot_always(6, true);
        fbb.push_slot_always(8, s2);
        fbb.push_slot_always(10, 2i32);
        fbb.push_slot_always(12, v4);
        fbb.push_slot_always(14, v5);
        let t = fbb.end_table(start);
        fbb.finish_minimal(t);
        let buf = fbb.finished_data().to_vec();
        let loc = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
        // StablehloCustomCallOptions: 0 and 2 strings, 4 [int], 5 [ubyte].
        let got = capture(&buf, loc, 2, 5).unwrap();
        let val = |o: &OpaqueOptions, id: u16| o.fields.iter().find(|f| f.id == id).unwrap().value.clone();
        assert_eq!(val(&got, 0), OpaqueValue::String("target".into()));
        assert_eq!(val(&got, 2), OpaqueValue::String("config".into()));
        assert_eq!(val(&got, 4), OpaqueValue::Vector { elem_size: 4, bytes: vec![1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0] });
        assert_eq!(val(&got, 5), OpaqueValue::Vector { elem_size: 1, bytes: vec![9, 8] });
        let mut fbb2 = FlatBufferBuilder::new();
        let u = emit(&mut fbb2, &got);
        fbb2.finish_minimal(u);
        let buf2 = fbb2.finished_data().to_vec();
        let loc2 = u32::from_le_bytes(buf2[..4].try_into().unwrap()) as usize;
        let again = capture(&buf2, loc2, 2, 5).unwrap();
        for id in [0, 2, 4, 5] {
            assert_eq!(val(&again, id), val(&got, id));
        }
        let b = |o: &OpaqueOptions, id: u16| match val(o, id) {
            OpaqueValue::Scalar(b) => b[0],
            v => panic!("{v:?}"),
        };
        assert_eq!((b(&again, 1), b(&again, 3)), (1, 2));
    }

    #[test]
    fn lying_offsets_are_errors() {
        let mut fbb = FlatBufferBuilder::new();
        let v = fbb.create_vector(&[1i32, 2]);
        let start = fbb.start_table();
        fbb.push_slot_always(4, v);
        let t = fbb.end_table(start);
        fbb.finish_minimal(t);
        let mut buf = fbb.finished_data().to_vec();
        let loc = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
        assert!(capture(&buf, loc, 1, 17).is_ok());
        // The vector's length now claims a billion elements.
        let vec_at = {
            let vt = loc - i32::from_le_bytes(buf[loc..loc + 4].try_into().unwrap()) as usize;
            let off = u16::from_le_bytes(buf[vt + 4..vt + 6].try_into().unwrap()) as usize;
            loc + off + u32::from_le_bytes(buf[loc + off..loc + off + 4].try_into().unwrap()) as usize
        };
        buf[vec_at..vec_at + 4].copy_from_slice(&1_000_000_000u32.to_le_bytes());
        let e = capture(&buf, loc, 1, 17).unwrap_err();
        assert!(e.contains("runs past the file"), "{e}");
        // A vtable outside the buffer.
        buf[loc..loc + 4].copy_from_slice(&(-100_000i32).to_le_bytes());
        assert!(capture(&buf, loc, 1, 17).unwrap_err().contains("outside the file"));
    }
}
