//! The traffic stage: discover the Gateway API when a route needs it, plan the route and the
//! canary (pure, [`plan_traffic`]), apply them, and delete the route or the canary's children
//! the operator made once they are no longer wanted.
//!
//! No cache holds the canary's Deployment and Service or the HTTPRoute, so whether they may
//! exist is read from the last status (a `status.canary`, an `Exposed` condition): only then
//! are they read and deleted. The Ingress is in the caches, like the HPA.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::events::EventType;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::apply::{apply, delete_if_owned, get_and_delete_if_owned};
use super::caches::ready_pods;
use super::{Context, Error, events};
use crate::build::traffic::{Route, wants_gateway_api};
use crate::build::{GatewayApi, Traffic, plan_traffic};
use crate::crd::ModelDeployment;
use crate::gateway_api::HTTPRoute;
use crate::status::ConditionType;
use crate::validate::{CANARY_SUFFIX, Validated};

/// The plan, what discovery found, and the canary's pods.
pub(super) struct Planned {
    pub traffic: Traffic,
    pub gateway_api: GatewayApi,
    pub canary_pods: Vec<Pod>,
}

/// Whether the last status reported a route, so that one the operator made may exist.
fn previously_exposed(md: &ModelDeployment) -> bool {
    md.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == ConditionType::Exposed.as_str())
    })
}

/// Whether the last status reported a canary, so that its children may exist.
fn previously_canary(md: &ModelDeployment) -> bool {
    md.status.as_ref().is_some_and(|s| s.canary.is_some())
}

/// Discovers what the route needs and plans the traffic of `v`.
pub(super) async fn plan(md: &ModelDeployment, v: &Validated, ctx: &Context) -> Planned {
    let gateway_api = if wants_gateway_api(v, &ctx.config.expose) || previously_exposed(md) {
        ctx.discovery.gateway_api(&ctx.client).await
    } else {
        GatewayApi::NotChecked
    };
    let canary_pods = v
        .canary
        .as_ref()
        .map(|c| ctx.caches.pods_of(&v.namespace, &c.name))
        .unwrap_or_default();
    let traffic = plan_traffic(
        v,
        &ctx.config.expose,
        &gateway_api,
        ready_pods(&canary_pods),
    );
    Planned {
        traffic,
        gateway_api,
        canary_pods,
    }
}

/// Applies the canary's children, then the route (so that the route never names a Service
/// that does not exist yet); deletes what is no longer wanted.
pub(super) async fn apply_traffic(
    md: &ModelDeployment,
    v: &Validated,
    planned: &Planned,
    ctx: &Context,
) -> Result<(), Error> {
    let client = &ctx.client;
    let canary_name = format!("{}{CANARY_SUFFIX}", v.name);
    match &planned.traffic.canary {
        Some(canary) => {
            let deployments = Api::<Deployment>::namespaced(client.clone(), &v.namespace);
            apply(deployments, &canary_name, &canary.deployment).await?;
            let services = Api::<Service>::namespaced(client.clone(), &v.namespace);
            apply(services, &canary_name, &canary.service).await?;
        }
        None if previously_canary(md) => {
            let deleted = delete_child::<Deployment>(v, &canary_name, ctx).await?
                | delete_child::<Service>(v, &canary_name, ctx).await?;
            if deleted {
                let note = format!("deleted the canary's Deployment and Service {canary_name}");
                events::publish(md, ctx, EventType::Normal, "CanaryRemoved", note).await;
            }
        }
        None => {}
    }
    let ingresses = Api::<Ingress>::namespaced(client.clone(), &v.namespace);
    let (keep_route, keep_ingress) = match &planned.traffic.route {
        Some(Route::HTTPRoute(route)) => {
            let routes = Api::<HTTPRoute>::namespaced(client.clone(), &v.namespace);
            apply(routes, &v.name, route.as_ref()).await?;
            (true, false)
        }
        Some(Route::Ingress(ingress)) => {
            apply(ingresses.clone(), &v.name, ingress.as_ref()).await?;
            (false, true)
        }
        None => (false, false),
    };
    let mut removed = Vec::new();
    if !keep_ingress && let Some(ingress) = ctx.caches.ingress_of(&v.namespace, &v.name) {
        let deleted = delete_if_owned(&ingresses, &v.name, &v.uid, ingress.as_ref())
            .await
            .map_err(|source| delete_error::<Ingress>(&v.name, source))?;
        if deleted {
            removed.push("Ingress");
        }
    }
    if !keep_route
        && previously_exposed(md)
        && planned.gateway_api == GatewayApi::Installed
        && delete_child::<HTTPRoute>(v, &v.name, ctx).await?
    {
        removed.push("HTTPRoute");
    }
    for kind in removed {
        let note = format!(
            "deleted {kind} {}: the public route is no longer wanted as it was",
            v.name
        );
        events::publish(md, ctx, EventType::Normal, "RouteRemoved", note).await;
    }
    Ok(())
}

/// Reads and deletes child `name` of kind `K` when `v`'s ModelDeployment controls it.
async fn delete_child<K>(v: &Validated, name: &str, ctx: &Context) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(ctx.client.clone(), &v.namespace);
    get_and_delete_if_owned(&api, name, &v.uid)
        .await
        .map_err(|source| delete_error::<K>(name, source))
}

fn delete_error<K: Resource<DynamicType = ()>>(name: &str, source: kube::Error) -> Error {
    Error::Delete {
        kind: K::kind(&()).into_owned(),
        name: name.to_string(),
        source,
    }
}
