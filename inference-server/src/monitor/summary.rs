//! The figures of the page's "How it is doing" panel
//! (`GET /v2/models/{name}/monitor`): traffic over the last minutes, class
//! mix, accuracy from feedback, drift per feature. [`pod`] makes them from
//! this pod's own counters; `prometheus::all_replicas` from every replica's.

use serde::Serialize;

use super::drift::{self, DriftSummary, FeatureDrift};
use super::timeline::SLOT_SECONDS;
use super::{ModelMonitor, Task};

#[derive(Debug, Serialize)]
pub struct Summary {
    pub model: String,
    pub version: Option<String>,
    pub task: &'static str,
    /// `pod` or `all replicas`.
    pub scope: &'static str,
    /// Why the figures have this scope, in words.
    pub scope_note: String,
    pub replicas: Option<u64>,
    pub traffic: Vec<TrafficPoint>,
    pub classes: Vec<ClassFigure>,
    pub feedback: FeedbackFigures,
    pub drift: DriftFigures,
}

#[derive(Debug, Serialize)]
pub struct TrafficPoint {
    /// Unix seconds.
    pub t: u64,
    pub requests_per_s: f64,
    pub errors_per_s: f64,
    pub latency_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ClassFigure {
    pub class: String,
    pub predicted: f64,
    pub prior: Option<f64>,
}

#[derive(Debug, Serialize, Default)]
pub struct FeedbackFigures {
    pub rows: f64,
    pub correct: f64,
    pub accuracy: Option<f64>,
    pub abs_error_mean: Option<f64>,
    pub items: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
pub struct DriftFigures {
    pub available: bool,
    /// Why there are no drift figures.
    pub reason: Option<String>,
    pub window_rows: usize,
    pub window_size: usize,
    pub features: Vec<FeatureDrift>,
    pub classes: Option<FeatureDrift>,
    pub watch: f64,
    pub drifted: f64,
}

impl DriftFigures {
    pub fn of(m: &ModelMonitor) -> DriftFigures {
        match &m.drift {
            Ok(d) => DriftFigures::from_summary(d.summary()),
            Err(why) => DriftFigures {
                available: false,
                reason: Some(why.clone()),
                window_rows: 0,
                window_size: 0,
                features: Vec::new(),
                classes: None,
                watch: drift::WATCH,
                drifted: drift::DRIFTED,
            },
        }
    }

    fn from_summary(s: DriftSummary) -> DriftFigures {
        DriftFigures {
            available: true,
            reason: None,
            window_rows: s.window_rows,
            window_size: s.window_size,
            features: s.features,
            classes: s.classes,
            watch: drift::WATCH,
            drifted: drift::DRIFTED,
        }
    }
}

/// The prior of class `i`, from the card's baseline.
pub fn prior(m: &ModelMonitor, i: usize) -> Option<f64> {
    let Ok(d) = &m.drift else { return None };
    d.prior().get(i).copied()
}

/// This pod's figures.
pub fn pod(m: &ModelMonitor) -> Summary {
    let stats = m.stats();
    let classes = match &m.task {
        Task::Classifier {
            classes,
            predictions,
            ..
        } => classes
            .iter()
            .zip(predictions)
            .enumerate()
            .map(|(i, (c, n))| ClassFigure {
                class: c.clone(),
                predicted: n.get() as f64,
                prior: prior(m, i),
            })
            .collect(),
        _ => Vec::new(),
    };
    let traffic = m
        .timeline
        .points()
        .into_iter()
        .map(|p| TrafficPoint {
            t: p.t,
            requests_per_s: (p.ok + p.errors) as f64 / SLOT_SECONDS as f64,
            errors_per_s: p.errors as f64 / SLOT_SECONDS as f64,
            latency_ms: p.latency_mean.map(|s| s * 1000.0),
        })
        .collect();
    Summary {
        model: m.labels.model.clone(),
        version: m.ctx.version.clone(),
        task: m.task.name(),
        scope: "pod",
        scope_note: format!(
            "These figures are this pod's ({}) only: the server was given no --prometheus-url.",
            m.monitor.identity.pod
        ),
        replicas: None,
        traffic,
        classes,
        feedback: FeedbackFigures {
            rows: stats.rows as f64,
            correct: stats.correct as f64,
            accuracy: (stats.rows > 0).then(|| stats.correct as f64 / stats.rows as f64),
            abs_error_mean: (stats.abs_error_rows > 0)
                .then(|| stats.abs_error_sum / stats.abs_error_rows as f64),
            items: stats
                .items
                .iter()
                .map(|(k, v)| (k.to_string(), *v as f64))
                .collect(),
        },
        drift: DriftFigures::of(m),
    }
}
