# shellcheck shell=bash
# The API server's audit log: every write (create, update, patch, delete) with
# who made it and from which address, one JSON line each, in
# $LOG_DIR/audit.log. On in both modes: a write is one short line at the
# Metadata level (no bodies), reads are not logged, so the cost is a few MiB
# a day on an idle cluster. Tests read it to tell writers apart by source IP
# (tests/faults: "no two writers"), which field managers, shared by every
# replica of an operator, cannot.

AUDIT_LOG="$LOG_DIR/audit.log"

# audit_flags: the kube-apiserver flags, after writing the policy they name.
audit_flags() {
  mkdir -p "$CONF_DIR"
  cat > "$CONF_DIR/audit-policy.yaml" <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
# One line per request, written when the answer is sent (its code known).
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
YAML
  printf '%s\n' --audit-policy-file="$CONF_DIR/audit-policy.yaml" --audit-log-path="$AUDIT_LOG" \
    --audit-log-format=json --audit-log-maxsize=100 --audit-log-maxbackup=1 --audit-log-mode=blocking
}
