//! The reconciler: one ModelDeployment through read → validate → build → apply → status.
//!
//! [`reconcile`] reads as the pipeline, one function per stage: [`read`] (is the object alive,
//! in a namespace?), [`validate`] (every default resolved once), [`build_children`] (pure, no
//! client), [`apply::apply_children`] (server-side apply of every child) and
//! [`status_patch::update_status`] (conditions, Events, the status subresource). Between apply
//! and status, [`traffic`] discovers the Gateway API, plans the public route and the canary,
//! and applies them. Of its submodules `apply`, `events`, `status_patch` and `traffic` talk to
//! the API server (`discovery` reads the API's discovery documents); [`Caches`] holds the
//! watched pods, HPAs and Ingresses, and [`error_policy`] decides when a failed reconcile runs
//! again.

mod apply;
mod backoff;
mod caches;
mod discovery;
mod events;
mod pdb;
mod status_patch;
mod traffic;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Client, Resource, ResourceExt};

use crate::build::build_children;
use crate::build::traffic::Exposure;
use crate::config::Config;
use crate::crd::ModelDeployment;
use crate::metrics::Metrics;
use crate::status::{Observed, RouteVerdict};
use crate::validate::{InvalidSpec, validate};

pub use backoff::{Backoff, error_policy};
pub use caches::{Caches, model_deployment_of, ready_pods};
pub use discovery::{DISCOVERY_TTL, Discovery};

/// What can go wrong in a reconcile; [`Error::label`] names it in metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not retried until the spec changes.
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
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        kind: String,
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
            Error::Delete { .. } => "delete",
            Error::Status(_) => "status",
            Error::NoNamespace => "no_namespace",
        }
    }
}

/// Shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub caches: Caches,
    /// Consecutive failures per object.
    pub backoff: Backoff,
    /// Whether the cluster serves the Gateway API, cached briefly.
    pub discovery: Discovery,
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
            backoff: Backoff::default(),
            discovery: Discovery::default(),
        }
    }
}

/// Requeue after success, so that drift the watches missed is repaired eventually.
pub const RESYNC: Duration = Duration::from_secs(300);

/// Reconciles one ModelDeployment; every log line inside carries its namespace and name.
#[tracing::instrument(
    skip_all,
    fields(namespace = %md.namespace().unwrap_or_default(), name = %md.name_any())
)]
pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciliations.inc();
    let result = pipeline(&md, &ctx).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    if result.is_ok() {
        ctx.backoff.reset(&key(&md));
    }
    result
}

/// read → validate → build → apply → status.
async fn pipeline(md: &ModelDeployment, ctx: &Context) -> Result<Action, Error> {
    if read(md)? == Read::Deleted {
        // Owner references let the garbage collector remove the children.
        return Ok(Action::await_change());
    }
    let validated = match validate(md, &ctx.config) {
        Ok(validated) => validated,
        Err(invalid) => {
            status_patch::update_status(md, &Observed::Invalid(&invalid), ctx).await?;
            return Err(Error::InvalidSpec(invalid));
        }
    };
    let children = build_children(&validated);
    let discovered = traffic::discover(md, &validated, ctx).await;
    let deployment = apply::apply_children(md, &validated, &children, ctx).await?;
    let planned = traffic::plan(md, &validated, discovered, &deployment, ctx);
    let applied = traffic::apply_traffic(md, &validated, &planned, ctx).await?;
    let pods = ctx.caches.pods_of(&validated.namespace, &validated.name);
    let observed = Observed::Applied {
        validated: &validated,
        deployment: &deployment,
        pods: &pods,
        traffic: &planned.traffic,
        canary_pods: &planned.canary_pods,
        route: applied.route.as_ref(),
    };
    status_patch::update_status(md, &observed, ctx).await?;
    if let Some(after) = applied.retiring {
        // A canary that had traffic is deleted once the gateway has moved off it; a promotion
        // moves on once the primary has rolled out.
        return Ok(Action::requeue(after));
    }
    // An unavailable route may become available without a change to the spec (the Gateway
    // API installed later), and a Gateway writes its word on a route after the apply (no
    // watch on routes: the Gateway API may not be installed): look again soon.
    match (&planned.traffic.exposure, &applied.route) {
        (Some(Exposure::Unavailable(_)), _) | (_, Some(RouteVerdict::Refused { .. })) => {
            Ok(Action::requeue(DISCOVERY_TTL))
        }
        (_, Some(RouteVerdict::Pending { .. })) => Ok(Action::requeue(ROUTE_PENDING_RECHECK)),
        _ => Ok(Action::requeue(RESYNC)),
    }
}

/// How soon a route no Gateway has accepted yet is read again.
pub const ROUTE_PENDING_RECHECK: Duration = Duration::from_secs(3);

/// What the read stage found.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// Being deleted: nothing to do.
    Deleted,
    /// To reconcile.
    Live,
}

/// The read stage: a ModelDeployment lives in a namespace, and one being deleted is left to
/// the garbage collector.
fn read(md: &ModelDeployment) -> Result<Read, Error> {
    if md.namespace().is_none() {
        return Err(Error::NoNamespace);
    }
    if md.meta().deletion_timestamp.is_some() {
        return Ok(Read::Deleted);
    }
    Ok(Read::Live)
}

/// The name of `md` for logs and the failure count: `namespace/name`.
pub fn key(md: &ModelDeployment) -> String {
    format!("{}/{}", md.namespace().unwrap_or_default(), md.name_any())
}

#[cfg(test)]
mod promote_tests;
#[cfg(test)]
mod retire_tests;
#[cfg(test)]
mod status_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod traffic_tests;
