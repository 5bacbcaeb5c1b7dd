//! The reconciler: read → validate → build → apply → status. The only module (with
//! [`crate::leader`]) that talks to the API server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::{MANAGER, build_deployment, build_hpa, build_service, selector_labels};
use crate::config::Config;
use crate::crd::ModelDeployment;
use crate::metrics::Metrics;
use crate::status::{DEGRADED, Observed, READY, compute_status, display_name};
use crate::validate::{InvalidSpec, validate};

/// What can go wrong in a reconcile; [`Error::label`] names it in metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] InvalidSpec),
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting HorizontalPodAutoscaler {name}: {source}")]
    DeleteHpa {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating status: {0}")]
    Status(#[source] kube::Error),
    #[error("ModelDeployment has no namespace")]
    NoNamespace,
}

impl Error {
    /// Short label for metrics and events.
    pub fn label(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Apply { .. } => "apply",
            Error::DeleteHpa { .. } => "delete_hpa",
            Error::Status(_) => "status",
            Error::NoNamespace => "no_namespace",
        }
    }
}

/// Caches of the watched pods and HPAs (one store per watched namespace, or one for all), so
/// that a reconcile does not list pods or get the HPA from the API server.
#[derive(Default, Clone)]
pub struct Caches {
    pub pods: Vec<Store<Pod>>,
    pub hpas: Vec<Store<HorizontalPodAutoscaler>>,
}

impl Caches {
    /// Every pod of `md`, old ReplicaSets included.
    fn pods_of(&self, md: &ModelDeployment) -> Vec<Pod> {
        let namespace = md.namespace();
        let selector = selector_labels(md);
        self.pods
            .iter()
            .flat_map(|store| store.state())
            .filter(|pod| {
                pod.namespace() == namespace
                    && selector.iter().all(|(k, v)| pod.labels().get(k) == Some(v))
            })
            .map(|pod| (*pod).clone())
            .collect()
    }

    fn hpa_of(&self, md: &ModelDeployment) -> Option<Arc<HorizontalPodAutoscaler>> {
        let key = ObjectRef::new(&md.name_any()).within(&md.namespace()?);
        self.hpas.iter().find_map(|store| store.get(&key))
    }
}

/// Shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub caches: Caches,
    /// Consecutive failures per object, for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        config: Config,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        caches: Caches,
    ) -> Self {
        Self {
            client,
            config,
            recorder,
            metrics,
            caches,
            failures: Mutex::default(),
        }
    }
}

/// Requeue after success, so that drift the watches missed is repaired eventually.
const RESYNC: Duration = Duration::from_secs(300);

/// Reconciles one ModelDeployment.
pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciliations.inc();
    let result = reconcile_inner(&md, &ctx).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    if result.is_ok() {
        ctx.failures.lock().unwrap().remove(&key(&md));
    }
    result
}

async fn reconcile_inner(md: &ModelDeployment, ctx: &Context) -> Result<Action, Error> {
    let ns = md.namespace().ok_or(Error::NoNamespace)?;
    let name = md.name_any();
    if md.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children.
        return Ok(Action::await_change());
    }

    // validate
    if let Err(invalid) = validate(md) {
        let observed = Observed {
            deployment: None,
            pods: &[],
            invalid: Some(&invalid),
        };
        let status = compute_status(md, &ctx.config, &observed, &now());
        publish_transitions(md, &status.conditions, ctx).await;
        patch_status(md, &status, ctx).await?;
        return Err(Error::InvalidSpec(invalid));
    }

    // build: pure, no client
    let deployment = build_deployment(md, &ctx.config)?;
    let service = build_service(md, &ctx.config);
    let hpa = build_hpa(md, &ctx.config);

    // apply
    let applied = apply(
        Api::<Deployment>::namespaced(ctx.client.clone(), &ns),
        &name,
        &deployment,
    )
    .await?;
    apply(
        Api::<Service>::namespaced(ctx.client.clone(), &ns),
        &name,
        &service,
    )
    .await?;
    let hpas = Api::<HorizontalPodAutoscaler>::namespaced(ctx.client.clone(), &ns);
    match hpa {
        Some(hpa) => {
            apply(hpas, &name, &hpa).await?;
        }
        None => delete_owned_hpa(md, hpas, ctx).await?,
    }

    // status, from the applied Deployment and every pod of this ModelDeployment
    let pods = ctx.caches.pods_of(md);
    let observed = Observed {
        deployment: Some(&applied),
        pods: &pods,
        invalid: None,
    };
    let status = compute_status(md, &ctx.config, &observed, &now());
    publish_transitions(md, &status.conditions, ctx).await;
    patch_status(md, &status, ctx).await?;
    Ok(Action::requeue(RESYNC))
}

