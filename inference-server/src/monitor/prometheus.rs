//! The page's figures across every replica, from a Prometheus that scrapes
//! them all (`--prometheus-url`): PromQL over the counters every pod
//! exports, drift as PSI of the summed bin counts of the last 10 minutes
//! against the card's baseline (the same sum a recording rule makes). The
//! replicas are the series of this pod's namespace, model and variant
//! ([`selector`]); when Prometheus has none ready, the page gets this pod's
//! figures and the reason. tests/server/test_monitor_prometheus.py runs it
//! against a real Prometheus.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::drift::{self, FeatureDrift};
use super::summary::{self, ClassFigure, DriftFigures, FeedbackFigures, Summary, TrafficPoint};
use super::timeline::{SLOT_SECONDS, SLOTS};
use super::{ModelMonitor, Task};

/// The window of the drift and traffic figures.
const WINDOW: &str = "10m";

#[derive(Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: HashMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The series of this model's replicas: its namespace (the label a PodMonitor
/// adds), its name and its variant (both on every series the server exports),
/// as the chart's recording rules group them. A canary's figures are its own,
/// and a model of the same name in another namespace is another model.
fn selector(namespace: &str, model: &str, variant: &str) -> String {
    format!(
        "namespace=\"{}\",model=\"{}\",variant=\"{}\"",
        quote(namespace),
        quote(model),
        quote(variant)
    )
}

struct Client<'a> {
    http: &'a reqwest::Client,
    base: String,
}

impl Client<'_> {
    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Vec<Series>, String> {
        let url = url::Url::parse_with_params(&format!("{}/api/v1/{path}", self.base), params)
            .map_err(|e| format!("--prometheus-url: {e}"))?;
        let answer: ApiAnswer = self
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("Prometheus did not answer: {e}"))?
            .json()
            .await
            .map_err(|e| format!("Prometheus answered something else than its API: {e}"))?;
        if answer.status != "success" {
            return Err(format!(
                "Prometheus: {}",
                answer.error.unwrap_or(answer.status)
            ));
        }
        Ok(answer.data.map(|d| d.result).unwrap_or_default())
    }

    async fn query(&self, q: String) -> Result<Vec<Series>, String> {
        self.get("query", &[("query", q)]).await
    }

    async fn scalar(&self, q: String) -> Result<Option<f64>, String> {
        Ok(self.query(q).await?.first().and_then(value))
    }
}

fn value(s: &Series) -> Option<f64> {
    s.value
        .as_ref()
        .and_then(|(_, v)| v.parse().ok())
        .filter(|v: &f64| v.is_finite())
}

