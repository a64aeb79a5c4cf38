{{/* Names: <release>-sovereign-hub, or the release name when it already says so. */}}
{{- define "sh.fullname" -}}
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

{{- define "sh.name" -}}{{ default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}{{- end -}}

{{/* Labels every object carries; selectors use the stable subset. */}}
{{- define "sh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sh.labels" -}}
{{ include "sh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The audit viewer's port in the hub's pod (sovereign_hub.hubconfig.VIEWER_PORT). */}}
{{- define "sh.viewerPort" -}}10101{{- end -}}

{{- define "sh.image" -}}{{ .repository }}@{{ .digest }}{{- end -}}

{{/* The restricted Pod Security Standard, for pods and for containers. */}}
{{/* Argument: the uid; high uids keep clear of the node's own users. */}}
{{- define "sh.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sh.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sh.hubSecret" -}}{{ .Values.hub.existingSecret | default (printf "%s-hub" (include "sh.fullname" .)) }}{{- end -}}
{{- define "sh.auditSecret" -}}{{ .Values.audit.hmacKey.existingSecret | default (printf "%s-audit-hmac" (include "sh.fullname" .)) }}{{- end -}}
{{- define "sh.signingSecret" -}}{{ .Values.audit.signingKey.existingSecret | default (printf "%s-audit-signing" (include "sh.fullname" .)) }}{{- end -}}
{{- define "sh.clientSecret" -}}{{ .Values.auth.clientSecret.existingSecret | default (printf "%s-oidc" (include "sh.fullname" .)) }}{{- end -}}

{{/*
A value kept across upgrades: the existing Secret's, else a new random one.
Arguments: (list $ secretName key length).
*/}}
{{- define "sh.keptSecret" -}}
{{- $root := index . 0 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) -}}
{{- if and $existing (hasKey $existing.data (index . 2)) -}}
{{- index $existing.data (index . 2) -}}
{{- else -}}
{{- /* hex, as JupyterHub's cookie secret and crypt key require */ -}}
{{- randAlphaNum (index . 3) | sha256sum | b64enc -}}
{{- end -}}
{{- end -}}

{{/*
The checkpoint signing key kept across upgrades: the existing Secret's PEM,
else a new Ed25519 key (sprig's genPrivateKey writes PKCS#8 PEM, which
sovereign_hub.audit.signing reads). Arguments: (list $ secretName key).
*/}}
{{- define "sh.keptSigningKey" -}}
{{- $root := index . 0 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) -}}
{{- if and $existing (hasKey $existing.data (index . 2)) -}}
{{- index $existing.data (index . 2) -}}
{{- else -}}
{{- genPrivateKey "ed25519" | b64enc -}}
{{- end -}}
{{- end -}}

{{/* GPU taints of the policy, as tolerations (the pre-puller runs on GPU nodes). */}}
{{- define "sh.gpuTolerations" -}}
{{- $scheduling := (include "sh.policy" . | fromYaml).scheduling | default dict -}}
{{- $taints := $scheduling.gpuTaints | default (list (dict "key" "nvidia.com/gpu" "effect" "NoSchedule")) -}}
{{- range $taints }}
- key: {{ .key | quote }}
  operator: {{ if .value }}Equal{{ else }}Exists{{ end }}
  {{- with .value }}
  value: {{ . | quote }}
  {{- end }}
  effect: {{ .effect | quote }}
{{- end }}
{{- end -}}

{{/*
Whether an IPv4 CIDR contains an address, by integer division: both agree
on the network's leading bits. Arguments: (list cidr address); prints "true".
*/}}
{{- define "sh.ipv4Int" -}}
{{- $o := splitList "." . -}}
{{- add (mul (atoi (index $o 0)) 16777216) (mul (atoi (index $o 1)) 65536) (mul (atoi (index $o 2)) 256) (atoi (index $o 3)) -}}
{{- end -}}
{{- define "sh.cidrContains" -}}
{{- $cidr := index . 0 -}}
{{- if not (contains ":" $cidr) -}}
{{- $parts := splitList "/" $cidr -}}
{{- $bits := atoi (index $parts 1) -}}
{{- $size := 1 -}}
{{- range until (sub 32 $bits | int) -}}{{- $size = mul $size 2 -}}{{- end -}}
{{- $net := include "sh.ipv4Int" (index $parts 0) | atoi -}}
{{- $addr := include "sh.ipv4Int" (index . 1) | atoi -}}
{{- if eq (div $net $size) (div $addr $size) -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* An egress ipBlock for a CIDR, with the blocked addresses carved out of it. */}}
{{- define "sh.ipBlock" -}}
{{- $cidr := index . 0 -}}
{{- $blocked := index . 1 -}}
{{- $except := list -}}
{{- range $blocked -}}
{{- $addr := index (splitList "/" .) 0 -}}
{{- if include "sh.cidrContains" (list $cidr $addr) -}}{{- $except = append $except . -}}{{- end -}}
{{- end }}
- ipBlock:
    cidr: {{ $cidr }}
    {{- with $except }}
    except: {{ toJson . }}
    {{- end }}
{{- end -}}

{{/* What jupyterhub_config.py reads: values it needs, and no secret. */}}
{{- define "sh.hubValues" -}}
{{- $full := include "sh.fullname" . -}}
{{- $values := dict
  "release" (dict "name" .Release.Name "namespace" .Release.Namespace "fullname" $full)
  "names" (dict "hub" (printf "%s-hub" $full) "proxyApi" (printf "%s-proxy-api" $full))
  "labels" (dict "app.kubernetes.io/name" (include "sh.name" .) "app.kubernetes.io/instance" .Release.Name)
  "hub" (dict "db" (omit .Values.hub.db "passwordSecret" "pvc" "backup") "metrics" .Values.hub.metrics "templatePaths" .Values.hub.templatePaths "templateVars" .Values.hub.templateVars)
  "imagePullSecrets" .Values.imagePullSecrets
  "singleuser" .Values.singleuser
  "cull" .Values.cull
  "auth" (omit .Values.auth "clientSecret")
  "audit" (dict "onSpoolFull" .Values.audit.onSpoolFull "spoolLimitBytes" .Values.audit.spoolLimitBytes "sinks" .Values.audit.sinks "signing" .Values.audit.signingKey.enabled "checkpoints" .Values.audit.checkpoints)
  "ingressHosts" (.Values.ingress.hosts | default .Values.httpRoute.hostnames | default list)
  "scheduling" (include "sh.schedulingValues" . | fromYaml)
  "gatewayClient" (dict "enabled" (not (empty .Values.proxy.gatewayClient.existingSecret)))
  "proxy" (dict "apiConcurrency" (.Values.proxy.apiConcurrency | default 100))
-}}
{{- toYaml $values -}}
{{- end -}}

{{/*
DNS egress, as Zero to JupyterHub's egressAllowRules: port 53 on the cloud
metadata server (GKE answers DNS there), on pods in kube-system, and on the
private ranges (NodeLocal DNSCache, a resolver outside the cluster).
Argument: an egressAllowRules mapping.
*/}}
{{- define "sh.dnsEgress" -}}
{{- if or .dnsPortsCloudMetadataServer .dnsPortsKubeSystemNamespace .dnsPortsPrivateIPs }}
- to:
    {{- if .dnsPortsCloudMetadataServer }}
    - ipBlock: {cidr: 169.254.169.254/32}
    {{- end }}
    {{- if .dnsPortsKubeSystemNamespace }}
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: kube-system}
    {{- end }}
    {{- if .dnsPortsPrivateIPs }}
    {{- range list "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16" }}
    - ipBlock: {cidr: {{ . }}}
    {{- end }}
    {{- end }}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end }}
{{- end -}}

