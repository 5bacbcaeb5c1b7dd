//! Parquet in, through the `parquet` crate's Arrow reader (the writer is
//! `parquet_write.rs`).
//!
//! A shard reads the row groups that **start** in its byte slice (a row
//! group starts at its first column chunk's first page), only the columns
//! it needs (the features and `--keep-columns`). Features come by the model
//! card's names when the file has them all, else the numeric columns that
//! are not kept, in order. A local file is read in place; an S3 object by
//! ranged GETs: the footer, then each row group's needed column chunks,
//! fetched whole (memory holds one row group's compressed chunks of those
//! columns, so write row groups of a few hundred thousand rows, not millions).

use std::fs::File;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType as ArrowType;
use bytes::{Buf, Bytes};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::reader::{ChunkReader, Length};

use super::layout::Layout;
use super::read::{Kept, RowReader, RowSink, Stop};
use super::storage::Store;

/// Reads the row groups of one Parquet object that start in `start..end`.
pub struct ParquetReader {
    store: Store,
    key: String,
    size: u64,
    name: String,
    start: u64,
    end: u64,
}

impl ParquetReader {
    pub fn new(store: Store, key: String, size: u64, name: String, start: u64, end: u64) -> Self {
        ParquetReader {
            store,
            key,
            size,
            name,
            start,
            end,
        }
    }
}

impl RowReader for ParquetReader {
    fn read_rows(self: Box<Self>, layout: &Layout, sink: &mut RowSink) -> Result<bool, Stop> {
        if self.store.is_local() {
            let file =
                File::open(&self.key).map_err(|e| Stop::Fatal(format!("{}: {e}", self.name)))?;
            read_parquet(LocalFile(Arc::new(file)), &self, layout, sink, &|_| Ok(()))?;
        } else {
            let remote = Remote(Arc::new(RemoteObject {
                store: self.store.clone(),
                key: self.key.clone(),
                size: self.size,
                cache: Mutex::new(Vec::new()),
            }));
            let prefetch = |ranges: &[(u64, u64)]| remote.prefetch(ranges);
            read_parquet(remote.clone(), &self, layout, sink, &prefetch)?;
        }
        Ok(false)
    }
}

fn invalid(name: &str, e: impl std::fmt::Display) -> Stop {
    Stop::Invalid(format!("{name}: not a readable Parquet file: {e}"))
}

/// Told the `(offset, length)` of a row group's needed column chunks before it is read.
type Prefetch<'a> = dyn Fn(&[(u64, u64)]) -> Result<(), Stop> + 'a;

