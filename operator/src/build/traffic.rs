//! The traffic plan of a ModelDeployment, pure: which API carries its public route (from the
//! operator's mode and what discovery found), the route itself, the canary's children and
//! the share of the traffic the canary actually gets, each with the reason when it is less
//! than the spec asks.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;

use super::grpc::build_grpcroute;
use super::promotion::Promotion;
use super::route::{CanaryBackend, build_httproute, build_ingress, public_path};
use super::{build_canary_deployment, build_canary_service};
use crate::config::{ExposeConfig, ExposeMode, GatewayRef, UrlScheme};
use crate::gateway_api::{GRPCRoute, HTTPRoute};
use crate::validate::Validated;

/// What discovery says about the Gateway API (`gateway.networking.k8s.io/v1` `httproutes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayApi {
    Installed,
    Missing,
    /// Discovery failed; the reason.
    Unknown(String),
    /// Not asked: nothing needed it.
    NotChecked,
}

/// Whether planning the route of `v` looks at the Gateway API at all.
pub fn wants_gateway_api(v: &Validated, config: &ExposeConfig) -> bool {
    v.expose.is_some()
        && match config.mode {
            ExposeMode::Gateway => true,
            ExposeMode::Ingress => false,
            ExposeMode::Auto => config.gateway.is_some(),
        }
}

/// The API of the route.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RouteApi<'a> {
    Gateway(&'a GatewayRef),
    Ingress,
}

/// Which API carries the route, or why none can.
fn route_api<'a>(config: &'a ExposeConfig, found: &GatewayApi) -> Result<RouteApi<'a>, String> {
    let gateway = || {
        let gateway = config.gateway.as_ref().ok_or_else(|| {
            "the operator is in gateway mode but has no Gateway to attach routes to (--gateway-name)"
                .to_string()
        })?;
        match found {
            GatewayApi::Installed => Ok(RouteApi::Gateway(gateway)),
            GatewayApi::Missing | GatewayApi::NotChecked => Err(
                "the Gateway API (gateway.networking.k8s.io/v1 HTTPRoute) is not installed in the cluster"
                    .to_string(),
            ),
            GatewayApi::Unknown(e) => Err(format!("cannot discover the Gateway API: {e}")),
        }
    };
    match config.mode {
        ExposeMode::Gateway => gateway(),
        ExposeMode::Ingress => Ok(RouteApi::Ingress),
        ExposeMode::Auto => match (&config.gateway, found, &config.ingress_class) {
            (Some(_), GatewayApi::Installed, _) => gateway(),
            (_, _, Some(_)) => Ok(RouteApi::Ingress),
            (Some(_), _, None) => gateway(),
            (None, _, None) => Err(
                "the operator has neither a Gateway (--gateway-name) nor an Ingress class (--ingress-class) for public routes"
                    .to_string(),
            ),
        },
    }
}

/// The public route to apply.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    HTTPRoute(Box<HTTPRoute>),
    Ingress(Box<Ingress>),
}

impl Route {
    pub fn kind(&self) -> &'static str {
        match self {
            Route::HTTPRoute(_) => "HTTPRoute",
            Route::Ingress(_) => "Ingress",
        }
    }
}

/// What became of `spec.expose`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// The route is applied; the public URL of the model.
    Routed { kind: &'static str, url: String },
    /// No route: why.
    Unavailable(String),
}

/// Why the canary gets less traffic than the spec asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryHold {
    /// None of its pods is Ready.
    NotReady,
    /// The route's API has no weights (an Ingress).
    Unsupported,
    /// There is no public route.
    ExposeUnavailable,
    /// `spec.canary` is gone and the primary rolls out the canary's model: the canary keeps
    /// its share until the rollout is complete ([`super::promotion`]).
    Promoting,
}

/// The canary's share of the traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryTraffic {
    pub ready_replicas: i32,
    /// The percent the route sends it.
    pub traffic_percent: i32,
    /// Why it is below the spec's percent (or none is applied at all), in words.
    pub hold: Option<(CanaryHold, String)>,
}

/// The canary's children.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryChildren {
    pub deployment: Deployment,
    pub service: Service,
}

/// Everything about the way in from outside the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Traffic {
    /// `None`: no route is wanted, any route the operator made goes.
    pub route: Option<Route>,
    /// The `GRPCRoute` beside an `HTTPRoute` while the server's gRPC listener is on; `None`:
    /// any the operator made goes. Applied only where the cluster serves `grpcroutes`.
    pub grpc_route: Option<GRPCRoute>,
    /// `None`: no canary children are wanted, any the operator made go.
    pub canary: Option<CanaryChildren>,
    /// `None` without `spec.expose`.
    pub exposure: Option<Exposure>,
    /// `None` without `spec.canary` (and no promotion in progress).
    pub canary_traffic: Option<CanaryTraffic>,
    /// The promotion that holds the canary's share, while the primary rolls out its model:
    /// the canary's children are kept as they are (not applied: the spec no longer has them).
    pub promotion: Option<Promotion>,
}

