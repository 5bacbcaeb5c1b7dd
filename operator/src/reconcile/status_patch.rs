//! The status stage: compute the status from what was observed, publish the Events its
//! transitions call for, write it through the status subresource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use super::{Context, Error, events};
use crate::build::MANAGER;
use crate::crd::{ModelDeployment, ModelDeploymentStatus};
use crate::status::{Observed, compute_status};

/// Computes the status of `md` from `observed`, publishes its transitions and writes it.
pub(super) async fn update_status(
    md: &ModelDeployment,
    observed: &Observed<'_>,
    ctx: &Context,
) -> Result<(), Error> {
    let status = compute_status(md, &ctx.config, observed, &now());
    events::publish_transitions(md, &status.conditions, ctx).await;
    patch_status(md, &status, ctx).await
}

/// Writes the status through the status subresource (server-side apply), when it changed.
///
/// The write is conditional on the `resourceVersion` the status was computed from, so that a
/// status computed for one object never lands on another of the same name: the API server
/// ignores `metadata.uid` in a status write (the status strategy keeps the stored metadata)
/// but refuses a stale `resourceVersion` with 409 Conflict, and a deleted and recreated
/// object has a new one. After a conflict the object is read once: gone or another object
/// (another UID) means nothing to report on; a newer generation gets a reconcile of its own;
/// the same object and generation (a change of metadata or of the status meanwhile) gets the
/// status once more, conditional on the version just read.
async fn patch_status(
    md: &ModelDeployment,
    status: &ModelDeploymentStatus,
    ctx: &Context,
) -> Result<(), Error> {
    if md.status.as_ref() == Some(status) {
        return Ok(());
    }
    let Some(namespace) = md.namespace() else {
        return Err(Error::NoNamespace);
    };
    let api = Api::<ModelDeployment>::namespaced(ctx.client.clone(), &namespace);
    let name = md.name_any();
    match write_status(&api, &name, md.resource_version(), status).await {
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        result => return settle(result),
    }
    let Some(current) = api.get_opt(&name).await.map_err(Error::Status)? else {
        return Ok(());
    };
    let same_object = current.uid() == md.uid();
    if !same_object || current.metadata.generation != md.metadata.generation {
        tracing::debug!(
            same_object,
            "status not written: the object changed since it was computed"
        );
        return Ok(());
    }
    settle(write_status(&api, &name, current.resource_version(), status).await)
}

/// One conditional status write (unconditional when `resource_version` is `None`).
async fn write_status(
    api: &Api<ModelDeployment>,
    name: &str,
    resource_version: Option<String>,
    status: &ModelDeploymentStatus,
) -> Result<ModelDeployment, kube::Error> {
    let mut patch = serde_json::json!({
        "apiVersion": ModelDeployment::api_version(&()),
        "kind": ModelDeployment::kind(&()),
        "status": status,
    });
    if let Some(version) = resource_version {
        patch["metadata"] = serde_json::json!({"resourceVersion": version});
    }
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
}

fn settle(result: Result<ModelDeployment, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Status(e)),
    }
}

/// The clock of the status stage; the computation itself takes the time as an argument.
fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
