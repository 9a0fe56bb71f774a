"""The same study on other CPUs: every evaluation's predictions, kept with the host that computed them.

INT8 predictions depend on the CPU's instruction set (VNNI, AMX, or AVX2's saturating 16-bit pairs; see
``hostdrift``), FP32's do not: a rerun of the study on another host moves some INT8 predictions, and so the
accuracy differences between variants. Each evaluation appends to ``results/<profile>/eval_runs.jsonl`` its host
(CPU, instruction-set features, INT8 GEMM path, ONNX Runtime) and, per variant, its file's sha256, accuracy,
accuracy change against the reference with its bootstrap interval, and its batch-1 predictions.

Runs of *one trained model* (the same test texts and the same reference predictions) on different instruction
sets are then compared (``across_hosts``): per variant, whether the file was the same, how many predictions
the host moved, and the accuracy change on each host with an interval that covers the hosts (the union of each
host's bootstrap interval). Only evaluations at batch 1 are recorded (before 2026-12 the headline was
batched, and batched dynamic INT8 predictions move with the batch too). ``backfill`` adds the evaluations
committed in git history::

    python -m utils.eval_runs backfill default
"""
from __future__ import annotations

import hashlib
import json
from itertools import combinations
from pathlib import Path
from typing import Optional

from . import variants as V
from .history import add_to_history, cli, committed_versions, read_history, version_at
from .results import Evaluate, as_result, from_dict

RUNS_FILE = "eval_runs.jsonl"


def is_batch1(ev: Evaluate) -> bool:
    """Whether an evaluation's headline predictions are each text alone (batch 1)."""
    return as_result("evaluate", ev).headline_batch_size == 1


def summary(ev: Evaluate, test_sha256: Optional[str] = None) -> dict:
    """One evaluation's line: its host and every variant's file, accuracy and batch-1 predictions."""
    ev = as_result("evaluate", ev)
    prov = ev.provenance
    isa = prov.get("cpu_isa") or {}
    digits = len(ev.labels) <= 10          # up to ten classes a prediction is one digit of a string, else a list
    return {"date": prov["date"], "commit": prov["git"]["commit"], "dirty": prov["git"]["dirty"],
            "cpu": prov["cpu"], "isa": isa.get("int8_gemm"), "features": isa.get("features"),
            "threads": prov["threads"], "onnxruntime": prov["packages"].get("onnxruntime"),
            "reference": ev.reference, "labels": ev.labels, "n_test": ev.n_test, "test_sha256": test_sha256,
            "variants": {n: {"sha256": v.get("sha256"), "accuracy": v["accuracy"],
                             "accuracy_diff": v.get("accuracy_diff"), "accuracy_diff_ci": v.get("accuracy_diff_ci"),
                             "predictions": ("".join(str(int(p)) for p in v["predictions"]) if digits
                                             else [int(p) for p in v["predictions"]])}
                         for n, v in ev.variants.items()}}


def runs_path(cfg) -> Path:
    return cfg.results_dir / RUNS_FILE


def read_runs(cfg) -> list:
    return read_history(runs_path(cfg))


def record(cfg, ev: Evaluate, test_sha256: Optional[str] = None) -> int:
    """Add an evaluation (a batch-1 one; others are not recorded) to the profile's history."""
    return add_to_history(runs_path(cfg), [summary(ev, test_sha256)]) if is_batch1(ev) else 0


def from_git(cfg) -> list:
    """The batch-1 evaluations of every committed version of ``results/<profile>/evaluate.json``, each with the
    test split's hash of the data.json that commit holds."""
    rel = (cfg.results_dir / "evaluate.json").relative_to(cfg.root)
    out = []
    for rev, rec in committed_versions(cfg.root, rel):
        ev = from_dict("evaluate", rec, f"{rel} at {rev}")
        if is_batch1(ev):
            data = version_at(cfg.root, rev, rel.with_name("data.json"))
            out.append(summary(ev, data["splits"]["test"]["sha256"] if data else None))
    return out


def _key(run: dict) -> tuple:
    return run["n_test"], run["test_sha256"], run["reference"], tuple(run["labels"]), \
        hashlib.sha256(json.dumps(run["variants"][run["reference"]]["predictions"]).encode()).hexdigest()


def same_model(runs: list, like: dict) -> list:
    """The clean runs of the model ``like`` evaluated: the same test texts (count and hash, where recorded),
    labels and reference, and the reference's predictions identical."""
    k = _key(like)
    return [r for r in runs if r["dirty"] is False and _same_key(_key(r), k)]


def _same_key(a: tuple, b: tuple) -> bool:
    """The same test count, labels, reference and reference predictions; the same test hash where both record one."""
    return a[0] == b[0] and a[2:] == b[2:] and (a[1] is None or b[1] is None or a[1] == b[1])


def moved(a, b) -> int:
    """Predictions that differ between two runs of a variant."""
    return sum(x != y for x, y in zip(a, b, strict=True))


def across_hosts(runs: list, like: dict) -> Optional[dict]:
    """The model ``like`` evaluated on two or more instruction sets (INT8 GEMM paths), one run each (``like``'s
    for its own, the newest for the others); per variant every run has: same file or not, the most predictions
    moved between two hosts, accuracy and accuracy change per host, and the interval covering the hosts.
    None where the model was evaluated on one instruction set only."""
    if like["dirty"] is not False:
        return None                              # a dirty tree's evaluation is not compared (nor compared with)
    same = [r for r in same_model(runs, like) if r["isa"]]
    pick = {like["isa"]: like} if like["isa"] else {}
    for r in sorted(same, key=lambda r: r["date"], reverse=True):
        pick.setdefault(r["isa"], r)
    if len(pick) < 2:
        return None
    chosen = list(pick.values())
    names = [n for n in like["variants"] if all(n in r["variants"] for r in chosen)]
    out = {}
    for n in names:
        rows = [r["variants"][n] for r in chosen]
        cis = [v["accuracy_diff_ci"] for v in rows if v.get("accuracy_diff_ci")]
        out[n] = {"weights": V.weights_of(n) if n in V.REGISTRY else None,
                  "same_file": len({v["sha256"] for v in rows}) == 1 and rows[0]["sha256"] is not None,
                  "moved": max(moved(a["predictions"], b["predictions"]) for a, b in combinations(rows, 2)),
                  "accuracy": {r["isa"]: r["variants"][n]["accuracy"] for r in chosen},
                  "accuracy_diff": {r["isa"]: r["variants"][n]["accuracy_diff"] for r in chosen},
                  "covering_ci": [min(c[0] for c in cis), max(c[1] for c in cis)] if len(cis) == len(rows) else None}
    return {"isas": list(pick), "n_test": like["n_test"], "reference": like["reference"],
            "runs": [{k: r[k] for k in ("date", "commit", "cpu", "isa", "features", "onnxruntime")} for r in chosen],
            "variants": out}


def main(argv=None) -> int:
    return cli(argv, "python -m utils.eval_runs", __doc__, "evaluation(s)", runs_path, from_git, lambda r: (
        f"{r['cpu']} {r['isa']} {len(r['variants'])} variants, {r['reference']} "
        f"{100 * r['variants'][r['reference']]['accuracy']:.2f}%"))


if __name__ == "__main__":
    raise SystemExit(main())
