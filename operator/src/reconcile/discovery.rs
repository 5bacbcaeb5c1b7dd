//! Discovery of the Gateway API, cached for a short while: a reconcile asks only when a route
//! needs it, and CRDs installed (or removed) later are seen within [`DISCOVERY_TTL`], without
//! a restart. Discovery reads `/apis/gateway.networking.k8s.io/v1`, which needs no RBAC; the
//! same document says whether `grpcroutes` are served as well.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;

use crate::build::GatewayApi;
use crate::gateway_api;

/// How long a discovery result is reused. A ModelDeployment whose route is unavailable is
/// reconciled again after this long, so that it picks up CRDs installed meanwhile.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(30);

/// The last discovery result (and whether `grpcroutes` are served too) and when it was made.
#[derive(Default)]
pub struct Discovery {
    cached: Mutex<Option<(Instant, GatewayApi, bool)>>,
}

impl Discovery {
    /// Whether the cluster serves `HTTPRoute`s, from the cache when fresh.
    pub async fn gateway_api(&self, client: &Client) -> GatewayApi {
        if let Some((at, found, _)) = self.cached.lock().expect("discovery lock").as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return found.clone();
        }
        let group_version = format!("{}/{}", gateway_api::GROUP, gateway_api::VERSION);
        let (found, grpc) = match client.list_api_group_resources(&group_version).await {
            Ok(list) => {
                let served = |name: &str| list.resources.iter().any(|r| r.name == name);
                match served("httproutes") {
                    true => (GatewayApi::Installed, served("grpcroutes")),
                    false => (GatewayApi::Missing, false),
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => (GatewayApi::Missing, false),
            // Not cached: the next reconcile asks again.
            Err(e) => return GatewayApi::Unknown(e.to_string()),
        };
        *self.cached.lock().expect("discovery lock") = Some((Instant::now(), found.clone(), grpc));
        found
    }

    /// Whether the cluster serves `GRPCRoute`s too (Gateway API v1.1.0 and later), as of the
    /// last [`Self::gateway_api`]; `false` before it.
    pub fn grpc_routes(&self) -> bool {
        self.cached
            .lock()
            .expect("discovery lock")
            .as_ref()
            .is_some_and(|(_, _, grpc)| *grpc)
    }
}
