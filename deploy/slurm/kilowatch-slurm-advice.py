#!/usr/bin/env python3
"""Refreshes the local advice file that deploy/slurm/job_submit.lua reads (docs/forecast.md).

slurmctld's job_submit path must never wait on the network, so this runs beside it from a
systemd timer (kilowatch-slurm-advice.timer): it asks Kilowatch's /api/v1/advice once per job
length for ONE GPU (a job's energy, water and CO2 scale with its GPU count, so the best start
does not depend on it) and writes a Lua table atomically. The read token comes from a file
(systemd's LoadCredential, or KILOWATCH_READ_TOKEN_FILE), never from a command line or the
environment, so `ps` and /proc/*/environ do not show it.

Environment (all optional but the URL):
  KILOWATCH_URL              e.g. http://kilowatch.example:8086
  KILOWATCH_READ_TOKEN_FILE  default $CREDENTIALS_DIRECTORY/read-token
  KILOWATCH_ADVICE_FILE      default /var/lib/kilowatch/slurm-advice.lua
  KILOWATCH_ADVICE_LENGTHS   job lengths in hours, default "1 2 3 4 6 8 12 16 24 36 48"
  KILOWATCH_ADVICE_WITHIN_H  default 48
  KILOWATCH_ADVICE_WEIGHT    energy, water, co2 or balanced (default)
  KILOWATCH_ADVICE_MAX_AGE_S older than this, job_submit.lua says the advice is stale (default 7200)
"""
import json, os, sys, tempfile, time, urllib.parse, urllib.request


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


def lua_num(x):
    return "nil" if x is None else repr(float(x))


def read_token():
    path = os.environ.get("KILOWATCH_READ_TOKEN_FILE") or os.path.join(os.environ.get("CREDENTIALS_DIRECTORY", "/etc/kilowatch"), "read-token")
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def advice(url, token, hours, within, weight):
    q = urllib.parse.urlencode({"gpus": 1, "hours": hours, "within": f"{within}h", "weight": weight})
    req = urllib.request.Request(f"{url}/api/v1/advice?{q}", headers={"Authorization": "Token " + token})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def entry(a):
    if a.get("refused"):
        return "{ refused = %s }" % lua_str(a["refused"])
    starts = []
    for s in a.get("best", []):
        saves = s.get("saves", {})
        starts.append("{ start_s = %d, start_local = %s, water_l = %s, co2_kg = %s, facility_kwh = %s }" % (
            int(s["start_s"]), lua_str(s["start_local"]), lua_num(saves.get("water_l")), lua_num(saves.get("co2_kg")), lua_num(saves.get("facility_kwh"))))
    return "{ starts = { %s } }" % ", ".join(starts)


def main():
    url = os.environ["KILOWATCH_URL"].rstrip("/")
    out = os.environ.get("KILOWATCH_ADVICE_FILE", "/var/lib/kilowatch/slurm-advice.lua")
    lengths = sorted({int(h) for h in os.environ.get("KILOWATCH_ADVICE_LENGTHS", "1 2 3 4 6 8 12 16 24 36 48").split()})
    within = int(os.environ.get("KILOWATCH_ADVICE_WITHIN_H", "48"))
    weight = os.environ.get("KILOWATCH_ADVICE_WEIGHT", "balanced")
    max_age = int(os.environ.get("KILOWATCH_ADVICE_MAX_AGE_S", "7200"))
    token = read_token()
    # Any failure leaves the previous file in place: it ages, and job_submit.lua then says stale.
    rows = [f"    [{h}] = {entry(advice(url, token, h, within, weight))}," for h in lengths]
    text = "-- written by kilowatch-slurm-advice.py; read by job_submit.lua\nreturn {\n  generated_s = %d,\n  max_age_s = %d,\n  weight = %s,\n  lengths = { %s },\n  advice = {\n%s\n  },\n}\n" % (
        int(time.time()), max_age, lua_str(weight), ", ".join(str(h) for h in lengths), "\n".join(rows))
    d = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".slurm-advice.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)   # slurmctld (SlurmUser) reads it; it holds no secret
    os.replace(tmp, out)


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, KeyError) as e:
        print(f"kilowatch-slurm-advice: not refreshed: {e}", file=sys.stderr)
        sys.exit(1)
