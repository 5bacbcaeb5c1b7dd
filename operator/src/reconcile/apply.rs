//! The apply stage: server-side apply of every child with the operator's field manager, and
//! the deletion of an HPA the operator made when `spec.autoscaling` goes away.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error, events};
use crate::build::{Children, MANAGER};
use crate::crd::ModelDeployment;
use crate::validate::Validated;

/// Applies every child of `v`; returns the Deployment as the API server stored it.
pub(super) async fn apply_children(
    md: &ModelDeployment,
    v: &Validated,
    children: &Children,
    ctx: &Context,
) -> Result<Deployment, Error> {
    let client = &ctx.client;
    let deployment = apply(
        Api::<Deployment>::namespaced(client.clone(), &v.namespace),
        &v.name,
        &children.deployment,
    )
    .await?;
    apply(
        Api::<Service>::namespaced(client.clone(), &v.namespace),
        &v.name,
        &children.service,
    )
    .await?;
    let hpas = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &v.namespace);
    match &children.hpa {
        Some(hpa) => {
            apply(hpas, &v.name, hpa).await?;
        }
        None => delete_owned_hpa(md, v, hpas, ctx).await?,
    }
    Ok(deployment)
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

/// Deletes the HPA of `v` after `spec.autoscaling` was removed, if this ModelDeployment owns it.
async fn delete_owned_hpa(
    md: &ModelDeployment,
    v: &Validated,
    api: Api<HorizontalPodAutoscaler>,
    ctx: &Context,
) -> Result<(), Error> {
    let Some(hpa) = ctx.caches.hpa_of(&v.namespace, &v.name) else {
        return Ok(());
    };
    let owned = hpa
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == v.uid);
    if !owned {
        return Ok(());
    }
    match api.delete(&v.name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(source) => {
            return Err(Error::DeleteHpa {
                name: v.name.clone(),
                source,
            });
        }
    }
    events::publish(
        md,
        ctx,
        EventType::Normal,
        "AutoscalingRemoved",
        format!(
            "deleted HorizontalPodAutoscaler {}: spec.autoscaling was removed",
            v.name
        ),
    )
    .await;
    Ok(())
}
