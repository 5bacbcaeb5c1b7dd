//! The modelship operator: the `ModelDeployment` API and its reconciler.
//!
//! The reconciler is a pipeline: read → [`validate`] (every default resolved once, into a
//! [`validate::Validated`]) → [`build`] (pure functions, no client) → apply → [`status`] (pure,
//! the clock passed in). Three modules talk to the API server: [`reconcile`] (applies children,
//! publishes Events, patches status), [`leader`] (the Lease) and [`operator`] (the client, the
//! watches and the controllers). [`metrics`] serves `/metrics`, `/healthz` and `/readyz`.
//!
//! Modules depend downwards only: [`crd`], [`config`] and [`gateway_api`] (the typed part of
//! the Gateway API the operator writes) at the bottom; [`validate`] on them;
//! [`build`] and [`status`] on those; [`reconcile`], [`leader`] and [`operator`] on top.
//! [`batch`] (the `BatchPrediction` API and its controller) sits beside [`reconcile`]: it uses
//! `crd`, `validate` and `build`, and [`operator`] starts it.

pub mod api_client;
pub mod batch;
pub mod build;
pub mod cli;
pub mod config;
pub mod crd;
pub mod gateway_api;
pub mod leader;
pub mod metrics;
#[cfg(test)]
mod mock_api;
pub mod operator;
pub mod reconcile;
pub mod status;
pub mod telemetry;
pub mod validate;

pub use operator::run;
