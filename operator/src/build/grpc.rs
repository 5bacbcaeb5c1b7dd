//! The server's gRPC listener in the children: its container port, the Service's `grpc` port
//! (`appProtocol: kubernetes.io/h2c`, so gateways and meshes speak HTTP/2 cleartext to it),
//! the readiness probe (Kubernetes' native `grpc` probe against the server's
//! `grpc.health.v1.Health`) and the public `GRPCRoute`.
//!
//! The listener is on unless the spec turns it off the way the server itself reads it:
//! `MODELSHIP_GRPC_PORT=0` in `spec.server.env` or `--grpc-port 0` in `spec.server.args`
//! (another number moves it). Off, the pods keep the HTTP readiness probe and neither the
//! Service nor the route names a gRPC port.
//!
//! Why readiness over gRPC and liveness over HTTP: `grpc.health.v1` answers `SERVING`
//! exactly when `/v2/health/ready` does (the same readiness in the server), so the readiness
//! answer is the same, while the kubelet now checks both listeners: a gRPC listener that stops
//! answering takes the pod out of the endpoints, a REST listener that does restarts it.
//!
//! A `GRPCRoute` cannot share a host name with an `HTTPRoute` on one listener (the Gateway
//! API accepts only one of the two), so the gRPC host is the public host with `-grpc` after
//! its first label: `iris-ml.example.com` → `iris-ml-grpc.example.com` (one more name under
//! the same domain, so the same wildcard DNS record and certificate cover it). gRPC has no
//! path prefix: `spec.expose.path` is HTTP's only.

