"""Run to run: the headline of every benchmark run, kept beside its results.

``bench.json`` holds one run; the rounds inside it share the host's state of those minutes. How
far the *reported* median moves from one run of ``make bench`` to the next is a different
question, answered only by several runs. Each run appends its headline (median per variant,
speed-ups, protocol, CPU, threads, git commit) to ``results/<profile>/bench_runs.jsonl``; runs
measured the same way (same CPU model, threads, length, protocol, repetitions and rounds) from a
clean tree are compared. ``backfill`` adds the runs already committed in git history::

    python -m utils.bench_runs backfill default
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .history import add_to_history, cli, committed_versions, read_history
from .results import Bench, as_result, from_dict
from .variants import is_onnx_int8

RUNS_FILE = "bench_runs.jsonl"
UNRECORDED = "variants interleaved call by call (protocol not recorded)"
# what makes two runs comparable
SAME = ("cpu", "isa", "threads", "length", "protocol", "reps", "rounds")   # isa: None before it was recorded


def relative_range(values) -> float:
    """(max - min) / median: the spread reported everywhere in the benchmark."""
    v = np.asarray(list(values), dtype=float)
    return float((v.max() - v.min()) / np.median(v))


def summary(result: Bench) -> dict:
    """One run's line: its headline at all cores, how it was measured, and where it came from."""
    result = as_result("bench", result)
    prov = result.provenance
    head = result.cpu[f"threads_{prov['threads']}"]["headline"]
    proto = result.protocol or {}
    return {"date": prov["date"], "commit": prov["git"]["commit"], "dirty": prov["git"]["dirty"],
            "cpu": prov["cpu"], "isa": (prov.get("cpu_isa") or {}).get("int8_gemm"),
            "threads": prov["threads"], "length": result.length,
            "protocol": proto.get("description", UNRECORDED),
            "block": proto.get("block", 1), "block_warmup": proto.get("block_warmup", 0),
            "ort_spinning": proto.get("ort_spinning"), "ort_spin_stop": proto.get("ort_spin_stop"),
            "reps": proto.get("reps", prov.get("config", {}).get("bench", {}).get("reps")),
            "rounds": proto.get("rounds", prov.get("config", {}).get("bench", {}).get("rounds")),
            "seconds": result.seconds,
            "median_ms": {n: v["median_ms"] for n, v in head.items()},
            "round_medians_ms": {n: v["round_medians_ms"] for n, v in head.items() if "round_medians_ms" in v},
            "speedup_vs_onnx_fp32": result.speedup_vs_onnx_fp32 or {},
            "speedup_vs_pytorch_fp32": result.speedup_vs_pytorch_fp32 or {}}


def label(run: dict) -> str:
    """A short name for how a run interleaved the variants."""
    if run["protocol"] == UNRECORDED:
        return "call by call"
    spin = (", ORT spinning in calls" if run.get("ort_spin_stop") else
            ", ORT spinning" if run.get("ort_spinning") else "")
    return f"turns of {run['block']} after {run['block_warmup']}{spin}"


def runs_path(cfg) -> Path:
    return cfg.results_dir / RUNS_FILE


def read_runs(cfg) -> list:
    """Every recorded run, oldest first; a line that is not JSON is an error naming the file."""
    return read_history(runs_path(cfg))


def add_runs(cfg, new: list) -> int:
    """Append runs not recorded yet (same date and commit: the same run); returns how many."""
    return add_to_history(runs_path(cfg), new)


def record(cfg, result: Bench) -> int:
    return add_runs(cfg, [summary(result)])


def from_git(cfg) -> list:
    """The runs of every committed version of ``results/<profile>/bench.json``."""
    rel = (cfg.results_dir / "bench.json").relative_to(cfg.root)
    return [summary(from_dict("bench", rec, f"{rel} at {rev}")) for rev, rec in committed_versions(cfg.root, rel)]


def comparable(runs: list, like: dict, clean: bool = True) -> list:
    """The runs measured as ``like`` was (``SAME``), from a clean tree unless ``clean`` is False."""
    return [r for r in runs if all(r.get(k) == like.get(k) for k in SAME) and (r["dirty"] is False or not clean)]


def shared_best(runs: list, like: dict, candidate=is_onnx_int8) -> str | None:
    """The fastest ``candidate`` variant (default: an integer ONNX file) of ``like`` that every run
    measured alike has (a variant added since has no run-to-run spread yet)."""
    same = comparable(runs, like)
    names = sorted((n for n in like["median_ms"] if candidate(n)), key=like["median_ms"].get)
    return next((n for n in names if all(n in r["median_ms"] for r in same)), None)


def run_to_run(runs: list, like: dict, best: str) -> dict:
    """Across the comparable runs: each variant's medians and their relative range, and the same
    for ``best``'s speed-up over ONNX and PyTorch FP32."""
    same = comparable(runs, like)
    if not same:
        return {"runs": 0, "commits": [], "dates": [], "median_ms": {}}
    names = [n for n in like["median_ms"] if all(n in r["median_ms"] for r in same)]
    med = {n: [r["median_ms"][n] for r in same] for n in names}
    out = {"runs": len(same), "commits": [r["commit"][:7] for r in same], "dates": [r["date"] for r in same],
           "median_ms": {n: {"values": v, "spread": relative_range(v)} for n, v in med.items()}}
    for key in ("speedup_vs_onnx_fp32", "speedup_vs_pytorch_fp32"):
        v = [r[key][best] for r in same if best in r.get(key, {})]
        if len(v) == len(same) and v:
            out[key] = {"variant": best, "values": v, "spread": relative_range(v)}
    return out


def main(argv=None) -> int:
    return cli(argv, "python -m utils.bench_runs", __doc__, "run(s)", runs_path, from_git, lambda r: (
        f"{label(r)} onnx-fp32 {r['median_ms'].get('onnx-fp32', float('nan')):.2f} ms"))


if __name__ == "__main__":
    raise SystemExit(main())
