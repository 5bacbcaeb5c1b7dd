//! What the Gateway made of the model's `HTTPRoute`: its controllers write `status.parents`, one
//! entry per Gateway, with `Accepted` and `ResolvedRefs` conditions. [`judge_route`] reads the
//! route as the apply returned it, so that `Exposed` is true only once a Gateway has taken the
//! route, not merely once the operator wrote it. Conditions written for an older generation of
//! the route do not count.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;

use crate::gateway_api::{HTTPRoute, RouteParentStatus};

/// The Gateways' word on a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteVerdict {
    /// Every parent that spoke for this generation accepted it, its backends resolved; who.
    Accepted { by: Vec<String> },
    /// A parent refused it, or could not resolve a backend: which and why.
    Refused {
        parent: String,
        reason: String,
        message: String,
    },
    /// No parent has written a status for this generation yet.
    Pending,
}

/// Judges `route` (as the API server returned it after the apply).
pub fn judge_route(route: &HTTPRoute) -> RouteVerdict {
    let generation = route.metadata.generation;
    let current = |c: &&Condition| match (c.observed_generation, generation) {
        (Some(seen), Some(now)) => seen == now,
        _ => true,
    };
    let mut by = Vec::new();
    for parent in route.status.iter().flat_map(|s| s.parents.iter()) {
        let condition = |type_: &str| {
            parent
                .conditions
                .iter()
                .filter(current)
                .find(|c| c.type_ == type_)
        };
        let refused = |c: &Condition| RouteVerdict::Refused {
            parent: parent_name(parent, &route.namespace().unwrap_or_default()),
            reason: c.reason.clone(),
            message: c.message.clone(),
        };
        match condition("Accepted") {
            Some(c) if c.status == "False" => return refused(c),
            Some(c) if c.status == "True" => {}
            _ => continue,
        }
        if let Some(c) = condition("ResolvedRefs").filter(|c| c.status == "False") {
            return refused(c);
        }
        by.push(parent_name(parent, &route.namespace().unwrap_or_default()));
    }
    if by.is_empty() {
        RouteVerdict::Pending
    } else {
        RouteVerdict::Accepted { by }
    }
}

/// `Gateway namespace/name` (the route's namespace when the reference names none).
fn parent_name(parent: &RouteParentStatus, route_namespace: &str) -> String {
    let r = &parent.parent_ref;
    let namespace = r.namespace.as_deref().unwrap_or(route_namespace);
    match &r.section_name {
        Some(section) => format!("Gateway {namespace}/{} (listener {section})", r.name),
        None => format!("Gateway {namespace}/{}", r.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway_api::{ParentReference, RouteStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn condition(type_: &str, status: &str, reason: &str, generation: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{type_} is {status}"),
            observed_generation: Some(generation),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    fn route(generation: i64, conditions: Vec<Condition>) -> HTTPRoute {
        let mut route = HTTPRoute::new("iris", Default::default());
        route.metadata.namespace = Some("ml".into());
        route.metadata.generation = Some(generation);
        route.status = Some(RouteStatus {
            parents: vec![RouteParentStatus {
                parent_ref: ParentReference {
                    name: "public".into(),
                    namespace: Some("gateways".into()),
                    ..Default::default()
                },
                controller_name: "traefik.io/gateway-controller".into(),
                conditions,
            }],
        });
        route
    }

    #[test]
    fn a_route_without_status_is_pending() {
        let mut r = route(1, vec![]);
        assert_eq!(judge_route(&r), RouteVerdict::Pending);
        r.status = None;
        assert_eq!(judge_route(&r), RouteVerdict::Pending);
    }

    #[test]
    fn accepted_with_resolved_refs_names_the_gateway() {
        let r = route(
            2,
            vec![
                condition("Accepted", "True", "Accepted", 2),
                condition("ResolvedRefs", "True", "ResolvedRefs", 2),
            ],
        );
        assert_eq!(
            judge_route(&r),
            RouteVerdict::Accepted {
                by: vec!["Gateway gateways/public".into()]
            }
        );
    }

    #[test]
    fn a_refusal_or_an_unresolved_backend_says_why() {
        let r = route(
            1,
            vec![condition("Accepted", "False", "NotAllowedByListeners", 1)],
        );
        let RouteVerdict::Refused { parent, reason, .. } = judge_route(&r) else {
            panic!("not refused");
        };
        assert_eq!(
            (parent.as_str(), reason.as_str()),
            ("Gateway gateways/public", "NotAllowedByListeners")
        );
        let r = route(
            1,
            vec![
                condition("Accepted", "True", "Accepted", 1),
                condition("ResolvedRefs", "False", "BackendNotFound", 1),
            ],
        );
        assert!(matches!(
            judge_route(&r),
            RouteVerdict::Refused { reason, .. } if reason == "BackendNotFound"
        ));
    }

    #[test]
    fn conditions_of_an_older_generation_do_not_count() {
        let r = route(3, vec![condition("Accepted", "True", "Accepted", 2)]);
        assert_eq!(judge_route(&r), RouteVerdict::Pending);
        let r = route(
            3,
            vec![condition("Accepted", "False", "NoMatchingParent", 2)],
        );
        assert_eq!(judge_route(&r), RouteVerdict::Pending);
    }
}
