"""Gateway throughput benchmark: the store, a bare proxy and the full gateway, in one run.

    python bench/bench_gateway.py [--duration 10] [--warmup 2] [--connections 32] [--rounds 1] [--slices 4]
                                  [--quick] [--engine auto|wrk|python] [--no-pin]
                                  [--profile [--profile-duration 10]] [--data-dir DIR]

What it does, on one machine:

1. starts `credgate demo --port 0 --data-dir DIR` (DIR a fresh temporary directory unless
   given) and reads DIR/demo.json: the gateway, the reference store (`upstream`), the clients
   and `sample_uscc`;
2. starts bench/baseline_proxy.py against the same store;
3. measures, with the same load generator, requests (paths and headers), concurrency and
   duration: (a) the store directly, (b) the baseline proxy, (c) the full gateway. Every phase
   sends what an operator sends: a fresh `operator` token (client_credentials,
   client_secret_basic) per phase and `X-Purpose: credit_check`; the store and the bare proxy
   receive and ignore them. Each phase is a warm-up (discarded) and then the measurement.
   The paths rotate over every sample code x (profile, penalties, licences).
4. prints requests/s, p50/p99 latency, non-200 answers and CPU per request of the server
   processes, the ratios (c)/(b) and (c)/(a) against the bar (c)/(b) >= 0.5, and writes the
   whole result as JSON to bench/results/.

Rounds (`--rounds N`): a, b, c are measured N times, (b) and (c) side by side in every round,
in turn first (a, b, c; then a, c, b). Within a round (b) and (c) take turns (`--slices K`,
default 4): after a warm-up each, K alternating measurements of duration/K seconds apiece, added
up per phase, so that a change of the machine's speed during the round weighs on both alike
(latency: p50 and mean weighted by requests, p99 and max of the worst turn). The table shows
the median round of each phase; the headline (c)/(b) is the median of the rounds' own (c)/(b),
because a shared machine's speed drifts by 10-20% between minutes (seen on the 2-vCPU machines
here) and a round's two phases share its conditions. The ratio of the phases' medians is printed
beside it.

Pinning (default when the machine has 2 or more CPUs): the server side (store, proxy, gateway)
runs on CPU 0 and the load generator (and this script, and py-spy) on CPU 1, so the generator
never steals the server's core. The store shares CPU 0 with the proxy in (b) and with the
gateway in (c), equally, so (c)/(b) compares like with like.

CPU accounting: for every phase the script reads the server processes' CPU time from /proc and
reports milliseconds of CPU per request for the front process (proxy or gateway, the gateway
with its fsync helper process) and for the store (the demo's child running credstore). Unlike
requests/s this does not move when something else on the machine takes CPU time; the script
also reports how busy the server CPU was with other processes ("foreign" load) and
warns when that exceeds 10%.

`--profile` adds a phase after the measurement: load on the gateway again while py-spy
(`pip install py-spy`) samples the gateway process; the collapsed stacks go to bench/results/ and
a summary (per pipeline stage, hottest functions) is printed.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import loadgen  # noqa: E402

RESULTS = HERE / "results"
PATH_SUFFIXES = ("", "/penalties", "/licences")
BAR = 0.5
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEMO_START_TIMEOUT = 180.0
TOKEN_LIFETIME_MARGIN = 250.0  # tokens live 300 s; a phase must end well within one


# ------------------------------------------------------------------------------ processes

def _pinned(cpu: int | None):  # type: ignore[no-untyped-def]
    def pre() -> None:
        os.setsid()  # own process group: stopping it stops its children (the store) too
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return pre


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime


def _switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a process, all its threads summed."""
    counts = [0, 0]
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        counts[0] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        counts[1] += int(line.split()[1])
    return counts[0], counts[1]


def _core_busy(cpu: int) -> tuple[float, float]:
    """(busy, total) jiffies of one CPU from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                return (sum(v) - idle) / CLK_TCK, sum(v) / CLK_TCK
    return 0.0, 0.0


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not start within {timeout:.0f} s; see {log}")
        time.sleep(0.1)


# `credgate demo` under a CPU-time cProfile that SIGUSR1 starts and SIGUSR2 stops and dumps;
# idle until signalled, so the measured phases run the same code as `credgate demo`.
CPROFILE_HARNESS = """
import cProfile, signal, sys, time
out = sys.argv.pop(1)
prof = cProfile.Profile(time.thread_time)
def _on(*_):
    prof.enable()
def _off(*_):
    prof.disable()
    prof.dump_stats(out + '.tmp')
    import os
    os.replace(out + '.tmp', out)
