//! The pod's recent traffic of one model for the page: answered requests,
//! errors and latency per 10-second slot over the last 10 minutes.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Seconds per slot, and slots kept.
pub const SLOT_SECONDS: u64 = 10;
pub const SLOTS: usize = 60;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// Which 10-second period of the epoch this slot holds.
    period: u64,
    ok: u64,
    errors: u64,
    latency_sum: f64,
    latency_max: f64,
}

/// One slot as the page reads it.
#[derive(Debug, Serialize, PartialEq)]
pub struct Point {
    /// Unix seconds at the slot's start.
    pub t: u64,
    pub ok: u64,
    pub errors: u64,
    /// Mean and largest latency of the answered requests, in seconds.
    pub latency_mean: Option<f64>,
    pub latency_max: Option<f64>,
}

pub struct Timeline {
    slots: Mutex<[Slot; SLOTS]>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            slots: Mutex::new([Slot::default(); SLOTS]),
        }
    }
}

fn period_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / SLOT_SECONDS)
        .unwrap_or(0)
}

impl Timeline {
    /// Counts one request: answered (with its latency) or an error.
    pub fn record(&self, ok: bool, latency_seconds: f64) {
        self.record_at(period_now(), ok, latency_seconds);
    }

    fn record_at(&self, period: u64, ok: bool, latency: f64) {
        let mut slots = self.slots.lock().expect("timeline lock");
        let slot = &mut slots[(period % SLOTS as u64) as usize];
        if slot.period != period {
            *slot = Slot {
                period,
                ..Slot::default()
            };
        }
        if ok {
            slot.ok += 1;
            slot.latency_sum += latency;
            slot.latency_max = slot.latency_max.max(latency);
        } else {
            slot.errors += 1;
        }
    }

    /// The last [`SLOTS`] slots, oldest first (empty ones included).
    pub fn points(&self) -> Vec<Point> {
        self.points_at(period_now())
    }

    fn points_at(&self, now: u64) -> Vec<Point> {
        let slots = self.slots.lock().expect("timeline lock");
        (0..SLOTS as u64)
            .rev()
            .filter_map(|back| now.checked_sub(back))
            .map(|period| {
                let s = slots[(period % SLOTS as u64) as usize];
                let s = if s.period == period {
                    s
                } else {
                    Slot::default()
                };
                Point {
                    t: period * SLOT_SECONDS,
                    ok: s.ok,
                    errors: s.errors,
                    latency_mean: (s.ok > 0).then(|| s.latency_sum / s.ok as f64),
                    latency_max: (s.ok > 0).then_some(s.latency_max),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_and_old_ones_are_forgotten() {
        let t = Timeline::default();
        t.record_at(1000, true, 0.002);
        t.record_at(1000, true, 0.004);
        t.record_at(1000, false, 0.0);
        t.record_at(1001, false, 0.0);
        let points = t.points_at(1001);
        assert_eq!(points.len(), SLOTS);
        let p = &points[SLOTS - 2];
        assert_eq!((p.t, p.ok, p.errors), (10_000, 2, 1));
        assert!((p.latency_mean.unwrap() - 0.003).abs() < 1e-12);
        assert_eq!(points[SLOTS - 1].errors, 1);
        // 60 slots later slot 1000's place holds 1060.
        t.record_at(1060, true, 0.1);
        let later = t.points_at(1060);
        assert_eq!(later.iter().map(|p| p.ok).sum::<u64>(), 1);
    }
}
