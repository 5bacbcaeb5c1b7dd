//! Scored rows as Parquet, through the `parquet` crate's Arrow writer: a
//! `row` column, the kept columns, then one column per model output (a
//! fixed-size list when an output has several values per row) and `class`
//! after a classifier's label; Snappy, 65,536-row groups.

use std::io::Write;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array,
    RecordBatch, StringArray, UInt64Array,
};
use arrow_schema::{DataType as ArrowType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::layout::LabelClasses;
use super::read::Kept;
use super::write::{RowWriter, ScoredBatch};
use crate::runtime::Backend;
use crate::tensor::{DataType, Tensor};

/// Scored rows as Parquet: created at the first batch (the kept columns'
/// types are those of their first values), or at the end, from the model's
/// signature, for a part with no rows.
pub struct ParquetWriter<W: Write + Send> {
    out: Option<W>,
    writer: Option<ArrowWriter<W>>,
    keep: Vec<String>,
    kept_types: Vec<ArrowType>,
    labels: Option<LabelClasses>,
    /// `(name, datatype, values per row)` of each output, from the signature.
    outputs: Vec<(String, DataType, usize)>,
}

impl<W: Write + Send> ParquetWriter<W> {
    pub fn new(
        out: W,
        keep: Vec<String>,
        labels: Option<LabelClasses>,
        backend: &dyn Backend,
    ) -> Self {
        let outputs = backend
            .signature()
            .outputs
            .iter()
            .map(|o| {
                let per_row: i64 = o.shape.iter().skip(1).product();
                (o.name.clone(), o.datatype, per_row.max(1) as usize)
            })
            .collect();
        ParquetWriter {
            out: Some(out),
            writer: None,
            keep,
            kept_types: Vec::new(),
            labels,
            outputs,
        }
    }

    fn open(&mut self, schema: Arc<Schema>) -> Result<(), String> {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(65_536))
            .build();
        let out = self.out.take().expect("opened once");
        self.writer = Some(
            ArrowWriter::try_new(out, schema, Some(props))
                .map_err(|e| format!("cannot write Parquet: {e}"))?,
        );
        Ok(())
    }

    /// The finished file's writer, to commit.
    pub fn into_inner(mut self) -> Result<W, String> {
        if self.writer.is_none() {
            let mut fields = vec![Field::new("row", ArrowType::UInt64, false)];
            fields.extend(
                self.keep
                    .iter()
                    .map(|k| Field::new(k, ArrowType::Utf8, true)),
            );
            for (name, dt, per_row) in &self.outputs {
                fields.push(output_field(name, arrow_type(*dt), *per_row));
                if self.labels.as_ref().is_some_and(|l| &l.output == name) {
                    fields.push(Field::new("class", ArrowType::Utf8, true));
                }
            }
            self.open(Arc::new(Schema::new(fields)))?;
        }
        self.writer
            .take()
            .expect("opened above")
            .into_inner()
            .map_err(|e| format!("cannot write Parquet: {e}"))
    }
}

fn arrow_type(dt: DataType) -> ArrowType {
    crate::match_datatype!(dt, {
        bool T => ArrowType::Boolean,
        int T => if dt == DataType::Uint64 { ArrowType::UInt64 } else { ArrowType::Int64 },
        half T => ArrowType::Float32,
        float T => if dt == DataType::Fp64 { ArrowType::Float64 } else { ArrowType::Float32 },
        bytes T => ArrowType::Utf8,
    })
}

fn output_field(name: &str, element: ArrowType, per_row: usize) -> Field {
    if per_row == 1 {
        Field::new(name, element, false)
    } else {
        let item = Arc::new(Field::new("item", element, false));
        Field::new(name, ArrowType::FixedSizeList(item, per_row as i32), false)
    }
}

/// Elements `start..end` of a tensor as an Arrow array.
// One arm per element type: the casts are no-ops for some of them.
#[allow(clippy::unnecessary_cast)]
fn tensor_array(t: &Tensor, start: usize, end: usize) -> ArrayRef {
    let dt = t.datatype();
    crate::match_data!(t.data(), {
        bool v => Arc::new(BooleanArray::from(v[start..end].to_vec())) as ArrayRef,
        int v => if dt == DataType::Uint64 {
            Arc::new(UInt64Array::from_iter_values(v[start..end].iter().map(|&x| x as u64))) as ArrayRef
        } else {
            Arc::new(Int64Array::from_iter_values(v[start..end].iter().map(|&x| x as i64))) as ArrayRef
        },
        half v => Arc::new(Float32Array::from_iter_values(v[start..end].iter().map(|x| x.to_f32()))) as ArrayRef,
        float v => if dt == DataType::Fp64 {
            Arc::new(Float64Array::from_iter_values(v[start..end].iter().map(|&x| x as f64))) as ArrayRef
        } else {
            Arc::new(Float32Array::from_iter_values(v[start..end].iter().map(|&x| x as f32))) as ArrayRef
        },
        bytes v => Arc::new(StringArray::from_iter_values(v[start..end].iter().map(|b| String::from_utf8_lossy(b)))) as ArrayRef,
    })
}

