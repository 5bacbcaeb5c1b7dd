//! Batch predictions: the `BatchPrediction` API and its controller. One BatchPrediction is one
//! Indexed Job of `modelship-server predict --shard I/N` pods, then one short Job that writes
//! the run's `_manifest.json` (docs/batch.md).
//!
//! The same pipeline as a ModelDeployment's, in its own small modules: [`crd`] (the API
//! types, CEL rules), [`plan`] (checked spec, every default resolved once), [`job`] (the two
//! Jobs, pure builders), [`status`] (status from the Jobs and the pods' termination messages,
//! pure) and [`controller`] (read, create, status, Events: the only I/O). It reuses the
//! ModelDeployment's model rules (`validate::validate_model`) and its pods' pieces (the
//! `fetch` init container, the restricted security contexts).

pub mod controller;
pub mod crd;
pub mod job;
pub mod plan;
pub mod status;

pub use controller::run;
pub use crd::{BatchPrediction, BatchPredictionSpec, BatchPredictionStatus, Phase, crd_yaml};
