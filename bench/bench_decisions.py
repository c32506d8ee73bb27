"""Licence decisions at scale, and the gateway's throughput with 50,000 policy rows.

    python bench/bench_decisions.py [--quick] [--skip-gateway] [--duration 5] [--rounds 5]

Part 1 (in process): decisions per second at 1k, 10k and 50k policy rows (5 rows per operator,
so 200 / 2,000 / 10,000 operators) for
  - plain pycasbin `Enforcer.enforce` over all the rows (it scans every row on each call),
  - `DecisionIndex` cold (a fresh index and distinct requests: each decision builds its
    operator's small enforcer and evaluates it), and warm (the same requests again, cached),
plus the time to load the rows into an index and to apply a one-operator change.

Part 2 (processes): two `credgate demo --port 0` gateways, A with about 100 policy rows
(the demo's own plus operators created through the admin API) and B with the same plus 50,000
rows (10,000 operators bulk-loaded into its database; B picks them up through its policy-version
poll). The load generator (wrk when installed, else a Python/aiohttp process) reads penalties of
the sample codes as the demo operator. Each round measures A and B (in alternating order) after a
one-second warm-up; the medians and their ratio (B / A, expected >= 0.9) are printed. With two or
more CPUs the gateways run on the first and the load generator on the second.

`--quick` is CI-sized (1k and 10k rows, short gateway rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies.decision import DecisionIndex, new_enforcer  # noqa: E402

DATASETS = ("entities", "penalties", "licences", "disclosures", "recognitions")
PROVINCES = ("11", "31", "32", "33", "44", "51", "61", "65")
PURPOSES = ("credit_check", "risk_control")


# --- part 1: decisions ---------------------------------------------------------------------

def make_rows(count: int, rng: random.Random) -> list[list[str]]:
    """`count` rows, five per operator: one purpose, one province, five data sets."""
    rows: list[list[str]] = []
    for n in range(count // len(DATASETS)):
        sub, province, purpose = f"op{n:05d}", rng.choice(PROVINCES), rng.choice(PURPOSES)
        rows += [[sub, dataset, purpose, province, f"{sub}-L"] for dataset in DATASETS]
    return rows


def make_requests(rows: list[list[str]], n: int, rng: random.Random) -> list[tuple[str, str, str, str]]:
    """Requests by operators that hold rows: about half allowed, half denied (purpose or region)."""
    subs = sorted({row[0] for row in rows})
    out = []
    for _ in range(n):
        sub = rng.choice(subs)
        region = rng.choice(PROVINCES) + f"{rng.randrange(1, 99):02d}{rng.randrange(1, 20):02d}"
        out.append((sub, rng.choice((*DATASETS, "serious_untrustworthy")), rng.choice(PURPOSES), region))
    return out


def plain_enforcer(rows: list[list[str]]) -> Any:
    """A plain pycasbin Enforcer over every row. The rows are set on the model directly: its
    `add_policies` checks each new row against a list (O(n^2), about a minute for 50k rows)."""
    enforcer = new_enforcer()
    assertion = enforcer.get_model().model["p"]["p"]
    assertion.policy = [list(row) for row in rows]
    assertion.policy_map = {",".join(row): i for i, row in enumerate(rows)}
    return enforcer


def rate(call: Any, items: list[Any], budget: float) -> tuple[float, int]:
    """Calls per second of `call` over `items`, stopping after `budget` seconds (at least 3 calls)."""
    start = time.perf_counter()
    done = 0
    for item in items:
        call(*item)
        done += 1
        if done >= 3 and time.perf_counter() - start > budget:
            break
    return done / (time.perf_counter() - start), done


def bench_decisions(sizes: list[int], budget: float) -> list[dict[str, Any]]:
    rng = random.Random(7)
    results = []
    for size in sizes:
        rows = make_rows(size, rng)
        requests = make_requests(rows, 20_000, rng)
        t0 = time.perf_counter()
        plain = plain_enforcer(rows)
        plain_load = time.perf_counter() - t0
        plain_rate, plain_n = rate(plain.enforce, requests, budget)

        t0 = time.perf_counter()
        index = DecisionIndex(rows)
        index_load = time.perf_counter() - t0
        cold_rate, cold_n = rate(index.decide, requests, budget * 2)
        warm_rate, _ = rate(index.decide, requests[:cold_n], budget)
        t0 = time.perf_counter()
        for n in range(100):
            index = index.replace(index.version + 1, {f"op{n:05d}": [[f"op{n:05d}", "penalties", "*", "*", "x"]]})
        replace_ms = (time.perf_counter() - t0) / 100 * 1000

        fresh = DecisionIndex(rows)
        agree = all(plain.enforce(*req) == fresh.decide(*req).allowed for req in requests[:20])
        results.append({
            "rows": len(rows), "operators": len(rows) // len(DATASETS),
            "plain_enforce_per_s": plain_rate, "plain_calls_measured": plain_n, "plain_load_s": plain_load,
            "index_cold_per_s": cold_rate, "index_warm_per_s": warm_rate, "index_load_s": index_load,
            "index_one_operator_change_ms": replace_ms, "same_answers_as_plain": agree,
        })
        print(f"  {len(rows):>6} rows: plain enforce {plain_rate:>10,.0f}/s | index cold {cold_rate:>9,.0f}/s, "
              f"warm {warm_rate:>11,.0f}/s | load: plain {plain_load:.2f} s, index {index_load:.3f} s, "
              f"one change {replace_ms:.2f} ms; same answers: {agree}", flush=True)
    return results


# --- part 2: gateway throughput ------------------------------------------------------------

def _pin(cpu: int | None) -> Any:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def start_demo(data_dir: Path, cpu: int | None) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "demo.json").unlink(missing_ok=True)
    log = open(data_dir / "demo.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", "0", "--data-dir", str(data_dir)],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT, preexec_fn=_pin(cpu),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 120
    while not (data_dir / "demo.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the demo in {data_dir} did not start; see {data_dir / 'demo.log'}")
        time.sleep(0.1)
    return proc, json.loads((data_dir / "demo.json").read_text())


def stop_demo(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _http(method: str, url: str, *, token: str | None = None, basic: tuple[str, str] | None = None,
                data: Any = None, body: Any = None) -> tuple[int, Any]:
    import aiohttp

    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    async with aiohttp.ClientSession() as session, session.request(
        method, url, headers=headers, data=data, json=body
    ) as resp:
        return resp.status, await resp.json(content_type=None)


def token(demo: dict[str, Any], role: str) -> str:
    client = demo["clients"][role]
    status, body = asyncio.run(_http("POST", demo["token_endpoint"], data={"grant_type": "client_credentials"},
                                     basic=(client["client_id"], client["client_secret"])))
    if status != 200:
        raise SystemExit(f"no token for {role}: {body}")
    return str(body["access_token"])


def licence_body(datasets: tuple[str, ...], regions: list[str], purposes: list[str]) -> dict[str, Any]:
    return {"datasets": {name: "*" for name in datasets}, "purposes": purposes, "regions": regions,
            "not_before": "2025-06-01T00:00:00+08:00", "not_after": "2029-06-01T00:00:00+08:00",
            "quotas": {"rate_per_second": 1000, "burst": 1000, "per_day": 100000}}


def add_api_operators(demo: dict[str, Any], count: int) -> None:
    """Operators created through the admin API, 25 rows each (5 data sets x 5 regions)."""
    admin = token(demo, "admin")
    for n in range(count):
        body = {"name": f"Bench Operator {n}", "client_id": f"bench-api-{n}",
                "licence": licence_body(DATASETS, ["110000", "310000", "320000", "330000", "440000"],
                                        ["credit_check"])}
        status, answer = asyncio.run(_http("POST", demo["gateway"] + "/admin/operators", token=admin, body=body))
        if status != 201:
            raise SystemExit(f"admin API refused an operator: {answer}")


def bulk_load(data_dir: Path, operators: int) -> None:
    """10,000 operators x 5 rows straight into the demo's database (one change, one version bump)."""
    from credcore.clock import system_clock
    from credcore.db import make_engine
    from policies.licence import parse_licence
    from policies.store import LicenceStore

    async def load() -> None:
        engine = make_engine(f"sqlite:///{data_dir / 'gateway.db'}")
        try:
            store = LicenceStore(engine)
            rng = random.Random(3)
            ops = [(f"bulk{n:05d}", f"Bulk Operator {n}") for n in range(operators)]
            lics = [parse_licence(licence_body(DATASETS, [rng.choice(PROVINCES) + "0000"], ["credit_check"]),
                                  licence_id=f"{cid}-L", client_id=cid) for cid, _ in ops]
            await store.bulk_load(ops, lics, system_clock.now())
        finally:
            await engine.dispose()

    asyncio.run(load())


