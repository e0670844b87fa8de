#!/usr/bin/env python3
"""Ingest benchmark, side by side: Kilowatch, VictoriaMetrics and InfluxDB 1.x on the same files.

Generates its own line protocol with random values in several shapes, then for each shape starts
each server fresh (empty data directory, loopback only), POSTs the same requests to it, waits for
it to settle (Kilowatch: until a checkpoint has run after the last request), and reads from /proc
the server's CPU time (utime + stime) and peak resident memory (VmHWM, read just before it is
stopped). Prints samples per server CPU-second, peak RSS and Kilowatch's ratios to each other
server, and writes the same figures as JSON.

Run through scripts/bench-ingest (which builds the release binary first); --help lists options.
Standard library only.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

WRITE_TOKEN = "bench-write-token-0123456789"
READ_TOKEN = "bench-read-token-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVERS = ("kilowatch", "victoriametrics", "influxdb")
# Kilowatch's default checkpoint and maintenance intervals, scaled by --speed.
KW_CHECKPOINT_S = 60
KW_MAINTENANCE_S = 60


# ---------------------------------------------------------------------------------------------
# Line protocol generation
# ---------------------------------------------------------------------------------------------

class Values:
    """Float spelling: `random` is a full-precision noisy float (what a collector's f64 Display
    writes for a computed power, e.g. 312.48713826451237); `decimal2` rounds to 0.01."""

    def __init__(self, mode, rng):
        self.rng = rng
        self.fmt = repr if mode == "random" else (lambda x: f"{x:.2f}")

    def noisy(self, level, spread):
        return self.fmt(level + self.rng.uniform(-spread, spread))


def gpu_shape(a, rng, vals):
    """1,016 GPUs (127 DGX nodes x 8), 1 Hz, the collector's 10 gpu fields a line."""
    series = []
    for n in range(1, 128):
        for g in range(8):
            uuid = "GPU-%08x-%04x-%04x-%04x-%012x" % tuple(rng.getrandbits(b) for b in (32, 16, 16, 16, 48))
            key = f"gpu,gpu={g},node=dgx-{n:03d},site=dc5,uuid={uuid}"
            series.append({"key": key, "host": n, "level": rng.uniform(150, 650), "energy": rng.randrange(10**9, 10**11)})

    def line(s, _step):
        p = s["level"] + rng.uniform(-40, 40)
        s["energy"] += int(p * 1000)
        temp = rng.uniform(35, 80)
        fields = (
            f"power_w={vals.fmt(p)},energy_mj={s['energy']}i,temp_c={vals.fmt(temp)},"
            f"temp_margin_c={vals.fmt(87 - temp)},mem_temp_c={vals.noisy(temp + 8, 3)},"
            f"util_pct={vals.noisy(70, 30)},mem_util_pct={vals.noisy(45, 40)},"
            f"sm_clock_mhz={rng.choice((1755, 1830, 1905, 1980))}i,"
            f"mem_used_bytes={rng.randrange(1 << 30, 80 << 30)}i,throttle_reasons={rng.choice((0, 0, 0, 0, 4, 32))}i"
        )
        return f"{s['key']} {fields}", 10

    return series, 1, line


# Facility devices: (measurement, count, tag name, fields as (name, level, spread, counter)).
FACILITY = (
    ("meter", 400, "meter", (("energy_kwh", 0, 0, True), ("power_w", 120_000, 20_000, False))),
    ("pdu", 2000, "pdu", (("power_w", 9_000, 2_000, False), ("energy_kwh", 0, 0, True), ("current_a", 14, 4, False))),
    ("rack_env", 2000, "rack", (("temp_c", 27, 4, False), ("rh_pct", 45, 10, False))),
    ("breaker", 1000, "breaker", (("current_a", 60, 25, False),)),
    ("cooling", 200, "unit", (("supply_temp_c", 22, 2, False), ("return_temp_c", 34, 3, False), ("fan_power_w", 4_000, 1_500, False), ("pump_power_w", 2_500, 800, False))),
    ("water", 100, "meter", (("volume_m3", 0, 0, True),)),
    ("ups", 40, "ups", (("power_w", 400_000, 60_000, False), ("load_pct", 55, 15, False), ("battery_pct", 99, 1, False))),
    ("chiller", 20, "chiller", (("power_w", 300_000, 80_000, False), ("cop", 5, 1.5, False))),
)


