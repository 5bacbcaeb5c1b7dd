//! The rollout state of the applied Deployment, in numbers.

use k8s_openapi::api::apps::v1::Deployment;

/// The rollout state of the Deployment.
#[derive(Debug, Default)]
pub struct Rollout {
    pub desired: i32,
    pub replicas: i32,
    pub ready: i32,
    pub updated: i32,
    /// Every desired pod runs the latest template and is available; no old pod is left.
    pub complete: bool,
    /// The Deployment gave up: `Progressing` is `False` with `ProgressDeadlineExceeded`.
    pub stalled: bool,
    pub message: String,
}

impl Rollout {
    /// Reads the Deployment as the API server returned it.
    pub fn of(d: &Deployment) -> Self {
        // The API server defaults `spec.replicas` to 1; an HPA-owned Deployment has it too.
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let Some(s) = d.status.as_ref() else {
            return Self {
                desired,
                ..Self::default()
            };
        };
        let replicas = s.replicas.unwrap_or(0);
        let ready = s.ready_replicas.unwrap_or(0);
        let updated = s.updated_replicas.unwrap_or(0);
        let available = s.available_replicas.unwrap_or(0);
        let observed = s.observed_generation >= d.metadata.generation;
        let deadline = s.conditions.iter().flatten().find(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        });
        Self {
            desired,
            replicas,
            ready,
            updated,
            complete: observed && updated == desired && replicas == desired && available >= desired,
            stalled: deadline.is_some(),
            message: deadline.and_then(|c| c.message.clone()).unwrap_or_default(),
        }
    }

    /// `ready/desired replicas ready`.
    pub fn ready_text(&self) -> String {
        format!("{}/{} replicas ready", self.ready, self.desired)
    }
}
