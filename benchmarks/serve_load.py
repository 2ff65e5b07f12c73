"""Bounded load test of `gprec serve` on loopback: p50/p99 latency and requests/s of /predict and
/recommend at a fixed number of requests and a few concurrency levels.

The server is the real command (`python -m gprec.cli.main serve RUN_DIR --no-access-log`) in a
subprocess on a free loopback port, with `--threads` torch threads; this process is the client
(httpx.AsyncClient, one connection per concurrent request, each of `--concurrency` workers
sending its next request as soon as the last one is answered). Per endpoint and concurrency:
`--requests` timed requests after a warm-up, with
- /predict: `--rows` rows of (user id, item id) pairs drawn from the run's vocabularies (the
  user and item features come from the run's catalogue, as a client sending ids gets them);
- /recommend: one known user's top `--k` (every catalogue item scored for the user).
Requests bodies are built before timing. Latency is from sending to the whole answer read.

Every answer must be 200 (the script exits 1 otherwise). Beside the figures the results record
the machine, the server's torch threads, the CPU time the server and the client used, and the
share of the machine's CPUs other processes used during each phase (from /proc/stat: the
machine's busy time less the server's and the client's); a phase where others used more than
10% is marked contended, and such figures should not be committed.

    python benchmarks/serve_load.py RUN_DIR                      # 2,000 requests, concurrency 8 and 32
    python benchmarks/serve_load.py RUN_DIR --requests 200 --out /tmp/serve-check   # a quick check

Results: `results/serve_load.{json,md}` (or under `--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks/machine.py
from machine import cpu_model, log, machine_busy_seconds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from gprec.io import write_text_atomic  # noqa: E402

NAME = "serve_load"
SEED = 2024
QUIET_SHARE = 0.10  # others using more of the CPUs than this: the figures are contended
PAYLOADS = 256  # distinct request bodies per endpoint, cycled


# -- CPU accounting ------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` and its threads (None off Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class Meter:
    """Wall time, the server's and this client's CPU time, and the share of the machine's CPUs
    the other processes used."""

    def __init__(self, server_pid: int):
        self.pid = server_pid

    def __enter__(self) -> Meter:
        self.t0, self.client0 = time.perf_counter(), time.process_time()
        self.server0, self.busy0 = process_cpu_seconds(self.pid), machine_busy_seconds()
        self.load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.client_cpu = time.process_time() - self.client0
        server, busy = process_cpu_seconds(self.pid), machine_busy_seconds()
        self.server_cpu = None if server is None or self.server0 is None else server - self.server0
        self.load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self.others_share = None
        # /proc/stat counts 10 ms ticks: too coarse for a shorter phase
        if None not in (busy, self.busy0, self.server_cpu) and self.seconds >= 0.5:
            others = busy - self.busy0 - self.server_cpu - self.client_cpu
            self.others_share = max(0.0, others / (self.seconds * (os.cpu_count() or 1)))

    def record(self) -> dict:
        cpus = os.cpu_count() or 1
        return {
            "seconds": self.seconds,
            "server_cpu_seconds": self.server_cpu,
            "client_cpu_seconds": self.client_cpu,
            "server_cpu_share": None
            if self.server_cpu is None
            else self.server_cpu / (self.seconds * cpus),
            "client_cpu_share": self.client_cpu / (self.seconds * cpus),
            "others_cpu_share": self.others_share,
            "load_average_1min": [self.load0, self.load1],
        }


# -- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(run_dir: Path, threads: int, max_rows: int, log_path: Path):
    port = free_port()
    argv = [sys.executable, "-m", "gprec.cli.main", "serve", str(run_dir), "--port", str(port),
            "--threads", str(threads), "--max-rows", str(max_rows), "--no-access-log"]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log_path, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                health = httpx.get(f"{url}/health", timeout=5)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode}):\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not answer in 180 s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield proc, url, health.json()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the requests --------------------------------------------------------------------------------


def predict_bodies(vocab: dict, user_key: str, item_key: str, rows: int) -> list[bytes]:
    rng = random.Random(SEED)
    users, items = vocab[user_key], vocab[item_key]
    return [
        json.dumps(
            {
                "rows": [
                    {user_key: rng.choice(users), item_key: rng.choice(items)} for _ in range(rows)
                ]
            }
        ).encode()
        for _ in range(PAYLOADS)
    ]


def known_users(url: str, vocab: dict, user_key: str) -> list[str]:
    """Up to PAYLOADS users /recommend knows (a vocabulary may hold users without a training
    row), asked one by one: this is also the /recommend warm-up."""
    candidates = list(vocab[user_key])
    random.Random(SEED).shuffle(candidates)
    known = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for user in candidates:
            if client.post("/recommend", json={"user": user, "k": 1}).status_code == 200:
                known.append(user)
                if len(known) == PAYLOADS:
                    break
    if not known:
        raise SystemExit("/recommend knows none of the run's users")
    return known


async def load(url: str, path: str, bodies: list[bytes], n: int, concurrency: int):
    """`n` POSTs of `bodies` (cycled) by `concurrency` workers: latencies (s) and statuses."""
    latencies = np.zeros(n)
    statuses = np.zeros(n, dtype=np.int64)
    next_index = 0
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:

        async def worker():
            nonlocal next_index
            while next_index < n:
                i = next_index
                next_index += 1
                t0 = time.perf_counter()
                response = await client.post(path, content=bodies[i % len(bodies)], headers=headers)
                await response.aread()
                latencies[i] = time.perf_counter() - t0
                statuses[i] = response.status_code

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


def phase(url: str, pid: int, path: str, bodies: list[bytes], n: int, concurrency: int) -> dict:
    with Meter(pid) as meter:
        latencies, statuses = asyncio.run(load(url, path, bodies, n, concurrency))
    ms = latencies * 1000
    bad = {int(s): int((statuses == s).sum()) for s in np.unique(statuses) if s != 200}
    return {
        "endpoint": path,
        "concurrency": concurrency,
        "requests": n,
        "requests_per_second": n / meter.seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "mean_ms": float(ms.mean()),
        "not_200": bad,
        **meter.record(),
    }


# -- results -------------------------------------------------------------------------------------


def machine_info() -> dict:
    cpu = cpu_model()

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        except OSError:
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    status = git("status", "--porcelain")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{
            p: version(p) for p in ("torch", "fastapi", "uvicorn", "starlette", "httpx", "pydantic")
        },
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }


def markdown(res: dict) -> str:
    m, s = res["machine"], res["settings"]
    lines = [
        "# gprec serve under load (loopback)",
        "",
        f"Run `{s['run_dir']}` ({res['server']['model']}, task {res['server']['task']}, "
        f"{res['server']['items']} items, {res['server']['users']} users); server: uvicorn, one "
        f"process, torch threads {s['threads']}; client: httpx.AsyncClient in one process. "
        f"{s['requests']:,d} timed requests per line after a warm-up; /predict sends "
        f"{s['rows']} (user id, item id) rows, /recommend one user's top {s['k']}.",
        "",
        f"Machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable); "
        f"Python {m['python']}, torch {m['torch']}, fastapi {m['fastapi']}, uvicorn "
        f"{m['uvicorn']}, httpx {m['httpx']}; commit {m['git_commit']}"
        f"{' (dirty tree)' if m['git_dirty'] else ''}; {m['date']}.",
        "",
        "| endpoint | concurrency | requests/s | p50 ms | p99 ms | server CPU | client CPU "
        "| others' CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pct(v):
        return "n/a" if v is None else f"{v:.0%}"

    for p in res["phases"]:
        lines.append(
            f"| {p['endpoint']} | {p['concurrency']} | {p['requests_per_second']:,.0f} | "
            f"{p['p50_ms']:.1f} | {p['p99_ms']:.1f} | {pct(p['server_cpu_share'])} | "
            f"{pct(p['client_cpu_share'])} | {pct(p['others_cpu_share'])} |"
        )
    lines += [
        "",
        "CPU columns: shares of all the machine's CPUs during the phase (the server, this "
        "client, and every other process, from /proc/stat). The client runs on the same machine "
        "and takes its share of the CPUs too.",
    ]
    if res["contended"]:
        lines += [
            "",
            f"**Contended:** other processes used more than {QUIET_SHARE:.0%} of the CPUs in a "
            "phase; these figures are not representative.",
        ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "run_dir", metavar="RUN_DIR", help="a finished run directory (with catalogue.npz)"
    )
    ap.add_argument(
        "--requests", type=int, default=2000, help="timed requests per endpoint and concurrency"
    )
    ap.add_argument("--rows", type=int, default=32, help="rows per /predict request")
    ap.add_argument("--k", type=int, default=10, help="list length of /recommend")
    ap.add_argument(
        "--concurrency", default="8,32", help="comma-separated concurrency levels (default 8,32)"
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="the server's torch threads (gprec serve --threads)"
    )
    ap.add_argument("--warmup", type=int, default=200, help="untimed /predict requests first")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results directory")
    args = ap.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if (
        min(args.requests, args.rows, args.k, args.threads, *args.concurrency) < 1
        or args.warmup < 0
    ):
        ap.error("--requests, --rows, --k, --threads and --concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = Path(args.run_dir).resolve()
    with (
        tempfile.TemporaryDirectory() as tmp,
        server(run_dir, args.threads, max(args.rows, 10_000), Path(tmp) / "server.log") as (
            proc,
            url,
            health,
        ),
    ):
        keys = {f["role"]: f["name"] for f in reversed(health["fields"]) if f["required"]}
        user_key, item_key = keys.get("personal"), keys.get("item")
        if not health["recommend"] or user_key is None or item_key is None:
            raise SystemExit(f"{run_dir}: the server has no /recommend (no catalogue.npz?)")
        vocab = json.loads((run_dir / "vocab.json").read_text())
        predict = predict_bodies(vocab, user_key, item_key, args.rows)
        log(f"server {url} (pid {proc.pid}): {health['model']}, {health['items']} items; warm-up")
        users = known_users(url, vocab, user_key)
        recommend = [json.dumps({"user": u, "k": args.k}).encode() for u in users]
        asyncio.run(load(url, "/predict", predict, args.warmup, max(args.concurrency)))
        phases = []
        for concurrency in args.concurrency:
            for path, bodies in (("/predict", predict), ("/recommend", recommend)):
                p = phase(url, proc.pid, path, bodies, args.requests, concurrency)
                phases.append(p)
                others = p["others_cpu_share"]
                log(
                    f"{path:<10} concurrency {concurrency:>3}: {p['requests_per_second']:8,.0f} req/s, "
                    f"p50 {p['p50_ms']:7.2f} ms, p99 {p['p99_ms']:7.2f} ms"
                    + ("" if others is None else f" (others: {others:.0%} of CPUs)")
                    + (f"; not 200: {p['not_200']}" if p["not_200"] else "")
                )
    shares = [p["others_cpu_share"] for p in phases if p["others_cpu_share"] is not None]
    res = {
        "benchmark": NAME,
        "machine": machine_info(),
        "settings": {
            "run_dir": str(run_dir),
            "requests": args.requests,
            "rows": args.rows,
            "k": args.k,
            "concurrency": args.concurrency,
            "threads": args.threads,
            "warmup_predict_requests": args.warmup,
            "recommend_users": len(users),
            "predict_bodies": PAYLOADS,
            "seed": SEED,
        },
        "server": {k: health[k] for k in ("model", "task", "items", "users")},
        "phases": phases,
        "max_others_cpu_share": max(shares) if shares else None,
        "contended": bool(shares) and max(shares) > QUIET_SHARE,
    }
    out = Path(args.out)
    write_text_atomic(out / f"{NAME}.json", json.dumps(res, indent=2) + "\n")
    write_text_atomic(out / f"{NAME}.md", markdown(res))
    log(
        f"wrote {out / NAME}.json and .md"
        + (" (contended: do not commit)" if res["contended"] else "")
    )
    return 1 if any(p["not_200"] for p in phases) else 0


if __name__ == "__main__":
    sys.exit(main())