def facility_shape(a, rng, vals):
    """5,760 meters, PDUs, sensors and cooling units at 1 Hz, one to four fields a line."""
    series = []
    host = 0
    for meas, count, tag, fields in FACILITY:
        for i in range(count):
            host += 1
            key = f"{meas},site=dc5,{tag}={tag}-{i:04d},zone=z{i % 16:02d}"
            series.append({"key": key, "host": host, "fields": fields, "counters": [rng.uniform(1e3, 1e7) for _ in fields]})

    def line(s, _step):
        parts = []
        for j, (name, level, spread, counter) in enumerate(s["fields"]):
            if counter:
                s["counters"][j] += rng.uniform(0.001, 0.05)
                parts.append(f"{name}={vals.fmt(s['counters'][j])}")
            else:
                parts.append(f"{name}={vals.noisy(level, spread)}")
        return f"{s['key']} {','.join(parts)}", len(parts)

    return series, 1, line


def highcard_shape(a, rng, vals):
    """--highcard-series series (default 100,000): per-container power and utilisation, two
    fields a line, every --highcard-interval seconds (default 10)."""
    lines = a.highcard_series // 2
    series = [{"key": f"container,host=node-{i // 50:05d},pod=pod-{i:06d},site=dc5", "host": i // 50} for i in range(lines)]

    def line(s, _step):
        return f"{s['key']} power_w={vals.noisy(120, 110)},util_pct={vals.noisy(50, 50)}", 2

    return series, a.highcard_interval, line


SHAPES = {"gpu": gpu_shape, "facility": facility_shape, "highcard": highcard_shape}


def data_start(a):
    """Unix second of the first reading. By default the data lies inside one UTC hour (the last
    one it fits in, ending at least a minute before now): whether Kilowatch rolls an hour up
    during the run then does not depend on the minute the bench was started (a roll-up and its
    compaction took 3 of 7 CPU seconds in a run that crossed an hour). `--cross-hour` puts an
    hour boundary a minute into the data instead, so that one roll-up is measured."""
    now = int(time.time())
    if a.cross_hour:
        return (now - a.seconds - 60) // 3600 * 3600 - 60
    if a.seconds > 3600 - 60:
        return now - a.seconds - 60
    return (now - a.seconds - 60 - 60) // 3600 * 3600 + 60

def generate(shape, a, path):
    """Writes the shape's file; returns its description and the POSTs as (offset, length,
    data time of the POST's last line in seconds from the start)."""
    rng = random.Random(f"{a.seed}-{shape}")
    vals = Values(a.values, rng)
    series, interval, line = SHAPES[shape](a, rng, vals)
    steps = max(1, a.seconds // interval)
    # Collectors are not synchronised: each host has its own phase within the interval, and each
    # reading its own jitter around it.
    phase = {s["host"]: rng.randrange(0, interval * 1_000_000_000) for s in series}
    start_ns = data_start(a) * 1_000_000_000
    jitter = int(a.jitter_ms * 1_000_000)
    posts, samples, lines, nseries = [], 0, 0, 0
    with open(path, "wb") as f:
        buf, in_buf, offset = [], 0, 0

        def flush(data_s):
            nonlocal buf, in_buf, offset
            body = "".join(buf).encode()
            f.write(body)
            posts.append((offset, len(body), data_s))
            offset += len(body)
            buf, in_buf = [], 0

        for step in range(steps):
            t_step = start_ns + step * interval * 1_000_000_000
            host_ts = {}
            for s in series:
                h = s["host"]
                ts = host_ts.get(h)
                if ts is None:
                    ts = host_ts[h] = t_step + phase[h] + (rng.randrange(-jitter, jitter + 1) if jitter else 0)
                text, n = line(s, step)
                buf.append(f"{text} {ts}\n")
                samples += n
                lines += 1
                if step == 0:
                    nseries += n
                in_buf += 1
                if in_buf == a.lines_per_post:
                    flush((step + 1) * interval)
        if buf:
            flush(steps * interval)
    return {"shape": shape, "lines": lines, "samples": samples, "series": nseries,
            "posts": len(posts), "bytes": os.path.getsize(path), "data_seconds": steps * interval, "values": a.values}, posts


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------

def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def hwm_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmHWM:"):
                return int(l.split()[1]) / 1024
    return 0.0


def request(port, method, path, body=None, headers=None, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def free_port():
    """A loopback port nobody listens on now (another bench may run beside this one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(proc, port, path, what):
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"{what} exited with status {proc.returncode} before answering (log in its data folder)")
        try:
            if request(port, "GET", path, timeout=2)[0] in (200, 204):
                time.sleep(0.2)
                if proc.poll() is not None:
                    sys.exit(f"{what} exited with status {proc.returncode}: is 127.0.0.1:{port} taken?")
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{what} did not answer on 127.0.0.1:{port}{path}")


INFLUX_CONF = """reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  max-series-per-database = 0
  max-values-per-tag = 0
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  pprof-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
  suppress-logo = true
"""


class Server:
    """One server process with its own empty folder under `work`."""

    def __init__(self, name, a, work, port):
        self.name, self.a, self.port = name, a, port
        self.dir = os.path.join(work, name)
        # Every run starts from an empty data folder, also in a --work folder kept between runs.
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        env = dict(os.environ)
        if name == "kilowatch":
            conf = os.path.join(self.dir, "kilowatch.toml")
            with open(conf, "w") as f:
                f.write(f"[store]\ncheckpoint_interval_s = {a.checkpoint_s}\nmaintenance_interval_s = {a.maintenance_s}\n")
                for opt in a.store_opt:
                    f.write(opt + "\n")
            env.update(KILOWATCH_WRITE_TOKEN=WRITE_TOKEN, KILOWATCH_READ_TOKEN=READ_TOKEN, RUST_LOG="warn")
            cmd = [a.kilowatch, "serve", "--config", conf, "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(self.dir, "data")]
            self.write_path = "/api/v2/write?precision=ns"
            self.headers = {"Authorization": f"Token {WRITE_TOKEN}"}
            health = "/api/v1/health"
        elif name == "victoriametrics":
            cmd = ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={self.dir}/data",
                   "-retentionPeriod=100y", "-loggerLevel=ERROR"]
            self.write_path = "/api/v2/write?precision=ns&org=o&bucket=b"
            self.headers = {}
            health = "/health"
        else:
            conf = os.path.join(self.dir, "influxdb.conf")
            with open(conf, "w") as f:
                f.write(INFLUX_CONF.format(d=self.dir, port=port, rpc=free_port()))
            cmd = ["influxd", "run", "-config", conf]
            self.write_path = "/write?db=bench&precision=ns"
            self.headers = {}
            health = "/ping"
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        wait_up(self.proc, port, health, name)
        if name == "influxdb":
            q = urllib.parse.urlencode({"q": "CREATE DATABASE bench"})
            st, body = request(port, "POST", "/query?" + q, headers={"Content-Type": "application/x-www-form-urlencoded"})
            if st != 200:
                sys.exit(f"influxdb: CREATE DATABASE answered {st}: {body[:200]!r}")

    def checkpoints(self):
        """Kilowatch's completed checkpoints, from its /metrics (None where it has none)."""
        try:
            st, body = request(self.port, "GET", "/metrics", headers={"Authorization": f"Token {READ_TOKEN}"}, timeout=30)
        except OSError:
            return None
        if st != 200:
            return None
        for l in body.decode(errors="replace").splitlines():
            if l.startswith("kilowatch_store_checkpoints_total "):
                return float(l.split()[1])
        return None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def post_all(srv, path, posts, speed):
    """POSTs the file's requests in order over one keep-alive connection, each no earlier than
    its data time divided by `speed` (0: as fast as the server answers)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=300)
    t0 = time.monotonic()
    behind = 0.0
    refused = {}
    with open(path, "rb") as f:
        for off, length, data_s in posts:
            if speed > 0:
                due = t0 + data_s / speed
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                else:
                    behind = max(behind, now - due)
            f.seek(off)
            body = f.read(length)
            for attempt in range(100):
                try:
                    conn.request("POST", srv.write_path, body=body, headers=srv.headers)
                    r = conn.getresponse()
                    answer = r.read()
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=300)
                    print(f"  {srv.name}: {e}, retrying", file=sys.stderr)
                    time.sleep(0.5)
                    continue
                if r.status in (200, 204):
                    break
                if r.status in (429, 503):
                    refused[r.status] = refused.get(r.status, 0) + 1
                    time.sleep(float(r.getheader("Retry-After") or 1))
                    continue
                sys.exit(f"{srv.name}: write answered {r.status}: {answer[:300]!r}")
            else:
                sys.exit(f"{srv.name}: write still refused after 100 tries")
    conn.close()
    return time.monotonic() - t0, behind, refused


def run_one(name, a, work, desc, path, posts, port):
    srv = Server(name, a, work, port)
    try:
        c0 = cpu_s(srv.proc.pid)
        w0 = time.monotonic()
        post_s, behind, refused = post_all(srv, path, posts, a.speed)
        ck_after_posts = srv.checkpoints() if name == "kilowatch" else None
        if name == "victoriametrics":
            request(srv.port, "GET", "/internal/force_flush")
        # Every server gets the same settling time; Kilowatch must also have completed a
        # checkpoint after the last request (which moved that request's samples into chunks).
        time.sleep(a.settle)
        checkpointed = None
        if name == "kilowatch":
            deadline = time.monotonic() + 10 * a.checkpoint_s + 60
            while True:
                ck = srv.checkpoints()
                checkpointed = ck is not None and ck_after_posts is not None and ck > ck_after_posts
                if checkpointed or ck is None or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        cpu = cpu_s(srv.proc.pid) - c0
        wall = time.monotonic() - w0
        hwm = hwm_mb(srv.proc.pid)
    finally:
        srv.stop()
    disk = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(srv.dir) for f in fs if not f.endswith(".log"))
    shutil.rmtree(srv.dir, ignore_errors=True)
    res = {"server": name, "cpu_s": round(cpu, 3), "samples_per_cpu_s": round(desc["samples"] / max(cpu, 1e-9)),
           "peak_rss_mb": round(hwm, 1), "wall_s": round(wall, 1), "post_s": round(post_s, 1), "max_behind_s": round(behind, 1),
           "disk_mb": round(disk / 1e6, 1), "refused_then_retried": refused}
    if name == "kilowatch":
        res["checkpoint_after_last_write"] = checkpointed
    return res


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def median_row(rows):
    out = dict(rows[0])
    for k in ("cpu_s", "samples_per_cpu_s", "peak_rss_mb", "wall_s", "post_s", "disk_mb"):
        out[k] = statistics.median(r[k] for r in rows)
    return out


def print_shape(desc, rows):
    print(f"\n== {desc['shape']}: {desc['lines']:,} lines, {desc['samples']:,} samples, {desc['series']:,} series, {desc['posts']} POSTs, "
          f"{desc['bytes'] / 1e6:.1f} MB, {desc['data_seconds']} s of data, values {desc['values']}")
    print(f"{'server':<16} {'samples/CPU-s':>14} {'CPU s':>8} {'peak RSS MB':>12} {'disk MB':>8} {'wall s':>7}   "
          f"{'KW CPU ratio':>12} {'KW RSS ratio':>12}")
    kw = rows.get("kilowatch")
    for name, r in rows.items():
        ratio_cpu = ratio_rss = ""
        if kw and name != "kilowatch":
            ratio_cpu = f"{kw['samples_per_cpu_s'] / r['samples_per_cpu_s']:.2f}"
            ratio_rss = f"{kw['peak_rss_mb'] / r['peak_rss_mb']:.2f}"
        note = ""
        if name == "kilowatch" and r.get("checkpoint_after_last_write") is False:
            note = "  (no checkpoint seen after the last write)"
        print(f"{name:<16} {r['samples_per_cpu_s']:>14,.0f} {r['cpu_s']:>8.2f} {r['peak_rss_mb']:>12.0f} {r['disk_mb']:>8.1f} "
              f"{r['wall_s']:>7.1f}   {ratio_cpu:>12} {ratio_rss:>12}{note}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--shapes", default="gpu,facility,highcard", help="comma-separated: gpu, facility, highcard")
    p.add_argument("--servers", default=",".join(SERVERS), help="comma-separated: kilowatch, victoriametrics, influxdb")
    p.add_argument("--seconds", type=int, default=600, help="seconds of data per shape")
    p.add_argument("--values", choices=("random", "decimal2"), default="random", help="float spelling")
    p.add_argument("--speed", type=float, default=10.0,
                   help="data seconds per wall second when POSTing (0: as fast as each server answers); "
                        "Kilowatch's checkpoint and maintenance intervals are divided by it too")
    p.add_argument("--checkpoint-s", type=int, help="Kilowatch [store] checkpoint_interval_s (default 300/speed)")
    p.add_argument("--settle", type=float, help="seconds every server runs after the last POST (default: checkpoint interval + 2)")
    p.add_argument("--store-opt", action="append", default=[], metavar="KEY = VALUE",
                   help="extra line for Kilowatch's [store] table, e.g. 'memory_budget_mb = 512' (repeatable)")
    p.add_argument("--lines-per-post", type=int, default=10_160)
    p.add_argument("--jitter-ms", type=float, default=5.0, help="random jitter of each host's timestamps")
    p.add_argument("--highcard-series", type=int, default=100_000)
    p.add_argument("--highcard-interval", type=int, default=10)
    p.add_argument("--rounds", type=int, default=1, help="repeat each server's run; figures are medians")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cross-hour", action="store_true", help="an hour boundary a minute into the data, so that Kilowatch rolls one hour up and compacts it during the run (default: the data lies inside one hour)")
    p.add_argument("--port", type=int, default=0, help="first port (each server the next tenth); 0: free ports")
    p.add_argument("--kilowatch", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "kilowatch"))
    p.add_argument("--json", help="summary file (default: <target>/bench-ingest.json)")
    p.add_argument("--work", help="folder for the files and data directories (default: a new temporary one, removed after)")
    a = p.parse_args()
    # Unpaced (--speed 0), the intervals are those of a tenfold speed.
    speed_div = a.speed if a.speed > 0 else 10
    a.checkpoint_s = a.checkpoint_s or max(1, round(KW_CHECKPOINT_S / speed_div))
    a.maintenance_s = max(1, round(KW_MAINTENANCE_S / speed_div))
    if a.settle is None:
        a.settle = a.checkpoint_s + 2
    shapes = [s for s in a.shapes.split(",") if s]
    servers = [s for s in a.servers.split(",") if s]
    for s in shapes:
        if s not in SHAPES:
            sys.exit(f"--shapes: unknown shape {s!r} (gpu, facility, highcard)")
    for s in servers:
        if s not in SERVERS:
            sys.exit(f"--servers: unknown server {s!r}")
    if "kilowatch" in servers and not os.access(a.kilowatch, os.X_OK):
        sys.exit(f"{a.kilowatch}: not built (cargo build --release -p kilowatch-aggregator --bin kilowatch)")
    json_path = a.json or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(a.kilowatch))), "bench-ingest.json")
    work = a.work or tempfile.mkdtemp(prefix="bench-ingest-")
    os.makedirs(work, exist_ok=True)
    summary = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cores": os.cpu_count(),
               "options": {k: v for k, v in vars(a).items() if k not in ("json", "work")}, "shapes": []}
    print(f"speed x{a.speed:g}; Kilowatch [store] checkpoint_interval_s = {a.checkpoint_s}, maintenance_interval_s = {a.maintenance_s}"
          f"{''.join('; ' + o for o in a.store_opt)}; every server settles {a.settle:g} s after the last POST")
    try:
        for shape in shapes:
            path = os.path.join(work, f"{shape}.lp")
            t = time.monotonic()
            desc, posts = generate(shape, a, path)
            print(f"generated {shape}: {desc['lines']:,} lines in {time.monotonic() - t:.1f} s", file=sys.stderr)
            rows = {}
            runs = {s: [] for s in servers}
            for rnd in range(a.rounds):
                for i, name in enumerate(servers):
                    r = run_one(name, a, work, desc, path, posts, a.port + 10 * i if a.port else free_port())
                    print(f"  {shape} round {rnd + 1} {name}: {r['samples_per_cpu_s']:,} samples/CPU-s, {r['cpu_s']} CPU s, "
                          f"peak RSS {r['peak_rss_mb']} MB, wall {r['wall_s']} s (posting fell behind by up to {r['max_behind_s']} s; "
                          f"writes refused then retried, by status: {r['refused_then_retried'] or 'none'})",
                          file=sys.stderr)
                    runs[name].append(r)
            for name in servers:
                rows[name] = median_row(runs[name])
            print_shape(desc, rows)
            entry = dict(desc, results=rows, runs=runs)
            kw = rows.get("kilowatch")
            if kw:
                entry["kilowatch_ratios"] = {n: {"cpu": round(kw["samples_per_cpu_s"] / r["samples_per_cpu_s"], 3),
                                                 "rss": round(kw["peak_rss_mb"] / r["peak_rss_mb"], 3)}
                                             for n, r in rows.items() if n != "kilowatch"}
            summary["shapes"].append(entry)
            os.remove(path)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    with open(json_path, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\nsummary: {json_path}")


if __name__ == "__main__":
    main()
