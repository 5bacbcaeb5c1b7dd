//! The operator's settings that shape what it builds: the `validate` module resolves the
//! spec's defaults from them (the server image, the cluster domain of `status.url`).

/// Settings of the operator that shape the children it builds and the status it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Server image used when `spec.server.image` is not set.
    pub server_image: String,
    /// DNS domain of the cluster, for `status.url`.
    pub cluster_domain: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_image: "modelship/server:dev".into(),
            cluster_domain: "cluster.local".into(),
        }
    }
}
