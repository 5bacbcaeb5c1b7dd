//! The Lease decision as a table of cases (no API server), then [`LeaseLock`] against a mock API.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;

use super::*;
use crate::mock_api::{self, ApiServer, Received, echo};

const DURATION: Duration = Duration::from_secs(15);

fn at(second: i64) -> MicroTime {
    MicroTime(Timestamp::from_second(second).unwrap())
}

fn lease_spec(holder: Option<&str>, renewed: i64, duration: Option<i32>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: holder.map(str::to_string),
        renew_time: Some(at(renewed)),
        acquire_time: Some(at(1)),
        lease_duration_seconds: duration,
        lease_transitions: Some(4),
        ..LeaseSpec::default()
    }
}

/// (case, holder, lease duration in the record, time since the record was first seen, decision)
type Case = (
    &'static str,
    Option<&'static str>,
    Option<i32>,
    Duration,
    Decision,
);

#[test]
fn the_lease_decision_table() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let s = Duration::from_secs;
    let follow = |h: &str| Decision::Follow { holder: h.into() };
    let renew = Decision::Renew { transitions: 4 };
    let take_over = Decision::TakeOver { transitions: 5 };
    let cases: Vec<Case> = vec![
        ("ours, fresh", Some("me"), Some(15), s(0), renew.clone()),
        ("ours, long unrenewed", Some("me"), Some(15), s(60), renew),
        ("free", None, Some(15), s(0), take_over.clone()),
        (
            "empty holder is free",
            Some(""),
            Some(15),
            s(0),
            take_over.clone(),
        ),
        ("other, just seen", Some("b"), Some(15), s(0), follow("b")),
        (
            "other, exactly one duration",
            Some("b"),
            Some(15),
            s(15),
            follow("b"),
        ),
        (
            "other, just past one duration",
            Some("b"),
            Some(15),
            s(15) + ms(1),
            take_over.clone(),
        ),
        (
            "record's own duration wins",
            Some("b"),
            Some(5),
            s(6),
            take_over.clone(),
        ),
        (
            "no duration: ours counts",
            Some("b"),
            None,
            s(14),
            follow("b"),
        ),
        (
            "no duration: ours expires",
            Some("b"),
            None,
            s(16),
            take_over.clone(),
        ),
        (
            "zero duration means one second",
            Some("b"),
            Some(0),
            ms(1500),
            take_over.clone(),
        ),
        (
            "negative duration means one second",
            Some("b"),
            Some(-3),
            ms(900),
            follow("b"),
        ),
    ];
    for (case, holder, duration, since, expected) in cases {
        let spec = lease_spec(holder, 100, duration);
        let observed = Observation::update(None, &spec, t0);
        let decision = decide(&spec, "me", &observed, t0 + since, DURATION);
        assert_eq!(decision, expected, "{case}");
    }
}

#[test]
fn a_clock_that_goes_back_never_expires_a_lease() {
    let t1 = Instant::now() + Duration::from_secs(100);
    let spec = lease_spec(Some("b"), 100, Some(15));
    let observed = Observation::update(None, &spec, t1);
    let earlier = t1 - Duration::from_secs(50);
    assert!(!expired(&spec, &observed, earlier, DURATION));
}

#[test]
fn the_clock_restarts_only_when_the_record_changes() {
    let t0 = Instant::now();
    let spec = lease_spec(Some("b"), 100, Some(15));
    let first = Observation::update(None, &spec, t0);
    // The same record 20 s later: still timed from t0, so expired.
    let same = Observation::update(Some(first.clone()), &spec, t0 + Duration::from_secs(20));
    assert_eq!(same, first);
    assert!(expired(
        &spec,
        &same,
        t0 + Duration::from_secs(20),
        DURATION
    ));
    // Renewed (a new renew time): timed from now, so live again.
    let renewed = lease_spec(Some("b"), 110, Some(15));
    let later = t0 + Duration::from_secs(20);
    let seen = Observation::update(Some(first.clone()), &renewed, later);
    assert!(!expired(
        &renewed,
        &seen,
        later + Duration::from_secs(15),
        DURATION
    ));
    // A new holder with the same renew time is a change too.
    let handed_over = lease_spec(Some("c"), 100, Some(15));
    let seen = Observation::update(Some(first), &handed_over, later);
    assert_eq!(
        decide(&handed_over, "me", &seen, later, DURATION),
        Decision::Follow { holder: "c".into() }
    );
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/modelship-operator";

fn stored(spec: LeaseSpec) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "modelship-operator", "namespace": "ops", "resourceVersion": "7"},
        "spec": spec,
    })
}

fn written(received: &Received) -> Lease {
    serde_json::from_value(received.body.clone()).expect("a Lease")
}