signal.signal(signal.SIGUSR1, _on)
signal.signal(signal.SIGUSR2, _off)
from gateway.cli import main
main()
"""


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ----------------------------------------------------------------------------------- HTTP

def _token(demo: dict[str, Any]) -> str:
    op = demo["clients"]["operator"]
    basic = base64.b64encode(
        f"{urllib.parse.quote(op['client_id'], safe='')}:{urllib.parse.quote(op['client_secret'], safe='')}".encode()
    ).decode()
    req = urllib.request.Request(
        demo["token_endpoint"], data=b"grant_type=client_credentials", method="POST",
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(json.load(resp)["access_token"])


def _tree_size(gateway: str) -> int | None:
    try:
        with urllib.request.urlopen(gateway + "/audit/checkpoint", timeout=10) as resp:
            return int(resp.read().decode().splitlines()[1])
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------------------------- phases

class Phase:
    """One phase's target and processes: `front` (proxy or gateway, None for the store direct)
    with `helpers`, its other children (the gateway's fsync helper), counted as the front."""

    def __init__(self, key: str, label: str, base: str, front: int | None, store: int,
                 helpers: tuple[int, ...] = ()) -> None:
        self.key, self.label, self.base, self.front, self.store = key, label, base, front, store
        self.helpers = helpers

    def front_cpu(self) -> tuple[float, float]:
        times = [_cpu_times(pid) for pid in ((self.front, *self.helpers) if self.front else ())]
        return sum(t[0] for t in times), sum(t[1] for t in times)

    def switches(self) -> list[tuple[int, int]]:
        """(voluntary, involuntary) of the front with its helpers, then of the store."""
        out = []
        if self.front:
            counts = [_switches(pid) for pid in (self.front, *self.helpers)]
            out.append((sum(c[0] for c in counts), sum(c[1] for c in counts)))
        return [*out, _switches(self.store)]


def measure(phase: Phase, paths: list[str], headers: dict[str, str], args: argparse.Namespace,
            engine: str, server_cpu: int | None, gen_cpu: int | None, *, duration: float | None = None,
            warmup: bool = True) -> dict[str, Any]:
    target = loadgen.Target(phase.base, paths, headers)
    if warmup and args.warmup > 0:
        loadgen.run(target, engine=engine, connections=args.connections, duration=args.warmup, cpu=gen_cpu)
    duration = args.duration if duration is None else duration
    front0 = phase.front_cpu()
    store0 = _cpu_times(phase.store)
    switches0 = phase.switches()
    core0 = _core_busy(server_cpu) if server_cpu is not None else (0.0, 0.0)
    result = loadgen.run(target, engine=engine, connections=args.connections, duration=duration, cpu=gen_cpu)
    front_user, front_sys = (a - b for a, b in zip(phase.front_cpu(), front0, strict=True))
    store_s = sum(_cpu_times(phase.store)) - sum(store0)
    switches1 = phase.switches()
    front_s = front_user + front_sys
    out = result.to_json()
    n = max(result.requests, 1)
    out["front_user_ms_per_req"] = round(front_user * 1000 / n, 4) if phase.front else None
    out["front_sys_ms_per_req"] = round(front_sys * 1000 / n, 4) if phase.front else None
    out["front_cpu_ms_per_req"] = round(front_s * 1000 / n, 4) if phase.front else None
    out["store_cpu_ms_per_req"] = round(store_s * 1000 / n, 4)
    out["server_cpu_ms_per_req"] = round((front_s + store_s) * 1000 / n, 4)
    # Raw totals, so that slices of one phase add up exactly (`combine_slices`).
    out["_totals"] = {"front_user_s": front_user, "front_sys_s": front_sys, "store_s": store_s,
                      "switches": [(v1 - v0, i1 - i0) for (v0, i0), (v1, i1) in zip(switches0, switches1, strict=True)]}
    # Where the store shares the front's core, each switch between them costs both processes
    # their warm caches: switches per request explain part of the store's CPU per request.
    names = (["front"] if phase.front else []) + ["store"]
    for name, (v0, i0), (v1, i1) in zip(names, switches0, switches1, strict=True):
        out[f"{name}_switches_per_req"] = {"voluntary": round((v1 - v0) / n, 3), "involuntary": round((i1 - i0) / n, 3)}
    if server_cpu is not None:
        busy, total = (a - b for a, b in zip(_core_busy(server_cpu), core0, strict=True))
        ours = front_s + store_s
        out["server_core_busy_pct"] = round(100 * busy / total, 1) if total else None
        out["server_core_foreign_pct"] = round(100 * max(0.0, busy - ours) / total, 1) if total else None
        out["_totals"].update(core_busy_s=busy, core_total_s=total)
    return out


def combine_slices(slices: list[dict[str, Any]], has_front: bool) -> dict[str, Any]:
    """One phase's slices of a round as one measurement: requests, time, CPU and switches added
    up; p50 and mean latency weighted by requests, p99 and max the worst slice's."""
    n = sum(s["requests"] for s in slices)
    wall = sum(s["duration_s"] for s in slices)
    t = [s["_totals"] for s in slices]
    front_user, front_sys = sum(x["front_user_s"] for x in t), sum(x["front_sys_s"] for x in t)
    store_s = sum(x["store_s"] for x in t)
    statuses: collections.Counter[str] = collections.Counter()
    for s in slices:
        statuses.update(s["statuses"])

    def weighted(key: str) -> float | None:
        values = [(s[key], s["requests"]) for s in slices if s[key] is not None]
        return sum(v * w for v, w in values) / max(1, sum(w for _, w in values)) if values else None

    def worst(key: str) -> float | None:
        values = [s[key] for s in slices if s[key] is not None]
        return max(values) if values else None

    per = max(n, 1)
    out: dict[str, Any] = {
        "engine": slices[0]["engine"], "connections": slices[0]["connections"], "duration_s": wall,
        "requests": n, "rps": n / wall if wall else 0.0, "p50_ms": weighted("p50_ms"), "p99_ms": worst("p99_ms"),
        "mean_ms": weighted("mean_ms"), "max_ms": worst("max_ms"), "statuses": dict(statuses),
        "socket_errors": sum(s["socket_errors"] for s in slices), "non_200": sum(s["non_200"] for s in slices),
        "slices": len(slices), "slices_rps": [round(s["rps"], 1) for s in slices],
        "front_user_ms_per_req": round(front_user * 1000 / per, 4) if has_front else None,
        "front_sys_ms_per_req": round(front_sys * 1000 / per, 4) if has_front else None,
        "front_cpu_ms_per_req": round((front_user + front_sys) * 1000 / per, 4) if has_front else None,
        "store_cpu_ms_per_req": round(store_s * 1000 / per, 4),
        "server_cpu_ms_per_req": round((front_user + front_sys + store_s) * 1000 / per, 4),
    }
    names = (["front"] if has_front else []) + ["store"]
    for i, name in enumerate(names):
        v = sum(x["switches"][i][0] for x in t)
        inv = sum(x["switches"][i][1] for x in t)
        out[f"{name}_switches_per_req"] = {"voluntary": round(v / per, 3), "involuntary": round(inv / per, 3)}
    if all("core_total_s" in x for x in t):
        busy, total = sum(x["core_busy_s"] for x in t), sum(x["core_total_s"] for x in t)
        ours = front_user + front_sys + store_s
        out["server_core_busy_pct"] = round(100 * busy / total, 1) if total else None
        out["server_core_foreign_pct"] = round(100 * max(0.0, busy - ours) / total, 1) if total else None
    return out


def _round_order(keys: list[str], rnd: int) -> list[str]:
    """a, b, c in even rounds and a, c, b in odd ones: (b) and (c) are always measured side by
    side, and neither always comes first (a machine whose speed drifts favours neither)."""
    if rnd % 2 and "b" in keys and "c" in keys:
        i, j = keys.index("b"), keys.index("c")
        keys = list(keys)
        keys[i], keys[j] = keys[j], keys[i]
    return keys


def paired_ratios(b_rounds: list[dict[str, Any]], c_rounds: list[dict[str, Any]]) -> list[float]:
    """(c)/(b) of each round, from the two phases measured one after the other."""
    return [c["rps"] / b["rps"] for b, c in zip(b_rounds, c_rounds, strict=True) if b["rps"]]


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median requests/s (its latencies belong to it), plus all rounds' rps."""
    ordered = sorted(rounds, key=lambda r: r["rps"])
    chosen = dict(ordered[(len(ordered) - 1) // 2]) if len(ordered) % 2 else dict(ordered[len(ordered) // 2 - 1])
    chosen["rounds_rps"] = [round(r["rps"], 1) for r in rounds]
    chosen["non_200"] = sum(r["non_200"] for r in rounds)
    statuses: collections.Counter[str] = collections.Counter()
    for r in rounds:
        statuses.update(r["statuses"])
    chosen["statuses_all_rounds"] = dict(statuses)
    chosen["requests_all_rounds"] = sum(r["requests"] for r in rounds)
    for key in ("front_cpu_ms_per_req", "front_user_ms_per_req", "front_sys_ms_per_req", "store_cpu_ms_per_req",
                "server_cpu_ms_per_req"):
        values = [r[key] for r in rounds if r.get(key) is not None]
        chosen[key] = round(statistics.median(values), 4) if values else None
    return chosen


# --------------------------------------------------------------------------------- profile

STAGES: list[tuple[str, tuple[str, ...]]] = [
    # py-spy names a frame by its last path components, e.g. "Tracer.start_span (trace/__init__.py:1200)".
    ("tracing (OpenTelemetry spans, propagation)", ("opentelemetry/", "(trace/", "(context/", "(propagate/",
                                                    "(propagators/", "_decorator.py", "(attributes/", "Tracer.",
                                                    "Span.", "(sampling.py", "id_generator.py", "BoundedList")),
    ("token verification", ("gateway/oauth/verifier.py",)),
    ("field filter + per-record digests", ("gateway/filtering.py",)),
    ("upstream call (aiohttp client)", ("gateway/upstream.py",)),
    ("audit append (writer task, SQLite)", ("audit/writer.py", "aiosqlite/", "sqlalchemy/", "audit/checkpointer.py")),
    ("audit entry build + response (release.py)", ("gateway/release.py",)),
    ("licence + quota", ("gateway/licensing.py", "policies/")),
    ("route/limits/pipeline glue", ("gateway/middleware.py", "gateway/pipeline.py", "gateway/routes.py")),
    ("aiohttp server (parse, dispatch, write)", ("aiohttp/",)),
    ("waiting in epoll", ("selectors.py",)),
]


def _stage(frames: list[str]) -> str:
    for name, needles in STAGES:
        if any(needle in frame for frame in frames for needle in needles):
            return name
    return "event loop / other"


_OUTER_FRAMES = ("<module>", "run (", "Runner.", "BaseEventLoop.run", "Command.", "Group.", "Context.", "demo (",
                 "run_demo")


def summarize_profile(raw: Path, top: int = 20) -> dict[str, Any]:
    by_thread: collections.Counter[str] = collections.Counter()
    stages: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    main = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0]
        kind = "MainThread (event loop)" if "MainThread" in thread else (
            "aiosqlite worker threads" if "_connection_worker_thread" in stack else thread.split(": ", 1)[-1])
        by_thread[kind] += n
        if "MainThread" not in thread:
            continue
        frames = [f for f in frames[1:] if not f.startswith("process ")]
        if not frames:
            continue
        main += n
        stages[_stage(frames)] += n
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    total = sum(by_thread.values()) or 1
    pct = (lambda n, d=main or 1: round(100 * n / d, 1))  # noqa: E731
    return {
        "samples": total,
        "threads_pct_of_all_samples": {k: round(100 * v / total, 1) for k, v in by_thread.most_common()},
        "main_thread_stages_pct": {k: pct(v) for k, v in stages.most_common()},
        "main_thread_self_top": [[f, pct(v)] for f, v in self_time.most_common(top)],
        "main_thread_inclusive_top": [[f, pct(v)] for f, v in inclusive.most_common(top * 3)
                                      if not f.startswith(_OUTER_FRAMES)][:top],
    }


def profile_gateway(pid: int, target: loadgen.Target, args: argparse.Namespace, engine: str,
                    gen_cpu: int | None, stamp: str) -> dict[str, Any] | None:
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        print("bench: py-spy is not installed (pip install py-spy); skipping the profile.", file=sys.stderr)
        return None
    raw = RESULTS / f"gateway-profile-{stamp}.txt"
    spy = subprocess.Popen(
        [pyspy, "record", "--pid", str(pid), "--duration", str(int(args.profile_duration)), "--rate", "250",
         "--format", "raw", "--threads", "--nonblocking", "-o", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_pinned(gen_cpu),
    )
    time.sleep(0.5)
    result = loadgen.run(target, engine=engine, connections=args.connections,
                         duration=args.profile_duration, cpu=gen_cpu)
    _, err = spy.communicate(timeout=args.profile_duration + 60)
    if spy.returncode != 0 or not raw.exists():
        print(f"bench: py-spy failed: {err.decode(errors='replace').strip()}", file=sys.stderr)
        return None
    summary = summarize_profile(raw)
    summary["collapsed_stacks"] = str(raw.relative_to(HERE.parent))
    summary["rps_while_profiled"] = round(result.rps, 1)
    return summary


PIPELINE_FUNCS = [
    ("gateway/middleware.py", "impl"), ("gateway/middleware.py", "check_limits"),
    ("gateway/pipeline.py", "v1_handler"), ("gateway/routes.py", "match_route"),
    ("gateway/pipeline.py", "check_token"), ("gateway/oauth/verifier.py", "verify"),
    ("gateway/pipeline.py", "authorize"), ("gateway/licensing.py", "consume"),
    ("gateway/upstream.py", "get_json"), ("json/__init__.py", "loads"),
    ("gateway/pipeline.py", "filter_released"), ("gateway/filtering.py", "filter_body"),
    ("credcore/canonical.py", "digest_json"), ("credcore/codes.py", "mask_resident_ids"),
    ("gateway/release.py", "release"), ("gateway/release.py", "entry"),
    ("audit/writer.py", "append"), ("audit/writer.py", "_commit_batch"), ("audit/writer.py", "_link"),
    ("credcore/canonical.py", "canonical_json"),
    ("opentelemetry/sdk/trace/__init__.py", "start_as_current_span"),
    ("opentelemetry/sdk/trace/__init__.py", "start_span"), ("opentelemetry/sdk/trace/__init__.py", "end"),
    ("opentelemetry/propagate/__init__.py", "inject"), ("opentelemetry/propagate/__init__.py", "extract"),
    ("aiohttp/client.py", "_request"), ("aiohttp/web_protocol.py", "_handle_request"),
    ("asyncio/selector_events.py", "write"),
]

FILE_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("opentelemetry (spans, context, propagation)", ("opentelemetry/",)),
    ("sqlalchemy + aiosqlite (audit/quota I/O, event-loop side)", ("sqlalchemy/", "aiosqlite/")),
    ("aiohttp client (to the store)", ("aiohttp/client", "aiohttp/connector", "aiohttp/tracing", "multidict", "yarl/")),
    ("aiohttp server", ("aiohttp/web_", "aiohttp/http_", "aiohttp/streams", "aiohttp/base_protocol")),
    ("asyncio event loop + sockets", ("asyncio/", "selectors.py", "socket.py")),
    ("json (stdlib)", ("json/",)),
    ("credgate: gateway/", ("gateway/",)),
    ("credgate: audit/", ("audit/",)),
    ("credgate: credcore/", ("credcore/",)),
    ("credgate: policies/", ("policies/",)),
]


def summarize_cprofile(path: Path, requests: int, top: int = 25) -> dict[str, Any]:
    import pstats

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values()) or 1e-9  # tottime: CPU seconds of the event-loop thread

    def name(key: tuple[str, int, str]) -> str:
        file, line, func = key
        short = "/".join(file.split("/")[-3:]) if "site-packages" in file or "/lib/python" in file else \
            "/".join(file.split("/")[-2:])
        return f"{func} ({short}:{line})"

    groups: collections.Counter[str] = collections.Counter()
    for (file, _line, _func), v in stats.items():
        group = next((g for g, needles in FILE_GROUPS if any(n in file for n in needles)), "other (C builtins, stdlib)")
        groups[group] += v[2]
    tottime = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    cumulative = []
    for suffix, func in PIPELINE_FUNCS:
        hits = [(k, v) for k, v in stats.items() if k[0].endswith(suffix) and k[2] == func]
        if hits:
            cum = sum(v[3] for _, v in hits)
            cumulative.append([f"{func} ({suffix})", round(100 * cum / total, 1),
                               round(cum * 1e6 / max(requests, 1), 1)])
    return {
        "cpu_seconds": round(total, 3),
        "requests": requests,
        "cpu_us_per_request_profiled": round(total * 1e6 / max(requests, 1), 1),
        "groups_pct": {g: round(100 * t / total, 1) for g, t in groups.most_common()},
        "tottime_top": [[name(k), round(100 * v[2] / total, 1), v[1]] for k, v in tottime],
        "pipeline_cumulative": cumulative,  # [function, % of CPU, CPU us per request]
    }


def cprofile_gateway(pid: int, target: loadgen.Target, args: argparse.Namespace, engine: str,
                     gen_cpu: int | None, stats_path: Path) -> dict[str, Any] | None:
    stats_path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    result = loadgen.run(target, engine=engine, connections=args.connections,
                         duration=args.profile_duration, cpu=gen_cpu)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not stats_path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not stats_path.exists():
        print("bench: the cProfile harness wrote no stats", file=sys.stderr)
        return None
    summary = summarize_cprofile(stats_path, result.requests)
    summary["pstats"] = str(stats_path.relative_to(HERE.parent))
    summary["rps_while_profiled"] = round(result.rps, 1)
    return summary


def print_cprofile(p: dict[str, Any]) -> None:
    print(f"\ncProfile (CPU time of the event-loop thread, profiler overhead included): {p['cpu_seconds']} s "
          f"for {p['requests']} requests = {p['cpu_us_per_request_profiled']} us/request; "
          f"{p['rps_while_profiled']} req/s while profiled; stats in {p['pstats']}")
    print("by package (self time):")
    for g, pct in p["groups_pct"].items():
        print(f"  {pct:5.1f}%  {g}")
    print("pipeline functions (inclusive CPU, % and us/request):")
    for f, pct, us in p["pipeline_cumulative"]:
        print(f"  {pct:5.1f}%  {us:8.1f} us  {f}")
    print("hottest functions (self time %, calls):")
    for f, pct, calls in p["tottime_top"][:20]:
        print(f"  {pct:5.1f}%  {calls:>8}  {f}")


# ------------------------------------------------------------------------------------ main

def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _split(r: dict[str, Any]) -> str:
    if r.get("front_user_ms_per_req") is None:
        return "-"
    return f"{r['front_user_ms_per_req']:.3f}/{r['front_sys_ms_per_req']:.3f}"


def print_table(results: dict[str, dict[str, Any]], labels: dict[str, str]) -> None:
    print()
    print(f"{'':22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8} "
          f"{'front CPU':>10} {'(user/sys)':>13} {'store CPU':>10} {'foreign':>8}")
    print(f"{'':22} {'':>9} {'':>8} {'':>8} {'':>8} {'ms/req':>10} {'':>13} {'ms/req':>10} {'load %':>8}")
    for key, r in results.items():
        print(f"{labels[key]:22} {r['rps']:9.0f} {_fmt(r['p50_ms'], '.2f'):>8} {_fmt(r['p99_ms'], '.2f'):>8} "
              f"{r['non_200']:8d} {_fmt(r['front_cpu_ms_per_req'], '.3f'):>10} {_split(r):>13} "
              f"{_fmt(r['store_cpu_ms_per_req'], '.3f'):>10} {_fmt(r.get('server_core_foreign_pct')):>8}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded warm-up seconds per phase (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    parser.add_argument("--rounds", type=int, default=1, help="measure a, b, c this many times (see Rounds)")
    parser.add_argument("--slices", type=int, default=4,
                        help="measure (b) and (c) of a round in this many alternating turns (see Rounds; 1: one each)")
    parser.add_argument("--quick", action="store_true", help="CI-sized run: 3 s phases, 1 s warm-up, 1 round, 1 turn")
    parser.add_argument("--engine", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--profile", nargs="?", const="py-spy", choices=("py-spy", "cprofile"),
                        help="then profile the gateway under the same load: py-spy (wall-clock sampling, "
                             "the default) or cprofile (CPU time of the event-loop thread, in-process)")
    parser.add_argument("--profile-duration", type=float, default=10.0)
    parser.add_argument("--data-dir", type=Path, help="demo data directory (default: a fresh temporary one)")
    parser.add_argument("--output", type=Path, help="JSON result file (default bench/results/gateway-<time>.json)")
    parser.add_argument("--phases", default="abc",
                        help="which phases to run, e.g. 'c' to iterate on the gateway alone (default abc)")
    parser.add_argument("--min-ratio", type=float, default=None,
                        help="exit 1 if (c)/(b) is below this (default: report only)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds, args.slices = 3.0, 1.0, 1, 1
        args.profile_duration = min(args.profile_duration, 5.0)
    if args.slices < 1:
        parser.error("--slices must be 1 or more")
    if args.warmup + args.duration > TOKEN_LIFETIME_MARGIN:
        parser.error(f"warm-up + duration must stay under {TOKEN_LIFETIME_MARGIN:.0f} s (access tokens live 300 s)")

    engine = loadgen.choose_engine(args.engine)
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = not args.no_pin and ncpu >= 2
    server_cpu, gen_cpu = (cpus[0], cpus[1]) if pin else (None, None)
    if gen_cpu is not None:
        os.sched_setaffinity(0, {gen_cpu})  # this script stays off the server's core too

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.mkdtemp(prefix="credgate-bench-")
        data_dir = Path(tmp)
    else:
        data_dir = args.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "demo.json").unlink(missing_ok=True)

    demo_proc = proxy_proc = None
    print(f"bench: load generator {engine}"
          + (f"; pinned: store, proxy and gateway on CPU {server_cpu}, load generator on CPU {gen_cpu}"
             if pin else "; not pinned") + f"; {ncpu} CPUs", flush=True)
    try:
        demo_log = data_dir / "bench-demo.log"
        # cwd is the data dir so that `-c` puts no source checkout ahead of PYTHONPATH/site-packages.
        pstats_path = RESULTS / f"gateway-cprofile-{stamp}.pstats"
        entry = (["-c", CPROFILE_HARNESS, str(pstats_path)] if args.profile == "cprofile"
                 else ["-c", "from gateway.cli import main; main()"])
        demo_proc = subprocess.Popen(
            [sys.executable, *entry, "demo", "--port", "0", "--data-dir", str(data_dir)],
            cwd=data_dir, stdout=open(demo_log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # noqa: SIM115
            preexec_fn=_pinned(server_cpu),
        )
        _wait_file(data_dir / "demo.json", demo_proc, DEMO_START_TIMEOUT, "credgate demo", demo_log)
        demo = json.loads((data_dir / "demo.json").read_text())
        kids = _children(demo_proc.pid)
        stores = [pid for pid in kids if "credstore" in _cmdline(pid)]
        if not stores:
            raise SystemExit("bench: cannot find the store process under credgate demo")
        store_pid = stores[0]
        gateway_helpers = tuple(pid for pid in kids if pid != store_pid)

        port_file = data_dir / "baseline.port"
        port_file.unlink(missing_ok=True)
        proxy_log = data_dir / "bench-proxy.log"
        proxy_proc = subprocess.Popen(
            [sys.executable, str(HERE / "baseline_proxy.py"), "--upstream", demo["upstream"], "--port", "0",
             "--port-file", str(port_file)],
            cwd=data_dir, stdout=open(proxy_log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # noqa: SIM115
            preexec_fn=_pinned(server_cpu),
        )
        _wait_file(port_file, proxy_proc, 30, "the baseline proxy", proxy_log)
        proxy_url = f"http://127.0.0.1:{int(port_file.read_text())}"

        codes = demo["sample_uscc"]
        paths = [f"/v1/entities/{code}{suffix}" for code in codes for suffix in PATH_SUFFIXES]
        phases = {
            "a": Phase("a", "(a) store direct", demo["upstream"], None, store_pid),
            "b": Phase("b", "(b) baseline proxy", proxy_url, proxy_proc.pid, store_pid),
            "c": Phase("c", "(c) full gateway", demo["gateway"], demo_proc.pid, store_pid, gateway_helpers),
        }
        phases = {k: p for k, p in phases.items() if k in args.phases}
        rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in phases}
        audit_sent = 0
        tree_before = _tree_size(demo["gateway"])
        for rnd in range(args.rounds):
            order = _round_order(list(phases), rnd)
            # The same requests for every phase (a bare proxy parses the token it ignores).
            headers = {key: {"Authorization": f"Bearer {_token(demo)}", "X-Purpose": "credit_check"} for key in order}
            paired = [key for key in order if key in "bc"] if args.slices > 1 else []
            for key in order:
                if key in paired:
                    continue
                phase = phases[key]
                print(f"bench: round {rnd + 1}/{args.rounds} {phase.label}: {args.warmup:g} s warm-up + "
                      f"{args.duration:g} s at {args.connections} connections ...", flush=True)
                rounds[key].append(measure(phase, paths, headers[key], args, engine, server_cpu, gen_cpu))
            if paired:
                # (b) and (c) in turns of duration/slices each, so that a drift of the machine's
                # speed within the round falls on both alike.
                print(f"bench: round {rnd + 1}/{args.rounds} {' and '.join(phases[k].label for k in paired)}: "
                      f"{args.warmup:g} s warm-up each, then {args.slices} turns of "
                      f"{args.duration / args.slices:g} s each at {args.connections} connections ...", flush=True)
                slices: dict[str, list[dict[str, Any]]] = {key: [] for key in paired}
                for turn in range(args.slices):
                    for key in (paired if turn % 2 == 0 else paired[::-1]):
                        slices[key].append(measure(phases[key], paths, headers[key], args, engine, server_cpu,
                                                   gen_cpu, duration=args.duration / args.slices, warmup=turn == 0))
                for key in paired:
                    rounds[key].append(combine_slices(slices[key], phases[key].front is not None))
            for key in order:
                r = rounds[key][-1]
                r.pop("_totals", None)
                if key == "c":
                    audit_sent += r["requests"]
                if r.get("server_core_foreign_pct") and r["server_core_foreign_pct"] > 10:
                    print(f"bench: warning: other processes used {r['server_core_foreign_pct']}% of the server CPU "
                          f"during {phases[key].label}; requests/s are low, CPU ms/request are still comparable.",
                          file=sys.stderr)
        time.sleep(1.6)  # the served checkpoint lags the log by at most 1 s
        tree_after = _tree_size(demo["gateway"])

        results = {k: _median_round(v) for k, v in rounds.items()}
        labels = {k: p.label for k, p in phases.items()}
        print_table(results, labels)
        a, b, c = (results.get(k) for k in "abc")
        # The headline is the median of the rounds' own ratios: a shared host's speed drifts by
        # 10-20% from minute to minute, and (b) and (c) of one round are measured side by side.
        pairs = paired_ratios(rounds["b"], rounds["c"]) if b and c else []
        ratio_cb = statistics.median(pairs) if pairs else None
        ratio_of_medians = c["rps"] / b["rps"] if b and c and b["rps"] else None
        server_cb = (b["server_cpu_ms_per_req"] / c["server_cpu_ms_per_req"]
                     if b and c and c["server_cpu_ms_per_req"] and b["server_cpu_ms_per_req"] else None)
        ratio_ca = c["rps"] / a["rps"] if a and c and a["rps"] else None
        cpu_cb = (b["front_cpu_ms_per_req"] / c["front_cpu_ms_per_req"]
                  if b and c and c["front_cpu_ms_per_req"] and b["front_cpu_ms_per_req"] else None)
        print()
        if ratio_cb is not None:
            verdict = "meets" if ratio_cb >= BAR else "BELOW"
            detail = ""
            if len(pairs) > 1 and ratio_of_medians is not None:
                detail = (f"   (median of the rounds' {', '.join(f'{x:.3f}' for x in pairs)}; "
                          f"ratio of the median req/s {ratio_of_medians:.3f})")
            print(f"(c)/(b) = {ratio_cb:.3f}   {verdict} the bar (c)/(b) >= {BAR}{detail}")
        if ratio_ca is not None:
            print(f"(c)/(a) = {ratio_ca:.3f}")
        if b and c and cpu_cb is not None:
            print(f"front-process CPU per request, (b)/(c) = {cpu_cb:.3f} "
                  f"(gateway {c['front_cpu_ms_per_req']:.3f} ms vs proxy {b['front_cpu_ms_per_req']:.3f} ms)")
        if server_cb is not None:
            print(f"server-core CPU per request (front + store), (b)/(c) = {server_cb:.3f}: the throughput ratio "
                  "if the core did nothing else")
        if c:
            print(f"non-200 answers from the gateway: {c['non_200']} of {c['requests_all_rounds']} "
                  f"{json.dumps(c['statuses_all_rounds'])}")
        if c and tree_before is not None and tree_after is not None:
            print(f"audit log grew by {tree_after - tree_before} entries "
                  f"(completed measured gateway requests: {audit_sent}, plus warm-ups and in-flight)")
        if pin:
            print(f"pinning: servers on CPU {server_cpu}, load generator on CPU {gen_cpu}")

        profile = None
        if args.profile:
            print(f"\nbench: profiling the gateway (pid {demo_proc.pid}) with {args.profile} for "
                  f"{args.profile_duration:g} s under the same load ...", flush=True)
            target = loadgen.Target(demo["gateway"], paths,
                                    {"Authorization": f"Bearer {_token(demo)}", "X-Purpose": "credit_check"})
            if args.profile == "cprofile":
                profile = cprofile_gateway(demo_proc.pid, target, args, engine, gen_cpu, pstats_path)
                if profile:
                    print_cprofile(profile)
            else:
                profile = profile_gateway(demo_proc.pid, target, args, engine, gen_cpu, stamp)
                if profile:
                    print_profile(profile)
            if profile:
                profile["tool"] = args.profile

        out = {
            "time": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": {"cpus": ncpu, "cpu_model": _cpu_model(), "python": platform.python_version(),
                        "platform": platform.platform(), "loadavg_end": os.getloadavg()},
            "config": {"duration_s": args.duration, "warmup_s": args.warmup, "connections": args.connections,
                       "rounds": args.rounds, "slices": args.slices, "engine": engine, "paths": len(paths),
                       "pinning": {"servers_cpu": server_cpu, "loadgen_cpu": gen_cpu} if pin else None},
            "results": {labels[k]: v for k, v in results.items()},
            "rounds": {labels[k]: v for k, v in rounds.items()},
            "ratios": {"c_over_b": _round(ratio_cb), "c_over_b_per_round": [_round(x) for x in pairs],
                       "c_over_b_of_median_rps": _round(ratio_of_medians), "server_cpu_b_over_c": _round(server_cb),
                       "c_over_a": _round(ratio_ca),
                       "front_cpu_b_over_c": _round(cpu_cb), "bar_c_over_b": BAR,
                       "meets_bar": None if ratio_cb is None else ratio_cb >= BAR},
            "audit_entries_added": (tree_after - tree_before) if tree_before is not None and tree_after else None,
            "profile": profile,
        }
        path = args.output or RESULTS / f"gateway-{stamp}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        print(f"\nresults: {path}")
        if args.min_ratio is not None and (ratio_cb is None or ratio_cb < args.min_ratio):
            return 1
        return 0
    finally:
        _stop(proxy_proc)
        _stop(demo_proc)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def print_profile(profile: dict[str, Any]) -> None:
    print(f"\nprofile: {profile['samples']} samples, {profile['rps_while_profiled']} req/s while sampled; "
          f"stacks in {profile['collapsed_stacks']}")
    threads = profile["threads_pct_of_all_samples"].items()
    print("threads (% of all samples): " + ", ".join(f"{k} {v}%" for k, v in threads))
    print("event-loop thread by pipeline stage (% of its samples):")
    for name, p in profile["main_thread_stages_pct"].items():
        print(f"  {p:5.1f}%  {name}")
    print("event-loop thread, hottest functions (self %):")
    for name, p in profile["main_thread_self_top"][:12]:
        print(f"  {p:5.1f}%  {name}")
    print("event-loop thread, inclusive %:")
    for name, p in profile["main_thread_inclusive_top"][:20]:
        print(f"  {p:5.1f}%  {name}")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


if __name__ == "__main__":
    sys.exit(main())