{{/*
The port an audit sink is reached on, from its options: syslog's `port`
(6514 by default, as the sink's), a PostgreSQL DSN's port (5432), an HTTP
sink URL's port (443 for https, 80 for http). Prints nothing for file sinks.
*/}}
{{- define "sh.sinkPort" -}}
{{- if eq .type "syslog" -}}
{{- .port | default 6514 -}}
{{- else if eq .type "postgresql" -}}
{{- $port := "" -}}
{{- if regexMatch "^postgres(ql)?://" .dsn -}}
{{- $host := (urlParse .dsn).host -}}
{{- if contains ":" $host }}{{ $port = last (splitList ":" $host) }}{{ end -}}
{{- else -}}
{{- $port = regexFind "[0-9]+" (regexFind "port=[0-9]+" .dsn) -}}
{{- end -}}
{{- $port | default "5432" -}}
{{- else if has .type (list "loki" "opensearch" "webhook") -}}
{{- $url := urlParse .url -}}
{{- if contains ":" $url.host -}}
{{- last (splitList ":" $url.host) -}}
{{- else -}}
{{- if eq $url.scheme "https" }}443{{ else }}80{{ end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The Secrets the policy's regions name in `cluster.kubeconfigSecret` or
`cluster.tokenSecret`, each once, as a JSON list: the hub mounts each at
/etc/sovereign-hub/clusters/<name>/, where the spawner reads `<name>/<key>`
(SovereignSpawner.cluster_secrets_dir).
*/}}
{{- define "sh.clusterSecrets" -}}
{{- $names := list -}}
{{- range $region, $spec := ((include "sh.policy" . | fromYaml).regions | default dict) -}}
{{- $cluster := ($spec | default dict).cluster | default dict -}}
{{- with $cluster.kubeconfigSecret -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- with $cluster.tokenSecret -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- end -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* What the hub needs of `scheduling`: the names and the priority its pods get. */}}
{{- define "sh.schedulingValues" -}}
{{- $s := .Values.scheduling -}}
schedulerName: {{ if $s.userScheduler.enabled }}{{ include "sh.userSchedulerName" . }}{{ end }}
priorityClassName: {{ if $s.podPriority.enabled }}{{ include "sh.userPriorityClass" . }}{{ end }}
{{- if $s.userPlaceholder.enabled }}
userPriority: {{ int $s.podPriority.defaultPriority }}
{{- end }}
{{- end -}}

