//! The public route to a model's Service: a Gateway API `HTTPRoute` or a
//! `networking.k8s.io/v1` Ingress. Both route only the server's public paths, listed in
//! [`PUBLIC_PREFIXES`] and [`PUBLIC_EXACT`]: the model API (`/v2`, `/v1`), the web page (`/`,
//! `/models`, `/assets`) and `/openapi.json`. Everything else, `/metrics` first, is not
//! routed, so the gateway answers 404 for it without reaching the server. Listing what is
//! public (rather than excluding `/metrics`) keeps a route added to the server later private
//! until it is added here.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use super::child_meta;
use crate::config::GatewayRef;
use crate::gateway_api::{
    self, FilterType, HTTPBackendRef, HTTPPathMatch, HTTPPathModifier, HTTPRoute, HTTPRouteFilter,
    HTTPRouteMatch, HTTPRouteRule, HTTPRouteSpec, HTTPURLRewriteFilter, ParentReference,
    PathMatchType, PathModifierType,
};
use crate::validate::Validated;

/// Path prefixes of the server that the public route carries (whole path elements: `/v2`
/// matches `/v2/models/x`, not `/v2x`).
pub const PUBLIC_PREFIXES: [&str; 4] = ["/v2", "/v1", "/models", "/assets"];
/// Exact paths of the server that the public route carries: the index page and the OpenAPI
/// document.
pub const PUBLIC_EXACT: [&str; 2] = ["/", "/openapi.json"];

/// The canary as a backend of the route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryBackend<'a> {
    /// Its Service.
    pub service: &'a str,
    /// Percent of the requests it gets (the primary gets the rest).
    pub weight: i32,
    /// Whether requests naming its version go to it: only while its pods are Ready.
    pub ready: bool,
    pub version: Option<&'a str>,
    /// A promotion in progress (`super::promotion`): the primary rolls out the canary's
    /// version, which its old pods do not serve, so requests naming it still go to the
    /// canary.
    pub promoting: bool,
}

/// Builds the `HTTPRoute` of `v`: `host` and the public paths under `path` (stripped before
/// the request reaches the server), attached to `gateway`, to the primary's Service and, with
/// a canary, to both by weight. A request for a version (`/v2/models/NAME/versions/V/...`)
/// goes to the variant serving that version only.
pub fn build_httproute(
    v: &Validated,
    host: &str,
    path: &str,
    gateway: &GatewayRef,
    canary: Option<&CanaryBackend<'_>>,
) -> HTTPRoute {
    let primary = |weight| HTTPBackendRef {
        name: v.name.clone(),
        port: v.service.port,
        weight,
    };
    let canary_ref = |c: &CanaryBackend<'_>, weight| HTTPBackendRef {
        name: c.service.to_string(),
        port: v.service.port,
        weight,
    };
    let split = match canary {
        None => vec![primary(None)],
        Some(c) => vec![primary(Some(100 - c.weight)), canary_ref(c, Some(c.weight))],
    };
    let mut rules = Vec::new();
    if let Some(c) = canary {
        let versions = format!("/v2/models/{}/versions", v.endpoint.model_name);
        // A version only one variant serves goes to that variant (longest prefix wins).
        if let Some(version) = &v.endpoint.model_version
            && c.version != Some(version.as_str())
        {
            let own = format!("{versions}/{version}");
            rules.push(rule(
                path,
                &own,
                PathMatchType::PathPrefix,
                vec![primary(None)],
            ));
        }
        if let (Some(version), true) = (c.version, c.ready)
            && (c.promoting || v.endpoint.model_version.as_deref() != Some(version))
        {
            let own = format!("{versions}/{version}");
            rules.push(rule(
                path,
                &own,
                PathMatchType::PathPrefix,
                vec![canary_ref(c, None)],
            ));
        }
    }
    for prefix in PUBLIC_PREFIXES {
        rules.push(rule(path, prefix, PathMatchType::PathPrefix, split.clone()));
    }
    for exact in PUBLIC_EXACT {
        rules.push(rule(path, exact, PathMatchType::Exact, split.clone()));
    }
    HTTPRoute {
        metadata: child_meta(v),
        status: None,
        spec: HTTPRouteSpec {
            parent_refs: vec![ParentReference {
                group: Some(gateway_api::GROUP.into()),
                kind: Some("Gateway".into()),
                name: gateway.name.clone(),
                namespace: gateway.namespace.clone(),
                section_name: gateway.section_name.clone(),
            }],
            hostnames: vec![host.to_string()],
            rules,
        },
    }
}

/// One rule: the server's `server_path` seen under the route's `prefix`, rewritten back.
fn rule(
    prefix: &str,
    server_path: &str,
    type_: PathMatchType,
    backend_refs: Vec<HTTPBackendRef>,
) -> HTTPRouteRule {
    let public = public_path(prefix, server_path);
    let filters = if public == server_path {
        Vec::new()
    } else {
        let (full, prefix_match) = match type_ {
            PathMatchType::Exact => (Some(server_path.to_string()), None),
            PathMatchType::PathPrefix => (None, Some(server_path.to_string())),
        };
        vec![HTTPRouteFilter {
            type_: FilterType::URLRewrite,
            url_rewrite: Some(HTTPURLRewriteFilter {
                path: Some(HTTPPathModifier {
                    type_: match type_ {
                        PathMatchType::Exact => PathModifierType::ReplaceFullPath,
                        PathMatchType::PathPrefix => PathModifierType::ReplacePrefixMatch,
                    },
                    replace_full_path: full,
                    replace_prefix_match: prefix_match,
                }),
            }),
        }]
    };
    HTTPRouteRule {
        matches: vec![HTTPRouteMatch {
            path: Some(HTTPPathMatch {
                type_,
                value: public,
            }),
        }],
        filters,
        backend_refs,
    }
}

