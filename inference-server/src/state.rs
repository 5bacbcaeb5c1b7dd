//! What the server is serving right now: its models, where each is in its
//! life (loading, ready, failed) and whether the server is ready. The one
//! place that decides readiness and the answers to "which model?" that the
//! routes turn into 404 and 503. It also holds who may call ([`Access`]:
//! the API keys, if any) and which variant this server is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::auth::{ApiKeys, Refusal};
use crate::engine::Engine;
use crate::metrics::{Metrics, ModelMetrics};
use crate::model::ModelCard;
use crate::protocol::v2::{ModelMetadata, TensorMetadata};

/// A loaded, warmed-up model.
pub struct ServedModel {
    pub name: String,
    pub version: Option<String>,
    pub platform: &'static str,
    pub origin: String,
    pub engine: Engine,
    pub card: Option<ModelCard>,
    pub metrics: ModelMetrics,
    /// Inference ids, payload logging, feedback, quality and drift.
    pub monitor: crate::monitor::ModelMonitor,
}

impl ServedModel {
    /// The model's metadata, as both protocols report it.
    pub fn metadata(&self) -> ModelMetadata {
        let sig = self.engine.signature();
        ModelMetadata {
            name: self.name.clone(),
            versions: self.version.iter().cloned().collect(),
            platform: self.platform.to_string(),
            inputs: sig.inputs.iter().map(TensorMetadata::from).collect(),
            outputs: sig.outputs.iter().map(TensorMetadata::from).collect(),
        }
    }
}

/// Where a configured model is in its life.
#[derive(Clone)]
pub enum ModelState {
    Loading,
    Ready(Arc<ServedModel>),
    Failed(String),
}

/// Limits applied by the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
}

/// Who may call the protected routes, and what this server calls itself.
#[derive(Clone)]
pub struct Access {
    /// The valid API keys; `None`: no key is asked for.
    pub keys: Option<Arc<ApiKeys>>,
    /// The variant named in each answer's `x-modelship-variant` (`primary`, `canary`).
    pub variant: String,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            keys: None,
            variant: "primary".into(),
        }
    }
}

/// Shared state of all request handlers.
pub struct AppState {
    models: RwLock<HashMap<String, ModelState>>,
    draining: AtomicBool,
    pub metrics: Arc<Metrics>,
    pub limits: HttpLimits,
    pub access: Access,
}

/// The outcome of looking a model up by name (and version).
pub enum Lookup {
    Ready(Arc<ServedModel>),
    NotReady { reason: String },
    NotFound { message: String },
}

impl AppState {
    /// State for a server that will serve `names`, all still loading.
    pub fn new(names: &[String], metrics: Arc<Metrics>, limits: HttpLimits) -> Arc<AppState> {
        AppState::with_access(names, metrics, limits, Access::default())
    }

    /// As [`AppState::new`], with API keys and a variant.
    pub fn with_access(
        names: &[String],
        metrics: Arc<Metrics>,
        limits: HttpLimits,
        access: Access,
    ) -> Arc<AppState> {
        let models = names
            .iter()
            .map(|n| (n.clone(), ModelState::Loading))
            .collect();
        Arc::new(AppState {
            models: RwLock::new(models),
            draining: AtomicBool::new(false),
            metrics,
            limits,
            access,
        })
    }

    /// Checks the API key a request presents (see [`ApiKeys::check`]);
    /// always `Ok` when no key is asked for.
    pub fn authorize(
        &self,
        authorization: Option<&[u8]>,
        x_api_key: Option<&[u8]>,
    ) -> Result<(), Refusal> {
        match &self.access.keys {
            None => Ok(()),
            Some(keys) => keys.check(authorization, x_api_key).map(drop),
        }
    }

    pub fn set_model(&self, name: &str, state: ModelState) {
        let ready = matches!(state, ModelState::Ready(_));
        self.metrics
            .model_ready
            .get_or_create(&crate::metrics::ModelLabels {
                model: name.to_string(),
            })
            .set(ready as i64);
        self.models
            .write()
            .expect("model table lock")
            .insert(name.to_string(), state);
    }

    /// Names of all configured models, sorted.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .models
            .read()
            .expect("model table lock")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    pub fn model_state(&self, name: &str) -> Option<ModelState> {
        self.models
            .read()
            .expect("model table lock")
            .get(name)
            .cloned()
    }

    /// Finds a model; `version`, when given, must be the served version.
    /// Draining does not refuse requests: during the drain delay traffic
    /// still arriving is served while readiness already says no.
    pub fn lookup(&self, name: &str, version: Option<&str>) -> Lookup {
        match self.model_state(name) {
            None => Lookup::NotFound {
                message: not_served(name),
            },
            Some(ModelState::Loading) => Lookup::NotReady {
                reason: format!("model '{name}' is still loading"),
            },
            Some(ModelState::Failed(e)) => Lookup::NotReady {
                reason: format!("model '{name}' failed to load: {e}"),
            },
            Some(ModelState::Ready(m)) => match version_mismatch(&m, version) {
                Some(message) => Lookup::NotFound { message },
                None => Lookup::Ready(m),
            },
        }
    }

    /// Whether one model is ready to serve: loaded, warmed up and the server
    /// not draining. `Err` holds the 404 message when the model (or, once
    /// loaded, the version) is not served here.
    pub fn model_ready(&self, name: &str, version: Option<&str>) -> Result<bool, String> {
        match self.model_state(name) {
            None => Err(not_served(name)),
            Some(ModelState::Ready(m)) => match version_mismatch(&m, version) {
                Some(message) => Err(message),
                None => Ok(!self.is_draining()),
            },
            Some(_) => Ok(false),
        }
    }

    /// The served model when there is exactly one and it is loaded: where a
    /// request goes before its message (which names the model) is decoded.
    pub fn only_loaded_model(&self) -> Option<Arc<ServedModel>> {
        let models = self.models.read().expect("model table lock");
        match (models.len(), models.values().next()) {
            (1, Some(ModelState::Ready(m))) => Some(m.clone()),
            _ => None,
        }
    }

    /// Ready when every configured model is loaded and the server is not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.is_draining()
            && self
                .models
                .read()
                .expect("model table lock")
                .values()
                .all(|s| matches!(s, ModelState::Ready(_)))
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Counts a failed request in the model's recent traffic (the page's), when it is served.
pub fn record_error(state: &AppState, model: &str) {
    if let Some(ModelState::Ready(m)) = state.model_state(model) {
        m.monitor.timeline.record(false, 0.0);
    }
}

/// The answer for a model name that is not configured.
pub fn not_served(name: &str) -> String {
    format!("model '{name}' is not served here")
}

/// The answer when `version` is given and is not the one `model` serves.
fn version_mismatch(model: &ServedModel, version: Option<&str>) -> Option<String> {
    match version {
        Some(v) if model.version.as_deref() != Some(v) => Some(format!(
            "model '{}' has no version '{v}' (served: {})",
            model.name,
            model.version.as_deref().unwrap_or("unversioned")
        )),
        _ => None,
    }
}
