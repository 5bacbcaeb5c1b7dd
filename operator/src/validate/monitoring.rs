//! `spec.monitoring`: the payload log's sink, mode and sample rate, the feedback window and
//! the page's Prometheus, checked with the CRD's CEL rules again and their defaults resolved.

use std::time::Duration;

use super::Rules;
use crate::crd::{
    MAX_FEEDBACK_WINDOW, MonitoringSpec, PayloadLogMode, PayloadLogSpec, PayloadLogStatus,
};

/// A checked `spec.monitoring`.
#[derive(Clone, Debug, PartialEq)]
pub struct Monitoring {
    pub payload_log: Option<PayloadLog>,
    /// `spec.monitoring.feedback.window` as written (the server parses the same syntax);
    /// `None` leaves the server's default.
    pub feedback_window: Option<String>,
    pub prometheus_url: Option<String>,
}

impl Monitoring {
    /// `status.payloadLog`: what the pods of this spec log, and where.
    pub fn status(&self) -> PayloadLogStatus {
        match &self.payload_log {
            Some(log) => PayloadLogStatus {
                enabled: true,
                sink: Some(log.sink()),
                mode: Some(log.mode),
                sample_rate: Some(log.sample_rate),
            },
            None => PayloadLogStatus::default(),
        }
    }
}

/// A checked `spec.monitoring.payloadLog`, its defaults resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct PayloadLog {
    pub url: String,
    pub mode: PayloadLogMode,
    /// 0 to 1.
    pub sample_rate: f64,
    /// 1 to 10000; `None` leaves the server's default.
    pub http_batch: Option<u32>,
    /// Secret whose keys the server container gets as environment variables.
    pub credentials_secret: Option<String>,
}

impl PayloadLog {
    /// The sink as the status shows it: the URL without its query (which may carry a token).
    pub fn sink(&self) -> String {
        self.url.split(['?', '#']).next().unwrap_or_default().into()
    }
}

/// `spec.monitoring`: `None` when absent or broken (the broken rules are in `rules`).
pub(super) fn monitoring(spec: Option<&MonitoringSpec>, rules: &mut Rules) -> Option<Monitoring> {
    let spec = spec?;
    let before = rules.0.len();
    let payload_log = spec.payload_log.as_ref().map(|p| payload_log(p, rules));
    let feedback_window = spec.feedback.as_ref().and_then(|f| f.window.clone());
    if let Some(window) = &feedback_window {
        match parse_window(window) {
            None => rules.fail(
                "spec.monitoring.feedback.window",
                format!("must be a duration like 90s, 15m or 2h (is {window:?})"),
            ),
            Some(d) if d > parse_window(MAX_FEEDBACK_WINDOW).unwrap_or_default() => rules.fail(
                "spec.monitoring.feedback.window",
                format!("must be at most {MAX_FEEDBACK_WINDOW} (is {window:?})"),
            ),
            Some(_) => {}
        }
    }
    if let Some(url) = &spec.prometheus_url
        && !is_http_url(url, false)
    {
        rules.fail(
            "spec.monitoring.prometheusURL",
            format!(
                "must be an http:// or https:// URL without credentials, query or fragment (is {url:?})"
            ),
        );
    }
    (rules.0.len() == before).then(|| Monitoring {
        payload_log,
        feedback_window,
        prometheus_url: spec.prometheus_url.clone(),
    })
}

fn payload_log(spec: &PayloadLogSpec, rules: &mut Rules) -> PayloadLog {
    let url = &spec.url;
    if !(is_http_url(url, true) || is_s3_url(url)) {
        rules.fail(
            "spec.monitoring.payloadLog.url",
            format!(
                "must be http://HOST/..., https://HOST/... or s3://BUCKET/PREFIX, without credentials (use credentialsSecretRef) (is {url:?})"
            ),
        );
    }
    let sample_rate = spec.sample_rate.unwrap_or(1.0);
    // `contains` is false for NaN, so a NaN is refused too.
    if !(0.0..=1.0).contains(&sample_rate) {
        rules.fail(
            "spec.monitoring.payloadLog.sampleRate",
            format!("must be between 0 and 1 (is {sample_rate})"),
        );
    }
    if let Some(n) = spec.http_batch
        && !(1..=10_000).contains(&n)
    {
        rules.fail(
            "spec.monitoring.payloadLog.httpBatch",
            format!("must be between 1 and 10000 (is {n})"),
        );
    }
    PayloadLog {
        url: url.clone(),
        mode: spec.mode.unwrap_or_default(),
        sample_rate,
        http_batch: spec.http_batch,
        credentials_secret: spec.credentials_secret_ref.as_ref().map(|s| s.name.clone()),
    }
}

/// `http(s)://HOST[/PATH]`, no user info; a query only where `query_ok`; never a fragment.
fn is_http_url(url: &str, query_ok: bool) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !host.is_empty()
        && !host.contains('@')
        && !rest.contains('#')
        && (query_ok || !rest.contains('?'))
}

/// `s3://BUCKET[/PREFIX]` with a valid bucket name (3 to 63 of `a-z0-9.-`).
fn is_s3_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("s3://") else {
        return false;
    };
    let bucket = rest.split('/').next().unwrap_or_default();
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && edge_ok(bucket.chars().next())
        && edge_ok(bucket.chars().last())
        && !rest.contains('#')
}

