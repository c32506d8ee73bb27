"""Benchmark of `credgate consistency check`: N authority records against 3 agencies.

    python bench/bench_consistency.py [--records 1000000] [--keep DIR]

Generates, in a temporary directory, an authority feed of N records (penalties and licences;
some repaired, some expired, some not yet disclosed) and three agency snapshots as JSON Lines:

- `exact`: the disclosed records as the authority shows them, a few with a changed fine, a few
  repaired records still shown;
- `reformatted`: 5% of records with dates written 2025年3月5日, brackets （） and fines in 元
  (format only: no finding), 1% left out (coverage), a few expired records still shown;
- `sloppy`: a few malformed lines, duplicates, ID numbers and records the authority lacks.

Then runs the check in a fresh child process (so its peak memory is the check's alone) and
prints the authority load rate, the agency records per second on one core and the peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AS_OF = "2025-10-20T12:00:00+08:00"
_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_WEIGHTS = [pow(3, i, 31) for i in range(17)]
AUTHORITIES = [f"{city}市{district}区市场监督管理局" for city in ("北京", "上海", "广州", "深圳")
               for district in ("东城", "西城", "朝阳", "海淀", "浦东", "黄浦", "天河", "南山")]
VIOLATIONS = ["虚假宣传", "销售不合格产品", "未按规定公示年度报告", "无照经营", "价格违法",
              "食品安全违法", "特种设备违法", "消防安全违法"]
BASES = ["《中华人民共和国广告法》第五十五条", "《中华人民共和国产品质量法》第四十九条",
         "《中华人民共和国食品安全法》第一百二十四条", "《中华人民共和国价格法》第四十条"]


def uscc(n: int) -> str:
    body = f"91{110000 + n % 900000:06d}{n:09d}"[:17]
    total = sum(_ALPHABET.index(c) * w for c, w in zip(body, _WEIGHTS, strict=True))
    return body + _ALPHABET[(31 - total % 31) % 31]


def authority_record(i: int, rng: random.Random) -> dict[str, object]:
    decided = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(1000))
    months = rng.choice((3, 12, 36))
    end = decided + dt.timedelta(days=30 * months)
    record: dict[str, object] = {
        "record_id": f"CF-{i:08d}", "kind": "penalty" if i % 5 else "licence",
        "uscc": uscc(i), "subject_name": f"某某{i % 97}号商贸有限公司第{i}分公司",
        "decision_number": f"{AUTHORITIES[i % 32][:2]}市监罚〔{decided.year}〕{i}号",
        "authority": AUTHORITIES[i % 32], "decision_date": decided.isoformat(),
        "disclosure_start": (decided + dt.timedelta(days=1)).isoformat(),
        "disclosure_end": end.isoformat(), "status": "disclosed", "removed_at": None,
    }
    if record["kind"] == "penalty":
        record.update(
            violation_type=VIOLATIONS[i % 8],
            violation_facts=f"当事人于{decided.year}年实施{VIOLATIONS[i % 8]}行为，"
                            f"涉案货值{i % 9000}元，违反了相关法律法规的规定。",
            legal_basis=BASES[i % 4], penalty_category="罚款",
            penalty_content=f"罚款人民币{(i % 50 + 1) / 10}万元",
            fine_amount=(i % 50 + 1) / 10, severity=("minor", "ordinary", "serious")[i % 3])
    else:
        record.update(licence_category="01", licence_name="食品经营许可证",
                      licence_number=f"JY{i:014d}", licence_content="预包装食品销售",
                      valid_from=decided.isoformat(), valid_until="2099-12-31")
    if i % 20 == 7:
        record.update(status="repaired", removed_at="2025-08-01T10:00:00+08:00")
    return record


def generate(directory: Path, count: int) -> tuple[Path, list[Path]]:
    """Write the authority feed and three agency snapshots; returns their paths."""
    rng = random.Random(20251020)
    paths = [directory / f"{name}.jsonl" for name in ("authority", "exact", "reformatted",
                                                       "sloppy")]
    as_of = dt.date(2025, 10, 20)
    handles = [path.open("w", encoding="utf-8") for path in paths]
    authority, exact, reformatted, sloppy = handles
    drop = ("status", "removed_at", "disclosure_start")
    for i in range(count):
        record = authority_record(i, rng)
        authority.write(json.dumps(record, ensure_ascii=False) + "\n")
        shown = {k: v for k, v in record.items() if k not in drop}
        end = dt.date.fromisoformat(str(record["disclosure_end"]))
        disclosed = record["status"] == "disclosed" and end >= as_of
        if not disclosed and i % 500 != 7:
            continue
        one = dict(shown)
        if i % 1000 == 3 and "fine_amount" in one:
            one["fine_amount"] = float(str(one["fine_amount"])) + 1
        exact.write(json.dumps(one, ensure_ascii=False) + "\n")
        two = dict(shown)
        if i % 100 == 1:
            continue
        if i % 20 == 2:
            decided = dt.date.fromisoformat(str(two["decision_date"]))
            two["decision_date"] = f"{decided.year}年{decided.month}月{decided.day}日"
            two["decision_number"] = str(two["decision_number"]).replace("〔", "（").replace(
                "〕", "）")
            if "fine_amount" in two:
                two["fine_amount"] = f"{round(float(str(two['fine_amount'])) * 10000)}元"
        reformatted.write(json.dumps(two, ensure_ascii=False) + "\n")
        three = dict(shown)
        if i % 2000 == 5:
            sloppy.write("{not json\n")
        if i % 3000 == 11:
            three["remarks"] = "法定代表人身份证号 110101199003070038"
        if i % 4000 == 13:
            sloppy.write(json.dumps({**three, "uscc": uscc(count + i)}, ensure_ascii=False) + "\n")
        sloppy.write(json.dumps(three, ensure_ascii=False) + "\n")
        if i % 5000 == 17:
            sloppy.write(json.dumps(three, ensure_ascii=False) + "\n")
    for handle in handles:
        handle.close()
    return paths[0], paths[1:]


async def measure(authority: str, agencies: list[str]) -> dict[str, object]:
    """Time the check in this process: wall clock and CPU time (on a shared machine the CPU
    time is the fairer number for "one core")."""
    from consistency.check import check_agency, load_authority
    from consistency.sources import FileSource

    as_of = dt.datetime.fromisoformat(AS_OF)
    wall, cpu = time.perf_counter(), time.process_time()
    index = await load_authority(FileSource(authority), as_of)
    loaded_wall, loaded_cpu = time.perf_counter() - wall, time.process_time() - cpu
    results = []
    total_records, total_wall, total_cpu = 0, 0.0, 0.0
    for path in agencies:
        began_wall, began_cpu = time.perf_counter(), time.process_time()
        result = await check_agency(Path(path).stem, FileSource(path), index, 3)
        spent_wall = time.perf_counter() - began_wall
        spent_cpu = time.process_time() - began_cpu
        total_records += result.records
        total_wall += spent_wall
        total_cpu += spent_cpu
        results.append({"agency": result.name, "records": result.records,
                        "violations": result.violations, "findings": len(result.findings),
                        "wall_seconds": round(spent_wall, 2), "cpu_seconds": round(spent_cpu, 2),
                        "records_per_cpu_second": round(result.records / spent_cpu)})
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "authority_records": len(index), "authority_wall_seconds": round(loaded_wall, 2),
        "authority_cpu_seconds": round(loaded_cpu, 2),
        "authority_records_per_cpu_second": round(len(index) / loaded_cpu),
        "agencies": results, "agency_records": total_records,
        "agency_records_per_cpu_second": round(total_records / total_cpu),
        "agency_records_per_wall_second": round(total_records / total_wall),
        "total_wall_seconds": round(time.perf_counter() - wall, 2),
        "peak_rss_mib": round(peak_kib / 1024),
        "json_parser": "orjson" if _has_orjson() else "json",
    }


def _has_orjson() -> bool:
    from consistency.records import loads_line

    return getattr(loads_line, "__module__", "") == "orjson"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep the files")
    parser.add_argument("--reuse", metavar="DIR", help="measure files generated before in DIR")
    parser.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child process: only the check, so ru_maxrss is the check's peak
        print(json.dumps(asyncio.run(measure(args.measure[0], args.measure[1:]))))
        return
    with tempfile.TemporaryDirectory(prefix="credgate-bench-") as tmp:
        directory = Path(args.reuse or args.keep or tmp)
        if args.reuse:
            authority = directory / "authority.jsonl"
            agencies = [directory / f"{n}.jsonl" for n in ("exact", "reformatted", "sloppy")]
        else:
            directory.mkdir(parents=True, exist_ok=True)
            began = time.perf_counter()
            authority, agencies = generate(directory, args.records)
            print(f"generated {args.records:,} authority records and 3 agencies in "
                  f"{time.perf_counter() - began:.1f} s ({directory})", file=sys.stderr)
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(authority), *map(str, agencies)],
            check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        numbers = json.loads(child.stdout)
    print(json.dumps(numbers, indent=2, ensure_ascii=False))
    rate, peak = numbers["agency_records_per_cpu_second"], numbers["peak_rss_mib"]
    print(f"agency records per CPU second: {rate:,} (target >= 100,000) · "
          f"peak RSS: {peak} MiB (target < 1024)")


if __name__ == "__main__":
    main()
