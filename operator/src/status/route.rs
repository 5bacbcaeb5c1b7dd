//! What the Gateway made of the model's routes (the `HTTPRoute` and, beside it, the
//! `GRPCRoute`): its controllers write `status.parents`, one entry per Gateway, with
//! `Accepted` and `ResolvedRefs` conditions. [`judge_route`] reads a route as the apply returned
//! it, so that `Exposed` is true only once a Gateway has taken every route, not merely once
//! the operator wrote them ([`RouteVerdict::and`]). Conditions written for an older generation
//! of the route do not count.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};

use crate::gateway_api::{GRPCRoute, HTTPRoute, RouteParentStatus, RouteStatus};

/// The Gateways' word on the model's routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteVerdict {
    /// Every parent that spoke for this generation accepted them, their backends resolved:
    /// which routes, and who.
    Accepted {
        routes: Vec<&'static str>,
        by: Vec<String>,
    },
    /// A parent refused a route, or could not resolve a backend: which route, which parent,
    /// and why.
    Refused {
        route: &'static str,
        parent: String,
        reason: String,
        message: String,
    },
    /// No parent has written a status for this generation of the route yet.
    Pending { route: &'static str },
}

impl RouteVerdict {
    /// The verdict on two routes of one model: a refusal first, then a route still pending;
    /// accepted when both are.
    pub fn and(self, other: RouteVerdict) -> RouteVerdict {
        match (self, other) {
            (refused @ RouteVerdict::Refused { .. }, _)
            | (_, refused @ RouteVerdict::Refused { .. }) => refused,
            (pending @ RouteVerdict::Pending { .. }, _)
            | (_, pending @ RouteVerdict::Pending { .. }) => pending,
            (
                RouteVerdict::Accepted { mut routes, mut by },
                RouteVerdict::Accepted {
                    routes: more_routes,
                    by: more_by,
                },
            ) => {
                routes.extend(more_routes);
                for parent in more_by {
                    if !by.contains(&parent) {
                        by.push(parent);
                    }
                }
                RouteVerdict::Accepted { routes, by }
            }
        }
    }
}

/// A route the operator applies, as the API server returned it.
pub trait JudgedRoute {
    const KIND: &'static str;
    fn meta(&self) -> &ObjectMeta;
    fn route_status(&self) -> Option<&RouteStatus>;
}

impl JudgedRoute for HTTPRoute {
    const KIND: &'static str = "HTTPRoute";
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn route_status(&self) -> Option<&RouteStatus> {
        self.status.as_ref()
    }
}

impl JudgedRoute for GRPCRoute {
    const KIND: &'static str = "GRPCRoute";
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn route_status(&self) -> Option<&RouteStatus> {
        self.status.as_ref()
    }
}

/// Judges `route` (as the API server returned it after the apply).
pub fn judge_route<R: JudgedRoute>(route: &R) -> RouteVerdict {
    let kind = R::KIND;
    let namespace = route.meta().namespace.clone().unwrap_or_default();
    let generation = route.meta().generation;
    let current = |c: &&Condition| match (c.observed_generation, generation) {
        (Some(seen), Some(now)) => seen == now,
        _ => true,
    };
    let mut by = Vec::new();
    for parent in route.route_status().iter().flat_map(|s| s.parents.iter()) {
        let condition = |type_: &str| {
            parent
                .conditions
                .iter()
                .filter(current)
                .find(|c| c.type_ == type_)
        };
        let refused = |c: &Condition| RouteVerdict::Refused {
            route: kind,
            parent: parent_name(parent, &namespace),
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
        by.push(parent_name(parent, &namespace));
    }
    if by.is_empty() {
        RouteVerdict::Pending { route: kind }
    } else {
        RouteVerdict::Accepted {
            routes: vec![kind],
            by,
        }
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

    const PENDING: RouteVerdict = RouteVerdict::Pending { route: "HTTPRoute" };

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
        assert_eq!(judge_route(&r), PENDING);
        r.status = None;
        assert_eq!(judge_route(&r), PENDING);
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
                routes: vec!["HTTPRoute"],
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
        assert_eq!(judge_route(&r), PENDING);
        let r = route(
            3,
            vec![condition("Accepted", "False", "NoMatchingParent", 2)],
        );
        assert_eq!(judge_route(&r), PENDING);
    }

    #[test]
    fn both_routes_must_be_accepted_and_a_refusal_of_either_wins() {
        let accepted = || {
            route(
                1,
                vec![
                    condition("Accepted", "True", "Accepted", 1),
                    condition("ResolvedRefs", "True", "ResolvedRefs", 1),
                ],
            )
        };
        let mut grpc = GRPCRoute::new("iris", Default::default());
        grpc.metadata = accepted().metadata;
        grpc.status = accepted().status;
        assert_eq!(
            judge_route(&accepted()).and(judge_route(&grpc)),
            RouteVerdict::Accepted {
                routes: vec!["HTTPRoute", "GRPCRoute"],
                by: vec!["Gateway gateways/public".into()]
            }
        );
        grpc.status = None;
        let grpc_pending = judge_route(&grpc);
        assert_eq!(grpc_pending, RouteVerdict::Pending { route: "GRPCRoute" });
        assert_eq!(
            judge_route(&accepted()).and(grpc_pending.clone()),
            grpc_pending
        );
        let refused = judge_route(&route(
            1,
            vec![condition("Accepted", "False", "NotAllowedByListeners", 1)],
        ));
        assert_eq!(grpc_pending.and(refused.clone()), refused);
    }
}
