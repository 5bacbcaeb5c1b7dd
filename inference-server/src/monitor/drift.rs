//! Drift against the card's training `baseline`: every input value is
//! counted in its feature's bin (`modelship_drift_inputs_total`, additive
//! across pods), and the pod keeps its last `window` rows to publish its
//! own population stability index per feature and for the predicted class
//! mix. PSI = Σ (a − e)·ln(a / e), each share raised to at least
//! [`EPSILON`]; published once [`MIN_ROWS`] rows are in the window.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

use crate::metrics::{BinLabels, ClassLabels, FeatureLabels, MonitorFamilies, QualityLabels};
use crate::model::Baseline;
use crate::tensor::{Tensor, TensorData};

/// The floor of an observed or expected share in the PSI sum.
pub const EPSILON: f64 = 1e-4;
/// Rows the window needs before the pod publishes a PSI.
pub const MIN_ROWS: usize = 100;
/// PSI below this: stable; up to [`DRIFTED`]: watch; above: drifted.
pub const WATCH: f64 = 0.1;
pub const DRIFTED: f64 = 0.2;

/// The bin of `x`: the number of edges `<= x`.
pub fn bin_of(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|e| *e <= x)
}

/// PSI of observed counts against expected shares; `None` without counts.
pub fn psi(observed: &[u64], expected: &[f64]) -> Option<f64> {
    let n: u64 = observed.iter().sum();
    if n == 0 {
        return None;
    }
    let sum = observed
        .iter()
        .zip(expected)
        .map(|(&c, &e)| {
            let a = (c as f64 / n as f64).max(EPSILON);
            let e = e.max(EPSILON);
            (a - e) * (a / e).ln()
        })
        .sum();
    Some(sum)
}

/// `stable`, `watch` or `drifted`.
pub fn status(psi: f64) -> &'static str {
    if psi > DRIFTED {
        "drifted"
    } else if psi >= WATCH {
        "watch"
    } else {
        "stable"
    }
}

struct Feature {
    name: String,
    edges: Vec<f64>,
    proportions: Vec<f64>,
    counters: Vec<Counter>,
    psi: Gauge<f64, AtomicU64>,
}

struct Window {
    size: usize,
    /// Each row's bin per feature, `features` per row.
    rows: VecDeque<u16>,
    counts: Vec<Vec<u64>>,
    classes: VecDeque<u32>,
    class_counts: Vec<u64>,
}

/// One model's drift state.
pub struct Drift {
    features: Vec<Feature>,
    prior: Vec<f64>,
    class_psi: Gauge<f64, AtomicU64>,
    window: Mutex<Window>,
}

/// One feature (or the class mix) on the page.
#[derive(Debug, Serialize)]
pub struct FeatureDrift {
    pub name: String,
    pub psi: Option<f64>,
    pub status: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct DriftSummary {
    pub window_rows: usize,
    pub window_size: usize,
    pub features: Vec<FeatureDrift>,
    pub classes: Option<FeatureDrift>,
}

impl Drift {
    /// Checks the baseline against the model's `[-1, F]` input and registers
    /// its series; the error says why there are no drift figures.
    pub fn new(
        baseline: &Baseline,
        n_features: usize,
        n_classes: usize,
        window: usize,
        labels: &QualityLabels,
        class_names: &[String],
        m: &MonitorFamilies,
    ) -> Result<Drift, String> {
        if baseline.features.len() != n_features {
            return Err(format!(
                "the card's baseline has {} features, the model's input {n_features}",
                baseline.features.len()
            ));
        }
        let mut features = Vec::new();
        for (i, f) in baseline.features.iter().enumerate() {
            let at = format!("baseline.features[{i}] ({})", f.name);
            if f.proportions.len() != f.edges.len() + 1 {
                return Err(format!(
                    "{at}: {} edges need {} proportions, not {}",
                    f.edges.len(),
                    f.edges.len() + 1,
                    f.proportions.len()
                ));
            }
            if f.edges.iter().any(|e| !e.is_finite()) || f.edges.windows(2).any(|w| w[0] > w[1]) {
                return Err(format!("{at}: edges must be finite and ascending"));
            }
            let sum: f64 = f.proportions.iter().sum();
            if f.proportions.iter().any(|p| !(0.0..=1.0).contains(p)) || (sum - 1.0).abs() > 1e-3 {
                return Err(format!(
                    "{at}: proportions must be shares summing to 1 (sum {sum})"
                ));
            }
            if f.proportions.len() > u16::MAX as usize {
                return Err(format!("{at}: too many bins"));
            }
            let bin_labels = |bin: usize| BinLabels {
                model: labels.model.clone(),
                version: labels.version.clone(),
                feature: f.name.clone(),
                bin: bin.to_string(),
            };
            let counters = (0..f.proportions.len())
                .map(|b| {
                    m.drift_baseline
                        .get_or_create(&bin_labels(b))
                        .set(f.proportions[b]);
                    m.drift_inputs.get_or_create(&bin_labels(b)).clone()
                })
                .collect();
            let psi = m
                .drift_psi
                .get_or_create(&FeatureLabels {
                    model: labels.model.clone(),
                    version: labels.version.clone(),
                    feature: f.name.clone(),
                })
                .clone();
            features.push(Feature {
                name: f.name.clone(),
                edges: f.edges.clone(),
                proportions: f.proportions.clone(),
                counters,
                psi,
            });
        }
        let prior = if !baseline.classes.is_empty() && baseline.classes.len() == n_classes {
            for (c, p) in baseline.classes.iter().enumerate() {
                let class = class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
                m.class_prior
                    .get_or_create(&ClassLabels {
                        model: labels.model.clone(),
                        version: labels.version.clone(),
                        class,
                    })
                    .set(*p);
            }
            baseline.classes.clone()
        } else {
            Vec::new()
        };
        let counts = features
            .iter()
            .map(|f| vec![0; f.proportions.len()])
            .collect();
        Ok(Drift {
            class_psi: m.drift_class_psi.get_or_create(labels).clone(),
            window: Mutex::new(Window {
                size: window.max(1),
                rows: VecDeque::new(),
                counts,
                classes: VecDeque::new(),
                class_counts: vec![0; prior.len()],
            }),
            prior,
            features,
        })
    }

