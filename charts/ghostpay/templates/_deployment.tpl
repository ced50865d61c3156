{{/*
One Deployment per enabled colour for a service. ctx: dict "root" $ "name" "<service>".
Env names are what the service reads (checked by deploy-checks/test/chart.test.ts, which reads the env of
every template); the TLS env, including NODE_EXTRA_CA_CERTS (read by Node), and the mTLS probes are in
_tls.tpl (chart-tls.test.ts runs them against real servers).
*/}}
{{- define "ghostpay.deployment" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := include "ghostpay.service" . | fromYaml -}}
{{- if $svc.enabled }}
{{- include "ghostpay.validate" $root }}
{{- range $color := include "ghostpay.enabledColors" $root | fromJsonArray }}
{{- $full := printf "%s-%s-%s" (include "ghostpay.fullname" $root) $name $color }}
{{- $tplCtx := merge (dict "color" $color "scheme" (include "ghostpay.scheme" $root) "schemes" (include "ghostpay.schemes" $root | fromJson)) $root }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $full }}
  labels:
    {{- include "ghostpay.labels" $root | nindent 4 }}
    {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name "color" $color) | nindent 4 }}
spec:
  {{- /* The HPA owns the replica count: set it only when the Deployment is created, so an
         upgrade never scales a busy colour back down to the starting point. */}}
  {{- if not (lookup "apps/v1" "Deployment" $root.Release.Namespace $full) }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name "color" $color) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "ghostpay.labels" $root | nindent 8 }}
        {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name "color" $color) | nindent 8 }}
      annotations:
        {{- if and $root.Values.vault.enabled $svc.secrets }}
        vault.hashicorp.com/agent-inject: "true"
        vault.hashicorp.com/role: {{ $root.Values.vault.role | quote }}
        vault.hashicorp.com/agent-pre-populate: "true"
        vault.hashicorp.com/agent-run-as-user: "1000"
        vault.hashicorp.com/agent-run-as-group: "1000"
        vault.hashicorp.com/secret-volume-path: {{ $root.Values.vault.secretsDir | quote }}
        {{- range $secret := $svc.secrets }}
        vault.hashicorp.com/agent-inject-secret-{{ $secret }}: {{ printf "%s/%s" $root.Values.vault.pathPrefix $secret | quote }}
        vault.hashicorp.com/agent-inject-template-{{ $secret }}: |
          {{ printf "{{- with secret %q -}}{{ .Data.data.%s }}{{- end -}}" (printf "%s/%s" $root.Values.vault.pathPrefix $secret) $root.Values.vault.field }}
        vault.hashicorp.com/agent-inject-perms-{{ $secret }}: "0400"
        {{- end }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "ghostpay.serviceAccountName" $root }}
      automountServiceAccountToken: {{ and $root.Values.vault.enabled (gt (len $svc.secrets) 0) }}
      {{- with $root.Values.image.pullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      # preStop sleep + in-flight drain + margin.
      terminationGracePeriodSeconds: {{ add $svc.preStopSleepSeconds (div $svc.shutdownTimeoutMs 1000) 5 }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: {{ $root.Values.topologySpread.zoneKey }}
          whenUnsatisfiable: {{ $root.Values.topologySpread.zoneWhenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name "color" $color) | nindent 14 }}
          matchLabelKeys: [pod-template-hash]
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: {{ $root.Values.topologySpread.hostnameWhenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "ghostpay.selectorLabels" (dict "root" $root "name" $name "color" $color) | nindent 14 }}
          matchLabelKeys: [pod-template-hash]
      containers:
        - name: {{ $name }}
          image: "{{ $root.Values.image.registry }}/{{ $svc.repository }}:{{ (index $root.Values.colors $color).imageTag }}"
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ $svc.port }}
              protocol: TCP
          env:
            - name: {{ $svc.portEnv }}
              value: {{ $svc.port | quote }}
            - name: HOST
              value: "0.0.0.0"
            - name: NODE_ENV
              value: production
            - name: LOG_LEVEL
              value: {{ $svc.logLevel | quote }}
            - name: SHUTDOWN_TIMEOUT_MS
              value: {{ $svc.shutdownTimeoutMs | quote }}
            {{- /* int64: a value read back from YAML is a float, which quote would print as 1e+06. */}}
            - name: MAX_CONNECTIONS
              value: {{ $svc.maxConnections | int64 | quote }}
            {{- if and $root.Values.vault.enabled $svc.secrets }}
            - name: SECRETS_DIR
              value: {{ $root.Values.vault.secretsDir | quote }}
            {{- end }}
            {{- if has "database" $svc.connections }}
            - name: DATABASE_URL
              valueFrom:
                secretKeyRef: { name: {{ $root.Values.externalDatabase.existingSecret }}, key: {{ $root.Values.externalDatabase.urlKey }} }
            {{- end }}
            {{- if has "redis" $svc.connections }}
            - name: REDIS_URL
              valueFrom:
                secretKeyRef: { name: {{ $root.Values.externalRedis.existingSecret }}, key: {{ $root.Values.externalRedis.urlKey }} }
            {{- end }}
            {{- if has "mongodb" $svc.connections }}
            - name: MONGODB_URL
              valueFrom:
                secretKeyRef: { name: {{ $root.Values.externalMongodb.existingSecret }}, key: {{ $root.Values.externalMongodb.urlKey }} }
            {{- end }}
            {{- include "ghostpay.tlsEnv" (dict "root" $root "name" $name) | nindent 12 }}
            {{- range $key, $value := $svc.env }}
            - name: {{ $key }}
              value: {{ tpl (toString $value) $tplCtx | quote }}
            {{- end }}
            {{- if $root.Values.otel.endpoint }}
            - name: OTEL_EXPORTER_OTLP_ENDPOINT
              value: {{ $root.Values.otel.endpoint | quote }}
            - name: OTEL_TRACES_SAMPLER
              value: {{ $root.Values.otel.sampler | quote }}
            - name: OTEL_TRACES_SAMPLER_ARG
              value: {{ $root.Values.otel.samplerArg | quote }}
            - name: OTEL_SERVICE_NAME
              value: {{ $svc.serviceLabel | default $name }}
            - name: OTEL_RESOURCE_ATTRIBUTES
              value: "deployment.environment.name={{ $root.Release.Namespace }},ghostpay.color={{ $color }}"
            {{- end }}
          {{- /* httpGet, or an exec presenting the pod's certificate when the service demands one (_tls.tpl). */}}
          {{- $scheme := include "ghostpay.serviceScheme" (dict "root" $root "name" $name) }}
          {{- $mtlsProbe := include "ghostpay.requiresClientCert" (dict "root" $root "name" $name) }}
          startupProbe:
            {{- if $mtlsProbe }}
            {{- include "ghostpay.execProbe" (dict "root" $root "port" $svc.port "path" "/healthz") | nindent 12 }}
            {{- else }}
            httpGet: { path: /healthz, port: http, scheme: {{ $scheme | upper }} }
            {{- end }}
            periodSeconds: 2
            timeoutSeconds: 3
            failureThreshold: 30
          livenessProbe:
            {{- if $mtlsProbe }}
            {{- include "ghostpay.execProbe" (dict "root" $root "port" $svc.port "path" "/healthz") | nindent 12 }}
            {{- else }}
            httpGet: { path: /healthz, port: http, scheme: {{ $scheme | upper }} }
            {{- end }}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            {{- if $mtlsProbe }}
            {{- include "ghostpay.execProbe" (dict "root" $root "port" $svc.port "path" "/readyz") | nindent 12 }}
            {{- else }}
            httpGet: { path: /readyz, port: http, scheme: {{ $scheme | upper }} }
            {{- end }}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          lifecycle:
            preStop:
              exec:
                command: ["sleep", "{{ $svc.preStopSleepSeconds }}"]
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if $root.Values.tls.enabled }}
            - name: tls
              mountPath: {{ include "ghostpay.tlsDir" $root }}
              readOnly: true
            {{- end }}
      volumes:
        # The root filesystem is read-only; Node and npm only need a writable /tmp.
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if $root.Values.tls.enabled }}
        - name: tls
          secret:
            secretName: {{ printf "%s-%s-tls" (include "ghostpay.fullname" $root) $name }}
            defaultMode: 0440
        {{- end }}
{{- end }}
{{- end }}
{{- end -}}
