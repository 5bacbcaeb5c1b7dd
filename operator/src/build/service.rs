//! The Service in front of the model servers.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, selector_labels, service_port};
use crate::config::Config;
use crate::crd::ModelDeployment;

/// Builds the Service of `md`: one port named `http` to the server's `http` port.
pub fn build_service(md: &ModelDeployment, _config: &Config) -> Service {
    let type_ = md
        .spec
        .service
        .as_ref()
        .and_then(|s| s.type_)
        .map(|t| t.as_str().to_string());
    Service {
        metadata: child_meta(md),
        spec: Some(ServiceSpec {
            type_: Some(type_.unwrap_or_else(|| "ClusterIP".into())),
            selector: Some(selector_labels(md)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: service_port(md),
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    #[test]
    fn service_matches_fixture() {
        let md = fixtures::model_deployment("iris.yaml");
        fixtures::assert_matches(&build_service(&md, &Config::default()), "iris.service.yaml");
    }

    #[test]
    fn service_type_and_port_come_from_the_spec() {
        let md = fixtures::model_deployment("autoscaled.yaml");
        let spec = build_service(&md, &Config::default()).spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.ports.unwrap()[0].port, 8000);
    }
}
