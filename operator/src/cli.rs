//! Command line and environment of `modelship-operator`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{
    Config, DEFAULT_HOST_TEMPLATE, ExposeConfig, ExposeMode, GatewayRef, UrlScheme,
};
use crate::metrics::EndpointConfig;

/// The modelship operator: turns ModelDeployments into Deployments, Services and HPAs.
#[derive(Parser, Debug, Clone)]
#[command(name = "modelship-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run the operator (the default).
    Run,
    /// Print a CustomResourceDefinition as YAML (default: ModelDeployment's).
    Crd {
        #[arg(value_enum, default_value_t = CrdKind::Modeldeployment)]
        kind: CrdKind,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Server image for ModelDeployments that do not set `spec.server.image`.
    #[arg(
        long,
        env = "MODELSHIP_SERVER_IMAGE",
        default_value = "modelship/server:dev"
    )]
    pub server_image: String,

    /// Namespaces to watch, comma-separated; empty means all namespaces.
    #[arg(
        long,
        env = "MODELSHIP_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub watch_namespaces: Vec<String>,

    /// DNS domain of the cluster, used in `status.url`.
    #[arg(
        long,
        env = "MODELSHIP_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,

    /// Reconcile only while holding a coordination.k8s.io Lease, so that several replicas are safe.
    #[arg(long, env = "MODELSHIP_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "MODELSHIP_LEASE_NAME",
        default_value = "modelship-operator"
    )]
    pub lease_name: String,

    /// Namespace of the Lease (default: the operator's own namespace, else the kubeconfig's).
    #[arg(long, env = "MODELSHIP_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds a leader's Lease lasts without renewal; a standby takes over after it.
    #[arg(long, env = "MODELSHIP_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// Identity in the Lease (default: $POD_NAME, else the host name and process id).
    #[arg(long, env = "MODELSHIP_IDENTITY")]
    pub identity: Option<String>,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "MODELSHIP_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Serve that port over TLS, /metrics only to bearer tokens whose user the API server
    /// allows `get` on the non-resource URL /metrics (TokenReview + SubjectAccessReview);
    /// /healthz and /readyz stay open.
    #[arg(long, env = "MODELSHIP_METRICS_SECURE", default_value_t = false)]
    pub metrics_secure: bool,

    /// Directory with tls.crt and tls.key (a mounted kubernetes.io/tls Secret) for
    /// --metrics-secure; without it a self-signed certificate is made at start.
    #[arg(long, env = "MODELSHIP_METRICS_CERT_DIR")]
    pub metrics_cert_dir: Option<PathBuf>,

    /// Extra names of the self-signed certificate, comma-separated (loopback and the host
    /// name are always in it).
    #[arg(
        long,
        env = "MODELSHIP_METRICS_CERT_SANS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub metrics_cert_sans: Vec<String>,

    /// Log format.
    #[arg(long, env = "MODELSHIP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Most ModelDeployments reconciled at once.
    #[arg(long, env = "MODELSHIP_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    #[command(flatten)]
    pub expose: ExposeArgs,
}

/// How `spec.expose` becomes a route: the chart's `expose` values.
#[derive(clap::Args, Debug, Clone)]
pub struct ExposeArgs {
    /// API of the public routes: `gateway` (HTTPRoute), `ingress`, or `auto` (gateway when the
    /// Gateway API is installed and --gateway-name is set, else ingress when --ingress-class is).
    #[arg(long, env = "MODELSHIP_EXPOSE_MODE", value_enum, default_value_t = ExposeMode::Auto)]
    pub expose_mode: ExposeMode,

    /// Name of the Gateway that HTTPRoutes attach to.
    #[arg(long, env = "MODELSHIP_GATEWAY_NAME")]
    pub gateway_name: Option<String>,

    /// Namespace of that Gateway (default: each route's own namespace).
    #[arg(long, env = "MODELSHIP_GATEWAY_NAMESPACE")]
    pub gateway_namespace: Option<String>,

    /// Listener of that Gateway (default: every listener that admits the route).
    #[arg(long, env = "MODELSHIP_GATEWAY_SECTION_NAME")]
    pub gateway_section_name: Option<String>,

    /// `ingressClassName` of Ingresses (default: the cluster's default IngressClass).
    #[arg(long, env = "MODELSHIP_INGRESS_CLASS")]
    pub ingress_class: Option<String>,

    /// Domain of the default public host; without it `spec.expose.host` is required.
    #[arg(long, env = "MODELSHIP_EXPOSE_DOMAIN")]
    pub expose_domain: Option<String>,

    /// Default public host, from `{name}`, `{namespace}` and `{domain}`.
    #[arg(long, env = "MODELSHIP_HOST_TEMPLATE", default_value = DEFAULT_HOST_TEMPLATE)]
    pub host_template: String,

    /// Scheme of the public URL in `status.url` (an Ingress with TLS is always `https`).
    #[arg(long, env = "MODELSHIP_URL_SCHEME", value_enum, default_value_t = UrlScheme::Http)]
    pub url_scheme: UrlScheme,

    /// Port of the public URL in `status.url`, when the gateway does not listen on the
    /// scheme's default port (0 or absent: none shown).
    #[arg(long, env = "MODELSHIP_URL_PORT")]
    pub url_port: Option<u16>,
}

