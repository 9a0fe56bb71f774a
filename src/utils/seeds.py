"""Several training seeds: steps 01-06 repeated per seed, each variant's accuracy change summarised over them.

A profile that lists ``seeds: [42, 43, ...]`` is run by ``make seeds PROFILE=<it>``: for every seed, the
study's first six steps (data, FP32 fine-tuning, QAT and its control, export, quantization, evaluation)
with that training seed and the profile's own split (``config.for_seed``, or ``load_config(profile,
replicate=seed)``: outputs under ``results/<name>/seed-<seed>/``, each a complete results folder, resumable
step by step), then
``python -m utils.seeds summarize <profile>`` writes ``results/<name>/seeds.json``:

* per variant and seed, the batch-1 accuracy, its change against PyTorch FP32 of the same seed with the
  paired bootstrap interval of that one seed, McNemar's p and the agreement with FP32;
* over the seeds, the mean change with a Student-t interval (``eval.confidence``; the seeds as the
  sample: what another fine-tuning run would give), the standard deviation, the range, and how many seeds'
  own bootstrap intervals exclude zero;
* the same for QAT's files against ``pytorch-fp32-plus-epoch`` (FP32 trained as long, no fake
  quantizers), where the replicates trained that control.

The seeds vary the new head's initialisation, dropout, the order of the training batches and the
calibration samples (QAT's and static INT8's), not the split: every seed is tested on the same texts.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys

import numpy as np
from scipy import stats

from . import variants as V
from .config import Config, ConfigError, for_seed, load_config
from .results import StepResult, from_json, write_result

CONTROL = V.qat_control()     # QAT's control, from the registry


class MissingReplicate(FileNotFoundError):
    """A seed's replicate has not written the result the summary needs."""


def replicates(cfg: Config) -> list:
    """One configuration per seed of ``cfg.seeds`` (its outputs under <name>/seed-<n>/)."""
    if not cfg.seeds:
        raise ConfigError(f"profile {cfg.name!r} lists no seeds: set seeds: [42, 43, ...] to repeat its training")
    return [for_seed(cfg, s) for s in cfg.seeds]


def over_seeds(values, confidence: float) -> dict:
    """Mean, standard deviation, range and the Student-t interval of the mean of per-seed ``values``."""
    x = np.asarray(values, dtype=float)
    n, mean = len(x), float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "sd": sd, "ci": [mean - half, mean + half], "min": float(x.min()),
            "max": float(x.max()), "values": x.tolist()}


def _excludes_zero(ci) -> bool:
    return ci[0] > 0 or ci[1] < 0


def _load(rcfg: Config, step: str) -> StepResult:
    path = rcfg.results_dir / f"{step}.json"
    if not path.is_file():
        raise MissingReplicate(f"seed {rcfg.replicate}: {path} not found (run `make seeds PROFILE={rcfg.name}`, "
                               f"which runs its {step} step)")
    return from_json(path, step)


