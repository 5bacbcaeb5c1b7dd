//! The modelship operator: the `ModelDeployment` API and its reconciler.
//!
//! The reconciler is a pipeline: read → [`validate`] → [`build`] (pure functions, no client) →
//! apply → [`status`]. Only [`reconcile`], [`leader`] and [`operator`] talk to the API server.

pub mod build;
pub mod cli;
pub mod config;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod reconcile;
pub mod status;
pub mod telemetry;
pub mod validate;

pub use operator::run;
