#!/usr/bin/env python3
"""PromQL benchmark, side by side: Kilowatch, VictoriaMetrics and Prometheus on the same samples.

Generates the bench's GPU shape (127 DGX nodes x 8 GPUs, the collector's `gpu` fields, at 1 Hz
by default) plus vLLM-like TTFT histograms, loads the same samples into `kilowatch serve`
(line protocol), Debian's VictoriaMetrics (line protocol on /api/v2/write: the same names,
`gpu_power_w`, and with -influxSkipSingleField the histograms' `value` field named as
Kilowatch names it, `vllm_ttft_seconds_bucket`) and Debian's Prometheus (OpenMetrics backfilled with `promtool tsdb
create-blocks-from openmetrics`), then runs 12 dashboard queries (instant, and ranges over the
whole data at a 15 s step) on each, once the server is idle after the load (and, for Kilowatch, has checkpointed it, as
VictoriaMetrics is asked to flush it): after one warm-up, --runs times each, timing each answer on
the client and reading the server's CPU (utime + stime of /proc/PID/stat) around the runs.
Prints the median and worst latency and the server CPU per query, and a warning for each query
whose answers differ in size (series, points) between the servers; writes the figures as JSON.

Run through scripts/bench-promql (which builds the release binary first); --help lists options.
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

# The ingest bench's helpers: a loopback request, a free port, a server's CPU, waiting for it.
from bench_ingest import Server as IngestServer, cpu_s, free_port, request, wait_up

READ_TOKEN = "bench-read-token-0123456789"
WRITE_TOKEN = "bench-write-token-0123456789"
FIELDS = ["power_w", "energy_mj", "temp_c", "util_pct", "mem_util_pct", "sm_clock_mhz", "mem_temp_c", "temp_margin_c", "mem_used_bytes", "throttle_reasons"]
LE = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]


def generate(a, work):
    """Writes data.lp (line protocol, ns) in POST-sized files and data.om (OpenMetrics)."""
    rng = random.Random(a.seed)
    end = a.end
    start = end - a.hours * 3600
    gpus = [(f"dgx-{n:03d}", g, "GPU-%08x" % rng.getrandbits(32)) for n in range(1, a.nodes + 1) for g in range(8)]
    fields = FIELDS[: a.fields]
    energy = {u: rng.uniform(1e9, 2e9) for _, _, u in gpus}
    hist = {(s, le): 0.0 for s in range(a.servers) for le in LE}
    lp_files, lp, om_series = [], [], {}
    om = open(os.path.join(work, "data.om"), "w")
    lines = 0

    def flush():
        nonlocal lp
        if lp:
            p = os.path.join(work, f"post-{len(lp_files):05d}.lp")
            with open(p, "w") as f:
                f.write("\n".join(lp) + "\n")
            lp_files.append(p)
            lp = []

    # OpenMetrics wants each series' samples together: write per series to temporary lists.
    per_series = {}
    for t in range(start, end, a.interval):
        ns = t * 1_000_000_000
        for node, g, uuid in gpus:
            p = rng.uniform(150, 700)
            energy[uuid] += p * a.interval * 1000
            vals = {"power_w": round(p, 3), "energy_mj": round(energy[uuid]), "temp_c": round(rng.uniform(40, 90), 1), "util_pct": rng.randint(0, 100),
                    "mem_util_pct": rng.randint(0, 100), "sm_clock_mhz": rng.choice([1410, 1755, 1980]), "mem_temp_c": round(rng.uniform(40, 85), 1),
                    "temp_margin_c": round(rng.uniform(0, 40), 1), "mem_used_bytes": rng.randint(0, 80 << 30), "throttle_reasons": rng.choice([0, 0, 0, 4])}
            tags = f"gpu={g},node={node},site=dc5,uuid={uuid}"
            lp.append(f"gpu,{tags} " + ",".join(f"{k}={vals[k]}" for k in fields) + f" {ns}")
            lines += 1
            for k in fields:
                per_series.setdefault((f"gpu_{k}", f'gpu="{g}",node="{node}",site="dc5",uuid="{uuid}"'), []).append(f"{vals[k]} {t}")
        for s in range(a.servers):
            for i, le in enumerate(LE):
                hist[(s, le)] += rng.randint(0, 3) * (i + 1)
                lp.append(f"vllm_ttft_seconds_bucket,le={le},server=vllm-{s:02d} value={hist[(s, le)]} {ns}")
                per_series.setdefault(("vllm_ttft_seconds_bucket", f'le="{le}",server="vllm-{s:02d}"'), []).append(f"{hist[(s, le)]} {t}")
        if len(lp) >= 10_000:
            flush()
    flush()
    samples = 0
    for (name, labels), vals in per_series.items():
        samples += len(vals)
        for v in vals:
            om.write(f"{name}{{{labels}}} {v}\n")
    om.write("# EOF\n")
    om.close()
    return lp_files, samples, len(per_series)


class Server:
    def __init__(self, name, a, work):
        self.name, self.port = name, free_port()
        self.dir = os.path.join(work, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        env = dict(os.environ)
        self.headers = {}
        self.prefix = ""
        if name == "kilowatch":
            conf = os.path.join(self.dir, "kilowatch.toml")
            with open(conf, "w") as f:
                f.write("[store]\ncheckpoint_interval_s = 30\n")
            env.update(KILOWATCH_WRITE_TOKEN=WRITE_TOKEN, KILOWATCH_READ_TOKEN=READ_TOKEN, RUST_LOG="warn")
            cmd = [a.kilowatch, "serve", "--config", conf, "--listen", f"127.0.0.1:{self.port}", "--data-dir", os.path.join(self.dir, "data")]
            self.headers = {"Authorization": f"Bearer {READ_TOKEN}"}
            self.prefix = "/prometheus"
            health = "/api/v1/health"
        elif name == "victoriametrics":
            cmd = ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.dir}/data", "-retentionPeriod=100y", "-loggerLevel=ERROR", "-search.disableCache", "-influxSkipSingleField"]
            health = "/health"
        else:
            tsdb = os.path.join(work, "prometheus-tsdb")
            cfg = os.path.join(self.dir, "prometheus.yml")
            with open(cfg, "w") as f:
                f.write("global:\n  scrape_interval: 1h\n")
            cmd = ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tsdb}", f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=100y", "--query.max-samples=500000000"]
            health = "/-/ready"
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        wait_up(self.proc, self.port, health, name)

    def query(self, path, params):
        body = urllib.parse.urlencode(params)
        h = dict(self.headers, **{"Content-Type": "application/x-www-form-urlencoded"})
        t0 = time.perf_counter()
        st, data = request(self.port, "POST", self.prefix + path, body=body, headers=h)
        dt = time.perf_counter() - t0
        if st != 200:
            raise RuntimeError(f"{self.name} {params['query']}: {st} {data[:300]!r}")
        return dt, json.loads(data)

    stop = IngestServer.stop
    checkpoints = IngestServer.checkpoints


def settle(pid, idle_cpu_s=0.02, limit_s=180):
    """Waits until the server has used under idle_cpu_s of CPU in a second (its background
    work after the load done: Kilowatch's checkpoint, VictoriaMetrics' merges), so that this
    work is not counted as the queries' CPU."""
    for _ in range(limit_s):
        c0 = cpu_s(pid)
        time.sleep(1)
        if cpu_s(pid) - c0 < idle_cpu_s:
            return
    print(f"warning: server {pid} still busy after {limit_s} s; its CPU per query includes background work")


