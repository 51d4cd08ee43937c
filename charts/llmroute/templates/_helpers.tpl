{{/* Names and labels shared by every template. */}}

{{- define "llmroute.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: <release>-llmroute, or the release name when it already contains the chart name. */}}
{{- define "llmroute.fullname" -}}
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

{{- define "llmroute.operatorName" -}}
{{- printf "%s-operator" (include "llmroute.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The headless Service of the operator's demand endpoint (service.yaml; routers get its URL). */}}
{{- define "llmroute.demandServiceName" -}}
{{- printf "%s-demand" (include "llmroute.operatorName" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llmroute.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llmroute.selectorLabels" -}}
app.kubernetes.io/name: llmroute-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llmroute.labels" -}}
helm.sh/chart: {{ include "llmroute.chart" . }}
{{ include "llmroute.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: llmroute
{{- end }}

{{- define "llmroute.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llmroute.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llmroute.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Namespaces the routers and pool pods live in, for the PodMonitors: podMonitor.namespaces, else
operator.watchNamespaces (the operator creates both only there). */}}
{{- define "llmroute.routerNamespaces" -}}
{{- if .Values.podMonitor.namespaces }}
{{- toJson .Values.podMonitor.namespaces }}
{{- else }}
{{- toJson .Values.operator.watchNamespaces }}
{{- end }}
{{- end }}
