//! Who may read the operator's `/metrics` when it is served securely: the API server decides,
//! as kubebuilder's secure metrics and kube-rbac-proxy do.
//!
//! A scrape carries `Authorization: Bearer <token>`. The operator sends a `TokenReview`
//! (authentication.k8s.io/v1: whose token is this?), then a `SubjectAccessReview`
//! (authorization.k8s.io/v1: may that user `get` the non-resource URL `/metrics`?) with the
//! user's name, groups, uid and extra. No token, or one the API server does not accept: 401;
//! a user without the right: 403; no answer from the API server: 503. Each with a JSON body
//! `{"error": "..."}` naming the `Authorization` header or the user.
//!
//! Decisions are cached for [`CACHE_TTL`] under the SHA-256 of the token (at most
//! [`CACHE_CAPACITY`] of them), so one scraper costs at most one pair of reviews per
//! [`CACHE_TTL`]; failures to reach the API server are not cached. At most [`MAX_REVIEWS`]
//! pairs are in flight at once, so a flood of made-up tokens cannot flood the API server.
//! The token itself is never logged, cached or kept beyond the request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// How long a decision (allowed, unauthenticated or forbidden) is reused for the same token.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// Most tokens whose decisions are cached; past it the entry expiring first makes room.
pub const CACHE_CAPACITY: usize = 1024;
/// Most review pairs sent to the API server at once; other requests wait their turn.
pub const MAX_REVIEWS: usize = 4;
/// Longest wait for both reviews (a turn included) before the request gets a 503.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer bearer tokens are refused without asking the API server (service account tokens
/// are about 1 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The non-resource URL and verb a reader needs (the chart's `<release>-metrics-reader`).
pub const METRICS_PATH: &str = "/metrics";
pub const METRICS_VERB: &str = "get";

/// What the API server said about one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The token's user may `get` `/metrics`.
    Allowed { user: String },
    /// The API server did not authenticate the token (unknown, expired, wrong audience).
    Unauthenticated,
    /// An authenticated user without the right.
    Forbidden { user: String, reason: String },
}

/// The reviews could not be done; the request gets a 503 and nothing is cached.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("TokenReview failed: {0}")]
    TokenReview(#[source] kube::Error),
    #[error("SubjectAccessReview failed: {0}")]
    SubjectAccessReview(#[source] kube::Error),
    #[error("no answer from the API server within {REVIEW_TIMEOUT:?}")]
    Timeout,
}

/// The bearer token of a request, or why there is none (the text of the 401).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, &'static str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values
        .next()
        .ok_or("no Authorization header: send `Authorization: Bearer <token>`")?;
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not visible ASCII")?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or("the Authorization header is not `Bearer <token>`")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("the Authorization header is not `Bearer <token>`");
    }
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err("the bearer token in the Authorization header is empty");
    }
    if token.contains(' ') {
        return Err("the bearer token in the Authorization header has spaces");
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err("the bearer token in the Authorization header is too long");
    }
    Ok(token)
}

/// The TokenReview that asks who `token` belongs to (for the API server's own audiences).
pub fn token_review(token: &str) -> TokenReview {
    TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: None,
        },
        ..Default::default()
    }
}

/// The user of a TokenReview's answer, when the API server authenticated the token.
pub fn authenticated_user(review: &TokenReview) -> Option<UserInfo> {
    let status = review.status.as_ref()?;
    if status.authenticated != Some(true) {
        return None;
    }
    status
        .user
        .clone()
        .filter(|u| u.username.as_deref().is_some_and(|n| !n.is_empty()))
}

/// The SubjectAccessReview: may `user` `get` `/metrics`?
pub fn access_review(user: &UserInfo) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra: user.extra.clone(),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(METRICS_PATH.into()),
                verb: Some(METRICS_VERB.into()),
            }),
            resource_attributes: None,
        },
        ..Default::default()
    }
}

/// The decision for `user` from a SubjectAccessReview's answer: allowed only when the API
/// server said so (no status, or `denied`, is a refusal).
pub fn decision_of(user: &UserInfo, review: &SubjectAccessReview) -> Decision {
    let user = user.username.clone().unwrap_or_default();
    match &review.status {
        Some(s) if s.allowed && s.denied != Some(true) => Decision::Allowed { user },
        Some(s) => Decision::Forbidden {
            user,
            reason: s
                .reason
                .clone()
                .or_else(|| s.evaluation_error.clone())
                .unwrap_or_default(),
        },
        None => Decision::Forbidden {
            user,
            reason: "the SubjectAccessReview came back without a status".into(),
        },
    }
}

