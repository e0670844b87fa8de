"""A stand-in inference server for Kilowatch's tests: the token and request metrics of vLLM or
SGLang, declared exactly as their sources declare them (names, label names, buckets) with the
real `prometheus_client`, advanced by a load loop, and served over HTTP on loopback.

Sources the declarations are copied from:
  vLLM    vllm-project/vllm  vllm/v1/metrics/loggers.py @ a6f0308cfe806b7731ad4979c9bea6e470c35efd
          (PrometheusStatLogger: labelnames ["model_name", "engine"])
  SGLang  sgl-project/sglang python/sglang/srt/metrics/collector.py @ 93d04878cfb9b08645fae7b11bd340ee33b34acf
          (TokenizerMetricsCollector: labels {"model_name": served_model_name})

    inference_server.py --engine vllm --port 8000 --model m [--prompt 100 --gen 20 --every 0.05]
    inference_server.py --engine vllm --dump N      # the page after N requests, then exit

Every request adds `--prompt` prompt tokens, `--gen` generated tokens, one finished request and
a time to first token of 0.05 s. `--state FILE` is rewritten after every request with the
totals (JSON), so a test knows what the server counted.
"""

import argparse
import json
import os
import sys
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server


def build_1_2_5_buckets(max_value):
    out, exp = [], 0
    while True:
        for m in (1, 2, 5):
            v = m * 10**exp
            if v > max_value:
                return out
            out.append(v)
        exp += 1


def vllm(reg, model):
    labelnames = ["model_name", "engine"]
    lv = [model, "0"]
    Gauge("vllm:num_requests_running", "Number of requests in model execution batches.", labelnames, registry=reg).labels(*lv).set(0)
    Gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", labelnames, registry=reg).labels(*lv).set(0.1)
    prompt = Counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", labelnames, registry=reg).labels(*lv)
    gen = Counter("vllm:generation_tokens_total", "Number of generation tokens processed.", labelnames, registry=reg).labels(*lv)
    success = Counter("vllm:request_success_total", "Count of successfully processed requests.", labelnames + ["finished_reason"], registry=reg)
    by_reason = {r: success.labels(*(lv + [r])) for r in ("stop", "length", "abort")}
    req_prompt = Histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", labelnames,
                           buckets=build_1_2_5_buckets(8192), registry=reg).labels(*lv)
    ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", labelnames,
                     buckets=[0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                              10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0], registry=reg).labels(*lv)

    def one(p, g, i):
        prompt.inc(p)
        gen.inc(g)
        by_reason["length" if i % 10 == 9 else "stop"].inc()
        req_prompt.observe(p)
        ttft.observe(0.05)
    return one


def sglang(reg, model):
    labelnames = ["model_name"]
    lv = [model]
    prompt = Counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.", labelnames, registry=reg).labels(*lv)
    gen = Counter("sglang:generation_tokens_total", "Number of generation tokens processed.", labelnames, registry=reg).labels(*lv)
    Counter("sglang:cached_tokens_total", "Number of cached prompt tokens.", labelnames, registry=reg).labels(*lv)
    reqs = Counter("sglang:num_requests_total", "Number of requests processed.", labelnames, registry=reg).labels(*lv)
    ttft = Histogram("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", labelnames,
                     buckets=[0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400], registry=reg).labels(*lv)

    def one(p, g, i):
        prompt.inc(p)
        gen.inc(g)
        reqs.inc()
        ttft.observe(0.05)
    return one


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=["vllm", "sglang"], required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model", default="meta-llama/Llama-3.1-8B-Instruct")
    ap.add_argument("--prompt", type=int, default=100)
    ap.add_argument("--gen", type=int, default=20)
    ap.add_argument("--every", type=float, default=0.05)
    ap.add_argument("--dump", type=int, default=None)
    ap.add_argument("--state", default=None)
    ap.add_argument("--max-seconds", type=float, default=600.0, help="stop by itself after this long")
    a = ap.parse_args()
    reg = CollectorRegistry()
    one = {"vllm": vllm, "sglang": sglang}[a.engine](reg, a.model)
    if a.dump is not None:
        for i in range(a.dump):
            one(a.prompt, a.gen, i)
        sys.stdout.write(generate_latest(reg).decode())
        return
    start_http_server(a.port, addr="127.0.0.1", registry=reg)
    print("ready", flush=True)
    totals = {"prompt_tokens": 0, "generation_tokens": 0, "requests": 0, "pid": os.getpid()}
    deadline = time.monotonic() + a.max_seconds
    i = 0
    while time.monotonic() < deadline:
        one(a.prompt, a.gen, i)
        i += 1
        totals["prompt_tokens"] += a.prompt
        totals["generation_tokens"] += a.gen
        totals["requests"] += 1
        if a.state:
            tmp = a.state + ".tmp"
            with open(tmp, "w") as f:
                json.dump(totals, f)
            os.replace(tmp, a.state)
        time.sleep(a.every)


if __name__ == "__main__":
    main()