/// `server_path` under the route's prefix: `/` + `/v2` is `/v2`, `/iris` + `/` is `/iris/`.
pub fn public_path(prefix: &str, server_path: &str) -> String {
    match prefix {
        "/" => server_path.to_string(),
        prefix => format!("{prefix}{server_path}"),
    }
}

/// Builds the Ingress of `v`: `host` and the public paths (at `/` only: an Ingress has no
/// standard rewrite) to the primary's Service, with TLS when `spec.expose.tls` is set.
pub fn build_ingress(
    v: &Validated,
    host: &str,
    class: Option<&str>,
    tls_secret: Option<&str>,
) -> Ingress {
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: v.name.clone(),
            port: Some(ServiceBackendPort {
                number: Some(v.service.port),
                ..ServiceBackendPort::default()
            }),
        }),
        ..IngressBackend::default()
    };
    let path = |path: &str, path_type: &str| HTTPIngressPath {
        path: Some(path.into()),
        path_type: path_type.into(),
        backend: backend.clone(),
    };
    let paths = PUBLIC_PREFIXES
        .iter()
        .map(|p| path(p, "Prefix"))
        .chain(PUBLIC_EXACT.iter().map(|p| path(p, "Exact")))
        .collect();
    Ingress {
        metadata: child_meta(v),
        spec: Some(IngressSpec {
            ingress_class_name: class.map(str::to_string),
            rules: Some(vec![IngressRule {
                host: Some(host.to_string()),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            tls: tls_secret.map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![host.to_string()]),
                    secret_name: Some(secret.to_string()),
                }]
            }),
            ..IngressSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    fn gateway() -> GatewayRef {
        GatewayRef {
            name: "public".into(),
            namespace: Some("gateways".into()),
            section_name: Some("https".into()),
        }
    }

    #[test]
    fn httproute_at_the_root_matches_fixture() {
        let v = fixtures::validated("iris.yaml");
        let route = build_httproute(&v, "iris-ml.example.com", "/", &gateway(), None);
        fixtures::assert_matches(&route, "iris.httproute.yaml");
    }

    #[test]
    fn httproute_with_prefix_and_canary_matches_fixture() {
        let v = fixtures::validated("canary.yaml");
        let canary = CanaryBackend {
            service: "iris-canary",
            weight: 10,
            ready: true,
            version: Some("2"),
            promoting: false,
        };
        let route = build_httproute(
            &v,
            "iris.example.com",
            "/team/iris",
            &gateway(),
            Some(&canary),
        );
        fixtures::assert_matches(&route, "canary.httproute.yaml");
    }

    #[test]
    fn metrics_is_never_routed() {
        let v = fixtures::validated("iris.yaml");
        let route = build_httproute(&v, "h", "/", &gateway(), None);
        let routed = |path: &str| {
            route.spec.rules.iter().flat_map(|r| &r.matches).any(|m| {
                let m = m.path.as_ref().unwrap();
                match m.type_ {
                    PathMatchType::Exact => m.value == path,
                    PathMatchType::PathPrefix => {
                        path == m.value || path.starts_with(&format!("{}/", m.value))
                    }
                }
            })
        };
        for public in [
            "/",
            "/v2/models/iris/infer",
            "/v1/models/iris",
            "/models/iris",
            "/assets/model.js",
            "/openapi.json",
        ] {
            assert!(routed(public), "{public} must be public");
        }
        for private in ["/metrics", "/metrics/x", "/v2x", "/debug"] {
            assert!(!routed(private), "{private} must not be public");
        }
    }

    #[test]
    fn an_unready_canary_gets_its_weight_but_not_its_version() {
        let v = fixtures::validated("canary.yaml");
        let canary = CanaryBackend {
            service: "iris-canary",
            weight: 0,
            ready: false,
            version: Some("2"),
            promoting: false,
        };
        let route = build_httproute(&v, "h", "/", &gateway(), Some(&canary));
        let v2 = "/v2/models/iris/versions/2";
        assert!(
            !route
                .spec
                .rules
                .iter()
                .any(|r| r.matches[0].path.as_ref().unwrap().value == v2)
        );
        let weights: Vec<Option<i32>> = route
            .spec
            .rules
            .last()
            .unwrap()
            .backend_refs
            .iter()
            .map(|b| b.weight)
            .collect();
        assert_eq!(weights, [Some(100), Some(0)]);
    }

    #[test]
    fn ingress_matches_fixture() {
        let v = fixtures::validated("iris.yaml");
        let ingress = build_ingress(&v, "iris-ml.example.com", Some("traefik"), Some("iris-tls"));
        fixtures::assert_matches(&ingress, "iris.ingress.yaml");
    }
}
