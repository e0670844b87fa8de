#!/usr/bin/env python3
"""Remote-write benchmark, side by side: Kilowatch's POST /api/v1/write against VictoriaMetrics'
on the same encoded requests (Prometheus remote write 1.0: a protobuf WriteRequest, snappy).

Generates the requests itself, with random values, in two shapes: `gpu` (dcgm-exporter's ten
default GPU series for 1,016 GPUs, 1 Hz, the labels a Prometheus scrape gives them) and
`highcard` (--highcard-series container series every --highcard-interval seconds, stored by
Kilowatch under their own names: `[prometheus] unmapped = "store"`). Each request holds
--samples-per-post samples, one per series, as Prometheus sends them. Servers, pacing, settling
and the figures (samples per server CPU-second, peak RSS) are scripts/bench_ingest.py's.

Snappy: the standard library has no snappy, so the bodies are snappy blocks of literals (valid
snappy that any decoder reads; no compression). Both servers inflate the same bytes.

Run through scripts/bench-remote-write (which builds the release binary first). Standard library only.
"""

import argparse
import os
import random
import struct
import sys
import tempfile
import time
import shutil
import json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ingest as bi  # noqa: E402

SERVERS = ("kilowatch", "victoriametrics")


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(tag, payload):
    """A length-delimited protobuf field."""
    return varint(tag << 3 | 2) + varint(len(payload)) + payload


def labels_bytes(labels):
    """`prometheus.Label`s (field 1 of TimeSeries), sorted by name as Prometheus sends them."""
    return b"".join(field(1, field(1, k.encode()) + field(2, v.encode())) for k, v in sorted(labels.items()))


def sample_bytes(value, ts_ms):
    """One `prometheus.Sample` as field 2 of TimeSeries: value (double, 1), timestamp (int64, 2)."""
    return field(2, b"\x09" + struct.pack("<d", value) + b"\x10" + varint(ts_ms))


def snappy_literals(raw):
    """A snappy block of literal elements only (format_description.txt: a tag of 61 << 2 with a
    2-byte length - 1 takes up to 65,536 bytes)."""
    out = bytearray(varint(len(raw)))
    for i in range(0, len(raw), 65536):
        chunk = raw[i:i + 65536]
        out += bytes([61 << 2]) + struct.pack("<H", len(chunk) - 1) + chunk
    return bytes(out)


DCGM = (  # name, level, spread, counter
    ("DCGM_FI_DEV_SM_CLOCK", 1900, 80, False),
    ("DCGM_FI_DEV_MEM_CLOCK", 2619, 0, False),
    ("DCGM_FI_DEV_MEMORY_TEMP", 62, 10, False),
    ("DCGM_FI_DEV_GPU_TEMP", 55, 20, False),
    ("DCGM_FI_DEV_POWER_USAGE", 420, 250, False),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 0, 0, True),
    ("DCGM_FI_DEV_GPU_UTIL", 70, 30, False),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", 45, 40, False),
    ("DCGM_FI_DEV_FB_FREE", 40000, 30000, False),
    ("DCGM_FI_DEV_FB_USED", 40000, 30000, False),
)


def gpu_series(a, rng):
    series = []
    for n in range(1, 128):
        for g in range(8):
            uuid = "GPU-%08x-%04x-%04x-%04x-%012x" % tuple(rng.getrandbits(b) for b in (32, 16, 16, 16, 48))
            base = {"gpu": str(g), "UUID": uuid, "pci_bus_id": f"00000000:{0x18 + g:02X}:00.0", "device": f"nvidia{g}",
                    "modelName": "NVIDIA H100 80GB HBM3", "Hostname": f"dgx-{n:03d}", "DCGM_FI_DRIVER_VERSION": "535.129.03",
                    "instance": f"dgx-{n:03d}:9400", "job": "dcgm-exporter"}
            energy = [rng.randrange(10**9, 10**11)]
            for name, level, spread, counter in DCGM:
                series.append({"labels": labels_bytes(dict(base, __name__=name)), "host": n, "level": level, "spread": spread,
                               "energy": energy if counter else None})
    return series, 1


def highcard_series(a, rng):
    series = []
    for i in range(a.highcard_series):
        pod = i // 2
        name = "container_power_watts" if i % 2 == 0 else "container_cpu_utilisation_ratio"
        labels = {"__name__": name, "host": f"node-{pod // 50:05d}", "pod": f"pod-{pod:06d}", "namespace": f"ns-{pod % 40:02d}",
                  "instance": f"node-{pod // 50:05d}:9102", "job": "kepler"}
        series.append({"labels": labels_bytes(labels), "host": pod // 50, "level": 120 if i % 2 == 0 else 0.5,
                       "spread": 110 if i % 2 == 0 else 0.5, "energy": None})
    return series, a.highcard_interval


SHAPES = {"gpu": gpu_series, "highcard": highcard_series}


