//! Retrying a model read that failed for a reason that may pass: bounded
//! exponential backoff over the whole read (resolve, request, body), only for
//! remote sources (`http(s)://`, `s3://`), only for transient causes.
//!
//! Transient: no connection, a timeout or a broken body ([`SourceError::Read`]),
//! and HTTP 408, 429 and 5xx. Everything else (404, 403, a bad URI, a sha256
//! mismatch, a malformed card, a full disk) fails at once: trying again would
//! give the same answer. When the attempts run out, the last cause is the error.

use std::future::Future;
use std::time::Duration;

use super::{ModelUri, SourceError};

/// How often and how patiently to retry (`fetch --attempts`, `--retry-delay`,
/// `--retry-max-delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included; 1 means no retry.
    pub attempts: u32,
    /// The wait before the second try; each later wait doubles it.
    pub first_delay: Duration,
    /// No wait is longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 tries, waits of 1, 2, 4 and 8 s between them: 15 s of waiting at most.
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// One try only.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The wait after failed try number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.first_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

impl SourceError {
    /// Whether trying again later may succeed (see the module's doc).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Read { .. } => true,
            Self::HttpStatus { code, .. } => *code == 408 || *code == 429 || *code >= 500,
            _ => false,
        }
    }

    /// Whether no retry, here or by restarting the process, can succeed: the
    /// model or its checksum is wrong, or the URI names nothing readable.
    /// `fetch` exits with its own code for these (12), so that a Job's
    /// `podFailurePolicy` can stop at once instead of retrying.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient() && !matches!(self, Self::Write { .. })
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or `policy`'s tries
/// run out; each retry is logged with its cause and wait.
pub(super) async fn retrying<T, F, Fut>(
    uri: &ModelUri,
    policy: &RetryPolicy,
    mut attempt: F,
) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SourceError>>,
{
    let remote = matches!(uri, ModelUri::Http(_) | ModelUri::S3 { .. });
    let attempts = if remote { policy.attempts.max(1) } else { 1 };
    let mut tried = 1;
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(e) if tried < attempts && e.is_transient() => {
                let delay = policy.delay_after(tried);
                tracing::warn!(
                    %uri,
                    attempt = tried,
                    of = attempts,
                    retry_in = ?delay,
                    error = %e,
                    "model read failed; retrying"
                );
                tokio::time::sleep(delay).await;
                tried += 1;
            }
            Err(e) => {
                if tried > 1 {
                    tracing::warn!(%uri, attempts = tried, error = %e, "model read failed; giving up");
                }
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn read_error() -> SourceError {
        SourceError::Read {
            uri: "u".into(),
            cause: "connection reset".into(),
        }
    }

    fn status(code: u16) -> SourceError {
        SourceError::HttpStatus {
            uri: "u".into(),
            status: code.to_string(),
            code,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = RetryPolicy {
            attempts: 10,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        };
        let delays: Vec<u64> = (1..=5).map(|a| policy.delay_after(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(policy.delay_after(200), Duration::from_secs(5));
    }

    #[test]
    fn transient_and_permanent_causes() {
        assert!(read_error().is_transient());
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code).is_transient(), "{code}");
            assert!(!status(code).is_permanent(), "{code}");
        }
        for code in [400, 401, 403, 404, 410] {
            assert!(!status(code).is_transient(), "{code}");
            assert!(status(code).is_permanent(), "{code}");
        }
        let mismatch = SourceError::ChecksumMismatch {
            uri: "u".into(),
            expected: "a".into(),
            actual: "b".into(),
        };
        assert!(mismatch.is_permanent());
        let full = SourceError::Write {
            path: "p".into(),
            cause: "no space left on device".into(),
        };
        assert!(!full.is_transient() && !full.is_permanent());
    }

    fn http_uri() -> ModelUri {
        ModelUri::parse("http://127.0.0.1/m.onnx").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_the_attempts_run_out() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            attempts: 4,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(2),
        };
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = retrying(&http_uri(), &policy, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(status(503))
        })
        .await;
        assert!(matches!(
            result,
            Err(SourceError::HttpStatus { code: 503, .. })
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // Waits of 1 + 2 + 2 s (capped).
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_that_succeeds_returns_its_value() {
        let calls = AtomicU32::new(0);
        let result = retrying(&http_uri(), &RetryPolicy::default(), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(read_error()),
                _ => Ok("model"),
            }
        })
        .await;
        assert_eq!(result.unwrap(), "model");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_and_local_paths_are_tried_once() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retrying(&http_uri(), &RetryPolicy::default(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(status(404))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let local = ModelUri::parse("/models/m.onnx").unwrap();
        let result: Result<(), _> = retrying(&local, &RetryPolicy::default(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(read_error())
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
