#!/bin/sh
# Slurm Epilog: closes this node's allocation of the job in Kilowatch. Never fails the job.
[ -r /etc/default/kilowatch-slurm ] && . /etc/default/kilowatch-slurm
URL="${KILOWATCH_URL:-http://127.0.0.1:8086}"
NODE="${SLURMD_NODENAME:-$(hostname -s)}"
JOB="${SLURM_JOB_ID:?}"
END="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
BODY=$(printf '{"job":"slurm:%s","node":"%s","end":"%s","source":"slurm-hook"}' "$JOB" "$NODE" "$END")
# KILOWATCH_URL may name several aggregators, space-separated (both members of a pair,
# docs/ha.md): the same body goes to each, and the job ledger stores it once per member.
for U in $URL; do
  curl -fsS -m 5 -X POST -H "Authorization: Token ${KILOWATCH_TOKEN:-}" -H 'Content-Type: application/json' \
    --data "$BODY" "$U/api/v1/jobs" >/dev/null 2>&1 || logger -t kilowatch "epilog: post for job $JOB to $U failed" 2>/dev/null
done
exit 0