use k8s_openapi::api::core::v1::{ContainerPort, EnvVar, GRPCAction, Probe, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::SERVER_PORT;
use super::child_meta;
use super::route::CanaryBackend;
use crate::config::GatewayRef;
use crate::gateway_api::{
    self, GRPCMethodMatch, GRPCMethodMatchType, GRPCRoute, GRPCRouteMatch, GRPCRouteRule,
    GRPCRouteSpec, HTTPBackendRef, ParentReference,
};
use crate::validate::Validated;

/// The server's default gRPC port (and the Service's `grpc` port), as KServe uses.
pub const GRPC_PORT: i32 = 8081;
/// The server's variable for its gRPC port.
pub const GRPC_PORT_ENV: &str = "MODELSHIP_GRPC_PORT";
/// `appProtocol` of the Service's gRPC port: HTTP/2 over cleartext.
pub const H2C: &str = "kubernetes.io/h2c";
/// The gRPC services the public route carries: the model API and reflection (so `grpcurl`
/// works without the proto file; it reveals the API's shape, no model data). Health stays
/// in the cluster, like `/metrics`.
pub const PUBLIC_GRPC_SERVICES: [&str; 3] = [
    "inference.GRPCInferenceService",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The server's gRPC port in the pods of `v`, `None` when the spec turns the listener off.
/// The last `--grpc-port` of `spec.server.args` wins over `MODELSHIP_GRPC_PORT` of
/// `spec.server.env`, as in the server; a value the operator cannot read (a `valueFrom`)
/// leaves the default.
pub fn grpc_port(v: &Validated) -> Option<i32> {
    let from_env = v
        .server
        .env
        .iter()
        .rfind(|e| e.name == GRPC_PORT_ENV)
        .and_then(|e| e.value.as_deref());
    let args = &v.server.args;
    let from_args = args
        .iter()
        .enumerate()
        .filter_map(|(i, arg)| match arg.strip_prefix("--grpc-port") {
            Some("") => args.get(i + 1).map(String::as_str),
            Some(value) => value.strip_prefix('='),
            None => None,
        })
        .next_back();
    let port = from_args
        .or(from_env)
        .and_then(|p| p.trim().parse::<i32>().ok())
        .unwrap_or(GRPC_PORT);
    (port != 0).then_some(port)
}

/// The server's variable for its gRPC port; `spec.server.env` may override it.
pub fn grpc_env() -> EnvVar {
    EnvVar {
        name: GRPC_PORT_ENV.into(),
        value: Some(GRPC_PORT.to_string()),
        ..EnvVar::default()
    }
}

/// The server container's ports: `http`, and `grpc` while the listener is on.
pub fn container_ports(v: &Validated) -> Vec<ContainerPort> {
    let port = |name: &str, container_port| ContainerPort {
        name: Some(name.into()),
        container_port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    std::iter::once(port("http", SERVER_PORT))
        .chain(grpc_port(v).map(|p| port("grpc", p)))
        .collect()
}

/// The Service's `grpc` port, to the pods' `grpc` port, while the listener is on.
pub fn service_port(v: &Validated) -> Option<ServicePort> {
    grpc_port(v).map(|_| ServicePort {
        name: Some("grpc".into()),
        port: GRPC_PORT,
        target_port: Some(IntOrString::String("grpc".into())),
        protocol: Some("TCP".into()),
        app_protocol: Some(H2C.into()),
        ..ServicePort::default()
    })
}

/// The readiness probe: `http` as given while gRPC is off, else the kubelet's `grpc` probe
/// of the whole server (service `""`) with the same timing.
pub fn readiness_probe(v: &Validated, http: Probe) -> Probe {
    match grpc_port(v) {
        None => http,
        Some(port) => Probe {
            http_get: None,
            grpc: Some(GRPCAction {
                port,
                service: None,
            }),
            ..http
        },
    }
}

/// The host name of the `GRPCRoute`: `-grpc` after the first label of `host`.
pub fn grpc_host(host: &str) -> String {
    match host.split_once('.') {
        Some((first, rest)) => format!("{first}-grpc.{rest}"),
        None => format!("{host}-grpc"),
    }
}

/// Builds the `GRPCRoute` of `v`, or `None` while its gRPC listener is off: the public gRPC
/// services on [`grpc_host`] of `host`, attached to `gateway`, to the primary's Service and,
/// with a canary, to both with the same weights as the `HTTPRoute`.
pub fn build_grpcroute(
    v: &Validated,
    host: &str,
    gateway: &GatewayRef,
    canary: Option<&CanaryBackend<'_>>,
) -> Option<GRPCRoute> {
    grpc_port(v)?;
    let backend = |name: &str, weight| HTTPBackendRef {
        name: name.to_string(),
        port: GRPC_PORT,
        weight,
    };
    let backend_refs = match canary {
        None => vec![backend(&v.name, None)],
        Some(c) => vec![
            backend(&v.name, Some(100 - c.weight)),
            backend(c.service, Some(c.weight)),
        ],
    };
    let matches = PUBLIC_GRPC_SERVICES
        .iter()
        .map(|service| GRPCRouteMatch {
            method: Some(GRPCMethodMatch {
                type_: Some(GRPCMethodMatchType::Exact),
                service: Some(service.to_string()),
                method: None,
            }),
        })
        .collect();
    Some(GRPCRoute {
        metadata: child_meta(v),
        status: None,
        spec: GRPCRouteSpec {
            parent_refs: vec![ParentReference {
                group: Some(gateway_api::GROUP.into()),
                kind: Some("Gateway".into()),
                name: gateway.name.clone(),
                namespace: gateway.namespace.clone(),
                section_name: gateway.section_name.clone(),
            }],
            hostnames: vec![grpc_host(host)],
            rules: vec![GRPCRouteRule {
                matches,
                backend_refs,
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{build_deployment, build_service, fixtures};

    fn gateway() -> GatewayRef {
        GatewayRef {
            name: "public".into(),
            namespace: Some("gateways".into()),
            section_name: None,
        }
    }

    fn with_server(env: &[(&str, &str)], args: &[&str]) -> Validated {
        let mut v = fixtures::validated("iris.yaml");
        v.server.env = env
            .iter()
            .map(|(name, value)| EnvVar {
                name: name.to_string(),
                value: Some(value.to_string()),
                ..EnvVar::default()
            })
            .collect();
        v.server.args = args.iter().map(|a| a.to_string()).collect();
        v
    }

    #[test]
    fn the_port_follows_the_spec_as_the_server_reads_it() {
        assert_eq!(grpc_port(&with_server(&[], &[])), Some(GRPC_PORT));
        assert_eq!(grpc_port(&with_server(&[(GRPC_PORT_ENV, "0")], &[])), None);
        assert_eq!(
            grpc_port(&with_server(&[(GRPC_PORT_ENV, "9001")], &[])),
            Some(9001)
        );
        // Arguments win over the variable; the last argument wins.
        let v = with_server(&[(GRPC_PORT_ENV, "0")], &["--grpc-port", "9002"]);
        assert_eq!(grpc_port(&v), Some(9002));
        let v = with_server(&[], &["--grpc-port=9003", "--grpc-port=0"]);
        assert_eq!(grpc_port(&v), None);
        // Not the flag: a longer name that starts the same way.
        let v = with_server(&[], &["--grpc-portal=0"]);
        assert_eq!(grpc_port(&v), Some(GRPC_PORT));
    }

    #[test]
    fn the_pods_get_a_grpc_port_and_a_grpc_readiness_probe() {
        let d = build_deployment(&fixtures::validated("iris.yaml"));
        let server = &d.spec.unwrap().template.spec.unwrap().containers[0];
        let ports: Vec<(Option<&str>, i32)> = server
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.container_port))
            .collect();
        assert_eq!(ports, [(Some("http"), 8080), (Some("grpc"), GRPC_PORT)]);
        let readiness = server.readiness_probe.as_ref().unwrap();
        assert_eq!(readiness.http_get, None);
        assert_eq!(readiness.grpc.as_ref().unwrap().port, GRPC_PORT);
        // Liveness and startup stay on HTTP: the kubelet checks both listeners.
        assert!(server.liveness_probe.as_ref().unwrap().http_get.is_some());
        assert!(server.startup_probe.as_ref().unwrap().http_get.is_some());
    }

    #[test]
    fn grpc_turned_off_leaves_http_readiness_and_no_grpc_port() {
        let v = with_server(&[(GRPC_PORT_ENV, "0")], &[]);
        let d = build_deployment(&v);
        let server = &d.spec.unwrap().template.spec.unwrap().containers[0];
        assert_eq!(server.ports.as_ref().unwrap().len(), 1);
        let readiness = server.readiness_probe.as_ref().unwrap();
        assert_eq!(readiness.grpc, None);
        assert!(readiness.http_get.is_some());
        let service = build_service(&v).spec.unwrap();
        assert_eq!(service.ports.unwrap().len(), 1);
        assert_eq!(build_grpcroute(&v, "h.example.com", &gateway(), None), None);
    }

    #[test]
    fn the_service_port_is_h2c() {
        let service = build_service(&fixtures::validated("iris.yaml"))
            .spec
            .unwrap();
        let grpc = &service.ports.unwrap()[1];
        assert_eq!(
            (
                grpc.name.as_deref(),
                grpc.port,
                grpc.app_protocol.as_deref()
            ),
            (Some("grpc"), GRPC_PORT, Some(H2C))
        );
        assert_eq!(grpc.target_port, Some(IntOrString::String("grpc".into())));
    }

    #[test]
    fn the_grpc_host_adds_a_suffix_to_the_first_label() {
        assert_eq!(grpc_host("iris-ml.example.com"), "iris-ml-grpc.example.com");
        assert_eq!(
            grpc_host("iris-default.localhost"),
            "iris-default-grpc.localhost"
        );
        assert_eq!(grpc_host("localhost"), "localhost-grpc");
    }

    #[test]
    fn grpcroute_with_canary_matches_fixture() {
        let v = fixtures::validated("canary.yaml");
        let canary = CanaryBackend {
            service: "iris-canary",
            weight: 10,
            ready: true,
            version: Some("2"),
            promoting: false,
        };
        let route = build_grpcroute(&v, "iris.example.com", &gateway(), Some(&canary)).unwrap();
        fixtures::assert_matches(&route, "canary.grpcroute.yaml");
    }

    #[test]
    fn grpcroute_without_canary_has_one_backend_and_no_health() {
        let v = fixtures::validated("iris.yaml");
        let route = build_grpcroute(&v, "iris-ml.example.com", &gateway(), None).unwrap();
        let rule = &route.spec.rules[0];
        assert_eq!(rule.backend_refs.len(), 1);
        assert_eq!(rule.backend_refs[0].weight, None);
        assert_eq!(rule.backend_refs[0].port, GRPC_PORT);
        let services: Vec<&str> = rule
            .matches
            .iter()
            .map(|m| m.method.as_ref().unwrap().service.as_deref().unwrap())
            .collect();
        assert!(services.contains(&"inference.GRPCInferenceService"));
        assert!(!services.iter().any(|s| s.contains("health")));
    }
}