/// What the controller does after a failed reconcile: wait for a change of an invalid spec,
/// back off exponentially (1s to 5min) on anything else.
pub fn error_policy(md: Arc<ModelDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(error.label());
    if let Error::InvalidSpec(invalid) = error {
        tracing::info!(object = %display_name(&md), %invalid, "invalid spec; waiting for a change");
        return Action::await_change();
    }
    let attempts = {
        let mut failures = ctx.failures.lock().unwrap();
        let n = failures.entry(key(&md)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = Duration::from_secs(1u64 << attempts.min(9).saturating_sub(1))
        .min(Duration::from_secs(300));
    tracing::warn!(object = %display_name(&md), error = %error, label = error.label(), attempts, ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Server-side applies `object` with the operator's field manager, taking over conflicting fields.
async fn apply<K>(api: Api<K>, name: &str, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: K::kind(&()).into_owned(),
        name: name.to_string(),
        source,
    })
}

/// Deletes the HPA of `md` after `spec.autoscaling` was removed, if this ModelDeployment owns it.
async fn delete_owned_hpa(
    md: &ModelDeployment,
    api: Api<HorizontalPodAutoscaler>,
    ctx: &Context,
) -> Result<(), Error> {
    let name = md.name_any();
    let err = |source| Error::DeleteHpa {
        name: name.clone(),
        source,
    };
    let Some(hpa) = ctx.caches.hpa_of(md) else {
        return Ok(());
    };
    let owned = hpa
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == md.meta().uid.as_ref());
    if !owned {
        return Ok(());
    }
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(err(e)),
    }
    event(
        md,
        ctx,
        EventType::Normal,
        "AutoscalingRemoved",
        format!("deleted HorizontalPodAutoscaler {name}: spec.autoscaling was removed"),
    )
    .await;
    Ok(())
}

/// Writes the status through the status subresource, when it changed.
async fn patch_status(
    md: &ModelDeployment,
    status: &crate::crd::ModelDeploymentStatus,
    ctx: &Context,
) -> Result<(), Error> {
    if md.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api =
        Api::<ModelDeployment>::namespaced(ctx.client.clone(), &md.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": ModelDeployment::api_version(&()),
        "kind": ModelDeployment::kind(&()),
        "status": status,
    });
    match api
        .patch_status(
            &md.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Status(e)),
    }
}

/// Emits an Event when `Ready` or `Degraded` changes, so `kubectl describe` tells the story.
async fn publish_transitions(md: &ModelDeployment, conditions: &[Condition], ctx: &Context) {
    let previous = md
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let changed = |type_: &str| -> Option<&Condition> {
        let new = conditions.iter().find(|c| c.type_ == type_)?;
        let old = previous.iter().find(|c| c.type_ == type_);
        let same = old.is_some_and(|o| o.status == new.status && o.reason == new.reason);
        (!same).then_some(new)
    };
    if let Some(degraded) = changed(DEGRADED)
        && degraded.status == "True"
    {
        event(
            md,
            ctx,
            EventType::Warning,
            &degraded.reason,
            degraded.message.clone(),
        )
        .await;
    }
    if let Some(ready) = changed(READY)
        && ready.status == "True"
    {
        event(
            md,
            ctx,
            EventType::Normal,
            "ModelServing",
            ready.message.clone(),
        )
        .await;
    }
}

async fn event(md: &ModelDeployment, ctx: &Context, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(note, 1024)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &md.object_ref(&())).await {
        tracing::warn!(object = %display_name(md), error = %e, "could not publish event");
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn key(md: &ModelDeployment) -> String {
    display_name(md)
}
