#!/usr/bin/env python3
"""Catch-up benchmark: CPU per sample of rolling history up, against ingesting it.

A DC5 backfill (the demo's simulator, `kilowatch demo --backfill`) is written into a fresh data
folder; the demo is stopped with SIGTERM as soon as the backfill is done (a stop is prompt even
mid roll-up), then `kilowatch serve` opens that folder and its first maintenance pass rolls the
history up (minute and hour buckets), compacts the chunks into blocks and applies retention.
Prints samples ingested per CPU-second of the demo's backfill (simulation, store writes and
checkpoints) and samples rolled up per CPU-second of serve until its first pass ends
(/proc/PID/stat), their ratio and the wall time of the catch-up; writes JSON with --json.

Samples rolled up by serve are the backfill's samples times the share of the backfilled hours
that serve's pass rolled up (the demo may roll a slice up before its stop).
"""
import argparse, json, os, re, signal, socket, subprocess, sys, tempfile, time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_line(proc, log, pattern, timeout_s, on=None):
    """Reads the process' stderr until a line matches; returns the match and the CPU then."""
    rx = re.compile(pattern)
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                sys.exit(f"the process ended before {pattern!r}; log in {log.name}")
            continue
        log.write(line)
        m = rx.search(line)
        if m and (on is None or on(m)):
            return m, cpu_s(proc.pid)
    sys.exit(f"no {pattern!r} within {timeout_s} s; log in {log.name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, help="the kilowatch binary (a release build copied out of the shared target folder)")
    ap.add_argument("--days", type=int, default=70, help="days of history backfilled (default 70)")
    ap.add_argument("--nodes", type=int, default=127, help="DGX nodes simulated (default 127, DC5)")
    ap.add_argument("--step", default="15m", help="the backfill's step (default 15m, the demo's)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds allowed to each phase")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--perf", help="record serve's catch-up with `perf record -g` into this file")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kilowatch-bench-catchup-")
    data = os.path.join(tmp, "data")
    env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
    log = open(os.path.join(tmp, "demo.log"), "w")
    demo = subprocess.Popen([a.binary, "demo", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", data, "--backfill", f"{a.days}d",
                             "--backfill-step", a.step, "--nodes", str(a.nodes)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    t0 = time.time()
    m, ingest_cpu = wait_line(demo, log, r"backfill done samples=(\d+)", a.timeout)
    ingest_wall = time.time() - t0
    samples = int(m.group(1))
    demo.send_signal(signal.SIGTERM)
    demo.wait(a.timeout)
    for line in demo.stderr:
        log.write(line)
    log.close()

    port = free_port()
    cfg = os.path.join(tmp, "kilowatch.toml")
    with open(cfg, "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{port}"\ndata_dir = "{data}"\n[store]\nmaintenance_interval_s = 1\n[report]\nenabled = false\n')
    env.update(KILOWATCH_WRITE_TOKEN="bench-write-token-0123456789", KILOWATCH_READ_TOKEN="bench-read-token-0123456789")
    log = open(os.path.join(tmp, "serve.log"), "w")
    serve = subprocess.Popen([a.binary, "serve", "--config", cfg], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    t0 = time.time()
    start_cpu = cpu_s(serve.pid)
    perf = None
    if a.perf:
        # After the pass has started: threads made after perf attaches are not recorded.
        time.sleep(3)
        perf = subprocess.Popen(["perf", "record", "-g", "-o", a.perf, "-p", str(serve.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    m, end_cpu = wait_line(serve, log, r"store maintenance hours_rolled_up=(\d+).*seconds=\"?([0-9.]+)", a.timeout, on=lambda m: int(m.group(1)) > 0)
    catchup_wall = time.time() - t0
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
    serve.send_signal(signal.SIGTERM)
    serve.wait(60)
    log.close()
    hours = a.days * 24
    rolled_hours = int(m.group(1))
    rolled = samples * min(1.0, rolled_hours / hours)
    rollup_cpu = end_cpu - start_cpu
    out = {
        "days": a.days, "nodes": a.nodes, "step": a.step, "samples": samples,
        "ingest_cpu_s": round(ingest_cpu, 2), "ingest_wall_s": round(ingest_wall, 1), "ingest_samples_per_cpu_s": round(samples / ingest_cpu),
        "rolled_hours": rolled_hours, "rollup_cpu_s": round(rollup_cpu, 2), "catchup_wall_s": round(catchup_wall, 1),
        "rollup_samples_per_cpu_s": round(rolled / rollup_cpu),
    }
    out["rollup_cpu_per_sample_vs_ingest"] = round(out["ingest_samples_per_cpu_s"] / out["rollup_samples_per_cpu_s"], 2)
    print(f"{a.days} days, {a.nodes} nodes, step {a.step}: {samples} samples")
    print(f"  ingest (demo backfill):   {out['ingest_samples_per_cpu_s']:>12,} samples per CPU-second ({ingest_cpu:.1f} CPU-s, {ingest_wall:.0f} s)")
    print(f"  roll-up (first pass):     {out['rollup_samples_per_cpu_s']:>12,} samples per CPU-second ({rollup_cpu:.1f} CPU-s, {catchup_wall:.0f} s, {rolled_hours} of {hours} hours)")
    print(f"  roll-up CPU per sample / ingest CPU per sample: {out['rollup_cpu_per_sample_vs_ingest']}")
    print(f"  logs in {tmp}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
