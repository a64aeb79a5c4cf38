{{/* All names in one place. */}}
{{- define "sr.fullname" -}}{{ printf "%s-sovereign-region" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "sr.gateway" -}}{{ include "sr.fullname" . }}-gateway{{- end -}}
{{- define "sr.gatewayEntry" -}}{{ include "sr.fullname" . }}-entry{{- end -}}
{{- define "sr.hubTokenSecret" -}}{{ .Values.hubAccount.name }}-token{{- end -}}
{{- define "sr.labels" -}}
app.kubernetes.io/name: sovereign-region
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "sr.gatewaySelector" -}}
app.kubernetes.io/name: sovereign-region
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}
{{- define "sr.image" -}}{{ .repository }}@{{ .digest }}{{- end -}}

{{/* The restricted Pod Security Standard, for pods and for containers. */}}
{{- define "sr.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "sr.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
