//! Why pods are not serving: read from every pod's container statuses and conditions.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};

use crate::build::{FETCH_CONTAINER, SERVER_CONTAINER};

/// A cause that keeps pods from serving, most severe first (the order picks the reason
/// reported when pods fail for different causes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodReason {
    /// The init container could not download the model.
    ModelFetchFailed,
    /// The server exited because it could not load the model.
    ModelLoadFailed,
    /// A container could not be created from its configuration (e.g. a missing Secret).
    ContainerConfigError,
    /// The image could not be pulled.
    ImagePullFailed,
    /// The server keeps crashing without saying why.
    CrashLoopBackOff,
    /// The scheduler finds no node for the pod.
    Unschedulable,
}

impl PodReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PodReason::ModelFetchFailed => "ModelFetchFailed",
            PodReason::ModelLoadFailed => "ModelLoadFailed",
            PodReason::ContainerConfigError => "ContainerConfigError",
            PodReason::ImagePullFailed => "ImagePullFailed",
            PodReason::CrashLoopBackOff => "CrashLoopBackOff",
            PodReason::Unschedulable => "Unschedulable",
        }
    }
}

impl fmt::Display for PodReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why pods are not serving: one pod's cause ([`pod_problem`]), or the most severe cause
/// across all pods with a message that counts them ([`summarize_pods`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProblem {
    pub reason: PodReason,
    pub message: String,
}

/// Finds the most severe problem of one pod, if any.
pub fn pod_problem(pod: &Pod) -> Option<PodProblem> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Succeeded") {
        return None;
    }
    let mut problems = Vec::new();
    for c in status.init_container_statuses.iter().flatten() {
        problems.extend(container_problem(c, c.name == FETCH_CONTAINER, false));
    }
    for c in status.container_statuses.iter().flatten() {
        problems.extend(container_problem(c, false, c.name == SERVER_CONTAINER));
    }
    for cond in status.conditions.iter().flatten() {
        if cond.type_ == "PodScheduled"
            && cond.status == "False"
            && cond.reason.as_deref() == Some("Unschedulable")
        {
            problems.push(PodProblem {
                reason: PodReason::Unschedulable,
                message: cond.message.clone().unwrap_or_default(),
            });
        }
    }
    problems.into_iter().min_by_key(|p| p.reason)
}

fn container_problem(c: &ContainerStatus, is_fetch: bool, is_server: bool) -> Option<PodProblem> {
    if c.ready {
        return None;
    }
    let state = c.state.as_ref();
    let waiting = state.and_then(|s| s.waiting.as_ref());
    let waiting_reason = waiting
        .and_then(|w| w.reason.as_deref())
        .unwrap_or_default();
    let waiting_message = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
    let name = &c.name;

    match waiting_reason {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
            return Some(PodProblem {
                reason: PodReason::ImagePullFailed,
                message: format!("container {name}: {waiting_reason}: {waiting_message}"),
            });
        }
        "CreateContainerConfigError" | "CreateContainerError" => {
            return Some(PodProblem {
                reason: PodReason::ContainerConfigError,
                message: format!("container {name}: {waiting_message}"),
            });
        }
        _ => {}
    }

    // A failed run: the current state when the container just exited, else the last one.
    let failed = state
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
        .filter(|t| t.exit_code != 0);
    let cause = failed.map(termination_cause);
    if is_fetch && let Some(cause) = cause {
        return Some(PodProblem {
            reason: PodReason::ModelFetchFailed,
            message: cause,
        });
    }
    if is_server
        && let Some(t) = failed
        && let Some(message) = t
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
    {
        return Some(PodProblem {
            reason: PodReason::ModelLoadFailed,
            message: message.to_string(),
        });
    }
    if waiting_reason == "CrashLoopBackOff" {
        return Some(PodProblem {
            reason: PodReason::CrashLoopBackOff,
            message: format!(
                "container {name} restarted {} times; last exit: {}",
                c.restart_count,
                cause.unwrap_or_else(|| "unknown".into())
            ),
        });
    }
    None
}