/// Reads `reader`'s row groups owned by `piece`'s slice; `prefetch` is told
/// the byte ranges of a row group's needed column chunks before it is read.
fn read_parquet<R: ChunkReader + Clone + 'static>(
    reader: R,
    piece: &ParquetReader,
    layout: &Layout,
    sink: &mut RowSink,
    prefetch: &Prefetch<'_>,
) -> Result<(), Stop> {
    let name = piece.name.as_str();
    let meta = ArrowReaderMetadata::load(&reader, ArrowReaderOptions::new())
        .map_err(|e| invalid(name, e))?;
    let schema = meta.schema().clone();
    let fields = schema.fields();
    let index_of = |n: &str| fields.iter().position(|f| f.name() == n);
    let keep: Vec<usize> = sink
        .keep
        .iter()
        .map(|k| {
            index_of(k).ok_or_else(|| {
                Stop::Invalid(format!(
                    "{name}: --keep-columns {k:?} is not a column of the file"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let numeric = |i: &usize| is_numeric(fields[*i].data_type());
    let by_name: Option<Vec<usize>> = if layout.features.is_empty() {
        None
    } else {
        layout.features.iter().map(|f| index_of(f)).collect()
    };
    let features = match by_name {
        Some(idx) => idx,
        None => {
            let rest: Vec<usize> = (0..fields.len())
                .filter(|i| !keep.contains(i) && numeric(i))
                .collect();
            if rest.len() != layout.width {
                return Err(Stop::Invalid(format!(
                    "{name}: the file has {} numeric columns besides the kept ones, the model takes {} features{}",
                    rest.len(),
                    layout.width,
                    if layout.features.is_empty() {
                        String::new()
                    } else {
                        format!(" (or columns named {})", layout.features.join(", "))
                    }
                )));
            }
            rest
        }
    };
    if let Some(&bad) = features.iter().find(|i| !numeric(i)) {
        return Err(Stop::Invalid(format!(
            "{name}: column {:?} is {}, not a number",
            fields[bad].name(),
            fields[bad].data_type()
        )));
    }
    let mut roots: Vec<usize> = features.iter().chain(&keep).copied().collect();
    roots.sort_unstable();
    roots.dedup();
    let position = |i: usize| roots.binary_search(&i).expect("projected");
    let metadata = meta.metadata().clone();
    let root_names: Vec<&str> = roots.iter().map(|&i| fields[i].name().as_str()).collect();
    let mut first_row = 0u64;
    let mut values = Vec::with_capacity(layout.width);
    let mut kept = Vec::with_capacity(keep.len());
    for (g, group) in metadata.row_groups().iter().enumerate() {
        let rows_in_group = group.num_rows() as u64;
        let group_start = group
            .columns()
            .iter()
            .map(|c| c.byte_range().0)
            .min()
            .unwrap_or(0);
        let base = first_row;
        first_row += rows_in_group;
        if group_start < piece.start || group_start >= piece.end {
            continue;
        }
        let ranges: Vec<(u64, u64)> = group
            .columns()
            .iter()
            .filter(|c| {
                c.column_path()
                    .parts()
                    .first()
                    .is_some_and(|p| root_names.contains(&p.as_str()))
            })
            .map(|c| c.byte_range())
            .collect();
        prefetch(&ranges)?;
        let mask = ProjectionMask::roots(
            metadata.file_metadata().schema_descr(),
            roots.iter().copied(),
        );
        let batches =
            ParquetRecordBatchReaderBuilder::new_with_metadata(reader.clone(), meta.clone())
                .with_row_groups(vec![g])
                .with_projection(mask)
                .with_batch_size(8192)
                .build()
                .map_err(|e| invalid(name, e))?;
        let mut row = base;
        for batch in batches {
            let batch = batch.map_err(|e| {
                let why = format!("{name}: cannot read row group {g}: {e}");
                // A codec this build leaves out: no retry can help.
                if why.contains("Disabled feature at compile time") {
                    Stop::Invalid(format!(
                        "{why} (this build reads uncompressed and Snappy Parquet)"
                    ))
                } else {
                    Stop::Fatal(why)
                }
            })?;
            if sink.cancelled() {
                return Err(Stop::Cancelled);
            }
            let cols: Vec<Vec<Option<f64>>> = features
                .iter()
                .map(|&i| column_f64(batch.column(position(i))))
                .collect();
            let kept_cols: Vec<&ArrayRef> =
                keep.iter().map(|&i| batch.column(position(i))).collect();
            for r in 0..batch.num_rows() {
                values.clear();
                let mut problem = None;
                for (j, col) in cols.iter().enumerate() {
                    let column = fields[features[j]].name();
                    match col[r] {
                        None => {
                            problem = Some(format!("column {column:?} is null"));
                            break;
                        }
                        Some(x) => match layout.check(x) {
                            Ok(()) => values.push(x),
                            Err(why) => {
                                problem = Some(format!("column {column:?}: {why}"));
                                break;
                            }
                        },
                    }
                }
                match problem {
                    Some(why) => sink.bad(None, row, &why)?,
                    None => {
                        kept.extend(kept_cols.iter().map(|c| kept_at(c, r)));
                        sink.good(row, &values, &mut kept)?;
                    }
                }
                row += 1;
            }
        }
    }
    Ok(())
}

fn is_numeric(t: &ArrowType) -> bool {
    t.is_numeric() || *t == ArrowType::Boolean
}

/// A numeric (or boolean) column's values as `f64`, `None` for nulls.
fn column_f64(col: &ArrayRef) -> Vec<Option<f64>> {
    macro_rules! prim {
        ($t:ty) => {
            col.as_primitive::<$t>()
                .iter()
                .map(|v| v.map(|x| x as f64))
                .collect()
        };
    }
    match col.data_type() {
        ArrowType::Float64 => prim!(Float64Type),
        ArrowType::Float32 => prim!(Float32Type),
        ArrowType::Float16 => col
            .as_primitive::<Float16Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        ArrowType::Int8 => prim!(Int8Type),
        ArrowType::Int16 => prim!(Int16Type),
        ArrowType::Int32 => prim!(Int32Type),
        ArrowType::Int64 => prim!(Int64Type),
        ArrowType::UInt8 => prim!(UInt8Type),
        ArrowType::UInt16 => prim!(UInt16Type),
        ArrowType::UInt32 => prim!(UInt32Type),
        ArrowType::UInt64 => prim!(UInt64Type),
        ArrowType::Boolean => col
            .as_boolean()
            .iter()
            .map(|v| v.map(|b| f64::from(u8::from(b))))
            .collect(),
        _ => vec![None; col.len()],
    }
}

/// Row `r` of a kept column.
fn kept_at(col: &ArrayRef, r: usize) -> Kept {
    if col.is_null(r) {
        return Kept::Null;
    }
    macro_rules! int {
        ($t:ty) => {
            Kept::Int(col.as_primitive::<$t>().value(r) as i64)
        };
    }
    match col.data_type() {
        ArrowType::Utf8 => Kept::Str(col.as_string::<i32>().value(r).to_string()),
        ArrowType::LargeUtf8 => Kept::Str(col.as_string::<i64>().value(r).to_string()),
        ArrowType::Utf8View => Kept::Str(col.as_string_view().value(r).to_string()),
        ArrowType::Boolean => Kept::Bool(col.as_boolean().value(r)),
        ArrowType::Int8 => int!(Int8Type),
        ArrowType::Int16 => int!(Int16Type),
        ArrowType::Int32 => int!(Int32Type),
        ArrowType::Int64 => int!(Int64Type),
        ArrowType::UInt8 => int!(UInt8Type),
        ArrowType::UInt16 => int!(UInt16Type),
        ArrowType::UInt32 => int!(UInt32Type),
        ArrowType::UInt64 => int!(UInt64Type),
        ArrowType::Float32 => Kept::Float(f64::from(col.as_primitive::<Float32Type>().value(r))),
        ArrowType::Float64 => Kept::Float(col.as_primitive::<Float64Type>().value(r)),
        other => Kept::Str(format!("<{other}>")),
    }
}

/// A local file, shared by the row groups' readers.
#[derive(Clone)]
struct LocalFile(Arc<File>);

impl Length for LocalFile {
    fn len(&self) -> u64 {
        self.0.as_ref().len()
    }
}

impl ChunkReader for LocalFile {
    type T = <File as ChunkReader>::T;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        self.0.as_ref().get_read(start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.0.as_ref().get_bytes(start, length)
    }
}

/// An S3 object read by ranged GETs, with the current row group's chunks cached.
#[derive(Clone)]
struct Remote(Arc<RemoteObject>);

struct RemoteObject {
    store: Store,
    key: String,
    size: u64,
    /// `(offset, bytes)` of the prefetched column chunks.
    cache: Mutex<Vec<(u64, Bytes)>>,
}

impl Remote {
    fn prefetch(&self, ranges: &[(u64, u64)]) -> Result<(), Stop> {
        let mut fetched = Vec::with_capacity(ranges.len());
        // Drop the previous row group's chunks before fetching the next ones.
        self.0.cache.lock().expect("cache lock").clear();
        for &(start, len) in ranges {
            let bytes = self
                .0
                .store
                .read_range(&self.0.key, start, len)
                .map_err(|e| Stop::Fatal(e.to_string()))?;
            fetched.push((start, bytes));
        }
        *self.0.cache.lock().expect("cache lock") = fetched;
        Ok(())
    }

    fn cached(&self, start: u64, len: u64) -> Option<Bytes> {
        let cache = self.0.cache.lock().expect("cache lock");
        cache.iter().find_map(|(at, bytes)| {
            let end = at + bytes.len() as u64;
            (start >= *at && start + len <= end)
                .then(|| bytes.slice((start - at) as usize..(start - at + len) as usize))
        })
    }
}

impl Length for Remote {
    fn len(&self) -> u64 {
        self.0.size
    }
}

impl ChunkReader for Remote {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        // Page headers and the footer: small reads. Served from the cached chunk
        // when there is one, else up to 64 KiB are fetched.
        let cache = self.0.cache.lock().expect("cache lock");
        let hit = cache.iter().find_map(|(at, bytes)| {
            let end = at + bytes.len() as u64;
            (start >= *at && start < end).then(|| bytes.slice((start - at) as usize..))
        });
        drop(cache);
        if let Some(bytes) = hit {
            return Ok(bytes.reader());
        }
        let len = (self.0.size.saturating_sub(start)).min(64 * 1024);
        Ok(self.get_bytes(start, len as usize)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if let Some(bytes) = self.cached(start, length as u64) {
            return Ok(bytes);
        }
        self.0
            .store
            .read_range(&self.0.key, start, length as u64)
            .map_err(|e| {
                parquet::errors::ParquetError::External(Box::new(std::io::Error::other(e.message)))
            })
    }
}
