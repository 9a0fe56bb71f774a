"""What every committed profile's results must hold, shared by ``tests/test_results_<profile>.py``.

A profile's committed results are one run: every step from one clean commit, of the profile named, recording its
CPU's instruction set and threads, every step on the same instruction set (INT8 predictions and speed depend on it).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from utils import steps as ST
from utils import variants as V
from utils.provenance import read_json

ROOT = Path(__file__).resolve().parents[1]
STEPS = ST.STUDY     # the study's steps, as src/utils/steps.py declares them


def results(profile: str) -> Path:
    return ROOT / "results" / profile


def skip_unless_run(profile: str):
    """The module's mark: skipped (with the reason) where the profile's last step has not been committed."""
    return pytest.mark.skipif(not (results(profile) / "explain.json").is_file(),
                              reason=f"the {profile} profile has not been run")


def load_run(profile: str) -> dict:
    """Every step's results JSON of ``profile``, by step name."""
    return {s: read_json(results(profile) / f"{s}.json") for s in STEPS}


def assert_one_clean_run(rec: dict, profile: str, *, packaged: dict) -> None:
    """One commit, clean, the profile named, its instruction set and threads recorded, one instruction set for all;
    ``packaged``: section -> packaged name the config must record (e.g. ``{"model": "all-mpnet-base-v2"}``)."""
    commits = {rec[s]["provenance"]["git"]["commit"] for s in STEPS}
    assert len(commits) == 1, f"the {profile} results come from several commits: {commits}"
    for s in STEPS:
        prov = rec[s]["provenance"]
        assert prov["profile"] == profile and not prov["git"]["dirty"], s
        assert prov["cpu_isa"]["int8_gemm"] and prov["threads"], s
        for section, name in packaged.items():
            assert prov["config"][section]["packaged"] == name, (s, section)
    assert len({tuple(rec[s]["provenance"]["cpu_isa"]["features"]) for s in STEPS}) == 1, \
        f"the {profile} steps ran on several instruction sets"


def expected_variants(cfg, rec: dict) -> set:
    """The variants the committed run of ``cfg`` evaluated: the registry's, less OpenVINO's where the run predates them
    (its quantize.json has no ``openvino`` record: they were added after it, and the run is not redone for them)."""
    names = set(V.evaluated(cfg))
    if "openvino" not in rec["quantize"]:
        names = {n for n in names if V.runtime_of(n) != "openvino"}
    return names
