//! Dense arrays: the values the interpreter computes with.

use half::{bf16, f16};
use qlite_ir::DType;
use qlite_ir::shape::checked_product;

/// Typed element storage.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

/// Apply an expression to the vector inside any `Data` variant, rebuilding the same variant.
macro_rules! map_data {
    ($data:expr, |$v:ident| $body:expr) => {
        match $data {
            Data::F32($v) => Data::F32($body),
            Data::F16($v) => Data::F16($body),
            Data::BF16($v) => Data::BF16($body),
            Data::I8($v) => Data::I8($body),
            Data::U8($v) => Data::U8($body),
            Data::I16($v) => Data::I16($body),
            Data::I32($v) => Data::I32($body),
            Data::I64($v) => Data::I64($body),
            Data::Bool($v) => Data::Bool($body),
        }
    };
}
pub(crate) use map_data;

impl Data {
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F16(_) => DType::F16,
            Data::BF16(_) => DType::BF16,
            Data::I8(_) => DType::I8,
            Data::U8(_) => DType::U8,
            Data::I16(_) => DType::I16,
            Data::I32(_) => DType::I32,
            Data::I64(_) => DType::I64,
            Data::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F16(v) => v.len(),
            Data::BF16(v) => v.len(),
            Data::I8(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::I16(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gather elements by index (all indices must be < len).
    pub fn gather(&self, idx: &[usize]) -> Data {
        map_data!(self, |v| idx.iter().map(|&i| v[i]).collect())
    }
}

/// A shaped array.
pub struct Array {
    shape: Vec<usize>,
    data: Data,
    /// Every element of the data's allocation (its whole capacity) has been written, so the
    /// `reuse_*` functions may lengthen it within its capacity without writing it again (a
    /// session's arena buffers, shared by tensors of several sizes, grow and shrink every run).
    /// Truncating or clearing plain numbers leaves the elements written; a clone's allocation
    /// is fresh, so clones start without it.
    whole: bool,
}

impl std::fmt::Debug for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array").field("shape", &self.shape).field("data", &self.data).finish()
    }
}

impl Clone for Array {
    fn clone(&self) -> Self {
        Array { shape: self.shape.clone(), data: self.data.clone(), whole: false }
    }
}

impl PartialEq for Array {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.data == other.data
    }
}

/// Make `v` hold `n` elements to be overwritten: shortened in place; lengthened within its
/// capacity without writing when `whole` (see [`Array::whole`]); otherwise its whole allocation
/// written once (zeros), after which `whole` holds.
#[allow(unsafe_code)]
fn set_len_for_overwrite<T: Copy + Default>(v: &mut Vec<T>, whole: &mut bool, n: usize) {
    if n <= v.len() {
        v.truncate(n);
        return;
    }
    if *whole && n <= v.capacity() {
        // SAFETY: `whole` says every element of this allocation was written (below, when it
        // was made) and nothing since de-initialized one (truncating and clearing `Copy`
        // values do not); n is within the capacity.
        unsafe { v.set_len(n) };
        return;
    }
    v.clear();
    v.reserve(n);
    let cap = v.capacity();
    v.resize(cap, T::default());
    v.truncate(n);
    *whole = true;
}

/// The byte length or element count of an array does not match its shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("array of shape {shape:?} ({dtype}) cannot hold {got} {unit}")]
pub struct ArrayError {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub got: usize,
    pub unit: &'static str,
}

impl Array {
    /// Build from shape and data; the element count must match.
    pub fn new(shape: Vec<usize>, data: Data) -> Result<Self, ArrayError> {
        if checked_product(&shape) != Some(data.len()) {
            return Err(ArrayError { dtype: data.dtype(), got: data.len(), shape, unit: "elements" });
        }
        Ok(Array { shape, data, whole: false })
    }

    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Result<Self, ArrayError> {
        Self::new(shape, Data::F32(v))
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Make `slot` an int8 array of `shape`, reusing its storage (no allocation when it
    /// already holds int8 data with the capacity), and return its elements to be overwritten.
    /// `None` if the element count overflows.
    pub(crate) fn reuse_i8<'a>(slot: &'a mut Option<Array>, shape: &[usize]) -> Option<&'a mut [i8]> {
        let n = checked_product(shape)?;
        if !matches!(slot, Some(Array { data: Data::I8(_), .. })) {
            *slot = Some(Array { shape: Vec::new(), data: Data::I8(Vec::new()), whole: false });
        }
        let Some(Array { shape: s, data: Data::I8(v), whole }) = slot else { return None };
        s.clear();
        s.extend_from_slice(shape);
        set_len_for_overwrite(v, whole, n);
        Some(v.as_mut_slice())
    }