def wait_applied(demo: dict[str, Any]) -> float:
    """Seconds until the gateway has applied everything in its database: an admin change answers
    only after the process reloaded every change since its version (versions apply in order)."""
    admin = token(demo, "admin")
    started = time.monotonic()
    narrow = licence_body(("penalties",), ["110000"], ["credit_check"])
    status, answer = asyncio.run(_http("PUT", demo["gateway"] + "/admin/operators/bench-api-0/licences/probe",
                                       token=admin, body=narrow))
    if status not in (200, 201):
        raise SystemExit(f"probe licence refused: {answer}")
    return time.monotonic() - started


WRK_LUA = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
"""


def load(base: str, paths: list[str], headers: dict[str, str], seconds: float, connections: int,
         cpu: int | None) -> dict[str, Any]:
    """Requests/s with `connections` keep-alive connections for `seconds` (wrk, else Python)."""
    if shutil.which("wrk"):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_LUA % ", ".join(json.dumps(p) for p in paths))
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", script.name]
        for name, value in headers.items():
            cmd += ["-H", f"{name}: {value}"]
        out = subprocess.run(cmd + [base], capture_output=True, text=True, check=True, preexec_fn=_pin(cpu)).stdout
        os.unlink(script.name)
        rps = float(out.split("Requests/sec:")[1].split()[0])
        bad = int(out.split("Non-2xx or 3xx responses:")[1].split()[0]) if "Non-2xx" in out else 0
        return {"engine": "wrk", "rps": rps, "non_2xx": bad}
    spec = json.dumps({"base": base, "paths": paths, "headers": headers, "seconds": seconds,
                       "connections": connections})
    out = subprocess.run([sys.executable, __file__, "--loadgen", spec], capture_output=True, text=True, check=True,
                         preexec_fn=_pin(cpu)).stdout
    return {"engine": "python", **json.loads(out)}


async def _python_load(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    deadline = time.monotonic() + spec["seconds"]
    counts = {"ok": 0, "bad": 0}
    connector = aiohttp.TCPConnector(limit=spec["connections"])
    async with aiohttp.ClientSession(connector=connector, headers=spec["headers"]) as session:

        async def worker(offset: int) -> None:
            i = offset
            while time.monotonic() < deadline:
                async with session.get(spec["base"] + spec["paths"][i % len(spec["paths"])]) as resp:
                    await resp.read()
                    counts["ok" if resp.status == 200 else "bad"] += 1
                i += 1

        start = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(spec["connections"])))
        elapsed = time.monotonic() - start
    return {"rps": (counts["ok"] + counts["bad"]) / elapsed, "non_2xx": counts["bad"]}


def bench_gateway(args: argparse.Namespace) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    tmp = Path(tempfile.mkdtemp(prefix="credgate-bench-decisions-"))
    procs = []
    try:
        small_proc, small = start_demo(tmp / "rows-100", server_cpu)
        procs.append(small_proc)
        large_proc, large = start_demo(tmp / "rows-50k", server_cpu)
        procs.append(large_proc)
        for demo in (small, large):
            add_api_operators(demo, 3)  # 25 demo rows + 3 x 25 = 100 rows
        t0 = time.monotonic()
        bulk_load(tmp / "rows-50k", 10_000)
        bulk_s = time.monotonic() - t0
        applied_s = wait_applied(large)
        wait_applied(small)
        print(f"  bulk insert of 10,000 operators / 50,000 rows: {bulk_s:.1f} s; picked up by the running "
              f"gateway within {applied_s:.2f} s", flush=True)
        samples = small["sample_uscc"][:10]
        paths = [f"/v1/entities/{code}/penalties" for code in samples]
        rounds: dict[str, list[float]] = {"100": [], "50k": []}
        for n in range(args.rounds):
            order = [("100", small), ("50k", large)]
            for label, demo in order if n % 2 == 0 else order[::-1]:  # alternate, so neither always goes first
                headers = {"Authorization": f"Bearer {token(demo, 'operator')}", "X-Purpose": "credit_check"}
                load(demo["gateway"], paths, headers, 1.0, args.connections, load_cpu)  # warm-up
                result = load(demo["gateway"], paths, headers, args.duration, args.connections, load_cpu)
                if result["non_2xx"]:
                    raise SystemExit(f"{result['non_2xx']} requests were not answered 200 ({label} rows)")
                rounds[label].append(result["rps"])
                print(f"  round {n + 1}: {label:>3} rows {result['rps']:>8,.0f} req/s ({result['engine']})", flush=True)
        small_rps, large_rps = statistics.median(rounds["100"]), statistics.median(rounds["50k"])
        return {"rps_100_rows": small_rps, "rps_50k_rows": large_rps, "ratio": large_rps / small_rps,
                "rounds": rounds, "bulk_insert_s": bulk_s, "picked_up_within_s": applied_s,
                "connections": args.connections, "duration_s": args.duration}
    finally:
        for proc in procs:
            stop_demo(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--loadgen":
        print(json.dumps(asyncio.run(_python_load(json.loads(sys.argv[2])))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized: 1k and 10k rows, short gateway rounds")
    parser.add_argument("--skip-gateway", action="store_true", help="only the in-process decision benchmark")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per gateway round (default 5)")
    parser.add_argument("--rounds", type=int, default=5, help="gateway rounds per configuration (default 5)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 50_000]
    if args.quick:
        args.duration, args.rounds = min(args.duration, 2.0), min(args.rounds, 2)
    print("decisions per second (5 rows per operator):", flush=True)
    results: dict[str, Any] = {"decisions": bench_decisions(sizes, budget=0.5 if args.quick else 2.0)}
    if not args.skip_gateway:
        print("gateway throughput, demo operator reading penalties:", flush=True)
        results["gateway"] = gw = bench_gateway(args)
        print(f"  median: 100 rows {gw['rps_100_rows']:,.0f} req/s, 50k rows {gw['rps_50k_rows']:,.0f} req/s, "
              f"ratio {gw['ratio']:.2f} (want >= 0.9)", flush=True)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
