//! Tests of [`super`]: the header, the review bodies and their answers, the cache, and the
//! routes against a mock API server (the real one is tests/chart's `metrics_*` tests).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::authorization::v1::SubjectAccessReviewStatus;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::metrics::{Metrics, router};
use crate::mock_api::{self, ApiServer, Received};

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

fn headers(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(header::AUTHORIZATION, v.parse().unwrap());
    }
    h
}

#[test]
fn bearer_token_is_taken_from_one_authorization_header() {
    assert_eq!(bearer_token(&headers(&["Bearer abc.def"])), Ok("abc.def"));
    assert_eq!(bearer_token(&headers(&["bearer  abc "])), Ok("abc"));
    for (values, why) in [
        (&[][..], "no Authorization header"),
        (&["Basic dXNlcjpwdw=="][..], "not `Bearer <token>`"),
        (&["Bearer"][..], "not `Bearer <token>`"),
        (&["Bearer   "][..], "empty"),
        (&["Bearer a b"][..], "has spaces"),
        (&["Bearer a", "Bearer b"][..], "more than one"),
    ] {
        let err = bearer_token(&headers(values)).unwrap_err();
        assert!(err.contains(why), "{values:?}: {err}");
    }
    let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
    assert!(
        bearer_token(&headers(&[&long]))
            .unwrap_err()
            .contains("too long")
    );
}

fn user() -> UserInfo {
    UserInfo {
        username: Some("system:serviceaccount:mon:prometheus".into()),
        groups: Some(vec![
            "system:serviceaccounts".into(),
            "system:authenticated".into(),
        ]),
        uid: Some("0b5c-uid".into()),
        extra: Some(BTreeMap::from([(
            "authentication.kubernetes.io/pod-name".to_string(),
            vec!["prometheus-0".to_string()],
        )])),
    }
}

#[test]
fn a_token_review_answer_gives_a_user_only_when_authenticated() {
    let answer = |authenticated: Option<bool>, user: Option<UserInfo>| TokenReview {
        status: Some(k8s_openapi::api::authentication::v1::TokenReviewStatus {
            authenticated,
            user,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        authenticated_user(&answer(Some(true), Some(user()))),
        Some(user())
    );
    assert_eq!(authenticated_user(&answer(Some(false), Some(user()))), None);
    assert_eq!(authenticated_user(&answer(None, Some(user()))), None);
    assert_eq!(authenticated_user(&answer(Some(true), None)), None);
    let nameless = UserInfo {
        username: Some(String::new()),
        ..user()
    };
    assert_eq!(
        authenticated_user(&answer(Some(true), Some(nameless))),
        None
    );
    assert_eq!(authenticated_user(&TokenReview::default()), None);
}

#[test]
fn the_access_review_carries_the_whole_user_and_asks_for_get_on_metrics() {
    let review = serde_json::to_value(access_review(&user())).unwrap();
    assert_eq!(
        review["spec"],
        json!({
            "user": "system:serviceaccount:mon:prometheus",
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "uid": "0b5c-uid",
            "extra": {"authentication.kubernetes.io/pod-name": ["prometheus-0"]},
            "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
        })
    );
}

#[test]
fn only_an_allowed_and_not_denied_access_review_allows() {
    let with = |status: Option<SubjectAccessReviewStatus>| SubjectAccessReview {
        status,
        ..Default::default()
    };
    let name = "system:serviceaccount:mon:prometheus".to_string();
    let status = |allowed, denied, reason: Option<&str>| SubjectAccessReviewStatus {
        allowed,
        denied,
        reason: reason.map(Into::into),
        evaluation_error: None,
    };
    assert_eq!(
        decision_of(&user(), &with(Some(status(true, None, None)))),
        Decision::Allowed { user: name.clone() }
    );
    assert_eq!(
        decision_of(&user(), &with(Some(status(false, None, Some("no rule"))))),
        Decision::Forbidden {
            user: name.clone(),
            reason: "no rule".into()
        }
    );
    assert!(matches!(
        decision_of(&user(), &with(Some(status(true, Some(true), None)))),
        Decision::Forbidden { .. }
    ));
    assert!(matches!(
        decision_of(&user(), &with(None)),
        Decision::Forbidden { .. }
    ));
}

#[test]
fn cache_keeps_a_decision_for_its_ttl_under_the_token_hash() {
    let cache = DecisionCache::new(Duration::from_secs(10), 8);
    let t0 = Instant::now();
    let key = token_key("secret-token");
    assert_ne!(&key[..], b"secret-token");
    cache.insert(key, Decision::Unauthenticated, t0);
    assert_eq!(
        cache.get(&key, t0 + Duration::from_secs(9)),
        Some(Decision::Unauthenticated)
    );
    assert_eq!(cache.get(&key, t0 + Duration::from_secs(10)), None);
    assert_eq!(cache.get(&token_key("other"), t0), None);
}

#[test]
fn a_full_cache_drops_expired_entries_then_the_one_expiring_first() {
    let cache = DecisionCache::new(Duration::from_secs(10), 3);
    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    for (i, token) in ["a", "b", "c"].iter().enumerate() {
        cache.insert(token_key(token), Decision::Unauthenticated, at(i as u64));
    }
    // Full, nothing expired: "a" (expiring first) makes room.
    cache.insert(token_key("d"), Decision::Unauthenticated, at(3));
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get(&token_key("a"), at(3)), None);
    assert!(cache.get(&token_key("b"), at(3)).is_some());
    // Later, "b" and "c" have expired: both go, "d" stays.
    cache.insert(token_key("e"), Decision::Unauthenticated, at(12));
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&token_key("d"), at(12)).is_some());
    // Replacing a cached token's decision evicts nothing.
    cache.insert(
        token_key("e"),
        Decision::Allowed { user: "u".into() },
        at(12),
    );
    assert_eq!(cache.len(), 2);
}

