{{/* Chart name, overridable. */}}
{{- define "modelship.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name, with the chart name
appended unless it already contains it. */}}
{{- define "modelship.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The operator's pods are "<name>-operator", never "modelship": that name,
with a ModelDeployment's name as instance, selects that model's pods. */}}
{{- define "modelship.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelship.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "modelship.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "modelship.selectorLabels" . }}
app.kubernetes.io/part-of: modelship
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "modelship.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelship.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}: the digest wins. */}}
{{- define "modelship.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}

{{/* The rules the operator needs in each namespace it manages (docs/api.md,
"RBAC"). The Lease rule is separate: it applies only in the release
namespace. No Secrets: a model's credentials reach its pods through
secretKeyRef, which the kubelet resolves, not the operator. */}}
{{- define "modelship.namespacedRules" -}}
- apiGroups: ["modelship.io"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["modelship.io"]
  resources: ["modeldeployments/status"]
  verbs: ["get", "patch", "update"]
# Owner references with blockOwnerDeletion on the children.
- apiGroups: ["modelship.io"]
  resources: ["modeldeployments/finalizers"]
  verbs: ["update"]
# Delete: the canary's Deployment and Service go when spec.canary is removed.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# The public route of spec.expose (deleted when it is removed) and its gRPC
# twin. HTTPRoutes and GRPCRoutes are read, not watched; whether the Gateway
# API is installed is read from the discovery documents, which need no rule.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes", "grpcroutes"]
  verbs: ["get", "create", "patch", "update", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# The model's PodDisruptionBudget (spec.disruption), deleted when no longer asked for.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# BatchPredictions: one Indexed Job and one manifest Job each, created (never updated:
# the spec is immutable) and removed by the garbage collector with their owner.
- apiGroups: ["modelship.io"]
  resources: ["batchpredictions"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["modelship.io"]
  resources: ["batchpredictions/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["modelship.io"]
  resources: ["batchpredictions/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
# Read-only: status reports why pods fail (a BatchPrediction's rows and causes come
# from its pods' termination messages, in the pod status).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Settings that cannot be checked by the schema alone. */}}
{{- define "modelship.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: several replicas would reconcile the same objects at once; enable leader election or use one replica" (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor selects the metrics Service" }}
{{- end }}
{{- end }}