def wait_checkpoint(srv, before, limit_s=120):
    """Waits for a checkpoint completed after the load (Kilowatch's counterpart of
    VictoriaMetrics' force_flush): the load sends hours of samples in seconds, which a live
    server's heads never hold (they hold one checkpoint interval, 30 s here); the queries
    should read the store as it is between two checkpoints, not decode hours of heads."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        now = srv.checkpoints()
        if now is None or before is None:
            print("warning: Kilowatch's /metrics has no checkpoint count; not waiting for a checkpoint")
            return
        if now > before:
            return
        time.sleep(1)
    print(f"warning: no checkpoint after the load within {limit_s} s")


def answer_size(body):
    """(series, points) of a query's answer: what must agree between the servers (a fast
    answer that is empty is no answer)."""
    result = body["data"]["result"]
    if body["data"]["resultType"] == "matrix":
        return len(result), sum(len(s["values"]) for s in result)
    if body["data"]["resultType"] == "vector":
        return len(result), len(result)
    return 1, 1


def queries(end, hours):
    rng6 = {"start": end - hours * 3600, "end": end, "step": 15}
    inst = {"time": end}
    return [
        ("sum by node rate, range", "/api/v1/query_range", "sum by (node) (rate(gpu_energy_mj[5m]))", rng6),
        ("sum by node rate, instant", "/api/v1/query", "sum by (node) (rate(gpu_energy_mj[5m]))", inst),
        ("topk power, instant", "/api/v1/query", "topk(10, gpu_power_w)", inst),
        ("topk avg_over_time, range", "/api/v1/query_range", "topk(10, avg_over_time(gpu_power_w[5m]))", rng6),
        ("avg_over_time temp, instant", "/api/v1/query", "avg_over_time(gpu_temp_c[5m])", inst),
        ("avg by node avg_over_time, range", "/api/v1/query_range", "avg by (node) (avg_over_time(gpu_temp_c[5m]))", rng6),
        ("regex over all GPUs, range", "/api/v1/query_range", 'max by (node) (gpu_power_w{uuid=~"GPU-.*", node=~"dgx-.*"})', rng6),
        ("histogram_quantile, range", "/api/v1/query_range", "histogram_quantile(0.99, sum by (le) (rate(vllm_ttft_seconds_bucket[5m])))", rng6),
        ("sum power, range", "/api/v1/query_range", "sum(gpu_power_w)", rng6),
        ("count hot GPUs, range", "/api/v1/query_range", "count(gpu_temp_c > 80)", rng6),
        ("max_over_time 1h, instant", "/api/v1/query", "max_over_time(gpu_power_w[1h])", inst),
        ("ledger daily PUE, 30 days", "/api/v1/query_range", 'last_over_time(kilowatch_pue{window="1d"}[1d])', {"start": end - 30 * 86400, "end": end, "step": 86400}),
    ]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=6)
    p.add_argument("--nodes", type=int, default=127, help="DGX nodes of 8 GPUs (127: 1,016 GPUs)")
    p.add_argument("--fields", type=int, default=10, help="gpu fields per GPU (10: 10,160 series at 127 nodes)")
    p.add_argument("--interval", type=int, default=1, help="seconds between samples")
    p.add_argument("--servers", type=int, default=16, help="vLLM servers with a TTFT histogram")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seed", type=int, default=28)
    p.add_argument("--end", type=int, default=None, help="Unix time of the data's end (default: the last whole hour)")
    p.add_argument("--kilowatch", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "kilowatch"))
    p.add_argument("--work", default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    a.hours = int(a.hours) if a.hours == int(a.hours) else a.hours
    a.end = a.end or int(time.time()) // 3600 * 3600
    work = a.work or tempfile.mkdtemp(prefix="bench-promql-")
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    files, samples, series = generate(a, work)
    print(f"data: {a.nodes * 8} GPUs x {a.fields} fields + {a.servers} TTFT histograms, {a.hours} h at {a.interval} s: {series:,} series, {samples:,} samples ({time.time() - t0:.0f} s to generate)")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", os.path.join(work, "data.om"), os.path.join(work, "prometheus-tsdb")], check=True, stdout=subprocess.DEVNULL)
    results = {}
    for name in ("kilowatch", "victoriametrics", "prometheus"):
        srv = Server(name, a, work)
        try:
            if name != "prometheus":
                path = "/api/v2/write?precision=ns" + ("&org=o&bucket=b" if name == "victoriametrics" else "")
                h = {"Authorization": f"Token {WRITE_TOKEN}"} if name == "kilowatch" else {}
                for f in files:
                    with open(f, "rb") as fh:
                        st, body = request(srv.port, "POST", path, body=fh.read(), headers=h)
                    if st not in (200, 204):
                        sys.exit(f"{name}: write answered {st}: {body[:200]!r}")
                if name == "victoriametrics":
                    request(srv.port, "GET", "/internal/force_flush")
                    time.sleep(2)
                if name == "kilowatch":
                    wait_checkpoint(srv, srv.checkpoints())
            settle(srv.proc.pid)
            results[name] = {}
            for label, path, q, params in queries(a.end, a.hours):
                if label.startswith("ledger") and name != "kilowatch":
                    continue
                params = dict(params, query=q)
                series, points = answer_size(srv.query(path, params)[1])
                c0 = cpu_s(srv.proc.pid)
                times = [srv.query(path, params)[0] for _ in range(a.runs)]
                c1 = cpu_s(srv.proc.pid)
                results[name][label] = {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000, "cpu_ms_per_query": (c1 - c0) * 1000 / a.runs, "series": series, "points": points}
        finally:
            srv.stop()
    names = list(results)
    print(f"\n{'query':<34}" + "".join(f"{n:>26}" for n in names))
    print(f"{'':<34}" + "".join(f"{'median / max / CPU ms':>26}" for _ in names))
    for label, *_ in queries(a.end, a.hours):
        row = f"{label:<34}"
        for n in names:
            r = results[n].get(label)
            row += f"{'—':>26}" if r is None else f"{r['median_ms']:>10.1f} /{r['max_ms']:>7.1f} /{r['cpu_ms_per_query']:>6.0f}"
        print(row)
    for label, *_ in queries(a.end, a.hours):
        sizes = {n: (results[n][label]["series"], results[n][label]["points"]) for n in names if label in results[n]}
        if len(set(sizes.values())) > 1:
            print(f"WARNING: {label}: the answers differ in size (series, points): " + ", ".join(f"{n} {s}" for n, s in sizes.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "series": series, "samples": samples, "results": results}, f, indent=2)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
