#!/bin/sh
# Slurm Epilog: closes this node's allocation of the job in Kilowatch. Never fails the job.
[ -r /etc/default/kilowatch-slurm ] && . /etc/default/kilowatch-slurm
URL="${KILOWATCH_URL:-http://127.0.0.1:8086}"
NODE="${SLURMD_NODENAME:-$(hostname -s)}"
JOB="${SLURM_JOB_ID:?}"
END="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
BODY=$(printf '{"job":"slurm:%s","node":"%s","end":"%s","source":"slurm-hook"}' "$JOB" "$NODE" "$END")
curl -fsS -m 5 -X POST -H "Authorization: Token ${KILOWATCH_TOKEN:-}" -H 'Content-Type: application/json' \
  --data "$BODY" "$URL/api/v1/jobs" >/dev/null 2>&1 || logger -t kilowatch "epilog: post for job $JOB failed" 2>/dev/null
exit 0
