{{/* Names and labels shared by every manifest of the chart. */}}

{{- define "ironbridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ironbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ironbridge.labels" -}}
{{ include "ironbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ironbridge.adminSecret" -}}
{{- if .Values.admin.existingSecret -}}
{{- .Values.admin.existingSecret -}}
{{- else -}}
{{- printf "%s-admin" (include "ironbridge.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The settings file: the values' settings plus TLS paths when TLS is on. */}}
{{- define "ironbridge.settings" -}}
{{- $settings := deepCopy .Values.settings -}}
{{- $_ := set $settings "data_dir" "/data" -}}
{{- if .Values.tls.enabled -}}
{{- $tls := dict "cert_file" "/tls/tls.crt" "key_file" "/tls/tls.key" -}}
{{- if .Values.tls.requireClientCertificates -}}
{{- $_ := set $tls "client_ca_file" "/tls/ca.crt" -}}
{{- end -}}
{{- $_ := set $settings "tls" $tls -}}
{{- end -}}
{{- toYaml $settings -}}
{{- end -}}
