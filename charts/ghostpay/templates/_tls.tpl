{{/*
TLS between the services, one place for what depends on it. What each service can do is in
`tls.fileEnv.<service>`: `serverTls` (it serves HTTPS with the mounted certificate; a service
that does not stays plain HTTP, and everything that calls it or probes it says http),
`clientCa` (with tls.mtls it demands client certificates: kubelet's httpGet probes present
none, so such a service is probed by an exec of node that presents the pod's own certificate).
*/}}

{{/* Where the service's certificate Secret (tls.crt, tls.key, ca.crt) is mounted. */}}
{{- define "ghostpay.tlsDir" -}}/etc/ghostpay/tls{{- end -}}

{{/* The Secret (tls.crt, tls.key) of the client certificate Prometheus presents with tls.mtls. */}}
{{- define "ghostpay.prometheusClientSecret" -}}{{ include "ghostpay.fullname" . }}-prometheus-client-tls{{- end -}}

{{/* http or https: how the service answers in the cluster. ctx: dict root name */}}
{{- define "ghostpay.serviceScheme" -}}
{{- $files := index (.root.Values.tls.fileEnv | default dict) .name | default dict -}}
{{- if and .root.Values.tls.enabled $files.serverTls -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* "true" when the service demands client certificates (tls.mtls and a clientCa env), else "". ctx: dict root name */}}
{{- define "ghostpay.requiresClientCert" -}}
{{- $files := index (.root.Values.tls.fileEnv | default dict) .name | default dict -}}
{{- if and (eq (include "ghostpay.serviceScheme" .) "https") .root.Values.tls.mtls $files.clientCa -}}true{{- end -}}
{{- end -}}

{{/* The scheme of every service, for env templates: {{ .schemes.router }}, {{ .schemes.auth }}, … */}}
{{- define "ghostpay.schemes" -}}
{{- $root := . -}}
{{- $out := dict -}}
{{- range $name, $svc := .Values.services -}}
{{- $_ := set $out $name (include "ghostpay.serviceScheme" (dict "root" $root "name" $name)) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
TLS env of one container. NODE_EXTRA_CA_CERTS is read by Node itself at start: every HTTPS
client in the process that sets no `ca` of its own (the JWT verifiers' JWKS fetch from auth,
the bridge's calls to the router) then trusts the internal CA. jwksCert/jwksKey (the JWT
verifiers: router, cards, charges, analytics) name the pod's certificate again as the client
certificate the JWKS fetch presents, so auth can demand one with tls.mtls; like the router's
subgraph client certificate they are written whenever tls.enabled, so turning mtls on changes
only what the servers demand. ctx: dict root name
*/}}
{{- define "ghostpay.tlsEnv" -}}
{{- $root := .root -}}
{{- $dir := include "ghostpay.tlsDir" . -}}
{{- if $root.Values.tls.enabled }}
- name: NODE_EXTRA_CA_CERTS
  value: {{ $dir }}/ca.crt
{{- with (index $root.Values.tls.fileEnv .name) }}
- name: {{ .cert }}
  value: {{ $dir }}/tls.crt
- name: {{ .key }}
  value: {{ $dir }}/tls.key
{{- if .serverCert }}
- name: {{ .serverCert }}
  value: {{ $dir }}/tls.crt
- name: {{ .serverKey }}
  value: {{ $dir }}/tls.key
{{- end }}
{{- if .jwksCert }}
- name: {{ .jwksCert }}
  value: {{ $dir }}/tls.crt
- name: {{ .jwksKey }}
  value: {{ $dir }}/tls.key
{{- end }}
{{- if .ca }}
- name: {{ .ca }}
  value: {{ $dir }}/ca.crt
{{- end }}
{{- if and .clientCa $root.Values.tls.mtls }}
- name: {{ .clientCa }}
  value: {{ $dir }}/ca.crt
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The probe of a service that demands client certificates. kubelet's httpGet presents none, so
the probe is an exec of node in the container: it calls the path on loopback with the pod's
own certificate (issued for client auth too) and succeeds on a 2xx/3xx answer, as httpGet
does. The server's chain is checked against ca.crt, its name is not (the certificate names
the Services, the probe dials 127.0.0.1). ctx: dict root port path
*/}}
{{- define "ghostpay.execProbe" -}}
{{- $dir := include "ghostpay.tlsDir" . -}}
exec:
  command:
    - node
    - -e
    - {{ printf "const fs=require('node:fs'),d='%s/';require('node:https').get({host:'127.0.0.1',port:%v,path:'%s',cert:fs.readFileSync(d+'tls.crt'),key:fs.readFileSync(d+'tls.key'),ca:fs.readFileSync(d+'ca.crt'),checkServerIdentity:()=>undefined},(r)=>process.exit(r.statusCode>=200&&r.statusCode<400?0:1)).on('error',()=>process.exit(1))" $dir .port .path | quote }}
{{- end -}}
