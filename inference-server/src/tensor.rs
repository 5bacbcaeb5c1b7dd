//! Named tensors and their datatypes: the only thing the server core knows about models.
//!
//! Data is kept in typed, row-major vectors. The first dimension is the batch
//! dimension when a model declares it dynamic; [`Tensor::concat_rows`] and
//! [`Tensor::split_rows`] are what the batching queue uses to merge requests
//! and hand each caller its own slice back.

use std::fmt;

use half::f16;
use serde::{Deserialize, Serialize};

/// A datatype of the Open Inference Protocol, spelled as on the wire (`FP32`, `INT64`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum DataType {
    #[serde(rename = "BOOL")]
    Bool,
    #[serde(rename = "UINT8")]
    Uint8,
    #[serde(rename = "UINT16")]
    Uint16,
    #[serde(rename = "UINT32")]
    Uint32,
    #[serde(rename = "UINT64")]
    Uint64,
    #[serde(rename = "INT8")]
    Int8,
    #[serde(rename = "INT16")]
    Int16,
    #[serde(rename = "INT32")]
    Int32,
    #[serde(rename = "INT64")]
    Int64,
    #[serde(rename = "FP16")]
    Fp16,
    #[serde(rename = "FP32")]
    Fp32,
    #[serde(rename = "FP64")]
    Fp64,
    #[serde(rename = "BYTES")]
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The wire name, e.g. `FP32`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    pub fn parse(s: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Size of one element in the binary tensor data extension; `None` for BYTES.
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
            DataType::Bytes => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The elements of a tensor, row-major, one variant per datatype.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<f16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies the same expression to the vector inside any [`TensorData`] variant.
macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp16($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

/// Rebuilds a [`TensorData`] of the same variant as `$data` from an expression over its vector.
macro_rules! map_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::Uint8($v) => TensorData::Uint8($body),
            TensorData::Uint16($v) => TensorData::Uint16($body),
            TensorData::Uint32($v) => TensorData::Uint32($body),
            TensorData::Uint64($v) => TensorData::Uint64($body),
            TensorData::Int8($v) => TensorData::Int8($body),
            TensorData::Int16($v) => TensorData::Int16($body),
            TensorData::Int32($v) => TensorData::Int32($body),
            TensorData::Int64($v) => TensorData::Int64($body),
            TensorData::Fp16($v) => TensorData::Fp16($body),
            TensorData::Fp32($v) => TensorData::Fp32($body),
            TensorData::Fp64($v) => TensorData::Fp64($body),
            TensorData::Bytes($v) => TensorData::Bytes($body),
        }
    };
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty vector of the given datatype with room for `capacity` elements.
    pub fn with_capacity(datatype: DataType, capacity: usize) -> TensorData {
        match datatype {
            DataType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DataType::Uint8 => TensorData::Uint8(Vec::with_capacity(capacity)),
            DataType::Uint16 => TensorData::Uint16(Vec::with_capacity(capacity)),
            DataType::Uint32 => TensorData::Uint32(Vec::with_capacity(capacity)),
            DataType::Uint64 => TensorData::Uint64(Vec::with_capacity(capacity)),
            DataType::Int8 => TensorData::Int8(Vec::with_capacity(capacity)),
            DataType::Int16 => TensorData::Int16(Vec::with_capacity(capacity)),
            DataType::Int32 => TensorData::Int32(Vec::with_capacity(capacity)),
            DataType::Int64 => TensorData::Int64(Vec::with_capacity(capacity)),
            DataType::Fp16 => TensorData::Fp16(Vec::with_capacity(capacity)),
            DataType::Fp32 => TensorData::Fp32(Vec::with_capacity(capacity)),
            DataType::Fp64 => TensorData::Fp64(Vec::with_capacity(capacity)),
            DataType::Bytes => TensorData::Bytes(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `other`'s elements; the datatypes must match.
    fn extend_from(&mut self, other: &TensorData) -> Result<(), TensorError> {
        macro_rules! ext {
            ($($variant:ident),*) => {
                match (&mut *self, other) {
                    $((TensorData::$variant(a), TensorData::$variant(b)) => a.extend_from_slice(b),)*
                    (a, b) => {
                        return Err(TensorError::DatatypeMismatch {
                            expected: a.datatype(),
                            actual: b.datatype(),
                        })
                    }
                }
            };
        }
        ext!(
            Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Fp32, Fp64, Bytes
        );
        Ok(())
    }

    /// Copies elements `start..end`.
    fn slice(&self, start: usize, end: usize) -> TensorData {
        map_variant!(self, v => v[start..end].to_vec())
    }

    /// Serializes the elements as little-endian bytes, the layout of the binary
    /// tensor data extension (BYTES elements carry a 4-byte length prefix).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            TensorData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
            TensorData::Uint8(v) => out.extend_from_slice(v),
            TensorData::Uint16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::Uint32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::Uint64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::Int8(v) => out.extend(v.iter().map(|&x| x as u8)),
            TensorData::Int16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::Int32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::Int64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::Fp16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::Fp32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::Fp64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::Bytes(v) => v.iter().for_each(|x| {
                out.extend((x.len() as u32).to_le_bytes());
                out.extend_from_slice(x);
            }),
        }
        out
    }

    /// Parses little-endian bytes of the binary tensor data extension.
    pub fn from_le_bytes(datatype: DataType, bytes: &[u8]) -> Result<TensorData, TensorError> {
        fn chunks<const N: usize, T>(
            datatype: DataType,
            bytes: &[u8],
            f: impl Fn([u8; N]) -> T,
        ) -> Result<Vec<T>, TensorError> {
            if !bytes.len().is_multiple_of(N) {
                return Err(TensorError::BinarySize {
                    datatype,
                    size: bytes.len(),
                });
            }
            Ok(bytes
                .chunks_exact(N)
                .map(|c| f(c.try_into().expect("chunks_exact yields N bytes")))
                .collect())
        }
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
            DataType::Int8 => TensorData::Int8(bytes.iter().map(|&b| b as i8).collect()),
            DataType::Uint16 => TensorData::Uint16(chunks(datatype, bytes, u16::from_le_bytes)?),
            DataType::Uint32 => TensorData::Uint32(chunks(datatype, bytes, u32::from_le_bytes)?),
            DataType::Uint64 => TensorData::Uint64(chunks(datatype, bytes, u64::from_le_bytes)?),
            DataType::Int16 => TensorData::Int16(chunks(datatype, bytes, i16::from_le_bytes)?),
            DataType::Int32 => TensorData::Int32(chunks(datatype, bytes, i32::from_le_bytes)?),
            DataType::Int64 => TensorData::Int64(chunks(datatype, bytes, i64::from_le_bytes)?),
            DataType::Fp16 => TensorData::Fp16(chunks(datatype, bytes, f16::from_le_bytes)?),
            DataType::Fp32 => TensorData::Fp32(chunks(datatype, bytes, f32::from_le_bytes)?),
            DataType::Fp64 => TensorData::Fp64(chunks(datatype, bytes, f64::from_le_bytes)?),
            DataType::Bytes => {
                let mut items = Vec::new();
                let mut rest = bytes;
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(TensorError::BinarySize {
                            datatype,
                            size: bytes.len(),
                        });
                    }
                    let n = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                    if rest.len() < 4 + n {
                        return Err(TensorError::BinarySize {
                            datatype,
                            size: bytes.len(),
                        });
                    }
                    items.push(rest[4..4 + n].to_vec());
                    rest = &rest[4 + n..];
                }
                TensorData::Bytes(items)
            }
        })
    }
}