/// Runs `scenario` against a [`LeaseLock`] for identity `me`, driven by `drive`.
async fn with_lock<F, D>(scenario: impl FnOnce(ApiServer) -> F, drive: D)
where
    F: Future<Output = ApiServer> + Send + 'static,
    D: AsyncFnOnce(&mut LeaseLock),
{
    let (client, api) = mock_api::client();
    let scenario = tokio::spawn(scenario(api));
    let mut lock = LeaseLock::new(
        Api::namespaced(client, "ops"),
        "modelship-operator",
        "me",
        DURATION,
    );
    drive(&mut lock).await;
    let api = scenario.await.expect("the scenario's assertions hold");
    drop(lock);
    api.done().await;
}

#[tokio::test]
async fn a_missing_lease_is_created_and_held() {
    with_lock(
        |mut api| async move {
            api.expect(Method::GET, LEASE, |_| {
                mock_api::status(StatusCode::NOT_FOUND)
            })
            .await;
            let created = api.expect(Method::POST, LEASES, echo).await;
            let spec = written(&created).spec.unwrap();
            assert_eq!(spec.holder_identity.as_deref(), Some("me"));
            assert_eq!(spec.lease_transitions, Some(0));
            assert_eq!(spec.lease_duration_seconds, Some(15));
            assert_eq!(spec.renew_time, Some(at(500)));
            api
        },
        async |lock: &mut LeaseLock| {
            let attempt = lock.try_at(Instant::now(), at(500)).await.unwrap();
            assert_eq!(attempt, Attempt::Leading);
        },
    )
    .await;
}

#[tokio::test]
async fn a_held_lease_is_renewed_keeping_its_acquire_time() {
    with_lock(
        |mut api| async move {
            let ours = stored(lease_spec(Some("me"), 100, Some(15)));
            api.expect(Method::GET, LEASE, |_| (StatusCode::OK, ours))
                .await;
            let renewal = api.expect(Method::PUT, LEASE, echo).await;
            let lease = written(&renewal);
            // The resourceVersion read goes back, so a concurrent writer loses.
            assert_eq!(lease.metadata.resource_version.as_deref(), Some("7"));
            let spec = lease.spec.unwrap();
            assert_eq!(spec.acquire_time, Some(at(1)));
            assert_eq!(spec.renew_time, Some(at(110)));
            assert_eq!(spec.lease_transitions, Some(4));
            api
        },
        async |lock: &mut LeaseLock| {
            let attempt = lock.try_at(Instant::now(), at(110)).await.unwrap();
            assert_eq!(attempt, Attempt::Leading);
        },
    )
    .await;
}

#[tokio::test]
async fn a_standby_follows_a_live_lease_and_takes_over_once_it_expires() {
    with_lock(
        |mut api| async move {
            let theirs = stored(lease_spec(Some("b"), 100, Some(15)));
            let again = theirs.clone();
            // First look: live, so nothing is written.
            api.expect(Method::GET, LEASE, |_| (StatusCode::OK, theirs))
                .await;
            // Sixteen seconds later on our clock the record has not changed: take it over.
            api.expect(Method::GET, LEASE, |_| (StatusCode::OK, again))
                .await;
            let takeover = api.expect(Method::PUT, LEASE, echo).await;
            let spec = written(&takeover).spec.unwrap();
            assert_eq!(spec.holder_identity.as_deref(), Some("me"));
            assert_eq!(spec.acquire_time, Some(at(116)));
            assert_eq!(spec.lease_transitions, Some(5));
            api
        },
        async |lock: &mut LeaseLock| {
            let t0 = Instant::now();
            assert_eq!(
                lock.try_at(t0, at(100)).await.unwrap(),
                Attempt::Following { holder: "b".into() }
            );
            assert_eq!(
                lock.try_at(t0 + Duration::from_secs(16), at(116))
                    .await
                    .unwrap(),
                Attempt::Leading
            );
        },
    )
    .await;
}

#[tokio::test]
async fn losing_the_race_for_a_free_lease_means_following() {
    with_lock(
        |mut api| async move {
            let free = stored(lease_spec(None, 100, Some(15)));
            api.expect(Method::GET, LEASE, |_| (StatusCode::OK, free))
                .await;
            api.expect(Method::PUT, LEASE, |_| {
                mock_api::status(StatusCode::CONFLICT)
            })
            .await;
            api
        },
        async |lock: &mut LeaseLock| {
            let attempt = lock.try_at(Instant::now(), at(100)).await.unwrap();
            assert_eq!(
                attempt,
                Attempt::Following {
                    holder: "unknown".into()
                }
            );
        },
    )
    .await;
}

#[tokio::test]
async fn release_clears_the_holder_of_a_held_lease() {
    with_lock(
        |mut api| async move {
            let ours = stored(lease_spec(Some("me"), 100, Some(15)));
            api.expect(Method::GET, LEASE, |_| (StatusCode::OK, ours))
                .await;
            let released = api.expect(Method::PUT, LEASE, echo).await;
            let spec = written(&released).spec.unwrap();
            assert_eq!(spec.holder_identity, None);
            assert_eq!(spec.lease_duration_seconds, Some(1));
            api
        },
        async |lock: &mut LeaseLock| lock.release().await.unwrap(),
    )
    .await;
}