/// Plans the traffic of `v` from what discovery found, how many canary pods are Ready and
/// the promotion in progress, if any (which only a route with weights can hold).
pub fn plan_traffic(
    v: &Validated,
    config: &ExposeConfig,
    found: &GatewayApi,
    canary_ready: i32,
    promotion: Option<&Promotion>,
) -> Traffic {
    let Some(expose) = &v.expose else {
        return Traffic {
            route: None,
            grpc_route: None,
            canary: None,
            exposure: None,
            canary_traffic: None,
            promotion: None,
        };
    };
    let api = expose.host.clone().and_then(|host| {
        let api = route_api(config, found)?;
        match (&api, &expose.tls_secret, expose.path.as_str()) {
            (RouteApi::Gateway(_), Some(_), _) => Err(
                "spec.expose.tls is for Ingress mode only: with a Gateway, TLS is the Gateway listener's; remove spec.expose.tls"
                    .to_string(),
            ),
            (RouteApi::Ingress, _, path) if path != "/" => Err(format!(
                "spec.expose.path {path} needs a path rewrite, which a networking.k8s.io/v1 Ingress has not; use / or a Gateway"
            )),
            _ => Ok((host, api)),
        }
    });
    let canary_children = v.canary.as_ref().map(|c| CanaryChildren {
        deployment: build_canary_deployment(v, c),
        service: build_canary_service(v, c),
    });
    let hold = |hold: CanaryHold, why: String| {
        v.canary.as_ref().map(|_| CanaryTraffic {
            ready_replicas: canary_ready,
            traffic_percent: 0,
            hold: Some((hold, why)),
        })
    };
    match api {
        Err(why) => Traffic {
            route: None,
            grpc_route: None,
            // Kept, so that traffic moves as soon as the route can be made.
            canary: canary_children,
            canary_traffic: hold(CanaryHold::ExposeUnavailable, why.clone()),
            exposure: Some(Exposure::Unavailable(why)),
            promotion: None,
        },
        Ok((host, RouteApi::Ingress)) => {
            let ingress = build_ingress(
                v,
                &host,
                config.ingress_class.as_deref(),
                expose.tls_secret.as_deref(),
            );
            let scheme = match expose.tls_secret {
                Some(_) => UrlScheme::Https,
                None => config.scheme,
            };
            Traffic {
                route: Some(Route::Ingress(Box::new(ingress))),
                grpc_route: None,
                canary: None,
                canary_traffic: hold(
                    CanaryHold::Unsupported,
                    "the operator makes Ingresses, which cannot split traffic by weight: the canary is not deployed (use a Gateway)"
                        .into(),
                ),
                exposure: Some(Exposure::Routed {
                    kind: "Ingress",
                    url: public_url(scheme, config.url_port, &host, &expose.path, v),
                }),
                promotion: None,
            }
        }
        Ok((host, RouteApi::Gateway(gateway))) => {
            // The canary's backend in the route and the share reported, from the spec's
            // canary or, while it holds, the promotion's.
            let (backend, canary_traffic) = match (&v.canary, promotion) {
                (Some(c), _) => {
                    let weight = if canary_ready > 0 {
                        c.traffic_percent
                    } else {
                        0
                    };
                    let hold = (canary_ready == 0).then(|| {
                        (
                            CanaryHold::NotReady,
                            format!(
                                "no canary pod is Ready (0/{}): it gets no traffic until one is",
                                c.replicas
                            ),
                        )
                    });
                    let backend = CanaryBackend {
                        service: &c.name,
                        weight,
                        ready: canary_ready > 0,
                        version: c.version.as_deref(),
                        promoting: false,
                    };
                    (Some(backend), Some((weight, hold)))
                }
                (None, Some(p)) => {
                    let hold = (
                        CanaryHold::Promoting,
                        format!(
                            "promoted: the primary rolls out the canary's model; the canary keeps {}% of the public traffic until every primary pod runs it, then the route moves it all to the primary and the canary is removed",
                            p.traffic_percent
                        ),
                    );
                    let backend = CanaryBackend {
                        service: &p.name,
                        weight: p.traffic_percent,
                        ready: true,
                        version: p.version.as_deref(),
                        promoting: true,
                    };
                    (Some(backend), Some((p.traffic_percent, Some(hold))))
                }
                (None, None) => (None, None),
            };
            let canary_traffic = canary_traffic.map(|(traffic_percent, hold)| CanaryTraffic {
                ready_replicas: canary_ready,
                traffic_percent,
                hold,
            });
            let route = build_httproute(v, &host, &expose.path, gateway, backend.as_ref());
            let grpc_route = build_grpcroute(v, &host, gateway, backend.as_ref());
            Traffic {
                route: Some(Route::HTTPRoute(Box::new(route))),
                grpc_route,
                canary: canary_children,
                canary_traffic,
                exposure: Some(Exposure::Routed {
                    kind: "HTTPRoute",
                    url: public_url(config.scheme, config.url_port, &host, &expose.path, v),
                }),
                promotion: promotion.filter(|_| v.canary.is_none()).cloned(),
            }
        }
    }
}

