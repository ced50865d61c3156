{{/* Per colour: voluntary disruptions (node drains) keep minAvailable pods. ctx: dict "root" $ "name" "<service>" */}}
{{- define "ghostpay.pdb" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := include "ghostpay.service" . | fromYaml -}}
{{- if $svc.enabled }}
{{- range $color := include "ghostpay.enabledColors" $root | fromJsonArray }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ printf "%s-%s-%s" (include "ghostpay.fullname" $root) $name $color }}
  labels:
    {{- include "ghostpay.labels" $root | nindent 4 }}
    {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name "color" $color) | nindent 4 }}
spec:
  minAvailable: {{ $svc.pdb.minAvailable }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name "color" $color) | nindent 6 }}
{{- end }}
{{- end }}
{{- end -}}
