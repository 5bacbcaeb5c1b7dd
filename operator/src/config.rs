//! What the builders need to know about the operator's configuration.

/// Settings of the operator that shape the children it builds.
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
