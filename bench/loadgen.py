"""HTTP load generator for the gateway benchmark: wrk when installed, else a Python generator.

    python bench/loadgen.py --base URL --path /v1/... [--path ...] [--header 'Name: value']
                            [--connections 32] [--duration 10] [--engine auto|wrk|python] [--cpu 1]

Both engines keep `connections` keep-alive connections busy for `duration` seconds, send the
paths in rotation (each connection starts at a different offset) with the given headers, and
report requests/s, p50/p99 latency and the count of every status code, so a benchmark can
check that all answers were 200.

- wrk (Debian: `apt-get install -y wrk`) runs with one thread and a generated Lua script; the
  script counts status codes per thread and prints one JSON line from `done()`. It is written
  in C and saturates a Python server from a single core.
- The Python engine (aiohttp) runs in a child process of its own, pinned to `cpu` when given,
  so it never shares an interpreter with the process that starts it. It is much slower than
  wrk (a few thousand requests/s on one core), so against a fast server it measures itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

WRK_INSTALL_HINT = "wrk is not installed; for the reference numbers install it: apt-get install -y wrk"


@dataclass
class Target:
    base: str  # http://host:port
    paths: list[str]  # rotated
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    engine: str
    connections: int
    duration_s: float  # measured wall time
    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None
    statuses: dict[str, int]  # "200" -> count
    socket_errors: int  # connect/read/write/timeout errors (no HTTP status)

    @property
    def non_200(self) -> int:
        return sum(n for code, n in self.statuses.items() if code != "200") + self.socket_errors

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["non_200"] = self.non_200
        return out


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


# --------------------------------------------------------------------------------------- wrk

_LUA = r"""
local paths = {PATHS}
local headers = {HEADERS}
local reqs = {}
local n = 0
local counter = 1
statuses = {}

function init(args)
  for k, v in pairs(headers) do wrk.headers[k] = v end
  for i, p in ipairs(paths) do reqs[i] = wrk.format("GET", p) end
  n = #reqs
end

function request()
  local r = reqs[counter]
  counter = counter + 1
  if counter > n then counter = 1 end
  return r
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, c in pairs(s) do total[tostring(code)] = (total[tostring(code)] or 0) + c end
  end
  local parts = {}
  for code, c in pairs(total) do table.insert(parts, string.format('"%s":%d', code, c)) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%f,"p99_us":%f,"mean_us":%f,"max_us":%f,' ..
    '"errors":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect + e.read + e.write + e.timeout, table.concat(parts, ",")))
end
"""


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_script(target: Target) -> str:
    paths = "{" + ",".join(_lua_string(p) for p in target.paths) + "}"
    headers = "{" + ",".join(f"[{_lua_string(k)}]={_lua_string(v)}" for k, v in target.headers.items()) + "}"
    return _LUA.replace("{PATHS}", paths).replace("{HEADERS}", headers)


def run_wrk(target: Target, *, connections: int, duration: float, cpu: int | None = None,
            threads: int = 1, timeout_s: int = 10) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(wrk_script(target))
        script = f.name
    try:
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
               f"--timeout={timeout_s}s", "-s", script, target.base]
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=lambda: _pin(cpu), check=False)
    finally:
        os.unlink(script)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    raw = json.loads(line[len("WRKJSON "):])
    seconds = raw["duration_us"] / 1e6
    return Result(
        engine="wrk", connections=connections, duration_s=round(seconds, 3), requests=raw["requests"],
        rps=raw["requests"] / seconds if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000, p99_ms=raw["p99_us"] / 1000, mean_ms=raw["mean_us"] / 1000,
        max_ms=raw["max_us"] / 1000, statuses={str(k): v for k, v in raw["statuses"].items()},
        socket_errors=raw["errors"],
    )


# ------------------------------------------------------------------------------ Python engine

def _percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


async def _python_load(target: Target, connections: int, duration: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    urls = [target.base + p for p in target.paths]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=target.headers,
                                     auto_decompress=False, skip_auto_headers=("User-Agent",)) as session:
        perf = time.perf_counter
        start = perf()
        deadline = start + duration

        async def worker(offset: int) -> None:
            nonlocal errors
            i = offset
            n = len(urls)
            while True:
                t0 = perf()
                if t0 >= deadline:
                    return
                try:
                    async with session.get(urls[i % n], allow_redirects=False) as resp:
                        await resp.read()
                        statuses[str(resp.status)] += 1
                except (TimeoutError, aiohttp.ClientError, OSError):
                    errors += 1
                latencies.append(perf() - t0)
                i += 1

        await asyncio.gather(*(worker(k * 7) for k in range(connections)))
        elapsed = perf() - start
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(latencies), "elapsed": elapsed, "p50_ms": _percentile(ms, 50), "p99_ms": _percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms) if ms else None, "max_ms": ms[-1] if ms else None,
        "statuses": dict(statuses), "errors": errors,
    }


def run_python(target: Target, *, connections: int, duration: float, cpu: int | None = None) -> Result:
    """Run the Python engine in a child process (its own interpreter, pinned to `cpu`)."""
    spec = json.dumps({"target": asdict(target), "connections": connections, "duration": duration, "cpu": cpu})
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker"], input=spec,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"python load generator failed: {proc.stderr.strip()[-2000:]}")
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    # Requests still in flight at the deadline finish after it: count the wall time they took.
    elapsed = max(raw["elapsed"], 1e-9)
    return Result(
        engine="python", connections=connections, duration_s=round(elapsed, 3), requests=raw["requests"],
        rps=raw["requests"] / elapsed, p50_ms=raw["p50_ms"], p99_ms=raw["p99_ms"], mean_ms=raw["mean_ms"],
        max_ms=raw["max_ms"], statuses=raw["statuses"], socket_errors=raw["errors"],
    )


def _worker_main() -> None:
    spec = json.loads(sys.stdin.read())
    _pin(spec.get("cpu"))
    target = Target(**spec["target"])
    out = asyncio.run(_python_load(target, spec["connections"], spec["duration"]))
    print(json.dumps(out))


# ------------------------------------------------------------------------------------ common

def choose_engine(engine: str) -> str:
    if engine == "auto":
        if have_wrk():
            return "wrk"
        print(f"loadgen: {WRK_INSTALL_HINT}; falling back to the Python generator.", file=sys.stderr)
        return "python"
    if engine == "wrk" and not have_wrk():
        raise SystemExit(f"loadgen: {WRK_INSTALL_HINT}")
    return engine


def run(target: Target, *, engine: str, connections: int, duration: float, cpu: int | None = None) -> Result:
    if engine == "wrk":
        return run_wrk(target, connections=connections, duration=duration, cpu=cpu)
    return run_python(target, connections=connections, duration=duration, cpu=cpu)


def main(argv: list[str] | None = None) -> None:
    if argv is None and sys.argv[1:2] == ["--worker"]:
        _worker_main()
        return
    parser = argparse.ArgumentParser(description="Rotating-path HTTP load generator (wrk or Python).")
    parser.add_argument("--base", required=True, help="http://host:port")
    parser.add_argument("--path", action="append", required=True, help="a path to rotate over (repeatable)")
    parser.add_argument("--header", action="append", default=[], help="'Name: value' (repeatable)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--engine", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--cpu", type=int, default=None, help="pin the generator to this CPU")
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    target = Target(args.base.rstrip("/"), args.path, {k.strip(): v.strip() for k, v in headers.items()})
    result = run(target, engine=choose_engine(args.engine), connections=args.connections,
                 duration=args.duration, cpu=args.cpu)
    print(json.dumps(result.to_json(), indent=2))


if __name__ == "__main__":
    main()
