//! The operator's settings that shape what it builds: the `validate` module resolves the
//! spec's defaults from them (the server image, the cluster domain of `status.address`, the
//! public host of `spec.expose`), the route builders read the way out of the cluster from
//! [`ExposeConfig`].

/// Settings of the operator that shape the children it builds and the status it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Server image used when `spec.server.image` is not set.
    pub server_image: String,
    /// DNS domain of the cluster, for `status.address`.
    pub cluster_domain: String,
    /// How `spec.expose` becomes a route.
    pub expose: ExposeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_image: "modelship/server:dev".into(),
            cluster_domain: "cluster.local".into(),
            expose: ExposeConfig::default(),
        }
    }
}

/// Which API carries the public route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExposeMode {
    /// A Gateway API `HTTPRoute` attached to the configured Gateway.
    Gateway,
    /// A `networking.k8s.io/v1` Ingress (no traffic split: a canary is refused).
    Ingress,
    /// `gateway` when the Gateway API is installed and a Gateway is configured, else `ingress`
    /// when an Ingress class is configured.
    #[default]
    Auto,
}

impl ExposeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Ingress => "ingress",
            Self::Auto => "auto",
        }
    }
}

/// The Gateway an `HTTPRoute` attaches to (its `parentRefs` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayRef {
    pub name: String,
    /// `None`: the route's own namespace.
    pub namespace: Option<String>,
    /// The listener of the Gateway; `None`: every listener that allows the route.
    pub section_name: Option<String>,
}

/// Placeholder of the host template for the ModelDeployment's name.
pub const HOST_NAME: &str = "{name}";
/// Placeholder of the host template for the ModelDeployment's namespace.
pub const HOST_NAMESPACE: &str = "{namespace}";
/// Placeholder of the host template for the configured domain.
pub const HOST_DOMAIN: &str = "{domain}";
/// The default host template.
pub const DEFAULT_HOST_TEMPLATE: &str = "{name}-{namespace}.{domain}";

/// How `spec.expose` becomes a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExposeConfig {
    pub mode: ExposeMode,
    /// The Gateway of `HTTPRoute`s; without one, Gateway mode is unavailable.
    pub gateway: Option<GatewayRef>,
    /// `ingressClassName` of Ingresses; `None`: the cluster's default class.
    pub ingress_class: Option<String>,
    /// Domain of the default host; `None`: `spec.expose.host` is required.
    pub domain: Option<String>,
    /// The default host, with `{name}`, `{namespace}` and `{domain}` filled in.
    pub host_template: String,
    /// Scheme of the public URL in `status.url` (`https` whenever the Ingress has TLS).
    pub scheme: UrlScheme,
    /// Port of the public URL, when the Gateway's or Ingress controller's listener is not on
    /// the scheme's default port (the local cluster's gateway listens on 16080).
    pub url_port: Option<u16>,
}

impl Default for ExposeConfig {
    fn default() -> Self {
        Self {
            mode: ExposeMode::Auto,
            gateway: None,
            ingress_class: None,
            domain: None,
            host_template: DEFAULT_HOST_TEMPLATE.into(),
            scheme: UrlScheme::Http,
            url_port: None,
        }
    }
}

/// Scheme of the public URL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UrlScheme {
    #[default]
    Http,
    Https,
}

impl UrlScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}
