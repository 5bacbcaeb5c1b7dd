//! Ground truth for what the model answered: the store of recent answers
//! (by inference id, bounded in time and entries) and the reading of a
//! feedback body into items. Counting them is the model monitor's
//! (`mod.rs`); routing an item to the pod that made its id is the route's.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use serde_json::Value;

use super::id;

/// What a model answered for each row of one inference.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicted {
    /// Class indices (a classifier's `label` output).
    Classes(Vec<u32>),
    /// Values (a regressor's prediction).
    Values(Vec<f64>),
}

impl Predicted {
    pub fn rows(&self) -> usize {
        match self {
            Predicted::Classes(v) => v.len(),
            Predicted::Values(v) => v.len(),
        }
    }
}

struct Entry {
    predicted: Predicted,
    at_ms: u64,
    fed: bool,
}

/// How an id was found.
#[derive(Debug, PartialEq)]
pub enum Found {
    Answer(Predicted),
    Duplicate,
    Expired,
    Unknown,
}

/// Recent answers by inference id: at most `max` entries, none older than `window_ms`.
pub struct Store {
    window_ms: u64,
    max: usize,
    token: u32,
    map: HashMap<String, Entry>,
    order: VecDeque<(String, u64)>,
    /// The newest time of an entry evicted for room: ids at or before it are expired.
    evicted_ms: u64,
}

impl Store {
    /// A store for the ids of the process with `token`.
    pub fn new(window_ms: u64, max: usize, token: u32) -> Store {
        Store {
            window_ms,
            max: max.max(1),
            token,
            map: HashMap::new(),
            order: VecDeque::new(),
            evicted_ms: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn prune(&mut self, now_ms: u64) {
        while let Some((_, at)) = self.order.front() {
            let old = now_ms.saturating_sub(*at) > self.window_ms;
            if !old && self.order.len() < self.max {
                break;
            }
            let (id, at) = self.order.pop_front().expect("front exists");
            if !old {
                let made = id::parse(&id).map_or(at, |p| p.unix_ms);
                self.evicted_ms = self.evicted_ms.max(made);
            }
            self.map.remove(&id);
        }
    }

    pub fn insert(&mut self, id: String, predicted: Predicted, now_ms: u64) {
        self.prune(now_ms);
        self.order.push_back((id.clone(), now_ms));
        self.map.insert(
            id,
            Entry {
                predicted,
                at_ms: now_ms,
                fed: false,
            },
        );
    }

    /// Unmarks `id` (its feedback was refused), so a corrected one counts.
    pub fn release(&mut self, id: &str) {
        if let Some(e) = self.map.get_mut(id) {
            e.fed = false;
        }
    }

    /// Looks `id` up for feedback; a found id is marked, so it counts once.
    pub fn take(&mut self, id: &str, now_ms: u64) -> Found {
        let window = self.window_ms;
        if let Some(e) = self.map.get_mut(id) {
            if now_ms.saturating_sub(e.at_ms) > window {
                return Found::Expired;
            }
            if e.fed {
                return Found::Duplicate;
            }
            e.fed = true;
            return Found::Answer(e.predicted.clone());
        }
        match id::parse(id) {
            Some(p) if p.token == self.token => {
                if now_ms.saturating_sub(p.unix_ms) > window || p.unix_ms <= self.evicted_ms {
                    Found::Expired
                } else {
                    Found::Unknown
                }
            }
            Some(p) if now_ms.saturating_sub(p.unix_ms) > window => Found::Expired,
            _ => Found::Unknown,
        }
    }
}

/// One row's truth or prediction as sent: a class index, a class label, or a number.
#[derive(Debug, Clone, PartialEq)]
pub enum Value1 {
    Number(f64),
    Label(String),
}

/// One feedback item as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Its place in `items`, for error messages.
    pub index: usize,
    pub id: Option<String>,
    pub truth: Vec<Value1>,
    pub predicted: Option<Vec<Value1>>,
    /// The item as sent, forwarded as is.
    pub raw: Value,
}

/// The outcome of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Counted,
    Unknown,
    Expired,
    Duplicate,
    Invalid,
    Unreachable,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Counted,
        Outcome::Unknown,
        Outcome::Expired,
        Outcome::Duplicate,
        Outcome::Invalid,
        Outcome::Unreachable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Counted => "counted",
            Outcome::Unknown => "unknown",
            Outcome::Expired => "expired",
            Outcome::Duplicate => "duplicate",
            Outcome::Invalid => "invalid",
            Outcome::Unreachable => "unreachable",
        }
    }
}

/// An item's problem, named by field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemError {
    pub item: usize,
    pub field: String,
    pub message: String,
}

/// The answer to a feedback call: a count per outcome and the items' problems.
#[derive(Debug, Default, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Answer {
    pub counted: u64,
    pub unknown: u64,
    pub expired: u64,
    pub duplicate: u64,
    pub invalid: u64,
    pub unreachable: u64,
    #[serde(default)]
    pub errors: Vec<serde_json::Value>,
}

impl Answer {
    pub fn add(&mut self, outcome: Outcome, n: u64) {
        match outcome {
            Outcome::Counted => self.counted += n,
            Outcome::Unknown => self.unknown += n,
            Outcome::Expired => self.expired += n,
            Outcome::Duplicate => self.duplicate += n,
            Outcome::Invalid => self.invalid += n,
            Outcome::Unreachable => self.unreachable += n,
        }
    }