/// A named tensor with a concrete shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    #[error("shape {shape:?} holds {expected} elements but {actual} were given")]
    ElementCount {
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    #[error("datatype mismatch: expected {expected}, got {actual}")]
    DatatypeMismatch {
        expected: DataType,
        actual: DataType,
    },
    #[error("shapes {a:?} and {b:?} differ beyond the batch dimension")]
    RowShapeMismatch { a: Vec<usize>, b: Vec<usize> },
    #[error("a scalar tensor has no batch dimension")]
    NoBatchDimension,
    #[error("{size} bytes is not a whole number of {datatype} elements")]
    BinarySize { datatype: DataType, size: usize },
    #[error("cannot concatenate zero tensors")]
    Empty,
}

impl Tensor {
    /// Builds a tensor, checking that the element count matches the shape.
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        data: TensorData,
    ) -> Result<Tensor, TensorError> {
        let expected = shape.iter().product::<usize>();
        if expected != data.len() {
            return Err(TensorError::ElementCount {
                shape,
                expected,
                actual: data.len(),
            });
        }
        Ok(Tensor {
            name: name.into(),
            shape,
            data,
        })
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// Number of rows along the batch (first) dimension.
    pub fn rows(&self) -> Result<usize, TensorError> {
        self.shape
            .first()
            .copied()
            .ok_or(TensorError::NoBatchDimension)
    }

    /// Stacks tensors along the first dimension. All must share the datatype
    /// and every dimension after the first.
    pub fn concat_rows(name: &str, parts: &[&Tensor]) -> Result<Tensor, TensorError> {
        let first = parts.first().ok_or(TensorError::Empty)?;
        first.rows()?;
        let total_rows: usize = parts.iter().map(|t| t.shape[0]).sum();
        let total_elems: usize = parts.iter().map(|t| t.data.len()).sum();
        let mut data = TensorData::with_capacity(first.datatype(), total_elems);
        for part in parts {
            part.rows()?;
            if part.shape[1..] != first.shape[1..] {
                return Err(TensorError::RowShapeMismatch {
                    a: first.shape.clone(),
                    b: part.shape.clone(),
                });
            }
            data.extend_from(&part.data)?;
        }
        let mut shape = first.shape.clone();
        shape[0] = total_rows;
        Tensor::new(name, shape, data)
    }

    /// Splits along the first dimension into pieces of the given row counts,
    /// which must add up to this tensor's rows.
    pub fn split_rows(&self, row_counts: &[usize]) -> Result<Vec<Tensor>, TensorError> {
        let rows = self.rows()?;
        let total: usize = row_counts.iter().sum();
        if total != rows {
            return Err(TensorError::ElementCount {
                shape: self.shape.clone(),
                expected: rows,
                actual: total,
            });
        }
        let row_elems: usize = self.shape[1..].iter().product();
        let mut out = Vec::with_capacity(row_counts.len());
        let mut start = 0;
        for &n in row_counts {
            let mut shape = self.shape.clone();
            shape[0] = n;
            let end = start + n * row_elems;
            out.push(Tensor {
                name: self.name.clone(),
                shape,
                data: self.data.slice(start, end),
            });
            start = end;
        }
        Ok(out)
    }
}

