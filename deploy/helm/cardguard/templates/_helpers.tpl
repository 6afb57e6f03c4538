{{/* The release's name for every object (at most 63 characters, a DNS label). */}}
{{- define "cardguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels a selector matches: they never change during an upgrade. */}}
{{- define "cardguard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cardguard.labels" -}}
{{ include "cardguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: serving
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Where the server finds its model bundle. */}}
{{- define "cardguard.bundlePath" -}}
{{- if eq .Values.model.source "image" -}}/app/bundle{{- else -}}/models/bundle{{- end -}}
{{- end -}}

{{/* Values that are each valid but wrong together: fail at render time, saying what to change. */}}
{{- define "cardguard.validate" -}}
{{- $s := .Values.shutdown -}}
{{- if lt (int $s.terminationGracePeriodSeconds) (add $s.preStopSeconds $s.drainSeconds 5 | int) -}}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%v) must cover shutdown.preStopSeconds (%v) + shutdown.drainSeconds (%v) + 5 s for in-flight requests: the kubelet kills the container when the grace period ends" $s.terminationGracePeriodSeconds $s.preStopSeconds $s.drainSeconds) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail (printf "autoscaling.minReplicas (%v) is above autoscaling.maxReplicas (%v)" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) -}}
{{- end -}}
{{- if and (eq .Values.model.source "persistentVolumeClaim") (not .Values.model.claimName) -}}
{{- fail "model.source is persistentVolumeClaim: set model.claimName to the claim that holds the bundle" -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (hasKey $pdb "minAvailable") (hasKey $pdb "maxUnavailable") -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (Kubernetes accepts one): set the other to null" -}}
{{- end -}}
{{- $fewest := ternary .Values.autoscaling.minReplicas .Values.replicas .Values.autoscaling.enabled | int -}}
{{- if and $pdb.enabled (hasKey $pdb "minAvailable") (not (kindIs "string" $pdb.minAvailable)) -}}
{{- if ge (int $pdb.minAvailable) $fewest -}}
{{- fail (printf "podDisruptionBudget.minAvailable (%v) leaves no pod to evict at %d replicas: no node could ever be drained. Use maxUnavailable: 1" $pdb.minAvailable $fewest) -}}
{{- end -}}
{{- end -}}
{{- end -}}