/// The public v2 endpoint of the model; `port` shown unless it is the scheme's default.
fn public_url(
    scheme: UrlScheme,
    port: Option<u16>,
    host: &str,
    path: &str,
    v: &Validated,
) -> String {
    let model = format!("/v2/models/{}", v.endpoint.model_name);
    let default = match scheme {
        UrlScheme::Http => 80,
        UrlScheme::Https => 443,
    };
    let port = port
        .filter(|p| *p != default)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!(
        "{}://{host}{port}{}",
        scheme.as_str(),
        public_path(path, &model)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures;

    fn gateway_config() -> ExposeConfig {
        ExposeConfig {
            mode: ExposeMode::Gateway,
            gateway: Some(GatewayRef {
                name: "public".into(),
                namespace: None,
                section_name: None,
            }),
            ..ExposeConfig::default()
        }
    }

    fn weights(traffic: &Traffic) -> Vec<Option<i32>> {
        let Some(Route::HTTPRoute(route)) = &traffic.route else {
            panic!("no HTTPRoute: {traffic:?}");
        };
        route
            .spec
            .rules
            .last()
            .unwrap()
            .backend_refs
            .iter()
            .map(|b| b.weight)
            .collect()
    }

    fn grpc_weights(traffic: &Traffic) -> Vec<Option<i32>> {
        let route = traffic.grpc_route.as_ref().expect("a GRPCRoute");
        route.spec.rules[0]
            .backend_refs
            .iter()
            .map(|b| b.weight)
            .collect()
    }

    #[test]
    fn no_expose_means_no_route_and_no_canary() {
        let v = fixtures::validated("iris.yaml");
        let traffic = plan_traffic(&v, &gateway_config(), &GatewayApi::Installed, 0, None);
        assert_eq!(
            (traffic.route, traffic.exposure, traffic.canary),
            (None, None, None)
        );
    }

    #[test]
    fn a_ready_canary_gets_its_percent_and_an_unready_one_none_with_the_reason() {
        let v = fixtures::validated("canary.yaml");
        let ready = plan_traffic(&v, &gateway_config(), &GatewayApi::Installed, 1, None);
        assert_eq!(weights(&ready), [Some(90), Some(10)]);
        assert_eq!(grpc_weights(&ready), [Some(90), Some(10)]);
        let canary = ready.canary_traffic.unwrap();
        assert_eq!((canary.traffic_percent, canary.hold), (10, None));
        assert_eq!(
            ready.exposure,
            Some(Exposure::Routed {
                kind: "HTTPRoute",
                url: "http://iris.example.com/team/iris/v2/models/iris".into()
            })
        );
        assert!(ready.canary.is_some());

        let unready = plan_traffic(&v, &gateway_config(), &GatewayApi::Installed, 0, None);
        assert_eq!(weights(&unready), [Some(100), Some(0)]);
        assert_eq!(grpc_weights(&unready), [Some(100), Some(0)]);
        let canary = unready.canary_traffic.unwrap();
        assert_eq!(canary.traffic_percent, 0);
        assert_eq!(canary.hold.unwrap().0, CanaryHold::NotReady);
    }

    #[test]
    fn a_missing_gateway_api_leaves_no_route_but_keeps_the_canary() {
        let v = fixtures::validated("canary.yaml");
        let traffic = plan_traffic(&v, &gateway_config(), &GatewayApi::Missing, 1, None);
        assert_eq!(traffic.route, None);
        assert_eq!(traffic.grpc_route, None);
        let Some(Exposure::Unavailable(why)) = &traffic.exposure else {
            panic!("{traffic:?}");
        };
        assert!(why.contains("Gateway API"), "{why}");
        assert!(traffic.canary.is_some());
        let hold = traffic.canary_traffic.unwrap().hold.unwrap().0;
        assert_eq!(hold, CanaryHold::ExposeUnavailable);
    }

    #[test]
    fn ingress_mode_refuses_the_canary_and_a_path_prefix() {
        let mut md = fixtures::model_deployment("canary.yaml");
        md.spec.expose.as_mut().unwrap().path = None;
        md.spec.expose.as_mut().unwrap().tls = Some(crate::crd::ExposeTls {
            secret_name: "iris-tls".into(),
        });
        let v = crate::validate::validate(&md, &crate::config::Config::default()).unwrap();
        let config = ExposeConfig {
            mode: ExposeMode::Ingress,
            ..ExposeConfig::default()
        };
        let traffic = plan_traffic(&v, &config, &GatewayApi::NotChecked, 2, None);
        assert_eq!(traffic.route.as_ref().map(Route::kind), Some("Ingress"));
        assert_eq!(traffic.grpc_route, None, "an Ingress has no gRPC twin");
        assert_eq!(traffic.canary, None);
        assert_eq!(
            traffic.canary_traffic.unwrap().hold.unwrap().0,
            CanaryHold::Unsupported
        );
        assert_eq!(
            traffic.exposure,
            Some(Exposure::Routed {
                kind: "Ingress",
                url: "https://iris.example.com/v2/models/iris".into()
            })
        );
        // A listener off the scheme's default port shows in the URL; the default does not.
        for (port, url) in [
            (Some(8443), "https://iris.example.com:8443/v2/models/iris"),
            (Some(443), "https://iris.example.com/v2/models/iris"),
        ] {
            let config = ExposeConfig {
                url_port: port,
                ..config.clone()
            };
            let traffic = plan_traffic(&v, &config, &GatewayApi::NotChecked, 2, None);
            assert!(
                matches!(&traffic.exposure, Some(Exposure::Routed { url: u, .. }) if u == url),
                "{port:?}: {:?}",
                traffic.exposure
            );
        }
        let v = fixtures::validated("canary.yaml");
        let traffic = plan_traffic(&v, &config, &GatewayApi::NotChecked, 2, None);
        let Some(Exposure::Unavailable(why)) = traffic.exposure else {
            panic!("a path prefix needs a rewrite");
        };
        assert!(why.contains("spec.expose.path /team/iris"), "{why}");
    }

    #[test]
    fn tls_in_gateway_mode_is_refused_with_the_reason() {
        let mut md = fixtures::model_deployment("canary.yaml");
        md.spec.expose.as_mut().unwrap().tls = Some(crate::crd::ExposeTls {
            secret_name: "iris-tls".into(),
        });
        let v = crate::validate::validate(&md, &crate::config::Config::default()).unwrap();
        let traffic = plan_traffic(&v, &gateway_config(), &GatewayApi::Installed, 1, None);
        let Some(Exposure::Unavailable(why)) = traffic.exposure else {
            panic!("tls with a Gateway must be refused");
        };
        assert!(
            why.starts_with("spec.expose.tls is for Ingress mode only"),
            "{why}"
        );
    }

    #[test]
    fn auto_mode_prefers_the_gateway_then_the_ingress_class() {
        let gateway = gateway_config().gateway;
        let auto = |gateway: Option<GatewayRef>, class: Option<&str>| ExposeConfig {
            mode: ExposeMode::Auto,
            gateway,
            ingress_class: class.map(str::to_string),
            ..ExposeConfig::default()
        };
        let both = auto(gateway.clone(), Some("traefik"));
        assert!(matches!(
            route_api(&both, &GatewayApi::Installed),
            Ok(RouteApi::Gateway(_))
        ));
        assert_eq!(
            route_api(&both, &GatewayApi::Missing),
            Ok(RouteApi::Ingress)
        );
        let gateway_only = auto(gateway, None);
        assert!(route_api(&gateway_only, &GatewayApi::Missing).is_err());
        let neither = auto(None, None);
        assert!(
            route_api(&neither, &GatewayApi::Installed)
                .unwrap_err()
                .contains("--ingress-class")
        );
        assert!(!wants_gateway_api(
            &fixtures::validated("canary.yaml"),
            &neither
        ));
        assert!(wants_gateway_api(
            &fixtures::validated("canary.yaml"),
            &both
        ));
        assert!(!wants_gateway_api(&fixtures::validated("iris.yaml"), &both));
    }

    #[test]
    fn no_host_means_no_route_with_the_reason() {
        let mut md = fixtures::model_deployment("canary.yaml");
        md.spec.expose.as_mut().unwrap().host = None;
        let v = crate::validate::validate(&md, &crate::config::Config::default()).unwrap();
        let traffic = plan_traffic(&v, &gateway_config(), &GatewayApi::Installed, 1, None);
        let Some(Exposure::Unavailable(why)) = traffic.exposure else {
            panic!("no host");
        };
        assert!(why.contains("--expose-domain"), "{why}");
    }
}