    /// [`Array::reuse_i8`] for int16.
    pub(crate) fn reuse_i16<'a>(slot: &'a mut Option<Array>, shape: &[usize]) -> Option<&'a mut [i16]> {
        let n = checked_product(shape)?;
        if !matches!(slot, Some(Array { data: Data::I16(_), .. })) {
            *slot = Some(Array { shape: Vec::new(), data: Data::I16(Vec::new()), whole: false });
        }
        let Some(Array { shape: s, data: Data::I16(v), whole }) = slot else { return None };
        s.clear();
        s.extend_from_slice(shape);
        set_len_for_overwrite(v, whole, n);
        Some(v.as_mut_slice())
    }

    /// [`Array::reuse_i8`] for float32.
    pub(crate) fn reuse_f32<'a>(slot: &'a mut Option<Array>, shape: &[usize]) -> Option<&'a mut [f32]> {
        let n = checked_product(shape)?;
        if !matches!(slot, Some(Array { data: Data::F32(_), .. })) {
            *slot = Some(Array { shape: Vec::new(), data: Data::F32(Vec::new()), whole: false });
        }
        let Some(Array { shape: s, data: Data::F32(v), whole }) = slot else { return None };
        s.clear();
        s.extend_from_slice(shape);
        set_len_for_overwrite(v, whole, n);
        Some(v.as_mut_slice())
    }

    /// Make `slot` hold `value`, keeping the slot's own storage when it has the same element
    /// type and room enough (a session's arena buffer then keeps its size for the larger values
    /// that share it, instead of being replaced by each smaller result).
    pub(crate) fn store_keeping(slot: &mut Option<Array>, value: Array) {
        fn keep<T: Copy>(dst: &mut Vec<T>, src: &[T]) -> bool {
            if dst.capacity() < src.len() {
                return false;
            }
            dst.clear();
            dst.extend_from_slice(src);
            true
        }
        if let Some(old) = slot {
            let kept = match (&mut old.data, &value.data) {
                (Data::F32(d), Data::F32(s)) => keep(d, s),
                (Data::I8(d), Data::I8(s)) => keep(d, s),
                (Data::U8(d), Data::U8(s)) => keep(d, s),
                (Data::I16(d), Data::I16(s)) => keep(d, s),
                (Data::I32(d), Data::I32(s)) => keep(d, s),
                (Data::I64(d), Data::I64(s)) => keep(d, s),
                _ => false,
            };
            if kept {
                old.shape.clear();
                old.shape.extend_from_slice(&value.shape);
                return;
            }
        }
        *slot = Some(value);
    }

    /// Bytes of element storage this array holds (its capacity, not its length).
    pub fn capacity_bytes(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.capacity() * 4,
            Data::F16(v) => v.capacity() * 2,
            Data::BF16(v) => v.capacity() * 2,
            Data::I8(v) => v.capacity(),
            Data::U8(v) => v.capacity(),
            Data::I16(v) => v.capacity() * 2,
            Data::I32(v) => v.capacity() * 4,
            Data::I64(v) => v.capacity() * 8,
            Data::Bool(v) => v.capacity(),
        }
    }
    pub fn data(&self) -> &Data {
        &self.data
    }
    pub fn into_data(self) -> Data {
        self.data
    }
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Same data, new shape with the same element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Self, ArrayError> {
        Self::new(shape, self.data)
    }

    /// Decode little-endian bytes.
    pub fn from_le_bytes(dtype: DType, shape: Vec<usize>, b: &[u8]) -> Result<Self, ArrayError> {
        let n = checked_product(&shape).and_then(|n| n.checked_mul(dtype.size()));
        if n != Some(b.len()) {
            return Err(ArrayError { shape, dtype, got: b.len(), unit: "bytes" });
        }
        fn chunks<const N: usize, T>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            b.chunks_exact(N)
                .map(|c| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(c);
                    f(a)
                })
                .collect()
        }
        let data = match dtype {
            DType::F32 => Data::F32(chunks(b, f32::from_le_bytes)),
            DType::F16 => Data::F16(chunks(b, f16::from_le_bytes)),
            DType::BF16 => Data::BF16(chunks(b, bf16::from_le_bytes)),
            DType::I8 => Data::I8(b.iter().map(|&x| x as i8).collect()),
            DType::U8 => Data::U8(b.to_vec()),
            DType::I16 => Data::I16(chunks(b, i16::from_le_bytes)),
            DType::I32 => Data::I32(chunks(b, i32::from_le_bytes)),
            DType::I64 => Data::I64(chunks(b, i64::from_le_bytes)),
            DType::Bool => Data::Bool(b.iter().map(|&x| x != 0).collect()),
            d => {
                return Err(ArrayError {
                    shape,
                    dtype: d,
                    got: b.len(),
                    unit: "bytes (a type qlite has no kernels for)",
                });
            }
        };
        Ok(Array { shape, data, whole: false })
    }

    /// Encode as little-endian bytes.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        fn flat<const N: usize, T: Copy>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            let mut out = Vec::with_capacity(v.len() * N);
            for &x in v {
                out.extend_from_slice(&f(x));
            }
            out
        }
        match &self.data {
            Data::F32(v) => flat(v, f32::to_le_bytes),
            Data::F16(v) => flat(v, f16::to_le_bytes),
            Data::BF16(v) => flat(v, bf16::to_le_bytes),
            Data::I8(v) => v.iter().map(|&x| x as u8).collect(),
            Data::U8(v) => v.clone(),
            Data::I16(v) => flat(v, i16::to_le_bytes),
            Data::I32(v) => flat(v, i32::to_le_bytes),
            Data::I64(v) => flat(v, i64::to_le_bytes),
            Data::Bool(v) => v.iter().map(|&x| x as u8).collect(),
        }
    }
}

