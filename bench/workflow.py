"""Workflow latency and API concurrency on the local stack.

1. Upload-to-result latency over N studies sent one after another (p50/p95), split into the
   endpoint's own inference time and everything around it (API, S3, event, ingest, state machine,
   DynamoDB): the ratio says what the serverless plumbing costs next to the model.
2. C concurrent clients each sending a study through the whole path, and C clients hammering the
   read API, counting errors.

    python bench/workflow.py [--studies 20] [--clients 20] [--model DIR]
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "sagemaker")]

from discscope.client import Client  # noqa: E402
from discscope.phantom import write_case  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StackProcess:
    """`discscope up --ephemeral` in its own process, so the load does not share its interpreter."""

    def __init__(self, model: str):
        port, endpoint_port = free_port(), free_port()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "discscope"), "up", "--ephemeral", "--model", model,
             "--port", str(port), "--endpoint-port", str(endpoint_port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.proc.stdout:
            m = re.search(r"REST API\s+(\S+)\s+\(header x-api-key: (\S+)\)", line)
            if m:
                self.api_url, self.api_key = m.group(1), m.group(2)
                break
        else:
            raise RuntimeError("the local stack did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--reads", type=int, default=25, help="read requests per client in the API test")
    parser.add_argument("--model", default=str(REPO / "models" / "baseline"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for seed in range(5):
            write_case(Path(tmp), f"s{seed}", seed=100 + seed)
            files.append(Path(tmp) / f"s{seed}.mha")
        stack = StackProcess(args.model)
        try:
            client = Client(stack.api_url, stack.api_key, timeout=120)
            client.analyze(files[0])  # warm-up: first-call costs are not the steady state

            total, endpoint = [], []
            for i in range(args.studies):
                t = time.perf_counter()
                study = client.analyze(files[i % len(files)])
                total.append(time.perf_counter() - t)
                assert study["status"] == "SUCCEEDED", study
                timings = study.get("timings_ms") or {}
                endpoint.append((timings.get("total", 0) + timings.get("render", 0)) / 1000)
                print(f"  study {i + 1:>3}/{args.studies}: {total[-1]:6.2f} s (endpoint {endpoint[-1]:5.2f} s)", flush=True)
            around = [t - e for t, e in zip(total, endpoint)]
            print(f"\nupload-to-result over {args.studies} studies (sequential):")
            print(f"  total     p50 {pct(total, 50):6.2f} s   p95 {pct(total, 95):6.2f} s")
            print(f"  endpoint  p50 {pct(endpoint, 50):6.2f} s   p95 {pct(endpoint, 95):6.2f} s   (model inference + rendering)")
            print(f"  around it p50 {pct(around, 50):6.2f} s   p95 {pct(around, 95):6.2f} s   "
                  f"(API, upload, S3 event, ingest, state machine, DynamoDB, 0.5 s client polling)")
            print(f"  plumbing / inference ratio (medians): {pct(around, 50) / max(pct(endpoint, 50), 1e-9):.2f}")

            errors: list[str] = []
            lock = threading.Lock()

            def one_study(i: int) -> float:
                t = time.perf_counter()
                try:
                    study = client.analyze(files[i % len(files)], timeout=1200)
                    if study["status"] != "SUCCEEDED":
                        raise RuntimeError(study.get("error_code"))
                except Exception as exc:
                    with lock:
                        errors.append(f"study {i}: {exc}")
                return time.perf_counter() - t

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                latencies = list(pool.map(one_study, range(args.clients)))
            wall = time.perf_counter() - t0
            print(f"\n{args.clients} concurrent clients, one study each: {len(errors)} errors, wall {wall:.1f} s, "
                  f"p50 {pct(latencies, 50):.1f} s, p95 {pct(latencies, 95):.1f} s, "
                  f"{args.clients / wall * 60:.1f} studies/min")

            read_errors: list[str] = []

            def reader(i: int) -> list[float]:
                out = []
                for _ in range(args.reads):
                    t = time.perf_counter()
                    try:
                        client.studies(limit=10)
                    except Exception as exc:
                        with lock:
                            read_errors.append(str(exc))
                    out.append(time.perf_counter() - t)
                return out

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                reads = [x for chunk in pool.map(reader, range(args.clients)) for x in chunk]
            wall = time.perf_counter() - t0
            print(f"{args.clients} concurrent clients x {args.reads} GET /studies: {len(read_errors)} errors, "
                  f"{len(reads) / wall:.0f} requests/s, p50 {pct(reads, 50) * 1000:.0f} ms, p95 {pct(reads, 95) * 1000:.0f} ms")
            for e in (errors + read_errors)[:5]:
                print("  error:", e)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
