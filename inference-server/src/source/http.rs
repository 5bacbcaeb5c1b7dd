//! Models over `http://` and `https://`, redirects followed, streamed.
//!
//! reqwest rather than object_store's HTTP store: model URLs are often presigned, and
//! their query string must reach the server untouched.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Client, StatusCode};
use url::Url;

use super::{ByteStream, ModelUri, SourceError, error_chain};

/// How long to wait for a connection; a model host that does not answer by then is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read may stall. No overall timeout: a large model takes what it takes.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

pub fn client(uri: &ModelUri) -> Result<Client, SourceError> {
    Client::builder()
        .user_agent(concat!("modelship-server/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
        .map_err(|e| SourceError::Read {
            uri: uri.to_string(),
            cause: error_chain(&e.without_url()),
        })
}

/// Sends the GET and streams the body of a 2xx answer.
pub async fn open(client: &Client, url: &Url) -> Result<ByteStream, SourceError> {
    let shown = ModelUri::Http(url.clone()).to_string();
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| request_error(&shown, e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(status_error(shown, status));
    }
    Ok(response
        .bytes_stream()
        .map(move |chunk| chunk.map_err(|e| request_error(&shown, e)))
        .boxed())
}

/// The body, or `None` when the server says there is no such object (404, 410) or will not
/// give it (401, 403: a presigned URL signs the model only, not what sits beside it).
pub async fn read_optional(client: &Client, url: &Url) -> Result<Option<Vec<u8>>, SourceError> {
    let shown = ModelUri::Http(url.clone()).to_string();
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| request_error(&shown, e))?;
    match response.status() {
        StatusCode::NOT_FOUND
        | StatusCode::GONE
        | StatusCode::FORBIDDEN
        | StatusCode::UNAUTHORIZED => {
            return Ok(None);
        }
        status if !status.is_success() => return Err(status_error(shown, status)),
        _ => {}
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| request_error(&shown, e))?;
    Ok(Some(body.to_vec()))
}

fn status_error(uri: String, status: StatusCode) -> SourceError {
    SourceError::HttpStatus {
        uri,
        status: status.to_string(),
        code: status.as_u16(),
    }
}

/// A failed request, its cause chain without the URL (which may be presigned).
fn request_error(uri: &str, e: reqwest::Error) -> SourceError {
    let timeout = e.is_timeout();
    let mut cause = error_chain(&e.without_url());
    if timeout && !cause.contains("timed out") {
        cause = format!("timed out: {cause}");
    }
    SourceError::Read {
        uri: uri.to_string(),
        cause,
    }
}