// ------------------------------------------------------------- routes, mock API server

fn request(path: &str, token: Option<&str>) -> Request<Body> {
    let mut r = Request::builder().method(Method::GET).uri(path);
    if let Some(token) = token {
        r = r.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    r.body(Body::empty()).unwrap()
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn secure_app() -> (Router, MetricsAuth, ApiServer) {
    let (client, api) = mock_api::client();
    let auth = MetricsAuth::new(client);
    let metrics = Arc::new(Metrics::default());
    metrics.reconciliations.inc();
    (router(metrics, Some(auth.clone())), auth, api)
}

/// The API server's answer to a TokenReview: the request echoed, with `status`.
fn reviewed(received: &Received, status: Value) -> (StatusCode, Value) {
    let mut body = received.body.clone();
    body["status"] = status;
    (StatusCode::CREATED, body)
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"].as_str().expect("an error field").to_string()
}

#[tokio::test]
async fn no_token_is_401_without_asking_the_api_server_and_probes_stay_open() {
    let (app, auth, api) = secure_app();
    let (status, headers, body) = call(&app, request("/metrics", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    assert!(error_of(&body).contains("Authorization"), "{body}");
    let (status, _, body) = call(&app, request("/healthz", None)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, _) = call(&app, request("/readyz", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not ready yet");
    let (status, _, _) = call(&app, request("/nothing", Some("t"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop((app, auth));
    api.done().await;
}

#[tokio::test]
async fn a_token_the_api_server_rejects_is_401_and_the_rejection_is_cached() {
    let (app, auth, mut api) = secure_app();
    let scenario = tokio::spawn(async move {
        let got = api
            .expect(Method::POST, TOKEN_REVIEWS, |r| {
                reviewed(
                    r,
                    json!({"authenticated": false, "error": "token has expired"}),
                )
            })
            .await;
        assert_eq!(got.body["kind"], "TokenReview");
        assert_eq!(got.body["spec"], json!({"token": "expired-token"}));
        api
    });
    let (status, _, body) = call(&app, request("/metrics", Some("expired-token"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error_of(&body).contains("did not authenticate"), "{body}");
    assert!(
        !body.contains("expired-token"),
        "the token is not echoed: {body}"
    );
    let api = scenario.await.unwrap();
    // Again within the TTL: the same answer, from the cache (the mock would fail on a request).
    let (status, _, _) = call(&app, request("/metrics", Some("expired-token"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(auth.cached(), 1);
    drop((app, auth));
    api.done().await;
}

#[tokio::test]
async fn a_user_without_get_on_metrics_is_403_naming_the_user() {
    let (app, auth, mut api) = secure_app();
    let scenario = tokio::spawn(async move {
        api.expect(Method::POST, TOKEN_REVIEWS, |r| {
            reviewed(
                r,
                json!({"authenticated": true, "user": {"username": "system:serviceaccount:team-a:nobody", "groups": ["system:authenticated"]}}),
            )
        })
        .await;
        let got = api
            .expect(Method::POST, ACCESS_REVIEWS, |r| {
                reviewed(r, json!({"allowed": false, "reason": ""}))
            })
            .await;
        assert_eq!(
            got.body["spec"]["user"],
            "system:serviceaccount:team-a:nobody"
        );
        assert_eq!(got.body["spec"]["groups"], json!(["system:authenticated"]));
        assert_eq!(
            got.body["spec"]["nonResourceAttributes"],
            json!({"path": "/metrics", "verb": "get"})
        );
        api
    });
    let (status, _, body) = call(&app, request("/metrics", Some("nobody-token"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        error_of(&body).contains("system:serviceaccount:team-a:nobody"),
        "{body}"
    );
    let api = scenario.await.unwrap();
    drop((app, auth));
    api.done().await;
}

#[tokio::test]
async fn an_allowed_reader_gets_the_metrics_and_its_next_scrape_costs_no_review() {
    let (app, auth, mut api) = secure_app();
    let scenario = tokio::spawn(async move {
        api.expect(Method::POST, TOKEN_REVIEWS, |r| {
            reviewed(
                r,
                json!({"authenticated": true, "user": {"username": "system:serviceaccount:mon:prometheus", "uid": "u-1"}}),
            )
        })
        .await;
        let got = api
            .expect(Method::POST, ACCESS_REVIEWS, |r| {
                reviewed(r, json!({"allowed": true}))
            })
            .await;
        assert_eq!(got.body["spec"]["uid"], "u-1");
        api
    });
    let (status, _, body) = call(&app, request("/metrics", Some("reader-token"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("modelship_operator_reconciliations_total 1"),
        "{body}"
    );
    let api = scenario.await.unwrap();
    let (status, _, _) = call(&app, request("/metrics", Some("reader-token"))).await;
    assert_eq!(status, StatusCode::OK);
    drop((app, auth));
    api.done().await;
}

#[tokio::test]
async fn an_api_server_error_is_503_and_is_not_cached() {
    let (app, auth, mut api) = secure_app();
    let scenario = tokio::spawn(async move {
        api.expect(Method::POST, TOKEN_REVIEWS, |_| {
            mock_api::status(StatusCode::FORBIDDEN)
        })
        .await;
        api
    });
    let (status, _, body) = call(&app, request("/metrics", Some("t"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(error_of(&body).contains("API server"), "{body}");
    let mut api = scenario.await.unwrap();
    assert_eq!(auth.cached(), 0);
    // The next scrape asks again.
    let scenario = tokio::spawn(async move {
        api.expect(Method::POST, TOKEN_REVIEWS, |r| {
            reviewed(r, json!({"authenticated": false}))
        })
        .await;
        api
    });
    let (status, _, _) = call(&app, request("/metrics", Some("t"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let api = scenario.await.unwrap();
    drop((app, auth));
    api.done().await;
}
