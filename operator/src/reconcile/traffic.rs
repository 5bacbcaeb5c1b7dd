//! The traffic stage: discover the Gateway API when a route needs it, plan the route and the
//! canary (pure, [`plan_traffic`]), apply them, and delete the route or the canary's children
//! the operator made once they are no longer wanted. The `GRPCRoute` goes with the
//! `HTTPRoute`, where the cluster serves `grpcroutes` (a Gateway API older than v1.1.0 has
//! none: the model is then public over REST only).
//!
//! No cache holds the canary's Deployment and Service or the HTTPRoute, so whether they may
//! exist is read from the last status (a `status.canary`, an `Exposed` condition): only then
//! are they read and deleted. The Ingress is in the caches, like the HPA.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::events::EventType;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::apply::{apply, delete_if_owned, get_and_delete_if_owned};
use super::caches::ready_pods;
use super::{Context, Error, events};
use crate::build::promotion::promotion;
use crate::build::traffic::{Route, wants_gateway_api};
use crate::build::{GatewayApi, Traffic, plan_traffic};
use crate::crd::ModelDeployment;
use crate::gateway_api::{GRPCRoute, HTTPRoute};
use crate::status::{ConditionType, Rollout, RouteVerdict, judge_route};
use crate::validate::{Validated, canary_name};

