{{/*
Per colour: a Service selecting that colour's pods (<release>-<name>-<colour>), used by the
other services of the same colour, by smoke tests and by the canary Ingress. Public services
(router, bridge) also get a stable Service (<release>-<name>) that selects activeColor: the
blue/green switch. ctx: dict "root" $ "name" "<service>"
*/}}
{{- define "ghostpay.serviceResources" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := include "ghostpay.service" . | fromYaml -}}
{{- if $svc.enabled }}
{{- range $color := include "ghostpay.enabledColors" $root | fromJsonArray }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ printf "%s-%s-%s" (include "ghostpay.fullname" $root) $name $color }}
  labels:
    {{- include "ghostpay.labels" $root | nindent 4 }}
    {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name "color" $color) | nindent 4 }}
    ghostpay.io/metrics: "true"
spec:
  type: ClusterIP
  selector:
    {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name "color" $color) | nindent 4 }}
  ports:
    - name: http
      port: {{ $svc.port }}
      targetPort: http
      protocol: TCP
{{- end }}
{{- if $svc.public }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ printf "%s-%s" (include "ghostpay.fullname" $root) $name }}
  labels:
    {{- include "ghostpay.labels" $root | nindent 4 }}
    {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name) | nindent 4 }}
  annotations:
    ghostpay.io/active-color: {{ $root.Values.activeColor }}
spec:
  type: ClusterIP
  selector:
    {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name "color" $root.Values.activeColor) | nindent 4 }}
  ports:
    - name: http
      port: {{ $svc.port }}
      targetPort: http
      protocol: TCP
{{- end }}
{{- end }}
{{- end -}}
