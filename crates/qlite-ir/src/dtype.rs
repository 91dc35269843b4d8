//! Element types.

use std::fmt;

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F16,
    BF16,
    I8,
    U8,
    I16,
    I32,
    I64,
    Bool,
    /// TFLite's STRING: a constant holds the file's own serialized buffer (count, offsets,
    /// bytes), which is kept as is; no kernel computes with it.
    String,
    // Types qlite keeps (read, shown, written back) but has no kernels for: a constant holds
    // the file's bytes as they are.
    F64,
    U16,
    U32,
    U64,
    C64,
    C128,
    /// 4-bit integers, two per byte (low nibble first).
    I4,
    U4,
    /// 2-bit integers, four per byte.
    I2,
    F8E4M3,
    F8E5M2,
    /// A handle to a variable (TFLite RESOURCE): no data.
    Resource,
    /// TFLite VARIANT (a tensor list): no data.
    Variant,
}

impl DType {
    /// Every dtype, in a fixed order.
    pub const ALL: [DType; 23] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I8,
        DType::U8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::Bool,
        DType::String,
        DType::F64,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::C64,
        DType::C128,
        DType::I4,
        DType::U4,
        DType::I2,
        DType::F8E4M3,
        DType::F8E5M2,
        DType::Resource,
        DType::Variant,
    ];

    /// Bytes per element (1 for the packed and the byte-buffer types: see [`DType::data_len`]).
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool | DType::String => 1,
            DType::I4 | DType::U4 | DType::I2 | DType::F8E4M3 | DType::F8E5M2 => 1,
            DType::Resource | DType::Variant => 1,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::I64 | DType::F64 | DType::U64 | DType::C64 => 8,
            DType::C128 => 16,
        }
    }

    /// The byte length of the data of `elements` values: packed types round up to whole
    /// bytes; `None` where the data is a buffer of its own length (STRING, RESOURCE, VARIANT).
    pub fn data_len(self, elements: usize) -> Option<usize> {
        match self {
            DType::String | DType::Resource | DType::Variant => None,
            DType::I4 | DType::U4 => Some(elements.div_ceil(2)),
            DType::I2 => Some(elements.div_ceil(4)),
            d => elements.checked_mul(d.size()),
        }
    }

    /// A type qlite reads and writes back but has no kernel or quantization for.
    pub fn is_kept_only(self) -> bool {
        !matches!(
            self,
            DType::F32
                | DType::F16
                | DType::BF16
                | DType::I8
                | DType::U8
                | DType::I16
                | DType::I32
                | DType::I64
                | DType::Bool
        )
    }

    /// Short lowercase name used by the text printer and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
            DType::String => "string",
            DType::F64 => "f64",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::C64 => "c64",
            DType::C128 => "c128",
            DType::I4 => "i4",
            DType::U4 => "u4",
            DType::I2 => "i2",
            DType::F8E4M3 => "f8e4m3fn",
            DType::F8E5M2 => "f8e5m2",
            DType::Resource => "resource",
            DType::Variant => "variant",
        }
    }

    /// Parse a name produced by [`DType::name`].
    pub fn from_name(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == s)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Integer types that can carry affine quantization.
    pub fn is_quantizable_int(self) -> bool {
        matches!(self, DType::I8 | DType::U8 | DType::I16 | DType::I32 | DType::I64)
    }

    /// Inclusive value range of an integer dtype.
    pub fn int_range(self) -> Option<(i64, i64)> {
        Some(match self {
            DType::I8 => (i8::MIN as i64, i8::MAX as i64),
            DType::U8 => (0, u8::MAX as i64),
            DType::I16 => (i16::MIN as i64, i16::MAX as i64),
            DType::I32 => (i32::MIN as i64, i32::MAX as i64),
            DType::I64 => (i64::MIN, i64::MAX),
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_name("f128"), None);
    }

    #[test]
    fn packed_and_buffer_types_have_their_own_lengths() {
        assert_eq!(DType::I4.data_len(5), Some(3));
        assert_eq!(DType::I2.data_len(5), Some(2));
        assert_eq!(DType::C128.data_len(2), Some(32));
        assert_eq!(DType::String.data_len(3), None);
        assert!(DType::F64.is_kept_only() && DType::String.is_kept_only() && !DType::BF16.is_kept_only());
    }

    #[test]
    fn ranges() {
        assert_eq!(DType::I8.int_range(), Some((-128, 127)));
        assert_eq!(DType::U8.int_range(), Some((0, 255)));
        assert_eq!(DType::F32.int_range(), None);
        assert_eq!(DType::I64.size(), 8);
    }
}
