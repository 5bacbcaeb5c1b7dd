//! The Service in front of the model servers.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{canary_labels, child_meta, child_meta_named, selector_labels};
use crate::crd::ServiceType;
use crate::validate::{Canary, Validated};

/// Builds the Service of `v`: a port named `http` to the server's `http` port and, while
/// the server's gRPC listener is on, `grpc` ([`super::grpc::service_port`]).
pub fn build_service(v: &Validated) -> Service {
    Service {
        metadata: child_meta(v),
        spec: Some(ServiceSpec {
            type_: Some(v.service.type_.as_str().into()),
            selector: Some(selector_labels(&v.name)),
            ports: Some(
                std::iter::once(ServicePort {
                    name: Some("http".into()),
                    port: v.service.port,
                    target_port: Some(IntOrString::String("http".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                })
                .chain(super::grpc::service_port(v))
                .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Builds the canary's Service `{name}-canary`: the public route's second backend, on the
/// primary's port; always `ClusterIP` (it is reached through the route only).
pub fn build_canary_service(v: &Validated, canary: &Canary) -> Service {
    let mut service = build_service(v);
    service.metadata = child_meta_named(v, &canary.name, canary_labels(&v.name, &canary.name));
    if let Some(spec) = service.spec.as_mut() {
        spec.type_ = Some(ServiceType::ClusterIP.as_str().into());
        spec.selector = Some(selector_labels(&canary.name));
    }
    service
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    #[test]
    fn service_matches_fixture() {
        let v = fixtures::validated("iris.yaml");
        fixtures::assert_matches(&build_service(&v), "iris.service.yaml");
    }

    #[test]
    fn canary_service_selects_the_canary_pods_only() {
        let v = fixtures::validated("canary.yaml");
        let service = build_canary_service(&v, v.canary.as_ref().unwrap());
        fixtures::assert_matches(&service, "canary.canary-service.yaml");
    }

    #[test]
    fn service_type_and_port_come_from_the_spec() {
        let v = fixtures::validated("autoscaled.yaml");
        let spec = build_service(&v).spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.ports.unwrap()[0].port, 8000);
    }
}
