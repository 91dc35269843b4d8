//! NumPy `.npy` files (format versions 1, 2 and 3; little-endian, C order).

use qlite_interp::{Array, Data};
use qlite_ir::DType;

/// Why an .npy file could not be read or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NpyError {
    #[error("not an .npy file (missing \\x93NUMPY magic)")]
    Magic,
    #[error("unsupported .npy format version {0}.{1}")]
    Version(u8, u8),
    #[error("the .npy header is truncated or longer than the file")]
    Truncated,
    #[error("the .npy header is {0} bytes, over the 1 MiB limit")]
    HeaderTooLarge(usize),
    #[error("malformed .npy header: {0}")]
    Header(String),
    #[error("unsupported .npy dtype {0:?} (supported: <f4 <f2 <f8 |i1 |u1 <i2 <i4 <i8 |b1)")]
    DType(String),
    #[error("Fortran-order .npy arrays are not supported")]
    FortranOrder,
    #[error("the .npy data is {got} bytes but shape {shape:?} of {descr} needs {expected}")]
    DataLength { shape: Vec<usize>, descr: String, expected: String, got: usize },
}

const MAGIC: &[u8] = b"\x93NUMPY";
const MAX_HEADER: usize = 1 << 20;

fn field<'a>(header: &'a str, key: &str) -> Result<&'a str, NpyError> {
    let pat = format!("'{key}':");
    let at = header.find(&pat).ok_or_else(|| NpyError::Header(format!("no '{key}' key")))?;
    Ok(header[at + pat.len()..].trim_start())
}

/// Parse an .npy file. f64 data is converted to f32 (the interpreter's float type).
pub fn read_npy(bytes: &[u8]) -> Result<Array, NpyError> {
    let Header { descr, shape, data_start: end } = parse_header(bytes)?;
    let data = &bytes[end..];
    let (dtype, elem) = element_type(&descr)?;
    let expected = qlite_ir::shape::checked_product(&shape).and_then(|n| n.checked_mul(elem));
    if expected != Some(data.len()) {
        return Err(NpyError::DataLength {
            shape,
            descr,
            expected: expected.map_or_else(|| "more than usize::MAX bytes".into(), |e| e.to_string()),
            got: data.len(),
        });
    }
    match dtype {
        Some(d) => Array::from_le_bytes(d, shape, data).map_err(|e| NpyError::Header(e.to_string())),
        None => {
            let v: Vec<f32> = data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                .collect();
            Array::f32(shape, v).map_err(|e| NpyError::Header(e.to_string()))
        }
    }
}

/// Encode an array as an .npy (version 1.0) file.
pub fn write_npy(a: &Array) -> Vec<u8> {
    let descr = match a.data() {
        Data::F32(_) => "<f4",
        Data::F16(_) => "<f2",
        Data::BF16(_) => "<u2",
        Data::I8(_) => "|i1",
        Data::U8(_) => "|u1",
        Data::I16(_) => "<i2",
        Data::I32(_) => "<i4",
        Data::I64(_) => "<i8",
        Data::Bool(_) => "|b1",
    };
    let dims: Vec<String> = a.shape().iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that magic + version + length + header (with trailing newline) is a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + a.len() * a.dtype().size());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&a.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a = Array::f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let b = write_npy(&a);
        assert_eq!(b.len() % 64, 24, "header padded to 64 bytes, then 24 bytes of data");
        assert_eq!(read_npy(&b).unwrap(), a);
        let s = Array::new(vec![3], Data::I8(vec![-1, 0, 1])).unwrap();
        assert_eq!(read_npy(&write_npy(&s)).unwrap(), s);
    }

    #[test]
    fn rejects_bad_files() {
        assert_eq!(read_npy(b"hello world"), Err(NpyError::Magic));
        let a = Array::f32(vec![4], vec![0.; 4]).unwrap();
        let mut b = write_npy(&a);
        b.truncate(b.len() - 1);
        assert!(matches!(read_npy(&b), Err(NpyError::DataLength { .. })));
        let mut huge = write_npy(&a);
        let h = String::from_utf8_lossy(&huge[10..]).replace("(4,)", "(99999999999999999999,)");
        huge.truncate(10);
        huge.extend_from_slice(h.as_bytes());
        assert!(read_npy(&huge).is_err());
    }
}