impl ExposeArgs {
    fn config(&self) -> ExposeConfig {
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
        ExposeConfig {
            mode: self.expose_mode,
            gateway: non_empty(&self.gateway_name).map(|name| GatewayRef {
                name,
                namespace: non_empty(&self.gateway_namespace),
                section_name: non_empty(&self.gateway_section_name),
            }),
            ingress_class: non_empty(&self.ingress_class),
            domain: non_empty(&self.expose_domain),
            host_template: self.host_template.clone(),
            scheme: self.url_scheme,
            url_port: self.url_port.filter(|p| *p != 0),
        }
    }
}

/// The kinds whose CRD `crd` prints.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrdKind {
    Modeldeployment,
    Batchprediction,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl RunArgs {
    /// What the builders need.
    pub fn config(&self) -> Config {
        Config {
            server_image: self.server_image.clone(),
            cluster_domain: self.cluster_domain.clone(),
            expose: self.expose.config(),
        }
    }

    /// Namespaces to watch, `None` for all.
    pub fn namespaces(&self) -> Option<Vec<String>> {
        let namespaces: Vec<String> = self
            .watch_namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        (!namespaces.is_empty()).then_some(namespaces)
    }

    /// How the metrics port is served.
    pub fn metrics_endpoint(&self) -> EndpointConfig {
        EndpointConfig {
            addr: self.metrics_addr,
            secure: self.metrics_secure,
            cert_dir: self.metrics_cert_dir.clone(),
            cert_names: self
                .metrics_cert_sans
                .iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
        }
    }

    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(self.lease_duration_seconds.max(2))
    }

    /// How long the leader may go without a renewal before it gives up: two thirds of the
    /// Lease (the rest bounds its API connections' unacknowledged data, `api_client`).
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration() * 2 / 3
    }

    /// This process's identity in the Lease.
    pub fn identity(&self) -> String {
        if let Some(id) = &self.identity {
            return id.clone();
        }
        if let Ok(pod) = std::env::var("POD_NAME") {
            return pod;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "modelship-operator".into());
        format!("{host}-{}", std::process::id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_watch_all_namespaces_without_leader_election() {
        let cli = Cli::try_parse_from(["modelship-operator"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.namespaces(), None);
        assert!(!cli.run.leader_election);
        assert_eq!(cli.run.config().server_image, "modelship/server:dev");
    }

    #[test]
    fn metrics_are_plain_by_default_and_secure_with_a_cert_dir_and_names() {
        let cli = Cli::try_parse_from(["modelship-operator"]).unwrap();
        let plain = cli.run.metrics_endpoint();
        assert!(!plain.secure);
        assert_eq!(plain.addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!((plain.cert_dir, plain.cert_names), (None, vec![]));
        let cli = Cli::try_parse_from([
            "modelship-operator",
            "--metrics-secure",
            "--metrics-cert-dir=/certs",
            "--metrics-cert-sans=m.ns.svc, m.ns.svc.cluster.local,",
        ])
        .unwrap();
        let secure = cli.run.metrics_endpoint();
        assert!(secure.secure);
        assert_eq!(secure.cert_dir, Some(PathBuf::from("/certs")));
        assert_eq!(secure.cert_names, ["m.ns.svc", "m.ns.svc.cluster.local"]);
        // An empty directory is refused (the chart leaves the flag out instead).
        assert!(
            Cli::try_parse_from([
                "modelship-operator",
                "--metrics-secure",
                "--metrics-cert-dir="
            ])
            .is_err()
        );
    }

    #[test]
    fn namespaces_are_a_comma_separated_list() {
        let cli =
            Cli::try_parse_from(["modelship-operator", "--watch-namespaces", "a, b,"]).unwrap();
        assert_eq!(cli.run.namespaces(), Some(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn expose_defaults_to_auto_without_a_gateway_class_or_domain() {
        let cli = Cli::try_parse_from(["modelship-operator"]).unwrap();
        assert_eq!(cli.run.config().expose, ExposeConfig::default());
    }

    #[test]
    fn expose_flags_fill_the_gateway_ref_and_empty_values_mean_unset() {
        let cli = Cli::try_parse_from([
            "modelship-operator",
            "--expose-mode=gateway",
            "--gateway-name=public",
            "--gateway-namespace=gateways",
            "--gateway-section-name=",
            "--ingress-class=",
            "--expose-domain=models.example.com",
            "--url-scheme=https",
        ])
        .unwrap();
        let expose = cli.run.config().expose;
        assert_eq!(expose.mode, ExposeMode::Gateway);
        assert_eq!(
            expose.gateway,
            Some(GatewayRef {
                name: "public".into(),
                namespace: Some("gateways".into()),
                section_name: None,
            })
        );
        assert_eq!(expose.ingress_class, None);
        assert_eq!(expose.domain.as_deref(), Some("models.example.com"));
        assert_eq!(expose.scheme, UrlScheme::Https);
    }

    #[test]
    fn crd_is_a_subcommand() {
        let cli = Cli::try_parse_from(["modelship-operator", "crd"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Crd {
                kind: CrdKind::Modeldeployment
            })
        ));
        let cli = Cli::try_parse_from(["modelship-operator", "crd", "batchprediction"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Crd {
                kind: CrdKind::Batchprediction
            })
        ));
    }
}