/// The cache key of a token: its SHA-256, so that the cache holds no token.
pub fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Decisions by token hash, each for `ttl`, at most `capacity` of them.
pub struct DecisionCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], (Instant, Decision)>>,
}

impl DecisionCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The decision cached for `key`, unless it expired by `now`.
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Decision> {
        let entries = self.entries.lock().expect("cache lock");
        entries
            .get(key)
            .filter(|(expires, _)| now < *expires)
            .map(|(_, d)| d.clone())
    }

    /// Caches `decision` until `now + ttl`. When full: expired entries go, then, if still
    /// full, the one expiring first.
    pub fn insert(&self, key: [u8; 32], decision: Decision, now: Instant) {
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (expires, _)| now < *expires);
            if entries.len() >= self.capacity
                && let Some(first) = entries
                    .iter()
                    .min_by_key(|(_, (expires, _))| *expires)
                    .map(|(k, _)| *k)
            {
                entries.remove(&first);
            }
        }
        entries.insert(key, (now + self.ttl, decision));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Asks the API server about tokens, through the cache.
#[derive(Clone)]
pub struct MetricsAuth {
    client: Client,
    cache: Arc<DecisionCache>,
    turns: Arc<Semaphore>,
}

impl MetricsAuth {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Arc::new(DecisionCache::new(CACHE_TTL, CACHE_CAPACITY)),
            turns: Arc::new(Semaphore::new(MAX_REVIEWS)),
        }
    }

    /// The decision for `token`: cached, else from a TokenReview and a SubjectAccessReview.
    pub async fn decide(&self, token: &str) -> Result<Decision, ReviewError> {
        let key = token_key(token);
        if let Some(decision) = self.cache.get(&key, Instant::now()) {
            return Ok(decision);
        }
        let decision = tokio::time::timeout(REVIEW_TIMEOUT, self.review(token))
            .await
            .map_err(|_| ReviewError::Timeout)??;
        self.cache.insert(key, decision.clone(), Instant::now());
        Ok(decision)
    }

    async fn review(&self, token: &str) -> Result<Decision, ReviewError> {
        let _turn = self
            .turns
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let post = PostParams::default();
        // The answer echoes the token in its spec: it is read for its status and dropped.
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&post, &token_review(token))
            .await
            .map_err(ReviewError::TokenReview)?;
        let Some(user) = authenticated_user(&reviewed) else {
            let why = reviewed.status.and_then(|s| s.error).unwrap_or_default();
            tracing::debug!(%why, "metrics: the API server did not authenticate a token");
            return Ok(Decision::Unauthenticated);
        };
        let access = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&post, &access_review(&user))
            .await
            .map_err(ReviewError::SubjectAccessReview)?;
        Ok(decision_of(&user, &access))
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// Middleware of `/metrics`: lets the request through only for a reader the API server
/// allows.
pub async fn require_metrics_reader(
    State(auth): State<MetricsAuth>,
    request: Request,
    next: Next,
) -> Response {
    let token = match bearer_token(request.headers()) {
        Ok(token) => token.to_string(),
        Err(why) => return unauthorized(why),
    };
    match auth.decide(&token).await {
        Ok(Decision::Allowed { .. }) => next.run(request).await,
        Ok(Decision::Unauthenticated) => unauthorized(
            "the API server did not authenticate the bearer token in the Authorization header",
        ),
        Ok(Decision::Forbidden { user, reason }) => {
            tracing::debug!(%user, %reason, "metrics: refused a user without get on /metrics");
            refusal(
                StatusCode::FORBIDDEN,
                format!(
                    "user {user:?} may not get {METRICS_PATH} (needs nonResourceURLs [\"{METRICS_PATH}\"], verbs [\"{METRICS_VERB}\"])"
                ),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot review a scrape's token");
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check the bearer token with the API server now; the operator's log says why".into(),
            )
        }
    }
}

fn unauthorized(why: &str) -> Response {
    let mut response = refusal(StatusCode::UNAUTHORIZED, why.to_string());
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

fn refusal(status: StatusCode, error: String) -> Response {
    (status, Json(serde_json::json!({ "error": error }))).into_response()
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