def summarize(cfg: Config) -> dict:
    """``results/<name>/seeds.json`` from every seed's evaluate.json (see the module's docstring)."""
    reps = replicates(cfg)
    conf = cfg.eval.confidence
    evals = {r.replicate: _load(r, "evaluate") for r in reps}
    datas = {r.replicate: _load(r, "data") for r in reps}
    splits = {s: d.splits["test"]["sha256"] for s, d in datas.items()}
    if len(set(splits.values())) != 1:
        raise ValueError(f"the seeds' test splits differ ({splits}): every seed must be tested on the same "
                         f"texts; set data.seed in profile {cfg.name!r}")
    names = [n for n in V.REGISTRY if all(n in e.variants for e in evals.values())]
    partial = sorted({n for e in evals.values() for n in e.variants} - set(names))
    if partial:
        raise ValueError(f"variants {partial} are evaluated for some seeds only: rerun `make seeds "
                         f"PROFILE={cfg.name}` so that every seed evaluates the same variants")
    variants = {}
    for n in names:
        rows = {s: e.variants[n] for s, e in evals.items()}
        per_seed = {str(s): {"accuracy": r["accuracy"], "accuracy_ci": r["accuracy_ci"],
                             **({"accuracy_diff": r["accuracy_diff"], "accuracy_diff_ci": r["accuracy_diff_ci"],
                                 "agreement": r["agreement"], "mcnemar_p": r["mcnemar"]["p_value"]}
                                if n != V.REFERENCE else {}),
                             "predictions_sha256": r["predictions_sha256"], "sha256": r["sha256"]}
                    for s, r in rows.items()}
        rec = {"runtime": rows[cfg.seeds[0]]["runtime"], "family": V.get(n).family, "control": V.get(n).control,
               "per_seed": per_seed, "accuracy": over_seeds([r["accuracy"] for r in rows.values()], conf)}
        if n != V.REFERENCE:
            rec["accuracy_diff"] = over_seeds([r["accuracy_diff"] for r in rows.values()], conf)
            rec["agreement"] = over_seeds([r["agreement"] for r in rows.values()], conf)
            rec["seeds_bootstrap_excludes_zero"] = sum(_excludes_zero(r["accuracy_diff_ci"]) for r in rows.values())
            rec["seeds_mcnemar_below_0_05"] = sum(r["mcnemar"]["p_value"] < 0.05 for r in rows.values())
            rec["bootstrap_halfwidth"] = over_seeds(
                [(r["accuracy_diff_ci"][1] - r["accuracy_diff_ci"][0]) / 2 for r in rows.values()], conf)
        if all("vs_fp32_plus_epoch" in r for r in rows.values()):
            vs = [r["vs_fp32_plus_epoch"] for r in rows.values()]
            rec["vs_fp32_plus_epoch"] = {
                **over_seeds([c["accuracy_diff"] for c in vs], conf),
                "seeds_bootstrap_excludes_zero": sum(_excludes_zero(c["accuracy_diff_ci"]) for c in vs),
                "per_seed_ci": {str(s): c["accuracy_diff_ci"] for s, c in zip(rows, vs)}}
        variants[n] = rec
    dates = {s: (dt.datetime.fromisoformat(datas[s].provenance["date"]),
                 dt.datetime.fromisoformat(e.provenance["date"])) for s, e in evals.items()}
    hosts = {s: e.provenance.get("cpu_isa", {}).get("int8_gemm") for s, e in evals.items()}
    payload = {
        "seeds": list(cfg.seeds), "reference": V.REFERENCE, "control": CONTROL if CONTROL in variants else None,
        "n_test": evals[cfg.seeds[0]].n_test, "test_split_sha256": next(iter(splits.values())),
        "confidence": conf, "headline": "batch 1: each text alone (as deployed)",
        "interval": (f"Student-t interval of the mean over {len(reps)} seeds (each seed one fine-tuning run "
                     f"of FP32, QAT and the control, then every quantized file); beside it each seed's own "
                     f"paired bootstrap interval ({cfg.eval.bootstrap} resamples of the test split)"),
        "replicates": {str(r.replicate): {"results": str(r.results_dir.relative_to(cfg.root)),
                                          "data_seed": r.data_seed, "int8_gemm": hosts[r.replicate],
                                          "minutes_data_to_evaluate": (dates[r.replicate][1] - dates[r.replicate][0])
                                          .total_seconds() / 60} for r in reps},
        "int8_gemm_paths": sorted({str(h) for h in hosts.values()}),
        "minutes_first_to_last": (max(d[1] for d in dates.values()) - min(d[0] for d in dates.values()))
        .total_seconds() / 60,
        "variants": variants,
    }
    write_result(cfg, "seeds", payload)
    return payload


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utils.seeds", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the profile's seeds (for make)").add_argument("profile")
    summ = sub.add_parser("summarize", help="write results/<name>/seeds.json from every seed")
    summ.add_argument("profile")
    summ.add_argument("--seeds", help="comma-separated seeds in place of the profile's own (a grid's)")
    args = ap.parse_args(argv)
    try:
        over = {"seeds": [int(x) for x in args.seeds.split(",")]} if getattr(args, "seeds", None) else None
        cfg = load_config(args.profile, overrides=over)
        if args.command == "list":
            replicates(cfg)          # the same checks as the summary: a profile with seeds, not a replicate
            print(" ".join(map(str, cfg.seeds)))
            return 0
        out = summarize(cfg)
    except (ConfigError, MissingReplicate, ValueError) as e:
        print(f"seeds: {e}", file=sys.stderr)
        return 2
    v = out["variants"]
    for n, rec in v.items():
        if "accuracy_diff" in rec:
            a = rec["accuracy_diff"]
            print(f"{n:28s} {100 * a['mean']:+.2f} pt  [{100 * a['ci'][0]:+.2f}, {100 * a['ci'][1]:+.2f}] over "
                  f"{a['n']} seeds")
    print(f"seeds: results/{cfg.name}/seeds.json ({len(out['seeds'])} seeds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

