//! The operator process: API client, metrics server, leader election, controllers, shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::api_client;
use crate::build::{MANAGER, managed_selector};
use crate::cli::RunArgs;
use crate::crd::ModelDeployment;
use crate::leader::{Attempt, LeaseLock};
use crate::metrics::{self, Metrics};
use crate::reconcile::{Caches, Context, error_policy, model_deployment_of, reconcile};

/// Runs the operator until SIGTERM or SIGINT (or until it loses its Lease, which is an error).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes client configuration (in-cluster or KUBECONFIG)")?;
    let user_timeout = api_client::user_timeout(args.lease_duration(), args.renew_deadline());
    let client = api_client::client(config, user_timeout)
        .context("cannot build the Kubernetes client from its configuration")?;
    let metrics = Arc::new(Metrics::default());
    let stop = Arc::new(watch::channel(false).0);
    tokio::spawn({
        let stop = stop.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            stop.send_replace(true);
        }
    });
    // Bound here, not in the task, so that a taken port or a bad certificate stops the
    // operator with a clear error.
    let endpoint = metrics::Endpoint::bind(&args.metrics_endpoint(), &client).await?;
    let server = tokio::spawn(metrics::serve(endpoint, metrics.clone(), stop.subscribe()));

    // Fail early and clearly when the API server or the CRD is missing.
    let first_scope = args.namespaces().and_then(|n| n.into_iter().next());
    scoped::<ModelDeployment>(&client, &first_scope)
        .list(&ListParams::default().limit(1))
        .await
        .context(
            "cannot list ModelDeployments: is the CRD installed and may this account list them?",
        )?;
    metrics.ready.store(true, Ordering::Relaxed);

    let result = if args.leader_election {
        run_elected(client, &args, metrics.clone(), stop.clone()).await
    } else {
        metrics.leader.set(1);
        run_controllers(client, &args, metrics.clone(), stop.subscribe()).await;
        Ok(())
    };
    stop.send_replace(true);
    let _ = server.await;
    result
}

/// Waits for the Lease, then runs the controllers while renewing it.
async fn run_elected(
    client: Client,
    args: &RunArgs,
    metrics: Arc<Metrics>,
    stop: Arc<watch::Sender<bool>>,
) -> anyhow::Result<()> {
    let namespace = match &args.lease_namespace {
        Some(ns) => ns.clone(),
        None => std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .map(|ns| ns.trim().to_string())
            .unwrap_or_else(|_| client.default_namespace().to_string()),
    };
    let api = Api::<Lease>::namespaced(client.clone(), &namespace);
    let mut lock = LeaseLock::new(
        api,
        &args.lease_name,
        &args.identity(),
        args.lease_duration(),
    );
    let retry = lock.retry_period();
    let mut stopped = stop.subscribe();
    let mut last_holder = None;
    loop {
        match lock.try_acquire_or_renew().await {
            Ok(Attempt::Leading) => break,
            Ok(Attempt::Following { holder }) => {
                if last_holder.as_ref() != Some(&holder) {
                    tracing::info!(%holder, lease = %args.lease_name, %namespace, "standing by: another replica leads");
                    last_holder = Some(holder);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read or write the leader Lease"),
        }
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return Ok(()),
            _ = tokio::time::sleep(retry) => {}
        }
    }
    tracing::info!(identity = lock.identity(), lease = %args.lease_name, %namespace, "became the leader");
    metrics.leader.set(1);

    // Renew until stopped; give up before the Lease can expire for the others. Each renewal
    // is bounded by what is left of the renew deadline: on a network that drops packets a
    // request hangs instead of failing, and a leader waiting on it would go on reconciling
    // (tests/faults: leader_cut_off_no_two_writers found it writing after its Lease passed).
    let renew_deadline = args.renew_deadline();
    let renewer = tokio::spawn({
        let stop = stop.clone();
        let mut stopped = stop.subscribe();
        async move {
            let mut renewed = Instant::now();
            loop {
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(retry) => {}
                }
                let left = renew_deadline.saturating_sub(renewed.elapsed());
                let lost = match tokio::time::timeout(left, lock.try_acquire_or_renew()).await {
                    Ok(Ok(Attempt::Leading)) => {
                        renewed = Instant::now();
                        None
                    }
                    Ok(Ok(Attempt::Following { holder })) => Some(format!("{holder} holds it")),
                    Ok(Err(e)) if renewed.elapsed() >= renew_deadline => {
                        Some(format!("could not renew it in time: {e}"))
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "could not renew the leader Lease; retrying");
                        None
                    }
                    Err(_) => Some(format!(
                        "no answer from the API server within the renew deadline ({renew_deadline:?})"
                    )),
                };
                if let Some(why) = lost {
                    lost_lease(&why);
                }
            }
            lock
        }
    });

    run_controllers(client, args, metrics.clone(), stop.subscribe()).await;
    metrics.leader.set(0);
    stop.send_replace(true);
    let lock = renewer.await.context("lease renewer panicked")?;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the leader Lease");
    }
    tracing::info!("released the leader Lease");
    Ok(())
}

