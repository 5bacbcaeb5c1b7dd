//! Scoring feedback: reading truths (class index or card label, or a
//! number), finding what was answered (the item's own `predicted`, else the
//! store by id), and counting: confusion, accuracy rows, absolute errors.

use std::time::SystemTime;

use super::event::{Body, Kind};
use super::feedback::{Answer, Found, Item, ItemError, Outcome, Predicted, Value1};
use super::{ModelMonitor, Task, id};
use crate::metrics::{ConfusionLabels, FeedbackLabels};

impl ModelMonitor {
    /// A truth or prediction as a class index, or why not.
    fn class_of(&self, v: &Value1) -> Result<u32, String> {
        let Task::Classifier { classes, .. } = &self.task else {
            return Err("not a classifier".into());
        };
        match v {
            Value1::Number(n) if n.fract() == 0.0 && *n >= 0.0 && (*n as usize) < classes.len() => {
                Ok(*n as u32)
            }
            Value1::Number(n) => Err(format!(
                "{n} is not a class index (0 to {})",
                classes.len().saturating_sub(1)
            )),
            Value1::Label(s) => classes
                .iter()
                .position(|c| c == s)
                .map(|i| i as u32)
                .ok_or_else(|| {
                    format!(
                        "{s:?} is not a class label of the card ({})",
                        classes.join(", ")
                    )
                }),
        }
    }

    fn convert(&self, values: &[Value1], field: &str) -> Result<Predicted, String> {
        let at = |i: usize, e: String| format!("{field}[{i}]: {e}");
        match &self.task {
            Task::Classifier { .. } => values
                .iter()
                .enumerate()
                .map(|(i, v)| self.class_of(v).map_err(|e| at(i, e)))
                .collect::<Result<_, _>>()
                .map(Predicted::Classes),
            Task::Regressor { .. } => values
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value1::Number(n) => Ok(*n),
                    Value1::Label(_) => Err(at(i, "a regressor's value is a number".into())),
                })
                .collect::<Result<_, _>>()
                .map(Predicted::Values),
            Task::Unknown => Err(format!(
                "{field}: this model has neither a label output nor a single float output, so feedback cannot be scored"
            )),
        }
    }

    /// Counts feedback items here (the route forwards those another pod owns).
    pub fn feedback(&self, items: &[Item]) -> Answer {
        let mut answer = Answer::default();
        let mut logged = Vec::new();
        for item in items {
            let outcome = match self.count(item) {
                Ok(o) => o,
                Err(e) => {
                    answer
                        .errors
                        .push(serde_json::to_value(&e).expect("serializes"));
                    Outcome::Invalid
                }
            };
            answer.add(outcome, 1);
            self.families()
                .feedback
                .get_or_create(&FeedbackLabels {
                    model: self.labels.model.clone(),
                    version: self.labels.version.clone(),
                    result: outcome.label(),
                })
                .inc();
            *self
                .stats
                .lock()
                .expect("stats lock")
                .items
                .entry(outcome.label())
                .or_default() += 1;
            let mut raw = item.raw.clone();
            raw["result"] = serde_json::Value::String(outcome.label().into());
            logged.push(raw);
        }
        if let Some(log) = &self.monitor.log {
            let body = serde_json::json!({
                "model_name": self.ctx.model,
                "model_version": self.ctx.version,
                "items": logged,
            });
            log.send(self.event(
                Kind::Feedback,
                uuid::Uuid::new_v4().to_string(),
                None,
                SystemTime::now(),
                Body::Json(body),
            ));
        }
        answer
    }

    /// Counts `n` items with `outcome` that were not counted here (unreachable pods).
    pub fn count_outcome(&self, outcome: Outcome, n: u64) {
        self.families()
            .feedback
            .get_or_create(&FeedbackLabels {
                model: self.labels.model.clone(),
                version: self.labels.version.clone(),
                result: outcome.label(),
            })
            .inc_by(n);
        *self
            .stats
            .lock()
            .expect("stats lock")
            .items
            .entry(outcome.label())
            .or_default() += n;
    }

    fn count(&self, item: &Item) -> Result<Outcome, ItemError> {
        let err = |field: String, message: String| ItemError {
            item: item.index,
            field,
            message,
        };
        let at = format!("items[{}]", item.index);
        let truth = self
            .convert(&item.truth, &format!("{at}.truth"))
            .map_err(|m| err(format!("{at}.truth"), m))?;
        let sent = match &item.predicted {
            Some(p) => Some(
                self.convert(p, &format!("{at}.predicted"))
                    .map_err(|m| err(format!("{at}.predicted"), m))?,
            ),
            None => None,
        };
        let now = id::now_ms();
        let found = item.id.as_ref().map(|id| {
            (
                id,
                self.store
                    .lock()
                    .expect("feedback store lock")
                    .take(id, now),
            )
        });
        let predicted = match (sent, found) {
            (Some(p), _) => p,
            (None, Some((_, Found::Answer(p)))) => p,
            (None, Some((_, Found::Duplicate))) => return Ok(Outcome::Duplicate),
            (None, Some((_, Found::Expired))) => return Ok(Outcome::Expired),
            (None, Some((_, Found::Unknown))) | (None, None) => return Ok(Outcome::Unknown),
        };
        if predicted.rows() != truth.rows() {
            if let Some(id) = &item.id {
                self.store.lock().expect("feedback store lock").release(id);
            }
            return Err(err(
                format!("{at}.truth"),
                format!(
                    "{} truths for an inference of {} rows",
                    truth.rows(),
                    predicted.rows()
                ),
            ));
        }
        self.score(&truth, &predicted);
        Ok(Outcome::Counted)
    }

    fn score(&self, truth: &Predicted, predicted: &Predicted) {
        let m = self.families();
        let mut stats = self.stats.lock().expect("stats lock");
        match (truth, predicted) {
            (Predicted::Classes(t), Predicted::Classes(p)) => {
                let rows = m.feedback_rows.get_or_create(&self.labels).clone();
                let correct = m.feedback_correct.get_or_create(&self.labels).clone();
                for (&t, &p) in t.iter().zip(p) {
                    m.confusion
                        .get_or_create(&ConfusionLabels {
                            model: self.labels.model.clone(),
                            version: self.labels.version.clone(),
                            truth: self.task.class_name(t),
                            predicted: self.task.class_name(p),
                        })
                        .inc();
                    rows.inc();
                    stats.rows += 1;
                    if t == p {
                        correct.inc();
                        stats.correct += 1;
                    }
                }
            }
            (Predicted::Values(t), Predicted::Values(p)) => {
                let hist = m.abs_error.get_or_create(&self.labels).clone();
                for (t, p) in t.iter().zip(p) {
                    let e = (t - p).abs();
                    hist.observe(e);
                    stats.abs_error_sum += e;
                    stats.abs_error_rows += 1;
                }
            }
            _ => {}
        }
    }
}