/// What a model declares about one of its inputs or outputs. `-1` marks a
/// dynamic dimension, as in the protocol's metadata responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Whether `shape` fits this spec: same rank, fixed dimensions equal.
    pub fn accepts_shape(&self, shape: &[usize]) -> bool {
        shape.len() == self.shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(&want, &got)| want < 0 || want as usize == got)
    }

    /// Whether the first dimension is dynamic, so rows of several requests can be stacked.
    pub fn has_dynamic_batch(&self) -> bool {
        self.shape.first().is_some_and(|&d| d < 0)
    }
}

/// The inputs and outputs of a model, in the model's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSignature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl ModelSignature {
    /// Requests can be merged when every input and output has a dynamic first dimension.
    pub fn supports_batching(&self) -> bool {
        !self.inputs.is_empty()
            && self
                .inputs
                .iter()
                .chain(&self.outputs)
                .all(TensorSpec::has_dynamic_batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::new("x", shape, TensorData::Fp32(v)).unwrap()
    }

    #[test]
    fn new_rejects_element_count_that_does_not_match_shape() {
        let err = Tensor::new("x", vec![2, 2], TensorData::Fp32(vec![1.0; 3])).unwrap_err();
        assert!(matches!(
            err,
            TensorError::ElementCount {
                expected: 4,
                actual: 3,
                ..
            }
        ));
    }

    #[test]
    fn concat_then_split_restores_the_parts() {
        let a = t(vec![1, 2], vec![1.0, 2.0]);
        let b = t(vec![2, 2], vec![3.0, 4.0, 5.0, 6.0]);
        let joined = Tensor::concat_rows("x", &[&a, &b]).unwrap();
        assert_eq!(joined.shape, vec![3, 2]);
        assert_eq!(
            joined.data,
            TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        let parts = joined.split_rows(&[1, 2]).unwrap();
        assert_eq!(parts, vec![a, b]);
    }

    #[test]
    fn concat_rejects_mismatched_row_shapes_and_datatypes() {
        let a = t(vec![1, 2], vec![1.0, 2.0]);
        let b = t(vec![1, 3], vec![1.0, 2.0, 3.0]);
        assert!(matches!(
            Tensor::concat_rows("x", &[&a, &b]),
            Err(TensorError::RowShapeMismatch { .. })
        ));
        let c = Tensor::new("x", vec![1, 2], TensorData::Int64(vec![1, 2])).unwrap();
        assert!(matches!(
            Tensor::concat_rows("x", &[&a, &c]),
            Err(TensorError::DatatypeMismatch { .. })
        ));
    }

    #[test]
    fn binary_round_trip_for_every_fixed_size_datatype() {
        let samples = vec![
            TensorData::Bool(vec![true, false]),
            TensorData::Uint8(vec![0, 255]),
            TensorData::Uint16(vec![1, 65535]),
            TensorData::Uint32(vec![1, u32::MAX]),
            TensorData::Uint64(vec![1, u64::MAX]),
            TensorData::Int8(vec![-128, 127]),
            TensorData::Int16(vec![-1, 300]),
            TensorData::Int32(vec![-1, i32::MAX]),
            TensorData::Int64(vec![-1, i64::MIN]),
            TensorData::Fp16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]),
            TensorData::Fp32(vec![1.5, -2.25]),
            TensorData::Fp64(vec![1e300, -0.5]),
            TensorData::Bytes(vec![b"ab".to_vec(), vec![]]),
        ];
        for data in samples {
            let bytes = data.to_le_bytes();
            if let Some(size) = data.datatype().element_size() {
                assert_eq!(bytes.len(), size * data.len());
            }
            let back = TensorData::from_le_bytes(data.datatype(), &bytes).unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn binary_rejects_partial_elements() {
        assert!(TensorData::from_le_bytes(DataType::Fp32, &[0, 0, 0]).is_err());
        assert!(TensorData::from_le_bytes(DataType::Bytes, &[5, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn spec_accepts_dynamic_dimensions_only() {
        let spec = TensorSpec {
            name: "input".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 4],
        };
        assert!(spec.accepts_shape(&[7, 4]));
        assert!(!spec.accepts_shape(&[7, 3]));
        assert!(!spec.accepts_shape(&[4]));
        assert!(spec.has_dynamic_batch());
    }

    #[test]
    fn datatype_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::parse(d.as_str()), Some(d));
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
        }
    }
}
