//! The BatchPrediction controller: read → resolve the model (once) → plan → create the Jobs →
//! status and Events. The only part of `batch` that talks to the API server.
//!
//! The Jobs are created, never updated: a Job's pod template cannot change, and the spec is
//! immutable anyway. A run that succeeded or failed is final; its status is not computed again
//! (its pods may be gone by then).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;

use super::crd::{BatchPrediction, BatchPredictionStatus, Phase, UsedModel};
use super::job::{MANIFEST_SUFFIX, build_job, build_manifest_job, managed_selector};
use super::plan::plan;
use super::status::{Observed, compute_status, failed_pods, invalid_status, waiting_status};
use crate::build::{INSTANCE_LABEL, MANAGER};
use crate::config::Config;
use crate::crd::ModelDeployment;

/// A run's status is read again at least this often while it runs (the Job and pod watches
/// trigger it sooner).
const RESYNC: Duration = Duration::from_secs(30);

/// What can go wrong in a reconcile; all of it is retried after a pause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("BatchPrediction has no namespace")]
    NoNamespace,
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    config: Config,
    recorder: Recorder,
    /// Failed pods already told in an Event (by uid): each failure is told once per process.
    reported: Mutex<HashSet<String>>,
}

/// Runs one BatchPrediction controller per scope until `stop` turns true.
pub async fn run(
    client: Client,
    config: Config,
    reporter: Reporter,
    scopes: Vec<Option<String>>,
    stop: watch::Receiver<bool>,
) {
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        config,
        reported: Mutex::default(),
    });
    let children = watcher::Config::default().labels(&managed_selector());
    let mut streams = Vec::new();
    for scope in &scopes {
        let mut stop = stop.clone();
        let controller = Controller::new(
            scoped::<BatchPrediction>(&client, scope),
            watcher::Config::default(),
        )
        .owns(scoped::<Job>(&client, scope), children.clone())
        .watches(
            scoped::<Pod>(&client, scope),
            children.clone(),
            |pod: Pod| {
                let name = pod.labels().get(INSTANCE_LABEL)?.clone();
                Some(ObjectRef::<BatchPrediction>::new(&name).within(&pod.namespace()?))
            },
        )
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        streams.push(controller.run(reconcile, error_policy, ctx.clone()).boxed());
    }
    futures::stream::select_all(streams)
        .for_each(|result| {
            match result {
                Ok(_) | Err(controller::Error::ReconcilerFailed(_, _)) => {}
                // A pod's or Job's event for a run deleted a moment ago: expected.
                Err(e @ controller::Error::ObjectNotFound(_)) => {
                    tracing::debug!(error = %e, "batch controller");
                }
                Err(e) => tracing::warn!(error = %e, "batch controller"),
            }
            futures::future::ready(())
        })
        .await;
}

fn error_policy(bp: Arc<BatchPrediction>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %bp.name_any(), %error, "reconciling BatchPrediction failed");
    Action::requeue(Duration::from_secs(5))
}

