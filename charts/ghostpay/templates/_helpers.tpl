{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "ghostpay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-ghostpay unless the release name already contains the chart name. */}}
{{- define "ghostpay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ghostpay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "ghostpay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ghostpay
{{- end -}}

{{/* Selector labels of one service's pods; with a colour, of that colour only. ctx: dict root name [color] */}}
{{- define "ghostpay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ghostpay.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- if .color }}
ghostpay.io/color: {{ .color }}
{{- end }}
{{- end -}}

{{/* The service's values merged over .Values.defaults. ctx: dict root name */}}
{{- define "ghostpay.service" -}}
{{- $svc := index .root.Values.services .name -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.defaults) $svc) -}}
{{- end -}}

{{/* Colours that are deployed, in a stable order. */}}
{{- define "ghostpay.enabledColors" -}}
{{- $out := list -}}
{{- range $color := list "blue" "green" -}}
{{- if (index $.Values.colors $color).enabled -}}{{- $out = append $out $color -}}{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The colour that is not active. */}}
{{- define "ghostpay.idleColor" -}}
{{- if eq .Values.activeColor "blue" -}}green{{- else -}}blue{{- end -}}
{{- end -}}

{{- define "ghostpay.scheme" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{- define "ghostpay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ include "ghostpay.fullname" . }}{{- else -}}default{{- end -}}
{{- end -}}

{{/* Fails the render when the configuration cannot work. */}}
{{- define "ghostpay.validate" -}}
{{- if not (index .Values.colors .Values.activeColor).enabled -}}
{{- fail (printf "activeColor %q is not enabled: enable colors.%s before switching to it" .Values.activeColor .Values.activeColor) -}}
{{- end -}}
{{- if and .Values.canary.enabled (not (index .Values.colors (include "ghostpay.idleColor" .)).enabled) -}}
{{- fail (printf "canary.enabled needs the idle colour %q enabled" (include "ghostpay.idleColor" .)) -}}
{{- end -}}
{{- end -}}
