//! The apply stage: server-side apply of every child with the operator's field manager, and
//! the deletion of a child the operator made when its part of the spec goes away (the HPA
//! with `spec.autoscaling`; the route and the canary's children in [`super::traffic`]).

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
    super::pdb::apply_pdb(md, v, children.pdb.as_ref(), ctx).await?;
    Ok(deployment)
}

/// Server-side applies `object` with the operator's field manager, taking over conflicting fields.
pub(super) async fn apply<K>(api: Api<K>, name: &str, object: &K) -> Result<K, Error>
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
    let deleted = delete_if_owned(&api, &v.name, &v.uid, hpa.as_ref())
        .await
        .map_err(|source| Error::DeleteHpa {
            name: v.name.clone(),
            source,
        })?;
    if !deleted {
        return Ok(());
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

/// Deletes `object` (named `name`) when the ModelDeployment with `uid` controls it; `true`
/// when it was deleted by this call.
pub(super) async fn delete_if_owned<K>(
    api: &Api<K>,
    name: &str,
    uid: &str,
    object: &K,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let owned = object
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid);
    if !owned {
        return Ok(false);
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes `name` when it exists and the ModelDeployment with `uid` controls it, reading it
/// first (for children no cache holds).
pub(super) async fn get_and_delete_if_owned<K>(
    api: &Api<K>,
    name: &str,
    uid: &str,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await? {
        Some(object) => delete_if_owned(api, name, uid, &object).await,
        None => Ok(false),
    }
}