/// Ends the process at once after the Lease is lost: a graceful stop would wait for the
/// reconciles in flight, whose writes would land after another replica leads. The container
/// restarts and the new process stands by.
fn lost_lease(why: &str) -> ! {
    tracing::error!(%why, "lost the leader Lease; exiting at once so that only the new leader writes");
    std::process::exit(1)
}

/// Triggers for one ModelDeployment within this window become one reconcile: a rollout sends
/// bursts of Deployment and pod updates.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs one controller per watched namespace (or one for all) until `stop` turns true.
async fn run_controllers(
    client: Client,
    args: &RunArgs,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: Some(args.identity()),
    };
    let scopes: Vec<Option<String>> = match args.namespaces() {
        Some(namespaces) => namespaces.into_iter().map(Some).collect(),
        None => vec![None],
    };
    tracing::info!(namespaces = ?scopes, server_image = %args.server_image, "starting controllers");
    // BatchPredictions have a controller of their own (crate::batch), stopped by the same signal.
    let batch = tokio::spawn(crate::batch::run(
        client.clone(),
        args.config(),
        reporter.clone(),
        scopes.clone(),
        stop.clone(),
    ));

    // Pods, HPAs, Ingresses and PodDisruptionBudgets are watched once per scope: each watch
    // fills a cache the
    // reconciler reads and triggers the controller after the cache has the change. Children
    // and pods carry the same managed-by and name labels, so one selector finds them all.
    // HTTPRoutes are not watched (their CRDs may be absent): drift of a route is repaired at
    // the next resync.
    let children = watcher::Config::default().labels(&managed_selector());
    let mut caches = Caches::default();
    let mut cache_streams = Vec::new();
    for scope in &scopes {
        let (pods, pod_writer) = reflector::store::<Pod>();
        let pod_stream = watcher(scoped::<Pod>(&client, scope), children.clone())
            .default_backoff()
            .reflect(pod_writer)
            .touched_objects();
        let (hpas, hpa_writer) = reflector::store::<HorizontalPodAutoscaler>();
        let hpa_stream = watcher(
            scoped::<HorizontalPodAutoscaler>(&client, scope),
            children.clone(),
        )
        .default_backoff()
        .reflect(hpa_writer)
        .touched_objects();
        let (ingresses, ingress_writer) = reflector::store::<Ingress>();
        let ingress_stream = watcher(scoped::<Ingress>(&client, scope), children.clone())
            .default_backoff()
            .reflect(ingress_writer)
            .touched_objects();
        let (pdbs, pdb_writer) = reflector::store::<PodDisruptionBudget>();
        let pdb_stream = watcher(
            scoped::<PodDisruptionBudget>(&client, scope),
            children.clone(),
        )
        .default_backoff()
        .reflect(pdb_writer)
        .touched_objects();
        caches.pdbs.push(pdbs);
        caches.pods.push(pods);
        caches.hpas.push(hpas);
        caches.ingresses.push(ingresses);
        cache_streams.push((pod_stream, hpa_stream, ingress_stream, pdb_stream));
    }
    let ctx = Arc::new(Context::new(
        client.clone(),
        args.config(),
        Recorder::new(client.clone(), reporter),
        metrics.clone(),
        caches,
    ));

    let mut stores: Vec<Store<ModelDeployment>> = Vec::new();
    let mut streams = Vec::new();
    for (scope, (pod_stream, hpa_stream, ingress_stream, pdb_stream)) in
        scopes.iter().zip(cache_streams)
    {
        // Triggered by spec changes only: the operator's own status writes (and other
        // metadata-only updates) do not start another reconcile.
        let (reader, writer) = reflector::store::<ModelDeployment>();
        let model_deployments = watcher(
            scoped::<ModelDeployment>(&client, scope),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
        let controller = Controller::for_stream(model_deployments, reader)
            .owns(scoped::<Deployment>(&client, scope), children.clone())
            .owns(scoped::<Service>(&client, scope), children.clone())
            .owns_stream(hpa_stream)
            .owns_stream(ingress_stream)
            .owns_stream(pdb_stream)
            .watches_stream(pod_stream, |pod: Pod| model_deployment_of(&pod))
            .with_config(
                controller::Config::default()
                    .concurrency(args.concurrency)
                    .debounce(DEBOUNCE),
            )
            .graceful_shutdown_on(stopped(stop.clone()));
        stores.push(controller.store());
        streams.push(controller.run(reconcile, error_policy, ctx.clone()).boxed());
    }
    futures::stream::select_all(streams)
        .for_each(|result| {
            let managed: usize = stores.iter().map(|s| s.state().len()).sum();
            metrics.managed_objects.set(managed as i64);
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                // Already counted and logged by the error policy.
                Err(controller::Error::ReconcilerFailed(_, _)) => {}
                // A child's event for an owner deleted a moment ago: expected, not a fault.
                Err(e @ controller::Error::ObjectNotFound(_)) => {
                    tracing::debug!(error = %e, "controller");
                }
                Err(e) => tracing::warn!(error = %e, "controller"),
            }
            futures::future::ready(())
        })
        .await;
    let _ = batch.await;
    tracing::info!("controllers stopped");
}

fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