impl Array {
    /// Row `i` along axis 0, keeping a leading dimension of 1.
    pub fn row(&self, i: usize) -> Option<Array> {
        let rows = *self.shape.first()?;
        if i >= rows {
            return None;
        }
        let per = self.len() / rows.max(1);
        let idx: Vec<usize> = (i * per..(i + 1) * per).collect();
        let mut shape = self.shape.clone();
        shape[0] = 1;
        Some(Array { shape, data: self.data.gather(&idx), whole: false })
    }

    /// Concatenate arrays of equal dtype and trailing shape along axis 0.
    pub fn stack_rows(parts: &[Array]) -> Option<Array> {
        let first = parts.first()?;
        let tail = first.shape.get(1..)?;
        let mut rows = 0usize;
        for p in parts {
            if p.dtype() != first.dtype() || p.shape.get(1..)? != tail {
                return None;
            }
            rows = rows.checked_add(*p.shape.first()?)?;
        }
        let data = map_data!(&first.data, |v0| {
            let mut out = Vec::with_capacity(v0.len() * parts.len());
            for p in parts {
                if let Ok(v) = <&Vec<_>>::try_from(&p.data) {
                    out.extend_from_slice(v);
                }
            }
            out
        });
        let mut shape = first.shape.clone();
        shape[0] = rows;
        Array::new(shape, data).ok()
    }
}

macro_rules! try_from_data {
    ($($var:ident: $t:ty),*) => {$(
        impl<'a> TryFrom<&'a Data> for &'a Vec<$t> {
            type Error = ();
            fn try_from(d: &'a Data) -> Result<Self, ()> {
                match d {
                    Data::$var(v) => Ok(v),
                    _ => Err(()),
                }
            }
        }
    )*};
}
try_from_data!(F32: f32, F16: f16, BF16: bf16, I8: i8, U8: u8, I16: i16, I32: i32, I64: i64, Bool: bool);

#[cfg(test)]
mod tests {
    use super::*;

    /// An arena buffer shared by tensors of several sizes keeps its allocation, and lengthening
    /// it within its capacity writes nothing once the allocation has been written whole.
    #[test]
    fn reused_storage_grows_within_its_allocation() {
        let mut slot = None;
        let ptr = Array::reuse_f32(&mut slot, &[4, 25]).unwrap().as_ptr();
        let whole = |s: &Option<Array>| s.as_ref().is_some_and(|a| a.whole);
        assert!(whole(&slot));
        Array::reuse_f32(&mut slot, &[10]).unwrap().fill(7.0);
        let again = Array::reuse_f32(&mut slot, &[100]).unwrap();
        assert_eq!((again.as_ptr(), again.len()), (ptr, 100));
        // The first 10 are the values last written: nothing was zeroed.
        assert!(again[..10].iter().all(|&v| v == 7.0));
        // A clone's allocation is its own: it starts without the claim.
        let copy = slot.clone();
        assert!(!whole(&copy) && copy == slot);
        // Past the capacity: a new allocation, written whole.
        let cap = slot.as_ref().unwrap().capacity_bytes() / 4;
        assert_eq!(Array::reuse_f32(&mut slot, &[cap + 1]).unwrap().len(), cap + 1);
        assert!(whole(&slot));
        // Another type replaces the storage.
        assert_eq!(Array::reuse_i8(&mut slot, &[3]).unwrap(), &[0, 0, 0]);
    }
}