/// Every replica's figures; `Err` when Prometheus cannot give them.
pub async fn all_replicas(m: &ModelMonitor, url: &str) -> Result<Summary, String> {
    let c = Client {
        http: &m.monitor.client,
        base: url.trim_end_matches('/').to_string(),
    };
    let id = &m.monitor.identity;
    let sel = selector(&id.namespace, &m.labels.model, &id.variant);
    let replicas = c
        .scalar(format!("count(modelship_model_ready{{{sel}}} == 1)"))
        .await?
        .unwrap_or(0.0) as u64;
    if replicas == 0 {
        // This pod is ready (it serves the page), so Prometheus misses it: zeros would lie.
        return Err(format!(
            "Prometheus has no ready replica of {} ({} variant) in namespace {}: it does not scrape this pod, or its scrape adds no namespace label",
            m.labels.model, id.variant, id.namespace
        ));
    }
    let end = super::id::now_ms() as f64 / 1000.0;
    let range = |q: String| {
        vec![
            ("query", q),
            (
                "start",
                format!("{}", end - (SLOTS as u64 * SLOT_SECONDS) as f64),
            ),
            ("end", format!("{end}")),
            ("step", format!("{SLOT_SECONDS}")),
        ]
    };
    let series = |q: String| async { c.get("query_range", &range(q)).await };
    let requests = series(format!("sum(rate(modelship_requests_total{{{sel}}}[1m]))")).await?;
    let errors = series(format!(
        "sum(rate(modelship_requests_total{{{sel},code!~\"2..|OK\"}}[1m]))"
    ))
    .await?;
    let latency = series(format!(
        "sum(rate(modelship_request_duration_seconds_sum{{{sel}}}[1m])) / sum(rate(modelship_request_duration_seconds_count{{{sel}}}[1m]))"
    ))
    .await?;
    let at = |s: &[Series]| -> HashMap<u64, f64> {
        s.first()
            .map(|s| {
                s.values
                    .iter()
                    .filter_map(|(t, v)| Some((*t as u64, v.parse::<f64>().ok()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (req, err, lat) = (at(&requests), at(&errors), at(&latency));
    let mut times: Vec<u64> = req.keys().copied().collect();
    times.sort();
    let traffic = times
        .into_iter()
        .map(|t| TrafficPoint {
            t,
            requests_per_s: req[&t],
            errors_per_s: err.get(&t).copied().unwrap_or(0.0),
            latency_ms: lat.get(&t).filter(|v| v.is_finite()).map(|s| s * 1000.0),
        })
        .collect();

    let mut classes = Vec::new();
    if let Task::Classifier { classes: names, .. } = &m.task {
        let by_class: HashMap<String, f64> = c
            .query(format!(
                "sum by (class) (modelship_predictions_total{{{sel}}})"
            ))
            .await?
            .iter()
            .filter_map(|s| Some((s.metric.get("class")?.clone(), value(s)?)))
            .collect();
        for (i, name) in names.iter().enumerate() {
            classes.push(ClassFigure {
                class: name.clone(),
                predicted: by_class.get(name).copied().unwrap_or(0.0),
                prior: summary::prior(m, i),
            });
        }
    }
    let rows = c
        .scalar(format!("sum(modelship_feedback_rows_total{{{sel}}})"))
        .await?
        .unwrap_or(0.0);
    let correct = c
        .scalar(format!("sum(modelship_feedback_correct_total{{{sel}}})"))
        .await?
        .unwrap_or(0.0);
    let abs_sum = c
        .scalar(format!("sum(modelship_abs_error_sum{{{sel}}})"))
        .await?;
    let abs_n = c
        .scalar(format!("sum(modelship_abs_error_count{{{sel}}})"))
        .await?;
    let items = c
        .query(format!(
            "sum by (result) (modelship_feedback_total{{{sel}}})"
        ))
        .await?
        .iter()
        .filter_map(|s| Some((s.metric.get("result")?.clone(), value(s)?)))
        .collect();
    let feedback = FeedbackFigures {
        rows,
        correct,
        accuracy: (rows > 0.0).then(|| correct / rows),
        abs_error_mean: match (abs_sum, abs_n) {
            (Some(s), Some(n)) if n > 0.0 => Some(s / n),
            _ => None,
        },
        items,
    };

    let mut drift_figures = DriftFigures::of(m);
    if let Ok(d) = &m.drift {
        let bins = c
            .query(format!(
                "sum by (feature, bin) (increase(modelship_drift_inputs_total{{{sel}}}[{WINDOW}]))"
            ))
            .await?;
        let mut counts: HashMap<(String, usize), f64> = HashMap::new();
        for s in &bins {
            if let (Some(f), Some(b), Some(v)) = (
                s.metric.get("feature"),
                s.metric.get("bin").and_then(|b| b.parse().ok()),
                value(s),
            ) {
                counts.insert((f.clone(), b), v);
            }
        }
        let mut window_rows = 0.0f64;
        drift_figures.features = d
            .baseline()
            .map(|(name, proportions)| {
                let observed: Vec<u64> = (0..proportions.len())
                    .map(|b| {
                        counts
                            .get(&(name.to_string(), b))
                            .copied()
                            .unwrap_or(0.0)
                            .round() as u64
                    })
                    .collect();
                let n: u64 = observed.iter().sum();
                window_rows = window_rows.max(n as f64);
                let psi = (n as usize >= drift::MIN_ROWS)
                    .then(|| drift::psi(&observed, proportions))
                    .flatten();
                FeatureDrift {
                    name: name.to_string(),
                    psi,
                    status: psi.map(drift::status),
                }
            })
            .collect();
        drift_figures.window_rows = window_rows as usize;
        drift_figures.window_size = 0;
        drift_figures.classes = None;
    }
    Ok(Summary {
        model: m.labels.model.clone(),
        version: m.ctx.version.clone(),
        task: m.task.name(),
        scope: "all replicas",
        scope_note: format!(
            "These figures cover all {replicas} ready {} replicas of {} in namespace {}, from Prometheus; drift is over the inputs of the last {WINDOW}.",
            id.variant, m.labels.model, id.namespace
        ),
        replicas: Some(replicas),
        traffic,
        classes,
        feedback,
        drift: drift_figures,
    })
}

#[cfg(test)]
mod tests {
    use super::selector;

    #[test]
    fn selector_names_namespace_model_and_variant_quoted() {
        assert_eq!(
            selector("ml", "ir\"is\\", "canary"),
            r#"namespace="ml",model="ir\"is\\",variant="canary""#
        );
    }
}