def generate(shape, a, path):
    """Writes the shape's requests; returns its description and the POSTs as bench_ingest's
    `post_all` reads them: (offset, length, data time of the request in seconds)."""
    rng = random.Random(f"{a.seed}-rw-{shape}")
    series, interval = SHAPES[shape](a, rng)
    steps = max(1, a.seconds // interval)
    phase = {s["host"]: rng.randrange(0, interval * 1000) for s in series}
    start_ms = bi.data_start(a) * 1000
    posts, samples, raw_bytes = [], 0, 0
    with open(path, "wb") as f:
        buf, n_in, offset = [], 0, 0

        def flush(data_s):
            nonlocal buf, n_in, offset, raw_bytes
            raw = b"".join(buf)
            raw_bytes += len(raw)
            body = snappy_literals(raw)
            f.write(body)
            posts.append((offset, len(body), data_s))
            offset += len(body)
            buf, n_in = [], 0

        for step in range(steps):
            t = start_ms + step * interval * 1000
            for s in series:
                ts = t + phase[s["host"]]
                if s["energy"] is not None:
                    s["energy"][0] += rng.randrange(100_000, 700_000)
                    v = float(s["energy"][0])
                else:
                    v = s["level"] + rng.uniform(-s["spread"], s["spread"])
                buf.append(field(1, s["labels"] + sample_bytes(v, ts)))
                samples += 1
                n_in += 1
                if n_in == a.samples_per_post:
                    flush((step + 1) * interval)
        if buf:
            flush(steps * interval)
    return {"shape": shape, "lines": samples, "samples": samples, "series": len(series), "posts": len(posts),
            "bytes": os.path.getsize(path), "protobuf_bytes": raw_bytes, "data_seconds": steps * interval, "values": "random"}, posts


class RemoteWriteServer(bi.Server):
    """bench_ingest's server, written to through its remote-write receiver."""

    def __init__(self, name, a, work, port):
        super().__init__(name, a, work, port)
        self.write_path = "/api/v1/write"
        self.headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf", "X-Prometheus-Remote-Write-Version": "0.1.0"}
        if name == "kilowatch":
            self.headers["Authorization"] = f"Bearer {bi.WRITE_TOKEN}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--shapes", default="gpu,highcard", help="comma-separated: gpu, highcard")
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--seconds", type=int, default=300, help="seconds of data per shape")
    p.add_argument("--speed", type=float, default=10.0, help="data seconds per wall second (0: as fast as answered)")
    p.add_argument("--checkpoint-s", type=int)
    p.add_argument("--settle", type=float)
    p.add_argument("--store-opt", action="append", default=[], metavar="KEY = VALUE")
    p.add_argument("--samples-per-post", type=int, default=2000, help="Prometheus' queue_config.max_samples_per_send")
    p.add_argument("--highcard-series", type=int, default=100_000)
    p.add_argument("--highcard-interval", type=int, default=10)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--kilowatch", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "kilowatch"))
    p.add_argument("--json", help="summary file (default: <target>/bench-remote-write.json)")
    p.add_argument("--work")
    a = p.parse_args()
    a.cross_hour = False
    speed_div = a.speed if a.speed > 0 else 10
    a.checkpoint_s = a.checkpoint_s or max(1, round(bi.KW_CHECKPOINT_S / speed_div))
    a.maintenance_s = max(1, round(bi.KW_MAINTENANCE_S / speed_div))
    if a.settle is None:
        a.settle = a.checkpoint_s + 2
    # The high-cardinality series are no dcgm-exporter names: Kilowatch stores them under their
    # own (its config file is [store] then these lines).
    a.store_opt = a.store_opt + ["[prometheus]", 'unmapped = "store"']
    bi.Server = RemoteWriteServer
    servers = [s for s in a.servers.split(",") if s]
    json_path = a.json or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(a.kilowatch))), "bench-remote-write.json")
    work = a.work or tempfile.mkdtemp(prefix="bench-rw-")
    os.makedirs(work, exist_ok=True)
    summary = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cores": os.cpu_count(),
               "options": {k: v for k, v in vars(a).items() if k not in ("json", "work")}, "shapes": []}
    try:
        for shape in [s for s in a.shapes.split(",") if s]:
            path = os.path.join(work, f"{shape}.rw")
            t = time.monotonic()
            desc, posts = generate(shape, a, path)
            print(f"generated {shape}: {desc['samples']:,} samples, {desc['posts']} requests in {time.monotonic() - t:.1f} s", file=sys.stderr)
            runs = {s: [] for s in servers}
            for rnd in range(a.rounds):
                for i, name in enumerate(servers):
                    r = bi.run_one(name, a, work, desc, path, posts, a.port + 10 * i if a.port else bi.free_port())
                    print(f"  {shape} round {rnd + 1} {name}: {r['samples_per_cpu_s']:,} samples/CPU-s, {r['cpu_s']} CPU s, "
                          f"peak RSS {r['peak_rss_mb']} MB (behind by up to {r['max_behind_s']} s; retried: {r['refused_then_retried'] or 'none'})", file=sys.stderr)
                    runs[name].append(r)
            rows = {n: bi.median_row(runs[n]) for n in servers}
            bi.print_shape(desc, rows)
            summary["shapes"].append(dict(desc, results=rows, runs=runs))
            os.remove(path)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    with open(json_path, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\nsummary: {json_path}")


if __name__ == "__main__":
    main()
