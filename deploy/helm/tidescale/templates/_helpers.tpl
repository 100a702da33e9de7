{{/* Names, labels and small decisions shared by the chart's templates. */}}

{{- define "tidescale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tidescale.fullname" -}}
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

{{- define "tidescale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidescale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tidescale.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tidescale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tidescale
{{- end }}

{{- define "tidescale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tidescale.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when the Deployment serves the metrics APIs. */}}
{{- define "tidescale.adapterOn" -}}
{{- if or (eq .Values.mode "adapter") (eq .Values.mode "both") }}true{{ end }}
{{- end }}

{{/* "true" when the Deployment runs the scaling controller. */}}
{{- define "tidescale.scalerOn" -}}
{{- if or (eq .Values.mode "scaler") (eq .Values.mode "both") }}true{{ end }}
{{- end }}

{{- define "tidescale.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "tidescale.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "provided" }}
{{- required "certificates.provided.secretName is required in mode provided" .Values.certificates.provided.secretName }}
{{- else }}
{{- printf "%s-tls" (include "tidescale.fullname" .) }}
{{- end }}
{{- end }}

{{- define "tidescale.leaseName" -}}
{{- default (include "tidescale.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The DNS names the serving certificate must carry: the Service's. */}}
{{- define "tidescale.dnsNames" -}}
{{- $svc := include "tidescale.fullname" . -}}
{{- list (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) | toJson }}
{{- end }}
