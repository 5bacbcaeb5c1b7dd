//! The modelship operator: the `ModelDeployment` API and its reconciler.
