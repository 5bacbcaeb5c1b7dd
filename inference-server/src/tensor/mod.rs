//! Named tensors and their datatypes: the only thing the server core knows about models.
//!
//! Data is kept in typed, row-major vectors ([`TensorData`], one variant per
//! datatype of [`datatype`]). A [`Tensor`] always holds exactly as many
//! elements as its shape says: its fields are private and every constructor
//! checks. The first dimension is the batch dimension when a model declares
//! it dynamic; [`Tensor::concat_rows`] and [`Tensor::split_rows`] are what
//! the batching queue uses to merge requests and hand each caller its own
//! slice back.

pub mod datatype;

pub use datatype::{DataType, Element, TensorData};
pub use half::f16;

use serde::{Deserialize, Serialize};

impl TensorData {
    pub fn len(&self) -> usize {
        crate::match_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty vector of the given datatype with room for `capacity` elements.
    pub fn with_capacity(datatype: DataType, capacity: usize) -> TensorData {
        crate::match_datatype!(datatype, T => Vec::<T>::with_capacity(capacity).into())
    }

    /// `len` zeros of `datatype`: 0, `false` or empty strings (the warm-up input).
    pub fn zeros(datatype: DataType, len: usize) -> TensorData {
        crate::match_datatype!(datatype, T => vec![T::default(); len].into())
    }

    /// Appends `other`'s elements; the datatypes must match.
    fn extend_from(&mut self, other: &TensorData) -> Result<(), TensorError> {
        let mismatch = TensorError::DatatypeMismatch {
            expected: self.datatype(),
            actual: other.datatype(),
        };
        crate::match_data!(self, v => {
            let more = Element::slice_of(other).ok_or(mismatch)?;
            v.extend_from_slice(more);
        });
        Ok(())
    }

    /// Copies elements `start..end`.
    fn slice(&self, start: usize, end: usize) -> TensorData {
        crate::match_data!(self, v => v[start..end].to_vec().into())
    }
}

/// A named tensor with a concrete shape, holding exactly as many elements
/// as the shape says.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    name: String,
    shape: Vec<usize>,
    data: TensorData,
}

/// The number of elements a tensor of `shape` holds; `None` when it does not
/// fit in a `usize` (a client can send any shape: never multiply unchecked).
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    #[error("shape {shape:?} has more elements than can be addressed")]
    TooLarge { shape: Vec<usize> },
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
    #[error("cannot concatenate zero tensors")]
    Empty,
}

impl Tensor {
    /// Builds a tensor, checking that the element count matches the shape.
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        data: impl Into<TensorData>,
    ) -> Result<Tensor, TensorError> {
        let data = data.into();
        let Some(expected) = element_count(&shape) else {
            return Err(TensorError::TooLarge { shape });
        };
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

    /// A tensor of zeros (see [`TensorData::zeros`]).
    pub fn zeros(name: impl Into<String>, datatype: DataType, shape: Vec<usize>) -> Tensor {
        let data = TensorData::zeros(datatype, shape.iter().product());
        Tensor {
            name: name.into(),
            shape,
            data,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The elements, giving the name and shape up.
    pub fn into_data(self) -> TensorData {
        self.data
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