#[tracing::instrument(skip_all, fields(namespace = bp.namespace(), name = %bp.name_any()))]
async fn reconcile(bp: Arc<BatchPrediction>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = bp.namespace().ok_or(Error::NoNamespace)?;
    if bp.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let previous = bp.status.clone().unwrap_or_default();
    if previous.phase.is_final() {
        return Ok(Action::await_change());
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    let model = match resolve_model(&bp, &namespace, &ctx).await? {
        Ok(model) => model,
        Err(missing) => {
            let status = waiting_status(&bp, "ModelDeploymentNotFound", missing, &now);
            finish(&bp, &previous, &status, &ctx).await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    };
    let plan = match plan(&bp, &model.to_spec(), &ctx.config) {
        Ok(plan) => plan,
        Err(invalid) => {
            let status = invalid_status(&bp, &invalid, &now);
            finish(&bp, &previous, &status, &ctx).await?;
            return Ok(Action::await_change());
        }
    };

    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &namespace);
    let job = match jobs
        .get_opt(&plan.name)
        .await
        .map_err(api_error("reading the Job"))?
    {
        Some(job) => job,
        None => {
            let job = create(&jobs, build_job(&bp, &plan)).await?;
            let note = format!(
                "Job {} started: {} shards, {} pods at once, model {}",
                plan.name, plan.shards, plan.parallelism, plan.model.uri
            );
            publish(&bp, &ctx, EventType::Normal, "Started", note).await;
            job
        }
    };
    let pods = pods_of(&ctx, &namespace, &plan.name).await?;
    report_failures(&bp, &ctx, &pods).await;

    let manifest_name = format!("{}{MANIFEST_SUFFIX}", plan.name);
    let job_complete = job_done(&job, "Complete");
    let mut manifest_job = jobs
        .get_opt(&manifest_name)
        .await
        .map_err(api_error("reading the manifest Job"))?;
    if job_complete && manifest_job.is_none() {
        manifest_job = Some(create(&jobs, build_manifest_job(&bp, &plan)).await?);
    }
    let manifest_pods = match &manifest_job {
        Some(_) => pods_of(&ctx, &namespace, &manifest_name).await?,
        None => Vec::new(),
    };
    let observed = Observed {
        job: Some(&job),
        pods: &pods,
        manifest_job: manifest_job.as_ref(),
        manifest_pods: &manifest_pods,
    };
    let status = compute_status(&bp, model, plan.shards, manifest_uri(&bp), &observed, &now);
    finish(&bp, &previous, &status, &ctx).await?;
    Ok(if status.phase.is_final() {
        Action::await_change()
    } else {
        Action::requeue(RESYNC)
    })
}

/// The model of the run: `status.model` once recorded, else `spec.model` or the one the
/// referenced ModelDeployment serves now. `Err(why)`: that ModelDeployment does not exist
/// (yet); the run waits for it, Pending, saying so.
async fn resolve_model(
    bp: &BatchPrediction,
    namespace: &str,
    ctx: &Context,
) -> Result<Result<UsedModel, String>, Error> {
    if let Some(model) = bp.status.as_ref().and_then(|s| s.model.clone()) {
        return Ok(Ok(model));
    }
    if let Some(model) = &bp.spec.model {
        return Ok(Ok(UsedModel::of(model, None)));
    }
    let Some(reference) = &bp.spec.model_deployment_ref else {
        // Both or neither: the plan reports it.
        return Ok(Ok(UsedModel::default()));
    };
    let api = Api::<ModelDeployment>::namespaced(ctx.client.clone(), namespace);
    match api
        .get_opt(&reference.name)
        .await
        .map_err(api_error("reading the ModelDeployment"))?
    {
        Some(md) => Ok(Ok(UsedModel::of(
            &md.spec.model,
            Some(reference.name.clone()),
        ))),
        None => {
            let why = format!(
                "waiting for ModelDeployment {} (spec.modelDeploymentRef.name): not found in namespace {namespace}",
                reference.name
            );
            tracing::debug!(%why, "batch run waiting");
            Ok(Err(why))
        }
    }
}

/// `OUTPUT/_manifest.json`, in the spec's own words.
fn manifest_uri(bp: &BatchPrediction) -> String {
    format!(
        "{}/_manifest.json",
        bp.spec.output.uri.trim_end_matches('/')
    )
}

async fn create(jobs: &Api<Job>, job: Job) -> Result<Job, Error> {
    let name = job.name_any();
    match jobs.create(&PostParams::default(), &job).await {
        Ok(job) => Ok(job),
        // Made by a reconcile a moment ago: read it.
        Err(kube::Error::Api(e)) if e.code == 409 => jobs
            .get(&name)
            .await
            .map_err(api_error(format!("reading Job {name}"))),
        Err(source) => Err(Error::Api {
            what: format!("creating Job {name}"),
            source,
        }),
    }
}

async fn pods_of(ctx: &Context, namespace: &str, job: &str) -> Result<Vec<Pod>, Error> {
    let api = Api::<Pod>::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{},batch.kubernetes.io/job-name={job}", managed_selector());
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_error("listing the pods"))?
        .items)
}

fn job_done(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// One `ShardFailed` Event per failed pod, with its cause.
async fn report_failures(bp: &BatchPrediction, ctx: &Context, pods: &[Pod]) {
    for failed in failed_pods(pods) {
        if !ctx.reported.lock().unwrap().insert(failed.uid.clone()) {
            continue;
        }
        let shard = failed.shard.map_or_else(|| "?".into(), |s| s.to_string());
        let reason = failed.cause.reason.as_deref().unwrap_or("retryable");
        let note = format!(
            "shard {shard} (pod {}) failed, {reason}: {}",
            failed.name, failed.cause.message
        );
        publish(bp, ctx, EventType::Warning, "ShardFailed", note).await;
    }
}

/// Writes the status and tells a final phase in an Event.
async fn finish(
    bp: &BatchPrediction,
    previous: &BatchPredictionStatus,
    status: &BatchPredictionStatus,
    ctx: &Context,
) -> Result<(), Error> {
    if previous != status {
        let api = Api::<BatchPrediction>::namespaced(
            ctx.client.clone(),
            &bp.namespace().unwrap_or_default(),
        );
        let patch = serde_json::json!({
            "apiVersion": BatchPrediction::api_version(&()),
            "kind": BatchPrediction::kind(&()),
            "status": status,
        });
        match api
            .patch_status(
                &bp.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => {}
            // Deleted meanwhile: nothing to report on.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(Error::Api {
                    what: "updating the status".into(),
                    source,
                });
            }
        }
    }
    if status.phase.is_final() && !previous.phase.is_final() {
        let failed = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Failed" && c.status == "True");
        match (status.phase, failed) {
            (Phase::Failed, Some(c)) => {
                publish(bp, ctx, EventType::Warning, &c.reason, c.message.clone()).await
            }
            _ => {
                let rows = status.rows.clone().unwrap_or_default();
                let note = format!(
                    "{} rows scored, {} skipped; {}",
                    rows.scored,
                    rows.skipped,
                    status.output_manifest.clone().unwrap_or_default()
                );
                publish(bp, ctx, EventType::Normal, "Succeeded", note).await
            }
        }
    }
    Ok(())
}

async fn publish(
    bp: &BatchPrediction,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let mut note = note;
    if note.len() > 1024 {
        let mut cut = 1024;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Run".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &bp.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}

fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
