{{/* Names: <release>-tierstream unless the release name already says tierstream. */}}
{{- define "tierstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tierstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 42 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tierstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tierstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tierstream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tierstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tierstream
tierstream.io/node-group: {{ .Values.nodeGroup | quote }}
{{- end -}}

{{- define "tierstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tierstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tierstream.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tierstream.secretName" -}}
{{- default (printf "%s-secrets" (include "tierstream.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The environment variable the node reads a properties key from (cluster/settings.py). */}}
{{- define "tierstream.envName" -}}
{{- printf "TIERSTREAM_%s" (regexReplaceAll "[^A-Za-z0-9]" . "_" | upper) -}}
{{- end -}}

{{/* One properties value: lists joined by commas, whole numbers without an exponent, and the
     characters a .properties file escapes (backslash, line breaks) escaped. */}}
{{- define "tierstream.propertyValue" -}}
{{- if kindIs "slice" . -}}
{{- $items := list -}}
{{- range . -}}{{- $items = append $items (include "tierstream.propertyValue" .) -}}{{- end -}}
{{- join "," $items -}}
{{- else if kindIs "invalid" . -}}
{{- else if and (kindIs "float64" .) (eq (floor .) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . | replace "\\" "\\\\" | replace "\n" "\\n" | replace "\r" "\\r" -}}
{{- end -}}
{{- end -}}

{{/* Flattens nested values into properties keys: {server: {maxViewers: 5}} -> server.maxViewers. */}}
{{- define "tierstream.flattenInto" -}}
{{- $out := .out -}}
{{- $prefix := .prefix -}}
{{- range $key, $value := .values -}}
{{- $name := ternary (printf "%s.%s" $prefix $key) $key (ne $prefix "") -}}
{{- if kindIs "map" $value -}}
{{- include "tierstream.flattenInto" (dict "out" $out "prefix" $name "values" $value) -}}
{{- else -}}
{{- $_ := set $out $name (include "tierstream.propertyValue" $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The whole red5.properties this chart renders for every node of the release (no secrets:
     those come from the Secret as environment variables; nor the per-pod keys). */}}
{{- define "tierstream.properties" -}}
{{- $keys := dict -}}
{{- include "tierstream.flattenInto" (dict "out" $keys "prefix" "" "values" .Values.config) -}}
{{- $_ := set $keys "nodeGroup" .Values.nodeGroup -}}
{{- $_ := set $keys "http.host" "0.0.0.0" -}}
{{- $_ := set $keys "http.port" (toString .Values.httpPort) -}}
{{- $_ := set $keys "server.dataDir" "." -}}
# Rendered by the tierstream chart {{ .Chart.Version }} for region {{ .Values.nodeGroup }}
# (release {{ .Release.Name }}). Keys and their meaning: conf/red5.properties in tierstream.
# Set per pod by environment: server.name, server.publicUrl, server.internalUrl,
# webrtc.candidateAddresses; from the Secret: {{ join ", " (include "tierstream.secretKeys" . | fromJsonArray) }}.
{{- range $key, $value := $keys }}
{{ $key }}={{ $value }}
{{- end }}
{{ end -}}

{{/* The properties keys that come from the Secret, as a JSON list. */}}
{{- define "tierstream.secretKeys" -}}
{{- $keys := list "cluster.secret" "server.adminToken" -}}
{{- if .Values.config.clusterdb.host -}}
{{- $keys = append $keys "clusterdb.password" -}}
{{- else -}}
{{- $keys = append $keys "clusterdb.url" -}}
{{- end -}}
{{- if .Values.secrets.existingSecret -}}
{{- $keys = concat $keys .Values.secrets.extraKeys -}}
{{- else -}}
{{- $keys = concat $keys (keys .Values.secrets.values) -}}
{{- end -}}
{{- $keys | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* Secret keys that reach the node as TIERSTREAM_* variables (the node's declared keys). */}}
{{- define "tierstream.secretEnvKeys" -}}
{{- $keys := list -}}
{{- range $key := include "tierstream.secretKeys" . | fromJsonArray -}}
{{- if not (hasPrefix "app." $key) -}}{{- $keys = append $keys $key -}}{{- end -}}
{{- end -}}
{{- $keys | toJson -}}
{{- end -}}

{{/* Secret keys no variable can carry (an app's app.<App>.jwtStreamSecretKey): the init step
     adds them to the node's file from the Secret mounted as files. */}}
{{- define "tierstream.secretFileKeys" -}}
{{- $keys := list -}}
{{- range $key := include "tierstream.secretKeys" . | fromJsonArray -}}
{{- if hasPrefix "app." $key -}}{{- $keys = append $keys $key -}}{{- end -}}
{{- end -}}
{{- $keys | toJson -}}
{{- end -}}

{{/* The Secret's file keys as a volume. Takes (dict "root" $ "secretName" <name>). */}}
{{- define "tierstream.secretFilesVolume" -}}
- name: secret-files
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
    items:
      {{- range $key := include "tierstream.secretFileKeys" .root | fromJsonArray }}
      - {key: {{ $key }}, path: {{ $key }}}
      {{- end }}
{{- end -}}

{{/* The init step: the release's rendering (and the Secret's file keys) over the node's file.
     Takes (dict "root" $ "resources" <resources>). */}}
{{- define "tierstream.applyConfigContainer" -}}
{{- $root := .root -}}
{{- $files := include "tierstream.secretFileKeys" $root | fromJsonArray -}}
- name: apply-config
  image: {{ include "tierstream.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args:
    - apply-config
    - --from
    - /etc/tierstream/chart/red5.properties
    - --config
    - /var/lib/tierstream/red5.properties
    {{- if $files }}
    - --secrets
    - /etc/tierstream/secrets
    {{- end }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  volumeMounts:
    - {name: chart-config, mountPath: /etc/tierstream/chart, readOnly: true}
    - {name: data, mountPath: /var/lib/tierstream}
    {{- if $files }}
    - {name: secret-files, mountPath: /etc/tierstream/secrets, readOnly: true}
    {{- end }}
{{- end -}}

{{/* The chart-created Secret's data: secrets.values, by property name. */}}
{{- define "tierstream.secretData" -}}
{{- range $key, $value := .Values.secrets.values }}
{{ $key }}: {{ $value | b64enc | quote }}
{{- end }}
{{- end -}}

{{/* Secret keys a node cannot start without. */}}
{{- define "tierstream.requiredSecretKeys" -}}
{{- $keys := list "cluster.secret" -}}
{{- if not .Values.config.clusterdb.host -}}{{- $keys = append $keys "clusterdb.url" -}}{{- end -}}
{{- $keys | toJson -}}
{{- end -}}

{{/* Environment from a Secret: each secret key as its TIERSTREAM_* variable.
     Takes (dict "root" $ "secretName" <name>). */}}
{{- define "tierstream.secretEnv" -}}
{{- $root := .root -}}
{{- $secretName := .secretName -}}
{{- $required := include "tierstream.requiredSecretKeys" $root | fromJsonArray -}}
{{- range $key := include "tierstream.secretEnvKeys" $root | fromJsonArray }}
- name: {{ include "tierstream.envName" $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ $key }}
      optional: {{ not (has $key $required) }}
{{- end }}
{{- end -}}

{{/* The scheme of the nodes' HTTP port: https once tls.nodes names a Secret. */}}
{{- define "tierstream.scheme" -}}
{{- if .Values.tls.nodes.secretName -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* TLS files as the node's TIERSTREAM_* variables: the nodes' (node only, with "nodes" true)
     and the registry's. Takes (dict "root" $ "nodes" <bool>). */}}
{{- define "tierstream.tlsEnv" -}}
{{- $tls := .root.Values.tls -}}
{{- if and .nodes $tls.nodes.secretName }}
- {name: TIERSTREAM_SERVER_TLSCERTIFICATE, value: /etc/tierstream/tls/nodes/tls.crt}
- {name: TIERSTREAM_SERVER_TLSKEY, value: /etc/tierstream/tls/nodes/tls.key}
- {name: TIERSTREAM_SERVER_TLSCA, value: /etc/tierstream/tls/nodes/ca.crt}
{{- end }}
{{- if $tls.registry.secretName }}
- {name: TIERSTREAM_CLUSTERDB_SSLROOTCERT, value: /etc/tierstream/tls/registry/ca.crt}
{{- if $tls.registry.clientCertificate }}
- {name: TIERSTREAM_CLUSTERDB_SSLCERT, value: /etc/tierstream/tls/registry/tls.crt}
- {name: TIERSTREAM_CLUSTERDB_SSLKEY, value: /etc/tierstream/tls/registry/tls.key}
{{- end }}
{{- end }}
{{- end -}}

{{/* The TLS Secrets' mounts. Takes (dict "root" $ "nodes" <bool>). */}}
{{- define "tierstream.tlsVolumeMounts" -}}
{{- $tls := .root.Values.tls -}}
{{- if and .nodes $tls.nodes.secretName }}
- {name: tls-nodes, mountPath: /etc/tierstream/tls/nodes, readOnly: true}
{{- end }}
{{- if $tls.registry.secretName }}
- {name: tls-registry, mountPath: /etc/tierstream/tls/registry, readOnly: true}
{{- end }}
{{- end -}}

{{/* The TLS Secrets as volumes (the key files readable by the pod's group only).
     Takes (dict "root" $ "nodes" <bool>). */}}
{{- define "tierstream.tlsVolumes" -}}
{{- $tls := .root.Values.tls -}}
{{- if and .nodes $tls.nodes.secretName }}
- name: tls-nodes
  secret:
    secretName: {{ $tls.nodes.secretName }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      - {key: ca.crt, path: ca.crt}
{{- end }}
{{- if $tls.registry.secretName }}
- name: tls-registry
  secret:
    secretName: {{ $tls.registry.secretName }}
    defaultMode: 0440
    items:
      - {key: ca.crt, path: ca.crt}
      {{- if $tls.registry.clientCertificate }}
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      {{- end }}
{{- end }}
{{- end -}}

{{/* Checks no schema can express: they fail `helm install` with the reason. */}}
{{- define "tierstream.validate" -}}
{{- if not .Values.secrets.existingSecret -}}
{{- range $key := include "tierstream.requiredSecretKeys" . | fromJsonArray -}}
{{- if not (index $.Values.secrets.values $key) -}}
{{- fail (printf "secrets.values.%s is required (or name a Secret holding it in secrets.existingSecret): every node of every region needs it" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.hostNetwork) (not (regexMatch "turns?:" (include "tierstream.propertyValue" (.Values.config.webrtc.iceServers | default list)))) -}}
{{- fail "hostNetwork=false needs a TURN server in config.webrtc.iceServers: a node's media ports are ephemeral UDP ports that only the host's network (or a TURN relay) can reach" -}}
{{- end -}}
{{- if and (eq .Values.ice.address "external") (not .Values.ice.externalAddresses) -}}
{{- fail "ice.address=external needs ice.externalAddresses: Kubernetes node name -> the IP players reach it at" -}}
{{- end -}}
{{- if and (has .Values.config.clusterdb.sslmode (list "verify-ca" "verify-full")) (not .Values.tls.registry.secretName) -}}
{{- fail (printf "config.clusterdb.sslmode=%s needs tls.registry.secretName: a Secret whose ca.crt the registry's certificate is checked against" .Values.config.clusterdb.sslmode) -}}
{{- end -}}
{{- if and .Values.tls.registry.clientCertificate (not .Values.tls.registry.secretName) -}}
{{- fail "tls.registry.clientCertificate needs tls.registry.secretName: the Secret holding tls.crt and tls.key" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" -}}
{{- end -}}
{{- end -}}
