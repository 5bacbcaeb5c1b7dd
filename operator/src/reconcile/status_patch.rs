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

/// The clock of the status stage; the computation itself takes the time as an argument.
fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
