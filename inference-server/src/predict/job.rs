//! One run of `predict`: what it reads (the input listed and cut by
//! `shard`), where it writes (a file or standard output; or, as a shard of a
//! Job, `part-0000I.<ext>` under an output prefix with its report in
//! `_reports/`), and the last step of a Job, `--write-manifest`.
//!
//! Parts and reports of one run carry its run id (the BatchPrediction's
//! UID). A shard writes its report (`"status": "running"`) before its part
//! and again (`"done"`, with the counts) after it, so every part at a prefix
//! has a report naming its run: a part with no report, or with another run's
//! report, belongs to another run and is refused (`OutputNotEmpty`) unless
//! `--overwrite`, which deletes the other run's parts, reports and manifest.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::layout::Layout;
use super::read::{
    InputFormat, MAX_LISTED_BAD_ROWS, Piece, PieceData, SkippedRow, Stop, stdin_piece,
};
use super::shard::{Shard, plan};
use super::storage::{Location, Object, Store};
use super::write::open_output;
use super::{Failure, FormatWriter, OutputFormat, Reason, ScoreSettings, Summary, score};
use crate::model::ModelCard;
use crate::runtime::Backend;

/// One object (or standard input) to read, and the slice of it that is ours.
pub enum Planned {
    Stdin(InputFormat),
    Object {
        store: Store,
        object: Object,
        format: InputFormat,
        start: u64,
        end: u64,
    },
}

impl Planned {
    /// Opens the piece (a stream from the object's first byte, or random access).
    pub fn open(self) -> Result<Piece, Stop> {
        match self {
            Planned::Stdin(format) => stdin_piece(format).map_err(Stop::Fatal),
            Planned::Object {
                store,
                object,
                format,
                start,
                end,
            } => {
                let name = store.shown(&object.key);
                let data = match format {
                    InputFormat::Parquet => PieceData::Object {
                        store,
                        key: object.key,
                        size: object.size,
                    },
                    _ => PieceData::Stream(
                        store
                            .open(&object.key, 0, object.size)
                            .map_err(|e| Stop::Fatal(e.to_string()))?,
                    ),
                };
                Ok(Piece {
                    name,
                    format,
                    data,
                    start,
                    end,
                })
            }
        }
    }
}

/// Where the scored rows go.
pub enum Output {
    /// A file, or `-` for standard output (one run, no report).
    File(String),
    /// A prefix of parts, one per shard.
    Prefix { location: Location, run_id: String },
}

/// What a run needs once the model is loaded.
pub struct Prepared {
    pub pieces: Vec<Planned>,
    pub output: Output,
    pub shard: Shard,
    /// The input as given, for the report.
    pub input: String,
}

/// The settings of one run, from the command line.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub input: String,
    pub output: String,
    pub input_format: InputFormat,
    pub output_format: OutputFormat,
    pub shard: Option<Shard>,
    pub run_id: Option<String>,
    pub overwrite: bool,
    pub keep_columns: Vec<String>,
}

impl JobSpec {
    /// Whether the output is a prefix of parts: as a shard (`--shard`,
    /// `--run-id`), or when the output is S3, ends in `/` or is a directory.
    pub fn writes_parts(&self) -> bool {
        self.shard.is_some()
            || self.run_id.is_some()
            || self.output.starts_with("s3://")
            || self.output.ends_with('/')
            || std::path::Path::new(&self.output).is_dir()
    }
}

fn storage_failure(e: super::storage::StorageError) -> Failure {
    Failure::new(Reason::Retryable, e.message)
}

/// Whether an object under a listed prefix is hidden (a segment starting with `.` or `_`).
fn hidden(relative: &str) -> bool {
    relative
        .split('/')
        .any(|s| s.starts_with('.') || s.starts_with('_'))
}

