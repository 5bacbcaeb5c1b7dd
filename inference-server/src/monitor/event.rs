//! Payload events as CloudEvents 1.0: the attributes (binary HTTP mode's
//! `ce-*` headers, or structured JSON for HTTP batches and the S3 and file
//! sinks) and the body, the v2 JSON rendering of the tensors whatever the
//! wire form was. Rendering happens in the sink's tasks, never in the request's.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::protocol::json_data::FlatData;
use crate::tensor::{DataType, Tensor};

/// The CloudEvents `type` prefix KServe's logger uses.
pub const TYPE_PREFIX: &str = "org.kubeflow.serving.inference";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
    Feedback,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Request, Kind::Response, Kind::Feedback];

    /// The `type` label of the payload metrics.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Response => "response",
            Kind::Feedback => "feedback",
        }
    }
}

/// What every event of one model says about where it comes from.
#[derive(Debug)]
pub struct Context {
    /// `/modelship/<namespace>/<model>/<pod>`.
    pub source: String,
    pub model: String,
    pub version: Option<String>,
    pub namespace: String,
    pub variant: String,
}

/// An event's data before rendering.
pub enum Body {
    Request {
        client_id: Option<String>,
        inputs: Vec<Tensor>,
    },
    Response {
        client_id: String,
        outputs: Vec<Tensor>,
    },
    Json(serde_json::Value),
}

pub struct Event {
    pub kind: Kind,
    pub ce_id: String,
    pub inference_id: Option<String>,
    pub time: SystemTime,
    pub ctx: Arc<Context>,
    pub body: Body,
}

/// The rendered data, cut to the size cap when over it.
pub struct Rendered {
    pub data: Vec<u8>,
    pub truncated: bool,
}

#[derive(Serialize)]
struct TensorWire<'a> {
    name: &'a str,
    datatype: DataType,
    shape: &'a [usize],
    data: FlatData<'a>,
}

fn tensors(ts: &[Tensor]) -> Vec<TensorWire<'_>> {
    ts.iter()
        .map(|t| TensorWire {
            name: t.name(),
            datatype: t.datatype(),
            shape: t.shape(),
            data: FlatData::new(t.data()),
        })
        .collect()
}

#[derive(Serialize)]
struct RequestWire<'a> {
    id: Option<&'a str>,
    inputs: Vec<TensorWire<'a>>,
}

#[derive(Serialize)]
struct ResponseWire<'a> {
    model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<&'a str>,
    id: &'a str,
    outputs: Vec<TensorWire<'a>>,
}

impl Event {
    /// The body as JSON; past `max_bytes`, `{"truncated": true, "bytes": n}`.
    pub fn render(&self, max_bytes: usize) -> Rendered {
        let data = match &self.body {
            Body::Request { client_id, inputs } => serde_json::to_vec(&RequestWire {
                id: client_id.as_deref(),
                inputs: tensors(inputs),
            }),
            Body::Response { client_id, outputs } => serde_json::to_vec(&ResponseWire {
                model_name: &self.ctx.model,
                model_version: self.ctx.version.as_deref(),
                id: client_id,
                outputs: tensors(outputs),
            }),
            Body::Json(v) => serde_json::to_vec(v),
        }
        .expect("tensors and JSON values serialize");
        if data.len() <= max_bytes {
            return Rendered {
                data,
                truncated: false,
            };
        }
        let note = serde_json::json!({"truncated": true, "bytes": data.len()});
        Rendered {
            data: serde_json::to_vec(&note).expect("serializes"),
            truncated: true,
        }
    }

