{{/* Labels on every object: the kustomize base's part-of, and Helm's own. */}}
{{- define "inplace.labels" -}}
app.kubernetes.io/part-of: inplace
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The user the manager authenticates as. */}}
{{- define "inplace.managerUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:inplace-manager
{{- end }}

{{/* Every namespace no webhook of ours sees, as a flow list. */}}
{{- define "inplace.excluded" -}}
{{- $names := concat (list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace) .Values.excludeNamespaces | uniq -}}
[{{ join ", " $names }}]
{{- end }}

{{/* The namespaceSelector of every webhook: the policy, and the exclusions. */}}
{{- define "inplace.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
  {{- if eq .Values.policy "cluster" }}
  - {key: inplace.dev/enabled, operator: NotIn, values: ["false"]}
  {{- else if eq .Values.policy "namespace" }}
  - key: inplace.dev/enabled
    operator: In
    values: ["true"]
  {{- else }}
  {{- fail (printf "policy: %q is neither \"namespace\" nor \"cluster\"" .Values.policy) }}
  {{- end }}
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ include "inplace.excluded" . }}
{{- end }}

{{/* The first matchCondition of every webhook. */}}
{{- define "inplace.notTheManager" -}}
- name: not-the-manager
  expression: "request.userInfo.username != '{{ include "inplace.managerUser" . }}'"
{{- end }}

{{/* What every webhook of ours has in common; . is (dict "root" $ "path" PATH). */}}
{{- define "inplace.webhookCommon" -}}
admissionReviewVersions: [v1]
sideEffects: None
failurePolicy: {{ .root.Values.webhook.failurePolicy }}
clientConfig:
  service:
    name: inplace-webhook
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
  {{- with .root.Values.webhook.caBundle }}
  caBundle: {{ . }}
  {{- end }}
{{ include "inplace.namespaceSelector" .root }}
{{- end }}

{{- define "inplace.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "inplace.checkCertMode" -}}
{{- if not (has .Values.certMode (list "builtin" "cert-manager" "secret")) }}
{{- fail (printf "certMode: %q is none of builtin, cert-manager, secret" .Values.certMode) }}
{{- end }}
{{- if and (ne .Values.certMode "builtin") (or .Values.builtinCert.validity .Values.builtinCert.renewBefore .Values.builtinCert.checkInterval) }}
{{- fail (printf "builtinCert: only with certMode builtin; with %s the certificate's lifetime is set where it is issued" .Values.certMode) }}
{{- end }}
{{- with .Values.builtinCert }}
{{- if and (or .validity .renewBefore .checkInterval) (not (and .validity .renewBefore .checkInterval)) }}
{{- fail "builtinCert: set validity, renewBefore and checkInterval together (checkInterval < renewBefore < validity)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A list of strings as a CEL list literal: ['a', 'b']. */}}
{{- define "inplace.celStrings" -}}
[{{ range $i, $s := . }}{{ if $i }}, {{ end }}'{{ $s }}'{{ end }}]
{{- end }}