/// Lists the input, picks the shard's slices and checks the output prefix.
pub fn prepare(spec: &JobSpec, handle: &Handle) -> Result<Prepared, Failure> {
    let shard = spec.shard.unwrap_or(Shard::WHOLE);
    let pieces = if spec.input == "-" {
        if shard != Shard::WHOLE {
            return Err(Failure::new(
                Reason::Usage,
                "--input - (standard input) cannot be sharded",
            ));
        }
        vec![Planned::Stdin(spec.input_format)]
    } else {
        plan_input(spec, shard, handle)?
    };
    let output = if spec.writes_parts() {
        if spec.output == "-" {
            return Err(Failure::new(
                Reason::Usage,
                "--output must be a prefix (s3://bucket/prefix/ or a directory) with --shard or --run-id",
            ));
        }
        let location =
            Location::parse(&spec.output, handle).map_err(|m| Failure::new(Reason::Usage, m))?;
        let run_id = spec
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        check_output(&location, &run_id, spec.overwrite)?;
        Output::Prefix { location, run_id }
    } else {
        Output::File(spec.output.clone())
    };
    Ok(Prepared {
        pieces,
        output,
        shard,
        input: spec.input.clone(),
    })
}

/// The input's objects in name order and this shard's slices of them.
fn plan_input(spec: &JobSpec, shard: Shard, handle: &Handle) -> Result<Vec<Planned>, Failure> {
    let Location { store, key } =
        Location::parse(&spec.input, handle).map_err(|m| Failure::new(Reason::Usage, m))?;
    let mut objects = match store.head(&key).map_err(storage_failure)? {
        Some(object) => vec![object],
        None => {
            let prefix = if store.is_local() || key.is_empty() || key.ends_with('/') {
                key.clone()
            } else {
                format!("{key}/")
            };
            let mut listed = store.list(&prefix).map_err(storage_failure)?;
            let base = prefix.trim_end_matches('/').len();
            listed.retain(|o| !hidden(o.key.get(base..).unwrap_or("").trim_start_matches('/')));
            listed
        }
    };
    if objects.is_empty() {
        return Err(Failure::new(
            Reason::InputNotFound,
            format!(
                "input {}: no such file, and no files under it",
                store.shown(&key)
            ),
        ));
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    let sizes: Vec<u64> = objects.iter().map(|o| o.size).collect();
    let mut planned = Vec::new();
    for slice in plan(&sizes, shard) {
        let object = objects[slice.object].clone();
        let format = match spec.input_format {
            InputFormat::Auto => match InputFormat::from_name(&object.key) {
                Some(f) => f,
                None => {
                    let head = store
                        .read_range(&object.key, 0, object.size.min(512))
                        .map_err(storage_failure)?;
                    InputFormat::sniff(&head)
                }
            },
            f => f,
        };
        planned.push(Planned::Object {
            store: store.clone(),
            object,
            format,
            start: slice.start,
            end: slice.end,
        });
    }
    Ok(planned)
}

/// `part-0000I.<ext>`.
pub fn part_name(index: u32, format: OutputFormat) -> String {
    format!("part-{index:05}.{}", format.extension())
}

fn report_name(index: u32) -> String {
    format!("_reports/part-{index:05}.json")
}

const MANIFEST: &str = "_manifest.json";

/// What a shard says about itself, beside its part.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub run_id: String,
    pub shard: u32,
    pub shards: u32,
    /// `running` (written before the part), then `done`.
    pub status: String,
    pub part: String,
    pub input: String,
    pub model: ModelInfo,
    pub rows: Rows,
    /// The first skipped rows, with file and line.
    #[serde(default)]
    pub skipped_rows: Vec<SkippedRowRecord>,
    #[serde(default)]
    pub skipped_rows_truncated: bool,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Rows {
    pub scored: u64,
    pub skipped: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModelInfo {
    pub uri: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedRowRecord {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<u64>,
    pub row: u64,
    pub reason: String,
}

impl From<&SkippedRow> for SkippedRowRecord {
    fn from(s: &SkippedRow) -> Self {
        SkippedRowRecord {
            file: s.file.clone(),
            line: s.line,
            row: s.row,
            reason: s.reason.clone(),
        }
    }
}

/// The run id a report or manifest at `key` names, `None` when it has none.
fn run_id_of(store: &Store, key: &str) -> Result<Option<String>, Failure> {
    let Some(bytes) = store.read_optional(key).map_err(storage_failure)? else {
        return Ok(None);
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RunId {
        run_id: Option<String>,
    }
    Ok(serde_json::from_slice::<RunId>(&bytes)
        .ok()
        .and_then(|r| r.run_id))
}

/// Refuses (or, with `overwrite`, deletes) the parts, reports and manifest
/// of other runs under the output prefix.
fn check_output(output: &Location, run_id: &str, overwrite: bool) -> Result<(), Failure> {
    let store = &output.store;
    let listed = store.list(&output.key).map_err(storage_failure)?;
    let base = output.key.trim_end_matches('/').len();
    let mut foreign = Vec::new();
    for object in listed {
        let relative = object.key.get(base..).unwrap_or("").trim_start_matches('/');
        let report = if let Some(stem) = relative
            .strip_prefix("part-")
            .and_then(|r| r.split_once('.'))
            .map(|(s, _)| s)
        {
            if relative.contains('/') {
                continue;
            }
            store.join(&output.key, &format!("_reports/part-{stem}.json"))
        } else if (relative.starts_with("_reports/part-") && relative.ends_with(".json"))
            || relative == MANIFEST
        {
            object.key.clone()
        } else {
            continue;
        };
        if run_id_of(store, &report)?.as_deref() != Some(run_id) {
            foreign.push(object.key);
        }
    }
    if foreign.is_empty() {
        return Ok(());
    }
    if overwrite {
        for key in &foreign {
            store.delete(key).map_err(storage_failure)?;
        }
        eprintln!(
            "predict: --overwrite: removed {} objects of another run",
            foreign.len()
        );
        return Ok(());
    }
    let shown: Vec<String> = foreign.iter().take(3).map(|k| store.shown(k)).collect();
    Err(Failure::new(
        Reason::OutputNotEmpty,
        format!(
            "the output {} holds {} parts, reports or manifests of another run ({}{}); use another prefix, or --overwrite",
            store.shown(&output.key),
            foreign.len(),
            shown.join(", "),
            if foreign.len() > 3 { ", ..." } else { "" }
        ),
    ))
}

/// What a finished shard tells (its termination message).
pub struct Finished {
    pub summary: Summary,
    pub part: Option<String>,
}

/// Runs a prepared job with the loaded model.
pub fn run(
    prepared: Prepared,
    spec: &JobSpec,
    backend: Arc<dyn Backend>,
    card: &ModelCard,
    model: ModelInfo,
    settings: &ScoreSettings,
) -> Result<Finished, Failure> {
    let started = Instant::now();
    let layout = Layout::new(backend.signature().inputs.as_slice(), card)
        .map_err(|m| Failure::new(Reason::ModelLoadFailed, m))?;
    let outputs = &backend.signature().outputs;
    if let Some(clash) = spec
        .keep_columns
        .iter()
        .find(|k| *k == "row" || *k == "class" || outputs.iter().any(|o| &o.name == *k))
    {
        return Err(Failure::new(
            Reason::Usage,
            format!("--keep-columns {clash:?} has the name of an output column"),
        ));
    }
    match prepared.output {
        Output::File(path) => {
            let out = open_output(&path).map_err(|m| Failure::new(Reason::Retryable, m))?;
            let mut writer = FormatWriter::new(
                spec.output_format,
                out,
                &path,
                &spec.keep_columns,
                backend.as_ref(),
                card,
            );
            let summary = score(
                prepared.pieces,
                backend.as_ref(),
                &layout,
                &mut writer,
                settings,
            )?;
            writer
                .into_inner()
                .map_err(|m| Failure::new(Reason::Retryable, m))?;
            Ok(Finished {
                summary,
                part: None,
            })
        }
        Output::Prefix { location, run_id } => {
            let store = &location.store;
            let shard = prepared.shard;
            let part = part_name(shard.index, spec.output_format);
            let mut report = Report {
                run_id: run_id.clone(),
                shard: shard.index,
                shards: shard.count,
                status: "running".to_string(),
                part: part.clone(),
                input: prepared.input.clone(),
                model,
                rows: Rows::default(),
                skipped_rows: Vec::new(),
                skipped_rows_truncated: false,
                seconds: 0.0,
            };
            let report_key = store.join(&location.key, &report_name(shard.index));
            let put_report = |report: &Report| {
                let body = serde_json::to_vec_pretty(report).expect("a report serializes");
                store.put(&report_key, body).map_err(storage_failure)
            };
            put_report(&report)?;
            let part_key = store.join(&location.key, &part);
            let tag = format!(
                "{}-{}",
                shard.index,
                &run_id.chars().take(8).collect::<String>()
            );
            let out = store.create(&part_key, &tag).map_err(storage_failure)?;
            let mut writer = FormatWriter::new(
                spec.output_format,
                out,
                &store.shown(&part_key),
                &spec.keep_columns,
                backend.as_ref(),
                card,
            );
            let summary = score(
                prepared.pieces,
                backend.as_ref(),
                &layout,
                &mut writer,
                settings,
            )?;
            if settings.cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(Stop::Cancelled.into());
            }
            let out = writer
                .into_inner()
                .map_err(|m| Failure::new(Reason::Retryable, m))?;
            out.commit().map_err(storage_failure)?;
            report.status = "done".to_string();
            report.rows = Rows {
                scored: summary.scored,
                skipped: summary.skipped,
            };
            report.skipped_rows = summary.listed.iter().map(SkippedRowRecord::from).collect();
            report.skipped_rows_truncated = summary.skipped > summary.listed.len() as u64;
            report.seconds = started.elapsed().as_secs_f64();
            put_report(&report)?;
            Ok(Finished {
                summary,
                part: Some(part),
            })
        }
    }
}

/// `_manifest.json`: the parts of one run and their totals.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub run_id: String,
    pub shards: u32,
    pub input: String,
    pub model: ModelInfo,
    pub parts: Vec<ManifestPart>,
    pub rows: Rows,
    /// The first skipped rows over all shards.
    pub skipped_rows: Vec<SkippedRowRecord>,
    pub skipped_rows_truncated: bool,
    pub created_unix_seconds: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestPart {
    pub shard: u32,
    pub part: String,
    pub rows: Rows,
}

/// Checks that every shard of the run is done and writes `_manifest.json`.
pub fn write_manifest(
    output: &str,
    shards: u32,
    run_id: &str,
    handle: &Handle,
) -> Result<(String, Manifest), Failure> {
    if shards == 0 {
        return Err(Failure::new(Reason::Usage, "--shards must be at least 1"));
    }
    let location = Location::parse(output, handle).map_err(|m| Failure::new(Reason::Usage, m))?;
    let store = &location.store;
    let mut reports = Vec::new();
    let mut missing = Vec::new();
    for index in 0..shards {
        let key = store.join(&location.key, &report_name(index));
        let report = store
            .read_optional(&key)
            .map_err(storage_failure)?
            .and_then(|bytes| serde_json::from_slice::<Report>(&bytes).ok())
            .filter(|r| r.run_id == run_id && r.status == "done" && r.shards == shards);
        match report {
            Some(r) => reports.push(r),
            None => missing.push(index.to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(Failure::new(
            Reason::Retryable,
            format!(
                "shards {} of run {run_id} have no finished report under {}",
                missing.join(", "),
                store.shown(&location.key)
            ),
        ));
    }
    let mut rows = Rows::default();
    let mut skipped_rows = Vec::new();
    let mut truncated = false;
    for r in &reports {
        rows.scored += r.rows.scored;
        rows.skipped += r.rows.skipped;
        truncated |= r.skipped_rows_truncated;
        for s in &r.skipped_rows {
            if skipped_rows.len() < MAX_LISTED_BAD_ROWS {
                skipped_rows.push(s.clone());
            } else {
                truncated = true;
            }
        }
    }
    let manifest = Manifest {
        run_id: run_id.to_string(),
        shards,
        input: reports[0].input.clone(),
        model: reports[0].model.clone(),
        parts: reports
            .iter()
            .map(|r| ManifestPart {
                shard: r.shard,
                part: r.part.clone(),
                rows: r.rows.clone(),
            })
            .collect(),
        rows,
        skipped_rows,
        skipped_rows_truncated: truncated,
        created_unix_seconds: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let key = store.join(&location.key, MANIFEST);
    let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    store.put(&key, body).map_err(storage_failure)?;
    Ok((store.shown(&key), manifest))
}
