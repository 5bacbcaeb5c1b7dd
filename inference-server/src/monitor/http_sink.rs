//! The payload log's `http(s)://` sender. With `--payload-log-http-batch`
//! above 1 each POST is CloudEvents' batched content mode: a JSON array of
//! structured events, `Content-Type: application/cloudevents-batch+json`.
//! With 1, each POST is one event in binary content mode (the attributes as
//! `ce-*` headers, the data as the body): what Knative Eventing's Broker and
//! KafkaSink take, since they accept no batches.
//!
//! A batch starts with the first event queued once a send slot is free and
//! closes when it holds the batch size or [`LINGER`] (100 ms) after it
//! started, whichever comes first: a busy server fills batches in a few
//! milliseconds, a quiet one sends its events at most 100 ms late. Without
//! the wait the sink woke for each request's events and (we think: batch
//! sizes were not counted) sent small batches: 52% of off's rate in a trial
//! of `make bench-payload-log`, 71% with it. Rendering happens in the send's
//! own task, off the request path.
//! 8 POSTs in flight; a POST is tried at most 3 times (backoff 100 ms,
//! 400 ms; a 4xx answer is not retried) with a 5 s timeout per try; each
//! event in it is then counted sent or dropped (`sink_error`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::event::Event;
use super::sink::{Counts, Sink};

/// The media type of CloudEvents' batched HTTP mode.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
const IN_FLIGHT: u32 = 8;
const TRIES: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a batch waits to fill.
pub const LINGER: Duration = Duration::from_millis(100);

/// The sink task: takes batches off the queue and sends each in its own task.
pub(super) async fn run(mut sink: Sink, url: reqwest::Url, batch: usize) {
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("payload log: no HTTP client: {e}");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(IN_FLIGHT as usize));
    loop {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let Some(first) = sink.next().await else {
            break;
        };
        let mut events = Vec::with_capacity(batch.min(128));
        events.push(first);
        sink.take_queued(&mut events, batch);
        let mut closed = false;
        if events.len() < batch {
            let deadline = tokio::time::sleep(LINGER);
            tokio::pin!(deadline);
            while events.len() < batch {
                tokio::select! {
                    biased;
                    ev = sink.next() => match ev {
                        Some(ev) => {
                            events.push(ev);
                            sink.take_queued(&mut events, batch);
                        }
                        None => {
                            closed = true;
                            break;
                        }
                    },
                    _ = &mut deadline => break,
                }
            }
        }
        let (client, url, c, max) = (client.clone(), url.clone(), sink.c.clone(), sink.max_bytes);
        let batched = batch > 1;
        tokio::spawn(async move {
            send(&client, url, &events, batched, max, &c).await;
            drop(permit);
        });
        if closed {
            break;
        }
    }
    let _ = permits.acquire_many(IN_FLIGHT).await;
}

/// One POST's content type, extra headers and body.
struct Message {
    content_type: &'static str,
    headers: Vec<(String, String)>,
    body: bytes::Bytes,
}

/// Renders `events` (counting the truncated ones): batched mode, or binary
/// mode for a lone event when `batched` is false.
fn message(events: &[Event], batched: bool, max: usize, c: &Counts) -> Message {
    let rendered: Vec<_> = events
        .iter()
        .map(|ev| {
            let r = ev.render(max);
            if r.truncated {
                c.truncated(ev.kind);
            }
            r
        })
        .collect();
    if let ([ev], [r], false) = (events, rendered.as_slice(), batched) {
        return Message {
            content_type: "application/json",
            headers: ev.headers(r.truncated),
            body: bytes::Bytes::from(r.data.clone()),
        };
    }
    let size: usize = rendered.iter().map(|r| r.data.len() + 320).sum();
    let mut body = Vec::with_capacity(size + 2);
    body.push(b'[');
    for (i, (ev, r)) in events.iter().zip(&rendered).enumerate() {
        if i > 0 {
            body.push(b',');
        }
        ev.write_structured(r, &mut body);
    }
    body.push(b']');
    Message {
        content_type: BATCH_CONTENT_TYPE,
        headers: Vec::new(),
        body: body.into(),
    }
}

async fn send(
    client: &reqwest::Client,
    url: reqwest::Url,
    events: &[Event],
    batched: bool,
    max: usize,
    c: &Counts,
) {
    let msg = message(events, batched, max, c);
    let sent = post(client, url, &msg, events.len()).await;
    for ev in events {
        if sent {
            c.sent(ev.kind);
        } else {
            c.sink_error(ev.kind);
        }
    }
}

/// Whether the receiver took `msg` within the tries.
async fn post(client: &reqwest::Client, url: reqwest::Url, msg: &Message, events: usize) -> bool {
    for attempt in 0..TRIES {
        let mut req = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, msg.content_type)
            .body(msg.body.clone());
        for (k, v) in &msg.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) if r.status().is_client_error() => {
                tracing::debug!(status = %r.status(), events, "payload log: the receiver refused a POST");
                return false;
            }
            Ok(r) => tracing::debug!(status = %r.status(), attempt, "payload log: receiver error"),
            Err(e) => tracing::debug!(attempt, "payload log: send failed: {e}"),
        }
        if attempt + 1 < TRIES {
            tokio::time::sleep(Duration::from_millis(100 * 4u64.pow(attempt))).await;
        }
    }
    false
}

#[cfg(test)]
#[path = "http_sink_tests.rs"]
mod tests;