/// The termination message when the container left one, else its exit code and reason.
fn termination_cause(t: &ContainerStateTerminated) -> String {
    match t.message.as_deref().map(str::trim) {
        Some(message) if !message.is_empty() => message.to_string(),
        _ => format!(
            "exit code {}{}",
            t.exit_code,
            t.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
    }
}

/// Summarizes the problems of all pods, or `None` when no pod has one.
pub fn summarize_pods(pods: &[Pod]) -> Option<PodProblem> {
    let total = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .count();
    let mut by_reason: BTreeMap<PodReason, Vec<PodProblem>> = BTreeMap::new();
    for problem in pods.iter().filter_map(pod_problem) {
        by_reason.entry(problem.reason).or_default().push(problem);
    }
    let (reason, problems) = by_reason.iter().next()?;
    let mut message = format!(
        "{} of {total} pods: {}",
        problems.len(),
        problems[0].message
    );
    let others: Vec<String> = by_reason
        .iter()
        .skip(1)
        .map(|(r, p)| format!("{r} on {}", p.len()))
        .collect();
    if !others.is_empty() {
        message.push_str(&format!(" (also {})", others.join(", ")));
    }
    Some(PodProblem {
        reason: *reason,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status_yaml: &str) -> Pod {
        let yaml = format!("metadata: {{name: p}}\nstatus:\n{status_yaml}");
        serde_yaml::from_str(&yaml).unwrap()
    }

    const FETCH_FAILED: &str = r#"
  phase: Pending
  initContainerStatuses:
  - name: fetch
    image: modelship/server:dev
    imageID: ""
    ready: false
    restartCount: 3
    state: {waiting: {reason: CrashLoopBackOff, message: back-off}}
    lastState:
      terminated: {exitCode: 1, reason: Error, message: "GET https://h/m.onnx: 404 Not Found"}
"#;

    const LOAD_FAILED: &str = r#"
  phase: Running
  containerStatuses:
  - name: server
    image: modelship/server:dev
    imageID: ""
    ready: false
    restartCount: 2
    state: {waiting: {reason: CrashLoopBackOff}}
    lastState:
      terminated: {exitCode: 1, reason: Error, message: "model.onnx: not an ONNX model\n"}
"#;

    const CRASHING: &str = r#"
  phase: Running
  containerStatuses:
  - name: server
    image: modelship/server:dev
    imageID: ""
    ready: false
    restartCount: 5
    state: {waiting: {reason: CrashLoopBackOff}}
    lastState: {terminated: {exitCode: 139, reason: Error}}
"#;

    const UNSCHEDULABLE: &str = r#"
  phase: Pending
  conditions:
  - type: PodScheduled
    status: "False"
    reason: Unschedulable
    message: "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
"#;

    const IMAGE_PULL: &str = r#"
  phase: Pending
  containerStatuses:
  - name: server
    image: modelship/server:nope
    imageID: ""
    ready: false
    restartCount: 0
    state: {waiting: {reason: ImagePullBackOff, message: "Back-off pulling image"}}
"#;

    const SERVING: &str = r#"
  phase: Running
  containerStatuses:
  - name: server
    image: modelship/server:dev
    imageID: ""
    ready: true
    restartCount: 1
    state: {running: {}}
    lastState: {terminated: {exitCode: 1, message: "an old failure"}}
"#;

    #[test]
    fn failed_fetch_reports_the_init_container_termination_message() {
        assert_eq!(
            pod_problem(&pod(FETCH_FAILED)),
            Some(PodProblem {
                reason: PodReason::ModelFetchFailed,
                message: "GET https://h/m.onnx: 404 Not Found".into()
            })
        );
    }

    #[test]
    fn server_exit_with_a_message_is_a_load_failure() {
        let problem = pod_problem(&pod(LOAD_FAILED)).unwrap();
        assert_eq!(problem.reason, PodReason::ModelLoadFailed);
        assert_eq!(problem.message, "model.onnx: not an ONNX model");
    }

    #[test]
    fn server_crash_without_a_message_is_a_crash_loop() {
        let problem = pod_problem(&pod(CRASHING)).unwrap();
        assert_eq!(problem.reason, PodReason::CrashLoopBackOff);
        assert_eq!(
            problem.message,
            "container server restarted 5 times; last exit: exit code 139 (Error)"
        );
    }

    #[test]
    fn unschedulable_pod_reports_the_scheduler_message() {
        let problem = pod_problem(&pod(UNSCHEDULABLE)).unwrap();
        assert_eq!(problem.reason, PodReason::Unschedulable);
        assert!(problem.message.contains("Insufficient nvidia.com/gpu"));
    }

    #[test]
    fn image_pull_failure_is_reported() {
        let problem = pod_problem(&pod(IMAGE_PULL)).unwrap();
        assert_eq!(problem.reason, PodReason::ImagePullFailed);
    }

    #[test]
    fn a_ready_server_has_no_problem_whatever_its_past() {
        assert_eq!(pod_problem(&pod(SERVING)), None);
    }

    #[test]
    fn summary_looks_at_all_pods_not_the_first() {
        let pods = [
            pod(SERVING),
            pod(UNSCHEDULABLE),
            pod(FETCH_FAILED),
            pod(FETCH_FAILED),
        ];
        let summary = summarize_pods(&pods).unwrap();
        assert_eq!(summary.reason, PodReason::ModelFetchFailed);
        assert_eq!(
            summary.message,
            "2 of 4 pods: GET https://h/m.onnx: 404 Not Found (also Unschedulable on 1)"
        );
        assert_eq!(summarize_pods(&[pod(SERVING)]), None);
    }

    #[test]
    fn terminating_pods_are_ignored() {
        let mut p = pod(CRASHING);
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert_eq!(summarize_pods(&[p]), None);
    }
}
