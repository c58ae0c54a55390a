{{- define "ccrelay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ccrelay.fullname" -}}
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

{{/* The NATS subchart's fullname, by that chart's own rule. */}}
{{- define "ccrelay.natsFullname" -}}
{{- if .Values.nats.fullnameOverride }}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "nats" .Values.nats.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ccrelay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
{{ include "ccrelay.selectorLabels" . }}
{{- end }}

{{- define "ccrelay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ccrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component; call with (dict "ctx" $ "component" "ingest"). */}}
{{- define "ccrelay.componentLabels" -}}
{{ include "ccrelay.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ccrelay.componentSelector" -}}
{{ include "ccrelay.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ccrelay.image" -}}
{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote }}
{{- end }}

{{/* The Secret a component reads whole (envFrom). */}}
{{- define "ccrelay.secretName" -}}
{{- $c := get .ctx.Values .component }}
{{- $c.existingSecret | default (printf "%s-%s" (include "ccrelay.fullname" .ctx) .component) }}
{{- end }}

{{- define "ccrelay.natsURL" -}}
{{- if .Values.natsClient.url }}
{{- .Values.natsClient.url }}
{{- else }}
{{- $scheme := ternary "tls" "nats" .Values.natsClient.tls.enabled }}
{{- printf "%s://ccrelay:$(NATS_PASSWORD)@%s:4222" $scheme (include "ccrelay.natsFullname" .) }}
{{- end }}
{{- end }}

{{/*
The pod spec shared by every component; call with
(dict "ctx" $ "component" "ingest" "args" (list "ingest") "values" .Values.ingest
      "ports" (list ...) "probes" "..." "nats" true "gomemlimit" true "volumes" ...).
*/}}
{{- define "ccrelay.podSpec" -}}
{{- $ := .ctx }}
{{- $comp := .component }}
{{- $natsCA := and .nats $.Values.natsClient.tls.enabled }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
enableServiceLinks: false
automountServiceAccountToken: false
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .grace }}
{{- with $.Values.topologySpread }}
topologySpreadConstraints:
  {{- range . }}
  - {{ toYaml . | indent 4 | trim }}
    labelSelector:
      matchLabels:
        {{- include "ccrelay.componentSelector" (dict "ctx" $ "component" $comp) | nindent 8 }}
  {{- end }}
{{- end }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: ccrelay
    image: {{ include "ccrelay.image" $ }}
    imagePullPolicy: {{ $.Values.image.pullPolicy }}
    args: {{ toJson .args }}
    ports:
      {{- toYaml .ports | nindent 6 }}
    env:
      {{- if and .gomemlimit .values.resources.limits.memory }}
      # The Go runtime keeps its heap under 90% of the memory limit (the
      # processors' and the embedded file store's buffers otherwise follow
      # the write rate); the rest is for what it does not count (measured:
      # RSS ~18 MiB over GOMEMLIMIT at 5,000 req/s), so the cgroup's limit
      # is not reached first.
      - name: GOMEMLIMIT
        value: {{ include "ccrelay.goMemLimit" .values.resources.limits.memory | quote }}
      {{- end }}
      {{- if .nats }}
      - name: NATS_PASSWORD
        valueFrom:
          secretKeyRef: {name: {{ $.Values.natsAuth.secretName }}, key: ccrelay-password}
      - name: CCRELAY_NATS_URL
        value: {{ include "ccrelay.natsURL" $ | quote }}
      - name: CCRELAY_STREAM_REPLICAS
        value: {{ $.Values.natsClient.streamReplicas | quote }}
      {{- if $.Values.natsClient.tls.enabled }}
      - name: SSL_CERT_DIR
        value: /etc/ccrelay/nats-ca
      {{- end }}
      {{- end }}
      {{- range $k, $v := merge (dict) .values.env $.Values.commonEnv }}
      {{- if ne (toString $v) "" }}
      - name: {{ $k }}
        value: {{ toString $v | quote }}
      {{- end }}
      {{- end }}
    envFrom:
      {{- range .secrets }}
      - secretRef: {name: {{ . }}}
      {{- end }}
    {{- .probes | nindent 4 }}
    resources:
      {{- toYaml .values.resources | nindent 6 }}
    securityContext:
      {{- toYaml $.Values.containerSecurityContext | nindent 6 }}
    {{- if or $natsCA .data }}
    volumeMounts:
      {{- if $natsCA }}
      - {name: nats-ca, mountPath: /etc/ccrelay/nats-ca, readOnly: true}
      {{- end }}
      {{- if .data }}
      - {name: data, mountPath: /data}
      {{- end }}
    {{- end }}
{{- if or $natsCA .data }}
volumes:
  {{- if $natsCA }}
  - name: nats-ca
    secret:
      secretName: {{ $.Values.natsClient.tls.caSecretName }}
      items: [{key: ca.crt, path: ca.crt}]
  {{- end }}
  {{- if .data }}
  - name: data
    persistentVolumeClaim: {claimName: {{ .data }}}
  {{- end }}
{{- end }}
{{- end }}

{{/*
ccrelay.goMemLimit is 90% of a Kubernetes memory quantity (Ki, Mi, Gi, Ti,
k, M, G, T or plain bytes), in bytes, for GOMEMLIMIT.
*/}}
{{- define "ccrelay.goMemLimit" -}}
{{- $q := toString . -}}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $bytes := 0 -}}
{{- $matched := false -}}
{{- range $suffix := list "Ki" "Mi" "Gi" "Ti" "k" "M" "G" "T" -}}
{{- if and (not $matched) (hasSuffix $suffix $q) -}}
{{- $bytes = mul (trimSuffix $suffix $q | int64) (get $units $suffix) -}}
{{- $matched = true -}}
{{- end -}}
{{- end -}}
{{- if not $matched -}}
{{- $bytes = $q | int64 -}}
{{- end -}}
{{- if le $bytes 0 -}}
{{- fail (printf "resources.limits.memory %q: a whole number of bytes, Ki, Mi, Gi, Ti, k, M, G or T is needed for GOMEMLIMIT" $q) -}}
{{- end -}}
{{- div (mul $bytes 9) 10 -}}
{{- end -}}