/// Rows of a (possibly memory-mapped) .npy file, read one at a time: iterating over N
/// samples never holds more than one row in memory.
#[derive(Debug, Clone)]
pub struct NpyRows {
    bytes: bytes::Bytes,
    data_start: usize,
    dtype: DType,
    f64_source: bool,
    shape: Vec<usize>,
    row_bytes: usize,
}

impl NpyRows {
    /// Parse the header; the first dimension is the row count.
    pub fn open(bytes: bytes::Bytes) -> Result<Self, NpyError> {
        // Validate everything by parsing the header as `read_npy` does, without the data.
        let header = parse_header(&bytes)?;
        let (dtype, elem) = element_type(&header.descr)?;
        let (dtype, f64_source) = (dtype.unwrap_or(DType::F32), dtype.is_none());
        if header.shape.is_empty() {
            return Err(NpyError::Header("a 0-d array has no rows".into()));
        }
        let row_elems = qlite_ir::shape::checked_product(&header.shape[1..]).ok_or(NpyError::Truncated)?;
        let row_bytes = row_elems.checked_mul(elem).ok_or(NpyError::Truncated)?;
        let expected = row_bytes.checked_mul(header.shape[0]);
        let got = bytes.len() - header.data_start;
        if expected != Some(got) {
            return Err(NpyError::DataLength {
                shape: header.shape,
                descr: header.descr,
                expected: expected.map_or_else(|| "more than usize::MAX bytes".into(), |e| e.to_string()),
                got,
            });
        }
        Ok(NpyRows { data_start: header.data_start, dtype, f64_source, shape: header.shape, row_bytes, bytes })
    }

    pub fn rows(&self) -> usize {
        self.shape[0]
    }

    /// Shape of one row (without the leading dimension).
    pub fn row_shape(&self) -> &[usize] {
        &self.shape[1..]
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Row `i` as an array of shape `[1, ...row shape]`.
    pub fn row(&self, i: usize) -> Option<Array> {
        if i >= self.rows() {
            return None;
        }
        let start = self.data_start + i * self.row_bytes;
        let b = self.bytes.get(start..start + self.row_bytes)?;
        let mut shape = vec![1];
        shape.extend_from_slice(self.row_shape());
        if self.f64_source {
            let v = b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                .collect();
            return Array::f32(shape, v).ok();
        }
        Array::from_le_bytes(self.dtype, shape, b).ok()
    }
}

struct Header {
    descr: String,
    shape: Vec<usize>,
    data_start: usize,
}

/// The element type of a `descr` (`None`: float64, read as float32) and its size in bytes.
fn element_type(descr: &str) -> Result<(Option<DType>, usize), NpyError> {
    Ok(match descr {
        "<f4" => (Some(DType::F32), 4),
        "<f8" => (None, 8),
        "<f2" => (Some(DType::F16), 2),
        "|i1" | "<i1" => (Some(DType::I8), 1),
        "|u1" | "<u1" => (Some(DType::U8), 1),
        "<i2" => (Some(DType::I16), 2),
        "<i4" => (Some(DType::I32), 4),
        "<i8" => (Some(DType::I64), 8),
        "|b1" => (Some(DType::Bool), 1),
        _ => return Err(NpyError::DType(descr.to_string())),
    })
}

fn parse_header(bytes: &[u8]) -> Result<Header, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::Magic);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (hlen, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let b = bytes.get(8..12).ok_or(NpyError::Truncated)?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        _ => return Err(NpyError::Version(major, minor)),
    };
    if hlen > MAX_HEADER {
        return Err(NpyError::HeaderTooLarge(hlen));
    }
    let end = start.checked_add(hlen).filter(|&e| e <= bytes.len()).ok_or(NpyError::Truncated)?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| NpyError::Header("not UTF-8".into()))?;
    let descr = field(header, "descr")?
        .strip_prefix('\'')
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| NpyError::Header("descr is not a string".into()))?
        .to_string();
    if field(header, "fortran_order")?.starts_with("True") {
        return Err(NpyError::FortranOrder);
    }
    let shape_s = field(header, "shape")?
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| NpyError::Header("shape is not a tuple".into()))?;
    let mut shape = Vec::new();
    for part in shape_s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        shape.push(part.parse::<usize>().map_err(|_| NpyError::Header(format!("bad dimension {part:?}")))?);
    }
    if shape.len() > qlite_ir::MAX_RANK {
        return Err(NpyError::Header(format!("rank {} exceeds {}", shape.len(), qlite_ir::MAX_RANK)));
    }
    Ok(Header { descr, shape, data_start: end })
}
