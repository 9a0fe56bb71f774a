"""The committed results of the ``drugs`` profile (MiniLM-L6 on Drugs.com reviews, 3 classes) hold together.

One clean run from one commit, of the data set the profile names (the package and file it came from, its own
train / test split kept, three labels), a model that learned more than the majority class, INT8 files that are
integer files, evaluated at batch 1, and drawn into the second-data-set table beside the default. Accuracy
differences between variants are *reported* with their intervals (several points wide on 378 texts), not
asserted: a small test set is a finding, a broken run is a defect."""
import pytest

from committed import ROOT, assert_one_clean_run, expected_variants, load_run, skip_unless_run
from utils import variants as V
from utils.config import load_config
from utils.ort_inspect import integer_op_count
from utils.packaged_data import get as packaged_data

pytestmark = skip_unless_run("drugs")


@pytest.fixture(scope="module")
def rec():
    return load_run("drugs")


def test_one_clean_run_on_one_instruction_set(rec):
    assert_one_clean_run(rec, "drugs", packaged={"data": "drug-reviews"})


def test_the_data_is_the_packaged_set_with_its_own_split(rec):
    d, pset = rec["data"], packaged_data("drug-reviews")
    assert d["source"] == pset.recorded and d["labels"] == list(pset.labels) == ["negative", "neutral", "positive"]
    sp = d["splits"]
    assert sp["test"]["n"] == rec["evaluate"]["n_test"] >= 370         # the package's 379 test reviews, deduplicated
    assert sp["train"]["n"] + sp["validation"]["n"] <= 600             # validation drawn from the package's train
    for split in sp.values():                                          # every class in every split
        assert set(split["class_counts"]) == set(pset.labels) and min(split["class_counts"].values()) > 0


def test_the_model_learned_more_than_the_majority_class(rec):
    ev = rec["evaluate"]
    fp = ev["variants"]["pytorch-fp32"]
    assert fp["accuracy"] > ev["majority_class_accuracy"] + 0.05
    assert rec["train_fp32"]["architecture"]["num_hidden_layers"] == 6      # MiniLM-L6
    assert rec["train_fp32"]["architecture"]["hidden_size"] == 384


def test_export_matches_pytorch_and_int8_files_are_integer(rec):
    par = rec["export"]["fp32"]["parity"]
    assert par["passed"] and par["argmax_identical"] == 1.0
    ev, built = rec["evaluate"]["variants"], rec["quantize"]["variants"]
    assert set(ev) == expected_variants(load_config("drugs"), rec)
    for name, row in ev.items():
        if V.is_onnx_int8(name):
            assert integer_op_count(built[V.get(name).stem]["graph"]["op_counts"]) > 0, name
            assert built[V.get(name).stem]["sha256"] == row["sha256"], name


def test_the_second_data_set_table_sets_drugs_beside_the_default():
    tex = (ROOT / "paper" / "tables" / "drugs" / "scale.tex").read_text()
    assert "Drugs.com reviews" in tex and "Rotten Tomatoes" in tex
    numbers = (ROOT / "paper" / "tables" / "drugs" / "numbers.tex").read_text()
    assert r"\newcommand{\DataName}{Drugs.com reviews}" in numbers and r"\DataGroup" not in numbers