    /// `org.kubeflow.serving.inference.<kind>`.
    pub fn ce_type(&self) -> &'static str {
        match self.kind {
            Kind::Request => "org.kubeflow.serving.inference.request",
            Kind::Response => "org.kubeflow.serving.inference.response",
            Kind::Feedback => "org.kubeflow.serving.inference.feedback",
        }
    }

    /// Calls `f` with each attribute other than `data` and `time` (which
    /// differs in form between the modes), borrowed: `specversion`, `id`,
    /// `source`, `type` and the extensions.
    fn each_attribute(&self, truncated: bool, mut f: impl FnMut(&'static str, &str)) {
        f("specversion", "1.0");
        f("id", &self.ce_id);
        f("source", &self.ctx.source);
        f("type", self.ce_type());
        f("model", &self.ctx.model);
        f("namespace", &self.ctx.namespace);
        f("variant", &self.ctx.variant);
        if let Some(id) = &self.inference_id {
            f("inferenceid", id);
        }
        if let Some(v) = &self.ctx.version {
            f("modelversion", v);
        }
        if truncated {
            f("truncated", "true");
        }
    }

    /// The attributes other than `data`, as (name, value), `time` included.
    pub fn attributes(&self, truncated: bool) -> Vec<(&'static str, String)> {
        let mut a = Vec::with_capacity(11);
        self.each_attribute(truncated, |k, v| a.push((k, v.to_string())));
        a.push((
            "time",
            humantime::format_rfc3339_millis(self.time).to_string(),
        ));
        a
    }

    /// Binary HTTP mode: the `ce-*` headers (the body is [`Rendered::data`]).
    pub fn headers(&self, truncated: bool) -> Vec<(String, String)> {
        self.attributes(truncated)
            .into_iter()
            .map(|(k, v)| (format!("ce-{k}"), v))
            .collect()
    }

    /// Structured JSON mode: one event as a JSON object (a JSON Lines line
    /// without its newline, or one element of a batch).
    pub fn structured(&self, rendered: &Rendered) -> Vec<u8> {
        let mut out = Vec::with_capacity(rendered.data.len() + 320);
        self.write_structured(rendered, &mut out);
        out
    }

    /// Appends [`Event::structured`] to `out`: the attributes, then
    /// `datacontenttype` and `data` (the rendered JSON as it is, not parsed again).
    pub fn write_structured(&self, rendered: &Rendered, out: &mut Vec<u8>) {
        use std::io::Write;
        out.push(b'{');
        self.each_attribute(rendered.truncated, |k, v| {
            serde_json::to_writer(&mut *out, k).expect("a string serializes");
            out.push(b':');
            serde_json::to_writer(&mut *out, v).expect("a string serializes");
            out.push(b',');
        });
        // An RFC 3339 time needs no JSON escaping.
        write!(
            out,
            r#""time":"{}","#,
            humantime::format_rfc3339_millis(self.time)
        )
        .expect("writing to a Vec");
        out.extend_from_slice(br#""datacontenttype":"application/json","data":"#);
        out.extend_from_slice(&rendered.data);
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;

    fn event(body: Body) -> Event {
        Event {
            kind: Kind::Request,
            ce_id: "x.request".into(),
            inference_id: Some("x".into()),
            time: SystemTime::UNIX_EPOCH,
            ctx: Arc::new(Context {
                source: "/modelship/ns/iris/pod-0".into(),
                model: "iris".into(),
                version: Some("3".into()),
                namespace: "ns".into(),
                variant: "primary".into(),
            }),
            body,
        }
    }

    fn input() -> Vec<Tensor> {
        vec![Tensor::new("input", vec![1, 2], TensorData::Fp32(vec![1.5, 2.0])).unwrap()]
    }

    #[test]
    fn a_request_renders_as_v2_json_with_binary_mode_headers() {
        let e = event(Body::Request {
            client_id: Some("c1".into()),
            inputs: input(),
        });
        let r = e.render(1 << 16);
        assert!(!r.truncated);
        let v: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "c1", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.0]}]})
        );
        let h = e.headers(false);
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("ce-type"),
            Some("org.kubeflow.serving.inference.request")
        );
        assert_eq!(get("ce-inferenceid"), Some("x"));
        assert_eq!(get("ce-modelversion"), Some("3"));
        assert_eq!(get("ce-time"), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(get("ce-truncated"), None);
        let s: serde_json::Value = serde_json::from_slice(&e.structured(&r)).unwrap();
        assert_eq!(s["data"], v, "the structured form carries the same data");
        assert_eq!(s["type"], "org.kubeflow.serving.inference.request");
        assert_eq!(s["id"], "x.request");
        assert_eq!(s["datacontenttype"], "application/json");
        assert_eq!(s.as_object().unwrap().len(), 12, "{s}");
    }

    #[test]
    fn each_kind_has_the_kserve_logger_type() {
        for kind in Kind::ALL {
            let mut e = event(Body::Json(serde_json::json!({})));
            e.kind = kind;
            assert_eq!(e.ce_type(), format!("{TYPE_PREFIX}.{}", kind.label()));
        }
    }

    #[test]
    fn a_body_over_the_cap_is_replaced_and_flagged() {
        let e = event(Body::Request {
            client_id: None,
            inputs: input(),
        });
        let full = e.render(1 << 16).data.len();
        let r = e.render(10);
        assert!(r.truncated);
        let v: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
        assert_eq!(v, serde_json::json!({"truncated": true, "bytes": full}));
        let line: serde_json::Value = serde_json::from_slice(&e.structured(&r)).unwrap();
        assert_eq!(line["truncated"], "true");
        assert_eq!(line["specversion"], "1.0");
        assert_eq!(line["data"]["truncated"], true);
    }
}