/// The Arrow type of a kept column, from its first non-null value.
fn kept_type(values: impl Iterator<Item = Kept>) -> ArrowType {
    for v in values {
        return match v {
            Kept::Null => continue,
            Kept::Bool(_) => ArrowType::Boolean,
            Kept::Int(_) => ArrowType::Int64,
            Kept::Float(_) => ArrowType::Float64,
            Kept::Str(_) | Kept::Json(_) => ArrowType::Utf8,
        };
    }
    ArrowType::Utf8
}

fn kept_array(
    t: &ArrowType,
    values: impl Iterator<Item = Kept>,
    name: &str,
) -> Result<ArrayRef, String> {
    let mixed = |v: &Kept| {
        format!("--keep-columns {name:?}: a value {v:?} does not fit the column's type {t}")
    };
    Ok(match t {
        ArrowType::Boolean => Arc::new(
            values
                .map(|v| match v {
                    Kept::Null => Ok(None),
                    Kept::Bool(b) => Ok(Some(b)),
                    other => Err(mixed(&other)),
                })
                .collect::<Result<BooleanArray, String>>()?,
        ),
        ArrowType::Int64 => Arc::new(
            values
                .map(|v| match v {
                    Kept::Null => Ok(None),
                    Kept::Int(i) => Ok(Some(i)),
                    other => Err(mixed(&other)),
                })
                .collect::<Result<Int64Array, String>>()?,
        ),
        ArrowType::Float64 => Arc::new(
            values
                .map(|v| match v {
                    Kept::Null => Ok(None),
                    Kept::Float(x) => Ok(Some(x)),
                    Kept::Int(i) => Ok(Some(i as f64)),
                    other => Err(mixed(&other)),
                })
                .collect::<Result<Float64Array, String>>()?,
        ),
        _ => Arc::new(
            values
                .map(|v| match v {
                    Kept::Null => None,
                    other => Some(other.text()),
                })
                .collect::<StringArray>(),
        ),
    })
}

impl<W: Write + Send> RowWriter for ParquetWriter<W> {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> Result<(), String> {
        let n = batch.rows.len();
        let k = self.keep.len();
        let column = |c: usize| (0..n).map(move |r| batch.kept[r * k + c].clone());
        if self.writer.is_none() {
            self.kept_types = (0..k).map(|c| kept_type(column(c))).collect();
        }
        let mut fields = vec![Field::new("row", ArrowType::UInt64, false)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(batch.rows.to_vec()))];
        for (c, name) in self.keep.iter().enumerate() {
            let t = &self.kept_types[c];
            fields.push(Field::new(name, t.clone(), true));
            arrays.push(kept_array(t, column(c), name)?);
        }
        for (t, &w) in batch.outputs.iter().zip(batch.widths) {
            let values = tensor_array(t, 0, n * w);
            if w == 1 {
                fields.push(Field::new(t.name(), values.data_type().clone(), false));
                arrays.push(values);
            } else {
                let item = Arc::new(Field::new("item", values.data_type().clone(), false));
                let list = FixedSizeListArray::try_new(item.clone(), w as i32, values, None)
                    .map_err(|e| e.to_string())?;
                fields.push(Field::new(
                    t.name(),
                    ArrowType::FixedSizeList(item, w as i32),
                    false,
                ));
                arrays.push(Arc::new(list));
            }
            if let Some(labels) = self
                .labels
                .as_ref()
                .filter(|l| l.output == t.name() && w == 1)
            {
                let classes: StringArray = (0..n).map(|r| labels.class_of(t.data(), r)).collect();
                fields.push(Field::new("class", ArrowType::Utf8, true));
                arrays.push(Arc::new(classes));
            }
        }
        let schema = Arc::new(Schema::new(fields));
        if self.writer.is_none() {
            self.open(schema.clone())?;
        }
        let record = RecordBatch::try_new(schema, arrays)
            .map_err(|e| format!("cannot write Parquet: {e}"))?;
        self.writer
            .as_mut()
            .expect("opened above")
            .write(&record)
            .map_err(|e| format!("cannot write Parquet: {e}"))
    }

    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}
