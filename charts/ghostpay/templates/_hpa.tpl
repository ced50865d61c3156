{{/* Per colour: scale on CPU and memory utilisation. ctx: dict "root" $ "name" "<service>" */}}
{{- define "ghostpay.hpa" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := include "ghostpay.service" . | fromYaml -}}
{{- if $svc.enabled }}
{{- range $color := include "ghostpay.enabledColors" $root | fromJsonArray }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ printf "%s-%s-%s" (include "ghostpay.fullname" $root) $name $color }}
  labels:
    {{- include "ghostpay.labels" $root | nindent 4 }}
    {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name "color" $color) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ printf "%s-%s-%s" (include "ghostpay.fullname" $root) $name $color }}
  minReplicas: {{ $svc.autoscaling.minReplicas }}
  maxReplicas: {{ $svc.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $svc.autoscaling.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ $svc.autoscaling.targetMemoryUtilizationPercentage }}
  behavior:
    scaleDown:
      # Payments traffic is bursty: wait before giving capacity back.
      stabilizationWindowSeconds: 300
      policies:
        - type: Percent
          value: 50
          periodSeconds: 60
{{- end }}
{{- end }}
{{- end -}}
