{{/* Names of the scheduling objects, used by the templates and the hub's values. */}}
{{- define "sh.userSchedulerName" -}}{{ include "sh.fullname" . }}-user-scheduler{{- end -}}
{{- define "sh.userPriorityClass" -}}{{ include "sh.fullname" . }}-default-priority{{- end -}}
{{- define "sh.placeholderPriorityClass" -}}{{ include "sh.fullname" . }}-user-placeholder-priority{{- end -}}