/// `90s`, `15m`, `2h`: a positive whole number and one unit.
fn parse_window(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.starts_with('0') || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::crd::ModelDeployment;
    use crate::validate::validate;

    fn check(monitoring_yaml: &str) -> Result<Option<Monitoring>, Vec<(String, String)>> {
        let md: ModelDeployment = serde_yaml::from_str(&format!(
            "apiVersion: modelship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {{name: iris, namespace: ml}}\nspec:\n  model: {{uri: builtin://iris}}\n  monitoring:\n{monitoring_yaml}"
        ))
        .unwrap();
        validate(&md, &Config::default())
            .map(|v| v.monitoring)
            .map_err(|e| e.0.into_iter().map(|f| (f.field, f.rule)).collect())
    }

    #[test]
    fn defaults_are_every_inference_requests_and_responses() {
        let m = check("    payloadLog: {url: 'http://receiver.ml.svc/'}\n")
            .unwrap()
            .unwrap();
        let log = m.payload_log.unwrap();
        assert_eq!(log.mode, PayloadLogMode::All);
        assert_eq!(log.sample_rate, 1.0);
        assert_eq!(log.http_batch, None, "the server's default");
        assert_eq!((m.feedback_window, m.prometheus_url), (None, None));
    }

    #[test]
    fn every_setting_is_kept() {
        let m = check(concat!(
            "    payloadLog: {url: 's3://logs.bucket/iris/', mode: response, sampleRate: 0.25, httpBatch: 1,\n",
            "      credentialsSecretRef: {name: s3-creds}}\n",
            "    feedback: {window: 2h}\n",
            "    prometheusURL: http://prometheus.monitoring.svc:9090\n",
        ))
        .unwrap()
        .unwrap();
        let log = m.payload_log.unwrap();
        assert_eq!(log.url, "s3://logs.bucket/iris/");
        assert_eq!(log.mode, PayloadLogMode::Response);
        assert_eq!(log.sample_rate, 0.25);
        assert_eq!(log.http_batch, Some(1));
        assert_eq!(log.credentials_secret.as_deref(), Some("s3-creds"));
        assert_eq!(m.feedback_window.as_deref(), Some("2h"));
        assert_eq!(
            m.prometheus_url.as_deref(),
            Some("http://prometheus.monitoring.svc:9090")
        );
    }

    #[test]
    fn broken_settings_are_named_by_field() {
        for (yaml, field, says) in [
            (
                "    payloadLog: {url: 'http://x/', sampleRate: 1.5}\n",
                "spec.monitoring.payloadLog.sampleRate",
                "between 0 and 1",
            ),
            (
                "    payloadLog: {url: 'http://x/', sampleRate: -0.1}\n",
                "spec.monitoring.payloadLog.sampleRate",
                "between 0 and 1",
            ),
            (
                "    payloadLog: {url: 'http://x/', httpBatch: 0}\n",
                "spec.monitoring.payloadLog.httpBatch",
                "between 1 and 10000",
            ),
            (
                "    payloadLog: {url: 'http://x/', httpBatch: 10001}\n",
                "spec.monitoring.payloadLog.httpBatch",
                "between 1 and 10000",
            ),
            (
                "    payloadLog: {url: 'ftp://x/'}\n",
                "spec.monitoring.payloadLog.url",
                "s3://BUCKET/PREFIX",
            ),
            (
                "    payloadLog: {url: 'file:///tmp/log'}\n",
                "spec.monitoring.payloadLog.url",
                "https://HOST",
            ),
            (
                "    payloadLog: {url: 'https://user:secret@x/'}\n",
                "spec.monitoring.payloadLog.url",
                "credentialsSecretRef",
            ),
            (
                "    payloadLog: {url: 's3://Bad_Bucket/x'}\n",
                "spec.monitoring.payloadLog.url",
                "s3://BUCKET",
            ),
            (
                "    feedback: {window: 15 minutes}\n",
                "spec.monitoring.feedback.window",
                "like 90s, 15m or 2h",
            ),
            (
                "    feedback: {window: 25h}\n",
                "spec.monitoring.feedback.window",
                "at most 24h",
            ),
            (
                "    prometheusURL: 'prometheus:9090'\n",
                "spec.monitoring.prometheusURL",
                "http:// or https://",
            ),
        ] {
            let errors = check(yaml).unwrap_err();
            assert!(
                errors
                    .iter()
                    .any(|(f, rule)| f == field && rule.contains(says)),
                "{yaml}: {errors:?}"
            );
        }
    }

    #[test]
    fn the_sink_in_the_status_leaves_the_query_out() {
        let m = check("    payloadLog: {url: 'https://hooks.example/ingest?token=abc'}\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            m.payload_log.unwrap().sink(),
            "https://hooks.example/ingest"
        );
    }

    #[test]
    fn the_status_says_whether_payloads_are_logged() {
        let on = check("    payloadLog: {url: 'http://r/?k=1', mode: request, sampleRate: 0.5}\n")
            .unwrap()
            .unwrap()
            .status();
        assert_eq!(
            on,
            PayloadLogStatus {
                enabled: true,
                sink: Some("http://r/".into()),
                mode: Some(PayloadLogMode::Request),
                sample_rate: Some(0.5),
            }
        );
        let off = check("    feedback: {window: 5m}\n")
            .unwrap()
            .unwrap()
            .status();
        assert_eq!(off, PayloadLogStatus::default());
        assert!(!off.enabled);
    }

    #[test]
    fn no_monitoring_is_none() {
        let md: ModelDeployment = serde_yaml::from_str(
            "apiVersion: modelship.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: iris, namespace: ml}\nspec:\n  model: {uri: builtin://iris}\n",
        )
        .unwrap();
        assert_eq!(validate(&md, &Config::default()).unwrap().monitoring, None);
    }
}
