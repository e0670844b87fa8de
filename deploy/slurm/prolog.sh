#!/bin/sh
# Slurm Prolog (PrologFlags=Alloc): tells Kilowatch which GPUs this job holds on this node.
# Configure with KILOWATCH_URL (default http://127.0.0.1:8086) and KILOWATCH_TOKEN (a write
# token), e.g. in /etc/default/kilowatch-slurm, which this script sources when present.
# It never fails the job: a missed post is caught by the poller (`kilowatch slurm-poll`).
[ -r /etc/default/kilowatch-slurm ] && . /etc/default/kilowatch-slurm
URL="${KILOWATCH_URL:-http://127.0.0.1:8086}"
SCONTROL="${KILOWATCH_SCONTROL:-scontrol}"
NODE="${SLURMD_NODENAME:-$(hostname -s)}"
JOB="${SLURM_JOB_ID:?}"

# GPU indices: SLURM_JOB_GPUS is empty on nodes whose GRES files are not /dev/nvidia*, so ask
# the controller: `scontrol show job -d` has "Nodes=… GRES=gpu:3(IDX:0-2)" per node.
expand() { # "0-2,5" -> "0,1,2,5"
  echo "$1" | tr ',' '\n' | while IFS=- read a b; do
    [ -z "$a" ] && continue
    if [ -n "$b" ]; then seq "$a" "$b"; else echo "$a"; fi
  done | paste -sd, -
}
GPUS="${SLURM_JOB_GPUS:-}"
OWNER="${SLURM_JOB_USER:-}"
ACCOUNT="${SLURM_JOB_ACCOUNT:-}"
DETAIL="$("$SCONTROL" show job -d "$JOB" 2>/dev/null)"
if [ -z "$GPUS" ]; then
  IDX="$(echo "$DETAIL" | grep -o 'GRES=[^ ]*IDX:[^)]*)' | head -n1 | sed 's/.*IDX:\([^)]*\)).*/\1/')"
  [ -n "$IDX" ] && GPUS="$(expand "$IDX")"
fi
[ -z "$OWNER" ] && OWNER="$(echo "$DETAIL" | grep -o 'UserId=[^( ]*' | head -n1 | cut -d= -f2)"
[ -z "$ACCOUNT" ] && ACCOUNT="$(echo "$DETAIL" | grep -o 'Account=[^ ]*' | head -n1 | cut -d= -f2)"
START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
BODY=$(printf '{"job":"slurm:%s","owner":"%s","project":"%s","node":"%s","gpus":[%s],"start":"%s","source":"slurm-hook"}' \
  "$JOB" "$OWNER" "$ACCOUNT" "$NODE" "$GPUS" "$START")
# KILOWATCH_URL may name several aggregators, space-separated (both members of a pair,
# docs/ha.md): the same body goes to each, and the job ledger stores it once per member.
for U in $URL; do
  curl -fsS -m 5 -X POST -H "Authorization: Token ${KILOWATCH_TOKEN:-}" -H 'Content-Type: application/json' \
    --data "$BODY" "$U/api/v1/jobs" >/dev/null 2>&1 || logger -t kilowatch "prolog: post for job $JOB to $U failed" 2>/dev/null
done
exit 0
