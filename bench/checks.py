"""Grading cost: how long checks take per record (every kind but `judge`, which is a model's turn), and
`qwenchat check` over a results file of 10,000 synthetic records, end to end in a fresh process (start-up,
reading, grading, writing the graded file, the table). The baseline, measured in the same run: reading
and parsing the same records without grading them (what any tool reading the file pays).

    python bench/checks.py                   # 10,000 records, 11 checks each
    python bench/checks.py --records 2000

Targets: under 5 ms per record without judge; `check` over 10,000 records under 10 s. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qwenchat.batch.records import read_records  # noqa: E402
from qwenchat.checks.grade import Answer, grade  # noqa: E402
from qwenchat.checks.suite import read_checks  # noqa: E402

WORDS = "the a model answer Paris France city river data token cache prompt seed check pass fail".split()
CHECKS = [
    {"contains": "Paris", "ignore_case": True},
    {"not_contains": ["Lyon", "Marseille"]},
    {"regex": r"\b(capital|city)\b"},
    {"equals": "Paris."},
    {"starts_with": "The"},
    {"json_schema": {"type": "object", "required": ["name"]}},
    {"max_tokens": 400},
    {"finish": "stop"},
    {"think": "absent"},
    {"think": 200},
    {"tool_call": "get_weather", "arguments": {"city": "Paris"}},
]


def synthetic(n: int, seed: int = 0) -> list[dict]:
    """Records shaped as `qwenchat batch` writes them: ~1-2 KB answers, some with a think block, some JSON,
    some with a tool call."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(100, 300)))
        kind = i % 4
        if kind == 1:
            body = f"<think>{body[:400]}</think>The answer is Paris. {body}"
        elif kind == 2:
            body = json.dumps({"name": "Ann", "notes": body[:300]})
        elif kind == 3:
            call = {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}
            body = f"{body[:200]}\n<tool_call>\n{json.dumps(call)}\n</tool_call>"
        out.append(
            {
                "key": f"p{i + 1}/s1#{i:016x}",
                "id": f"p{i + 1}/s1",
                "prompt_index": i + 1,
                "vars_index": None,
                "variant": "",
                "variant_overrides": {},
                "seed": 1,
                "prompt": "What is the capital of France?",
                "system": None,
                "answer": body,
                "finish_reason": "stop" if i % 7 else "length",
                "tokens": {
                    "prompt": 30,
                    "generated": rng.randint(50, 500),
                    "thinking": 80 if kind == 1 else 0,
                },
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    records = synthetic(args.records)
    with tempfile.TemporaryDirectory() as tmp:
        results, suite, graded = Path(tmp) / "r.jsonl", Path(tmp) / "suite.jsonl", Path(tmp) / "g.jsonl"
        results.write_text("".join(json.dumps(r) + "\n" for r in records))
        suite.write_text("".join(json.dumps(c) + "\n" for c in CHECKS))
        checks = read_checks(suite)

        # per record, interleaved with the baseline (reading the records) so noise hits both alike
        read_s, grade_s = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            loaded, _ = read_records(results)
            read_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for r in loaded:
                grade(checks, Answer.from_record(r))
            grade_s.append(time.perf_counter() - t0)
        per_record_ms = 1000 * min(grade_s) / len(records)

        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "qwenchat", "check", str(results), "--checks", str(suite)]
        walls, rc = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            proc = subprocess.run([*cmd, "--out", str(graded)], env=env, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            rc = proc.returncode
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "qwenchat", "--version"], env=env, capture_output=True)
        startup_s = time.perf_counter() - t0
        graded_ok = sum(1 for _ in graded.open()) == len(records)

    print(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "python": platform.python_version(),
                "records": len(records),
                "checks_per_record": len(checks),
                "grade_ms_per_record": round(per_record_ms, 3),
                "grade_ms_per_record_median_run": round(1000 * statistics.median(grade_s) / len(records), 3),
                "baseline_read_ms_per_record": round(1000 * min(read_s) / len(records), 3),
                "check_command_s": round(min(walls), 2),
                "check_command_s_runs": [round(w, 2) for w in walls],
                "process_startup_s": round(startup_s, 2),
                "check_exit_status": rc,
                "graded_file_complete": graded_ok,
                "targets": {"grade_ms_per_record": 5, "check_command_s": 10},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
