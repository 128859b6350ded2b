"""`codekiln serve` under an editor-like load: continuous batching against batching off.

    python bench/serve.py [--presets tiny,small] [--clients 1,4,16] [--requests 3]
                          [--max-batch 16] [--json FIGURES]

For each preset, a randomly initialised model is exported (with a BPE tokenizer trained on
this Python's standard library, as bench/generate.py does) and served twice by the real
command, `codekiln serve FOLDER`, in its own process: once with batching off
(`--max-batch 1`) and once with `--max-batch N`. Against each server, 1, 4 and 16 clients
each send --requests requests one after another (a closed loop, as editors do): a
fill-in-the-middle completion of a ~1,500-character window of standard-library source
(prefix 1,100 characters, suffix 400), 60 new tokens, temperature 0.2, streamed over
OpenAI's /v1/completions with `suffix` and usage. A random model rarely ends its text, so
nearly every request generates all 60 tokens.

Per run: requests/s and generated tokens/s (wall clock of the whole run), median and p95
latency, median and p95 time to first token (first streamed text), errors (any status but
200, a stream without usage), and /health's worst latency, probed every 100 ms from another
thread throughout. The goals at 16 clients: throughput >= 4x batching off, p95 <= 2x the
median, 0 errors, /health <= 50 ms.

The clients and the prober are threads of this process using http.client, which costs far
less CPU than the server's decoding, but on a 2-core machine they still share it: the
figures are for server and clients together on one machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from generate import stdlib_text, write_tokenizer  # noqa: E402
from scale import cpu_features  # noqa: E402

from codekiln.model.config import num_parameters, preset  # noqa: E402
from codekiln.model.gpt import CodeGPT  # noqa: E402
from codekiln.model.hf import export_hf  # noqa: E402

PREFIX_CHARS, SUFFIX_CHARS = 1100, 400
NEW_TOKENS = 60
TEMPERATURE = 0.2
HEALTH_EVERY = 0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`codekiln serve` in a child process, up once /health answers."""

    def __init__(self, folder: Path, max_batch: int, log: Path, dtype: str = "float32") -> None:
        self.port = free_port()
        self.log = log.open("w")
        command = [
            sys.executable, "-m", "codekiln", "serve", str(folder),
            "--port", str(self.port), "--max-batch", str(max_batch), "--max-queue", "256",
            "--dtype", dtype,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"codekiln serve exited with {self.process.returncode}; see {log}")
            try:
                status, _ = get(self.port, "/health")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.close()
        sys.exit(f"codekiln serve did not answer /health within 300 s; see {log}")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def complete(port: int, prefix: str, suffix: str, seed: int) -> dict:
    """One streamed FIM completion: latency, time to first text, tokens, or an error."""
    body = {
        "prompt": prefix,
        "suffix": suffix,
        "max_tokens": NEW_TOKENS,
        "temperature": TEMPERATURE,
        "top_p": 0.95,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = None
    tokens = None
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request(
            "POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        if response.status != 200:
            response.read()
            return {"error": f"status {response.status}"}
        for line in response:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            event = json.loads(line[len(b"data: ") :])
            if first is None and any(choice.get("text") for choice in event.get("choices", [])):
                first = time.perf_counter() - started
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        connection.close()
    if tokens is None:
        return {"error": "the stream ended without usage"}
    latency = time.perf_counter() - started
    return {"latency": latency, "ttft": first if first is not None else latency, "tokens": tokens}


def windows(text: str, count: int) -> list[tuple[str, str]]:
    """`count` different (prefix, suffix) windows of the text, cut at line starts."""
    size = PREFIX_CHARS + SUFFIX_CHARS
    step = max(1, (len(text) - size) // max(count, 1))
    out = []
    for i in range(count):
        start = text.find("\n", i * step) + 1
        window = text[start : start + size]
        out.append((window[:PREFIX_CHARS], window[PREFIX_CHARS:]))
    return out


def load(port: int, clients: int, requests: int, prompts: list[tuple[str, str]]) -> dict:
    """`clients` closed-loop clients of `requests` requests each, /health probed alongside."""
    results: list[dict] = []
    lock = threading.Lock()
    health: list[float] = []
    done = threading.Event()

    def client(index: int) -> None:
        for r in range(requests):
            prefix, suffix = prompts[(index * requests + r) % len(prompts)]
            result = complete(port, prefix, suffix, seed=index * 1000 + r)
            with lock:
                results.append(result)

    def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            try:
                status, _ = get(port, "/health")
                health.append(time.perf_counter() - started if status == 200 else float("inf"))
            except OSError:
                health.append(float("inf"))
            done.wait(HEALTH_EVERY)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    done.set()
    prober.join()
    ok = [r for r in results if "latency" in r]
    errors = [r["error"] for r in results if "error" in r]
    latencies = sorted(r["latency"] for r in ok)
    ttfts = sorted(r["ttft"] for r in ok)
    return {
        "clients": clients,
        "requests": len(results),
        "errors": len(errors),
        "error_examples": errors[:3],
        "seconds": wall,
        "requests_per_s": len(ok) / wall,
        "tokens_per_s": sum(r["tokens"] for r in ok) / wall,
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p95_s": percentile(ttfts, 95),
        "health_max_ms": max(health, default=float("nan")) * 1e3,
        "health_p95_ms": percentile(sorted(health), 95) * 1e3,
    }


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile of sorted values (nearest rank)."""
    if not values:
        return float("nan")
    rank = max(1, round(q / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=3, help="per client")
    parser.add_argument("--max-batch", type=int, default=16, help="the batching server's")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "int8"),
        help="both servers' (bfloat16 makes the prefill cheap on a CPU with AMX)",
    )
    parser.add_argument("--tokenizer-vocab", type=int, default=4096)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]

    text = stdlib_text()
    prompts = windows(text, 64)
    figures: dict = {
        "cpu": cpu_features(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "new_tokens": NEW_TOKENS,
        "prompt_chars": PREFIX_CHARS + SUFFIX_CHARS,
        "requests_per_client": args.requests,
        "dtype": args.dtype,
        "presets": {},
    }
    print(
        f"CPU: {figures['cpu']}, {figures['cores']} cores; torch {torch.__version__}; {args.dtype}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = write_tokenizer(Path(tmp) / "tokenizer", text, args.tokenizer_vocab)
        for name in args.presets.split(","):
            config = preset(name.strip())
            torch.manual_seed(0)
            folder = export_hf(CodeGPT(config), Path(tmp) / name, tokenizer_dir=tokenizer_dir)
            runs: dict = {}
            for label, max_batch in (("batching off", 1), ("batching", args.max_batch)):
                log = Path(tmp) / f"{name}-{max_batch}.log"
                server = Server(folder, max_batch, log, args.dtype)
                try:
                    complete(server.port, *prompts[0], seed=0)  # warm up
                    runs[label] = [load(server.port, c, args.requests, prompts) for c in clients]
                finally:
                    server.close()
            figures["presets"][name] = {"parameters": num_parameters(config), "runs": runs}
            report(name, num_parameters(config), runs, args.max_batch)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def report(name: str, parameters: int, runs: dict, max_batch: int) -> None:
    print(f"\n{name} ({parameters / 1e6:.1f}M parameters)")
    header = (
        f"  {'server':<22} {'clients':>7} {'req/s':>7} {'tok/s':>7} {'p50 s':>7} {'p95 s':>7} "
        f"{'TTFT p50':>9} {'TTFT p95':>9} {'errors':>6} {'health max ms':>13}"
    )
    print(header)
    for label, results in runs.items():
        server = f"{label} (max-batch {1 if label == 'batching off' else max_batch})"
        for r in results:
            print(
                f"  {server:<22} {r['clients']:>7} {r['requests_per_s']:>7.2f} "
                f"{r['tokens_per_s']:>7.1f} {r['p50_s']:>7.2f} {r['p95_s']:>7.2f} "
                f"{r['ttft_p50_s']:>9.2f} {r['ttft_p95_s']:>9.2f} {r['errors']:>6} "
                f"{r['health_max_ms']:>13.1f}"
            )
    off, on = runs["batching off"][-1], runs["batching"][-1]
    speedup = on["tokens_per_s"] / off["tokens_per_s"] if off["tokens_per_s"] else float("nan")
    spread = on["p95_s"] / on["p50_s"] if on["p50_s"] else float("nan")
    print(
        f"  at {on['clients']} clients: throughput {speedup:.2f}x batching off (goal >= 4), "
        f"p95 / median {spread:.2f} (goal <= 2), errors {on['errors']} (goal 0), "
        f"/health worst {on['health_max_ms']:.1f} ms (goal <= 50)"
    )


if __name__ == "__main__":
    main()
