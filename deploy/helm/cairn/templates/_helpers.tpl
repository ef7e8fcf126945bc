{{/* Names and labels shared by the chart's resources. */}}
{{- define "cairn.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cairn.selector" -}}
app.kubernetes.io/name: cairn
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "cairn.labels" -}}
{{ include "cairn.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{- define "cairn.swarmSecret" -}}
{{- if .Values.swarmKey.value -}}
{{ include "cairn.name" . }}-swarm-key
{{- else -}}
{{ required "swarmKey.existingSecret or swarmKey.value is required" .Values.swarmKey.existingSecret }}
{{- end -}}
{{- end -}}

{{- define "cairn.image" -}}
{{ printf "%s:%s" .Values.image.repository (toString .Values.image.tag) | quote }}
{{- end -}}
