"""The committed results of the default profile meet the foundation's targets.

These JSON files are what the paper's figures and tables are drawn from; a rerun of
`make paper-figures` that misses a target turns this test red."""
from pathlib import Path

import pytest

from utils.provenance import read_json

RES = Path(__file__).resolve().parents[1] / "results" / "default"


@pytest.fixture(scope="module")
def ev():
    return read_json(RES / "evaluate.json")


def test_fp32_accuracy_clears_the_bar(ev):
    fp = ev["variants"]["pytorch-fp32"]
    assert fp["accuracy"] >= 0.80
    assert fp["accuracy"] > ev["majority_class_accuracy"] + 0.15


def test_onnx_fp32_matches_pytorch(ev):
    assert ev["variants"]["onnx-fp32"]["agreement"] >= 0.999
    exp = read_json(RES / "export.json")
    assert exp["parity"]["passed"] and exp["parity"]["max_abs_diff"] <= 1e-4 and exp["parity"]["n"] >= 64


def test_int8_dynamic_size_and_accuracy(ev):
    q8, ox = ev["variants"]["onnx-int8-dynamic"], ev["variants"]["onnx-fp32"]
    assert q8["size_mb"] <= 0.26 * ox["size_mb"]
    assert abs(q8["accuracy"] - ev["variants"]["pytorch-fp32"]["accuracy"]) <= 0.015


def test_results_carry_provenance():
    for step in ("data", "train_fp32", "export", "quantize", "evaluate"):
        prov = read_json(RES / f"{step}.json")["provenance"]
        assert prov["profile"] == "default" and prov["git"]["commit"]
        assert prov["packages"]["torch"] and prov["cpu"] and prov["threads"]


def test_split_is_grouped_and_sized():
    d = read_json(RES / "data.json")
    assert d["group_overlap"] == 0
    assert 12_500 <= d["n_examples"] <= 12_800
