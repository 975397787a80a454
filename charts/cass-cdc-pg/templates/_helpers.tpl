{{- define "cdc.name" -}}cass-cdc-pg{{- end -}}

{{- define "cdc.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cdc.labels" -}}
app.kubernetes.io/name: {{ include "cdc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cdc.selector" -}}
app.kubernetes.io/name: {{ include "cdc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "cdc.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "cdc.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{- define "cdc.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "cdc.rules" -}}
{{- .Files.Get "files/rbac-rules.yaml" | fromYaml | toJson -}}
{{- end -}}
