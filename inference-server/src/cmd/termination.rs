//! The container's termination message: the one-line cause of a failed
//! `serve` or `fetch`, which Kubernetes shows in the pod's status (and the
//! operator copies into the ModelDeployment's).

use std::io::Write;
use std::path::PathBuf;

/// Where Kubernetes reads a container's termination message from.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";
/// Overrides [`DEFAULT_TERMINATION_LOG`] (tests, or a pod's `terminationMessagePath`).
pub const TERMINATION_LOG_ENV: &str = "MODELSHIP_TERMINATION_LOG";
/// Kubernetes keeps at most 4096 bytes of a termination message.
const TERMINATION_MESSAGE_MAX: usize = 4096;

/// Writes `msg` as the container's termination message: to `$MODELSHIP_TERMINATION_LOG`
/// (created if needed) when set, else to `/dev/termination-log` when that file exists and
/// is writable (it does in a Kubernetes pod; elsewhere nothing is written). Best effort.
pub fn write_termination_message(msg: &str) {
    let (path, create) = match std::env::var_os(TERMINATION_LOG_ENV) {
        Some(path) if !path.is_empty() => (PathBuf::from(path), true),
        _ => (PathBuf::from(DEFAULT_TERMINATION_LOG), false),
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(create)
        .open(&path);
    if let Ok(mut file) = file {
        let _ = file.write_all(truncate(msg, TERMINATION_MESSAGE_MAX).as_bytes());
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termination_messages_are_capped_at_a_char_boundary() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("é", 1), "");
        assert_eq!(
            truncate(&"x".repeat(5000), TERMINATION_MESSAGE_MAX).len(),
            4096
        );
    }
}
