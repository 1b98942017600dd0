{{/*
Chart name (nameOverride wins), at most 63 characters.
*/}}
{{- define "authstack-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else the release name (plus the chart
name unless the release name already contains it), at most 63 characters.
*/}}
{{- define "authstack-operator.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "authstack-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels of every object.
*/}}
{{- define "authstack-operator.labels" -}}
helm.sh/chart: {{ include "authstack-operator.chart" . }}
{{ include "authstack-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: authstack
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels selecting the operator pods (stable: used in the Deployment's immutable selector).
*/}}
{{- define "authstack-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authstack-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "authstack-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "authstack-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository@digest, else repository:tag (tag defaults to appVersion).
*/}}
{{- define "authstack-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Name of the leader-election Lease.
*/}}
{{- define "authstack-operator.leaseName" -}}
{{- default (include "authstack-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Namespaces whose AuthStacks the operator reconciles, comma-separated (its --namespace flag):
watchNamespaces, else the release namespace; empty with clusterWide (every namespace).
*/}}
{{- define "authstack-operator.watchNamespaces" -}}
{{- if not .Values.clusterWide }}
{{- .Values.watchNamespaces | default (list .Release.Namespace) | uniq | join "," }}
{{- end }}
{{- end }}

{{/*
The operator's permissions on AuthStacks and on the objects it creates: a Role in each
watched namespace, or a ClusterRole with clusterWide.
*/}}
{{- define "authstack-operator.rules" -}}
# The controller watches AuthStacks and re-reads one before trusting a write.
- apiGroups: ["authstack.io"]
  resources: ["authstacks"]
  verbs: ["get", "list", "watch"]
# Status is written with server-side apply.
- apiGroups: ["authstack.io"]
  resources: ["authstacks/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion need this where the
# OwnerReferencesPermissionEnforcement admission plugin is on (e.g. OpenShift).
- apiGroups: ["authstack.io"]
  resources: ["authstacks/finalizers"]
  verbs: ["update"]
# Generated credentials (server-side apply), the signing-key Secret (create, then update
# conditional on resourceVersion), owned Secrets (watched), users' external URL Secrets (get).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Owned and watched (every kind the operator creates): server-side apply (create on first
# apply), deletion when obsolete.
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Kubernetes Events about AuthStacks (kube-runtime's Recorder: events.k8s.io/v1, created,
# then patched when repeated).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Checks of combinations the schema cannot express.
*/}}
{{- define "authstack-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: without the Lease every replica would reconcile the same AuthStacks" }}
{{- end }}
{{- if and .Values.clusterWide .Values.watchNamespaces }}
{{- fail "clusterWide=true watches every namespace: leave watchNamespaces empty" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled=true (the ServiceMonitor selects the metrics Service)" }}
{{- end }}
{{- end }}