/// The plan, what discovery found, and the canary's pods.
pub(super) struct Planned {
    pub traffic: Traffic,
    pub gateway_api: GatewayApi,
    /// Whether the cluster serves `GRPCRoute`s (only asked with the Gateway API).
    pub grpc_routes: bool,
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

/// What discovery found about the Gateway API, asked before anything is applied.
pub(super) struct Discovered {
    gateway_api: GatewayApi,
    grpc_routes: bool,
}

/// Discovers what the route of `v` needs (the Gateway API, when a route wants it or one the
/// operator made may exist).
pub(super) async fn discover(md: &ModelDeployment, v: &Validated, ctx: &Context) -> Discovered {
    let gateway_api = if wants_gateway_api(v, &ctx.config.expose) || previously_exposed(md) {
        ctx.discovery.gateway_api(&ctx.client).await
    } else {
        GatewayApi::NotChecked
    };
    Discovered {
        grpc_routes: gateway_api == GatewayApi::Installed && ctx.discovery.grpc_routes(),
        gateway_api,
    }
}

/// Plans the traffic of `v` from what discovery found; `primary` is the primary's Deployment
/// as the apply returned it (a promotion holds until its rollout is complete).
pub(super) fn plan(
    md: &ModelDeployment,
    v: &Validated,
    discovered: Discovered,
    primary: &Deployment,
    ctx: &Context,
) -> Planned {
    let canary_pods = if v.canary.is_some() || previously_canary(md) {
        ctx.caches.pods_of(&v.namespace, &canary_name(&v.name))
    } else {
        Vec::new()
    };
    let canary_ready = ready_pods(&canary_pods);
    let complete = Rollout::of(primary).complete;
    let promotion = promotion(v, md.status.as_ref(), canary_ready, complete);
    let traffic = plan_traffic(
        v,
        &ctx.config.expose,
        &discovered.gateway_api,
        canary_ready,
        promotion.as_ref(),
    );
    // The canary's pods speak in the status only while it has a share to report.
    let canary_pods = match traffic.canary_traffic {
        Some(_) => canary_pods,
        None => Vec::new(),
    };
    Planned {
        traffic,
        grpc_routes: discovered.grpc_routes,
        gateway_api: discovered.gateway_api,
        canary_pods,
    }
}

/// What applying the traffic found.
#[derive(Debug, Default)]
pub(super) struct TrafficApplied {
    /// The canary is retiring, or a promotion holds it: look again after this long.
    pub retiring: Option<Duration>,
    /// What the Gateway said of the HTTPRoute and the GRPCRoute, as the applies returned them.
    pub route: Option<RouteVerdict>,
}

/// Applies the canary's children, then the route (so that the route never names a Service
/// that does not exist yet); deletes what is no longer wanted, the canary last (see
/// [`CANARY_RETIRE_GRACE`]).
pub(super) async fn apply_traffic(
    md: &ModelDeployment,
    v: &Validated,
    planned: &Planned,
    ctx: &Context,
) -> Result<TrafficApplied, Error> {
    let mut found = TrafficApplied::default();
    let client = &ctx.client;
    let canary_name = canary_name(&v.name);
    if let Some(canary) = &planned.traffic.canary {
        let deployments = Api::<Deployment>::namespaced(client.clone(), &v.namespace);
        let applied = apply(deployments.clone(), &canary_name, &canary.deployment).await?;
        if applied.annotations().contains_key(RETIRING_SINCE) {
            // The canary came back while it was retiring: it is not retiring any more.
            let patch = json!({"metadata": {"annotations": {RETIRING_SINCE: null}}});
            merge_patch(&deployments, &canary_name, &patch).await?;
        }
        let services = Api::<Service>::namespaced(client.clone(), &v.namespace);
        apply(services, &canary_name, &canary.service).await?;
    }
    let ingresses = Api::<Ingress>::namespaced(client.clone(), &v.namespace);
    let (keep_route, keep_ingress) = match &planned.traffic.route {
        Some(Route::HTTPRoute(route)) => {
            let routes = Api::<HTTPRoute>::namespaced(client.clone(), &v.namespace);
            let applied = apply(routes, &v.name, route.as_ref()).await?;
            found.route = Some(judge_route(&applied));
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
    let keep_grpc_route = match (&planned.traffic.grpc_route, planned.grpc_routes) {
        (Some(route), true) => {
            let routes = Api::<GRPCRoute>::namespaced(client.clone(), &v.namespace);
            let applied = apply(routes, &v.name, route).await?;
            // Exposed only once the Gateway has taken both routes.
            found.route = found
                .route
                .take()
                .map(|http| http.and(judge_route(&applied)));
            true
        }
        _ => false,
    };
    if !keep_grpc_route
        && previously_exposed(md)
        && planned.grpc_routes
        && delete_child::<GRPCRoute>(v, &v.name, ctx).await?
    {
        removed.push("GRPCRoute");
    }
    if !removed.is_empty() {
        let note = format!(
            "deleted {} {}: the public route is no longer wanted as it was",
            removed.join(" and "),
            v.name
        );
        events::publish(md, ctx, EventType::Normal, "RouteRemoved", note).await;
    }
    if planned.traffic.promotion.is_some() {
        // The canary keeps serving its share until the primary has rolled out its model.
        found.retiring = Some(PROMOTION_RECHECK);
        return Ok(found);
    }
    let canary_may_exist =
        previously_canary(md) || !ctx.caches.pods_of(&v.namespace, &canary_name).is_empty();
    if planned.traffic.canary.is_none() && canary_may_exist {
        match retire_canary(md, v, &canary_name, ctx).await? {
            Retired::Waiting(after) => {
                found.retiring = Some(after);
                return Ok(found);
            }
            Retired::Deleted => {
                let note = format!("deleted the canary's Deployment and Service {canary_name}");
                events::publish(md, ctx, EventType::Normal, "CanaryRemoved", note).await;
            }
            Retired::Gone => {}
        }
    }
    Ok(found)
}

/// How long a canary that had traffic keeps serving after the route stopped sending it any,
/// before its Deployment and Service are deleted: a gateway applies a route change within
/// seconds (Traefik gathers changes for 2 s), and a request it still sends to the canary
/// meanwhile must find it there. A promotion (the canary's model made the primary's) and a
/// rollback (the canary removed) lose no request to the canary's removal.
pub const CANARY_RETIRE_GRACE: Duration = Duration::from_secs(10);
/// How soon a promotion in progress looks at the primary's rollout again (its Deployment's
/// changes also wake the reconciler; this bounds a missed one).
pub const PROMOTION_RECHECK: Duration = Duration::from_secs(2);
/// Annotation on a retiring canary's Deployment: when the route stopped sending it traffic.
pub const RETIRING_SINCE: &str = "modelship.io/canary-retiring-since";

/// What became of a canary that is no longer wanted.
enum Retired {
    /// Deleted now.
    Deleted,
    /// Still serving what the gateway may send it; deleted after this long.
    Waiting(Duration),
    /// Nothing of ours was there.
    Gone,
}

/// Retires the canary `name` of `v`: one that had traffic (by the last status) is marked
/// [`RETIRING_SINCE`] and kept for [`CANARY_RETIRE_GRACE`]; then (or at once, for one that
/// had none) its Deployment and Service are deleted.
async fn retire_canary(
    md: &ModelDeployment,
    v: &Validated,
    name: &str,
    ctx: &Context,
) -> Result<Retired, Error> {
    let api = Api::<Deployment>::namespaced(ctx.client.clone(), &v.namespace);
    let found = api
        .get_opt(name)
        .await
        .map_err(|source| delete_error::<Deployment>(name, source))?;
    let mut deleted = false;
    if let Some(deployment) = found {
        let had_traffic = md
            .status
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .is_some_and(|c| c.traffic_percent > 0);
        let now = Timestamp::now();
        let since = deployment
            .annotations()
            .get(RETIRING_SINCE)
            .and_then(|t| t.parse::<Timestamp>().ok());
        let owned = deployment
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && o.uid == v.uid);
        let grace = CANARY_RETIRE_GRACE.as_secs() as i64;
        let wait = match since {
            _ if !owned => None,
            None if had_traffic => {
                let patch = json!({"metadata": {"annotations": {RETIRING_SINCE: now.to_string()}}});
                merge_patch(&api, name, &patch).await?;
                Some(grace)
            }
            None => None,
            Some(since) => Some(grace - (now.as_second() - since.as_second())).filter(|w| *w > 0),
        };
        if let Some(wait) = wait {
            return Ok(Retired::Waiting(Duration::from_secs(wait as u64)));
        }
        deleted = delete_if_owned(&api, name, &v.uid, &deployment)
            .await
            .map_err(|source| delete_error::<Deployment>(name, source))?;
    }
    deleted |= delete_child::<Service>(v, name, ctx).await?;
    Ok(if deleted {
        Retired::Deleted
    } else {
        Retired::Gone
    })
}

/// A JSON merge patch of child `name` (the operator's own annotations, outside its applied
/// object).
async fn merge_patch(api: &Api<Deployment>, name: &str, patch: &Value) -> Result<(), Error> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
        .map_err(|source| Error::Apply {
            kind: "Deployment".into(),
            name: name.to_string(),
            source,
        })
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