    /// The training share of each class index (empty without one).
    pub fn prior(&self) -> &[f64] {
        &self.prior
    }

    /// The features' names, edges and training shares.
    pub fn baseline(&self) -> impl Iterator<Item = (&str, &[f64])> {
        self.features
            .iter()
            .map(|f| (f.name.as_str(), f.proportions.as_slice()))
    }

    /// The bins of every row of `input` (`[N, F]`, FP32 or FP64), row-major;
    /// `None` for any other input.
    pub fn bins(&self, input: &Tensor) -> Option<Vec<u16>> {
        let f = self.features.len();
        if input.shape().len() != 2 || input.shape()[1] != f {
            return None;
        }
        let bin = |i: usize, x: f64| bin_of(&self.features[i % f].edges, x) as u16;
        match input.data() {
            TensorData::Fp32(v) => Some(
                v.iter()
                    .enumerate()
                    .map(|(i, &x)| bin(i, x as f64))
                    .collect(),
            ),
            TensorData::Fp64(v) => Some(v.iter().enumerate().map(|(i, &x)| bin(i, x)).collect()),
            _ => None,
        }
    }

    /// Counts answered rows: their bins and predicted classes.
    pub fn record(&self, bins: &[u16], classes: &[u32]) {
        let f = self.features.len();
        for (i, &b) in bins.iter().enumerate() {
            self.features[i % f].counters[b as usize].inc();
        }
        let mut w = self.window.lock().expect("drift window lock");
        for (i, &b) in bins.iter().enumerate() {
            w.counts[i % f][b as usize] += 1;
            w.rows.push_back(b);
        }
        while w.rows.len() > w.size * f {
            for i in 0..f {
                let b = w.rows.pop_front().expect("a whole row") as usize;
                w.counts[i][b] -= 1;
            }
        }
        if !self.prior.is_empty() {
            for &c in classes {
                if let Some(n) = w.class_counts.get_mut(c as usize) {
                    *n += 1;
                    w.classes.push_back(c);
                }
            }
            while w.classes.len() > w.size {
                let c = w.classes.pop_front().expect("a class") as usize;
                w.class_counts[c] -= 1;
            }
        }
    }

    /// The window's PSI figures; also sets the gauges.
    pub fn summary(&self) -> DriftSummary {
        let w = self.window.lock().expect("drift window lock");
        let f = self.features.len().max(1);
        let rows = w.rows.len() / f;
        let figure = |name: &str, counts: &[u64], expected: &[f64], n: usize| {
            let psi = (n >= MIN_ROWS).then(|| psi(counts, expected)).flatten();
            FeatureDrift {
                name: name.to_string(),
                psi,
                status: psi.map(status),
            }
        };
        let features = self
            .features
            .iter()
            .zip(&w.counts)
            .map(|(feat, counts)| {
                let d = figure(&feat.name, counts, &feat.proportions, rows);
                if let Some(p) = d.psi {
                    feat.psi.set(p);
                }
                d
            })
            .collect();
        let classes = (!self.prior.is_empty()).then(|| {
            let d = figure(
                "predicted class",
                &w.class_counts,
                &self.prior,
                w.classes.len(),
            );
            if let Some(p) = d.psi {
                self.class_psi.set(p);
            }
            d
        });
        DriftSummary {
            window_rows: rows,
            window_size: w.size,
            features,
            classes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_on_an_edge_goes_to_the_bin_above() {
        let edges = [1.0, 2.0, 2.0, 3.0];
        assert_eq!(bin_of(&edges, 0.5), 0);
        assert_eq!(bin_of(&edges, 1.0), 1);
        assert_eq!(bin_of(&edges, 2.0), 3);
        assert_eq!(bin_of(&edges, 9.0), 4);
    }

    #[test]
    fn psi_is_zero_for_the_baseline_and_large_for_a_shift() {
        let expected = [0.25, 0.25, 0.5, 0.0];
        assert!(psi(&[25, 25, 50, 0], &expected).unwrap().abs() < 1e-12);
        let shifted = psi(&[0, 0, 0, 100], &expected).unwrap();
        assert!(shifted > 1.0, "{shifted}");
        assert_eq!(psi(&[0, 0, 0, 0], &expected), None);
        assert_eq!(status(0.05), "stable");
        assert_eq!(status(0.15), "watch");
        assert_eq!(status(0.25), "drifted");
    }
}