{{/*
The policy document as YAML text. `policy` given as text (`--set-file
policy=policy.yaml`, or a `|` block) is kept verbatim, so the order of its
profiles (the spawn form's order) and its comments reach the hub; given as a
mapping, Helm has already sorted its keys. Empty: `examplePolicy`.
*/}}
{{- define "sh.policyText" -}}
{{- $policy := .Values.policy | default .Values.examplePolicy -}}
{{- if kindIs "string" $policy -}}
{{- if contains "<fill in: " $policy -}}
{{- fail "policy: the text still holds a <fill in: …> marker of `sovhub migrate z2jh`; fill in each place `sovhub policy check policy.yaml` lists" -}}
{{- end -}}
{{- $policy -}}
{{- else -}}
{{- toYaml $policy -}}
{{- end -}}
{{- end -}}

{{/* The policy as a mapping, for templates that read its fields:
`include "sh.policy" . | fromYaml`. Text that is not a YAML mapping fails here. */}}
{{- define "sh.policy" -}}
{{- $doc := include "sh.policyText" . | fromYaml -}}
{{- if hasKey $doc "Error" -}}
{{- fail (printf "policy: the text given is not a YAML mapping: %s" $doc.Error) -}}
{{- end -}}
{{- toYaml $doc -}}
{{- end -}}

{{/* Egress to the regional gateways (proxy.gatewayClient.egressCidrs), for the proxy and the hub. */}}
{{- define "sh.gatewayEgress" -}}
{{- with .Values.proxy.gatewayClient.egressCidrs }}
- to:
    {{- range . }}
    - ipBlock: {cidr: {{ . }}}
    {{- end }}
  ports: [{port: 443, protocol: TCP}, {port: 8443, protocol: TCP}]
{{- end }}
{{- end -}}