    pub fn merge(&mut self, other: Answer) {
        self.counted += other.counted;
        self.unknown += other.unknown;
        self.expired += other.expired;
        self.duplicate += other.duplicate;
        self.invalid += other.invalid;
        self.unreachable += other.unreachable;
        self.errors.extend(other.errors);
    }
}

fn values(v: &Value, field: &str) -> Result<Vec<Value1>, String> {
    let one = |x: &Value| match x {
        Value::Number(n) => n.as_f64().map(Value1::Number),
        Value::String(s) => Some(Value1::Label(s.clone())),
        _ => None,
    };
    match v {
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .enumerate()
            .map(|(i, x)| {
                one(x).ok_or_else(|| format!("{field}[{i}]: must be a number or a class label"))
            })
            .collect(),
        Value::Array(_) => Err(format!("{field}: must not be empty")),
        other => one(other)
            .map(|x| vec![x])
            .ok_or_else(|| format!("{field}: must be a list of numbers or class labels")),
    }
}

/// Reads `{"items": [..]}` (or one item object): a malformed body is an
/// `Err` naming the field (400); items are checked one by one later.
pub fn parse_items(body: &[u8]) -> Result<Vec<Item>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: not JSON: {e}"))?;
    let items = match &v {
        Value::Object(o) if o.contains_key("items") => match &o["items"] {
            Value::Array(a) => a.clone(),
            _ => return Err("items: must be a list".into()),
        },
        Value::Object(_) => vec![v.clone()],
        _ => return Err("body: must be an object with items".into()),
    };
    if items.is_empty() {
        return Err("items: must not be empty".into());
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let at = format!("items[{index}]");
            let Value::Object(o) = &raw else {
                return Err(format!("{at}: must be an object"));
            };
            let id = match o.get("id") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(_) => return Err(format!("{at}.id: must be a non-empty string")),
            };
            let truth = values(
                o.get("truth")
                    .ok_or_else(|| format!("{at}.truth: is required"))?,
                &format!("{at}.truth"),
            )?;
            let predicted = match o.get("predicted") {
                None | Some(Value::Null) => None,
                Some(p) => Some(values(p, &format!("{at}.predicted"))?),
            };
            if id.is_none() && predicted.is_none() {
                return Err(format!("{at}: needs an id, or the predicted values"));
            }
            if let Some(p) = &predicted
                && p.len() != truth.len()
            {
                return Err(format!(
                    "{at}.predicted: {} values for {} truths",
                    p.len(),
                    truth.len()
                ));
            }
            Ok(Item {
                index,
                id,
                truth,
                predicted,
                raw,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_counts_once_then_is_a_duplicate() {
        let mut s = Store::new(1000, 10, 7);
        s.insert("a".into(), Predicted::Classes(vec![1]), 100);
        assert_eq!(s.take("a", 200), Found::Answer(Predicted::Classes(vec![1])));
        assert_eq!(s.take("a", 200), Found::Duplicate);
        assert_eq!(s.take("nope", 200), Found::Unknown);
    }

    #[test]
    fn old_and_evicted_ids_are_expired() {
        let maker = id::IdMaker::new(None);
        let mut s = Store::new(1000, 2, maker.token());
        let ids: Vec<String> = (0..3).map(|_| maker.next()).collect();
        let now = id::now_ms();
        for i in &ids {
            s.insert(i.clone(), Predicted::Values(vec![1.0]), now);
        }
        assert_eq!(s.len(), 2);
        // The first was evicted for room.
        assert_eq!(s.take(&ids[0], now), Found::Expired);
        assert!(matches!(s.take(&ids[2], now), Found::Answer(_)));
        // Past the window.
        assert_eq!(s.take(&ids[1], now + 5000), Found::Expired);
        // An id of this process never stored (made after the evictions): unknown.
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(s.take(&maker.next(), now), Found::Unknown);
    }

    #[test]
    fn items_are_read_with_their_fields_named() {
        let items = parse_items(
            br#"{"items": [{"id": "x", "truth": [2, "setosa"]}, {"truth": 1, "predicted": [0]}]}"#,
        )
        .unwrap();
        assert_eq!(
            items[0].truth,
            vec![Value1::Number(2.0), Value1::Label("setosa".into())]
        );
        assert_eq!(items[1].predicted, Some(vec![Value1::Number(0.0)]));
        for (body, field) in [
            (&br#"[1]"#[..], "body"),
            (br#"{"items": 3}"#, "items"),
            (br#"{"items": [{"id": "x"}]}"#, "items[0].truth"),
            (br#"{"items": [{"truth": [1]}]}"#, "items[0]"),
            (br#"{"items": [{"id": 5, "truth": [1]}]}"#, "items[0].id"),
            (
                br#"{"items": [{"id": "x", "truth": [true]}]}"#,
                "items[0].truth[0]",
            ),
            (
                br#"{"items": [{"id": "x", "truth": [1], "predicted": [1, 2]}]}"#,
                "items[0].predicted",
            ),
        ] {
            let err = parse_items(body).unwrap_err();
            assert!(err.starts_with(field), "{err} should name {field}");
        }
    }
}
