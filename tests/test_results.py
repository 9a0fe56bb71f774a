"""Typed, versioned step results (``utils.results``): every committed result reads as its step's declared result and
writes back the same record; a version, a field or a step the code does not know is refused with the file."""
from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from utils import results as RS
from utils.config import load_config
from utils.provenance import read_json, write_json
from utils.report.readers import Results

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p for p in (ROOT / "results").rglob("*.json") if p.stem in RS.RESULTS)


def test_the_committed_results_are_found():
    steps = {p.stem for p in COMMITTED}
    assert set(RS.RESULTS) <= steps, f"no committed result of {set(RS.RESULTS) - steps}"


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT / "results")))
def test_every_committed_result_reads_as_its_step_and_writes_back_the_same_record(path):
    rec = read_json(path)
    res = RS.from_json(path)
    assert isinstance(res, RS.RESULTS[path.stem]) and res.schema == RS.SCHEMA
    out = res.to_dict()
    if "schema" not in rec:             # version 1: read through the migrations, nothing else moved
        assert out.pop("schema") == RS.SCHEMA
        out.pop("headline_batch_size", None) if path.stem == "evaluate" else None
    assert out == rec and list(out) == list(rec)


def _declared(hint) -> tuple:
    """The classes a field's type hint admits (Optional unwrapped; a float field takes an int); () for Any."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) is typing.Union \
        else [hint]
    if typing.Any in args:
        return ()
    return tuple(args) + ((int,) if float in args else ())


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT / "results")))
def test_every_committed_result_holds_the_types_its_step_declares(path):
    res = RS.from_json(path)
    hints = typing.get_type_hints(type(res))
    wrong = {n: type(getattr(res, n)).__name__ for n in res.fields() if getattr(res, n) is not None
             and _declared(hints[n]) and not isinstance(getattr(res, n), _declared(hints[n]))}
    assert not wrong, f"{path.name}: fields of another type than declared: {wrong}"


def test_version_1_evaluations_say_their_headline_batch_from_the_prose_once():
    ev = RS.from_json(ROOT / "results" / "default" / "evaluate.json")
    assert ev.headline_batch_size == 1
    batched = {"step": "evaluate", "reference": "pytorch-fp32", "labels": ["a", "b"], "n_test": 2,
               "majority_class_accuracy": 0.5, "variants": {},
               "batching": {"headline": "batches of 32, texts sorted by length"}}
    assert RS.from_dict("evaluate", batched).headline_batch_size is None
    assert RS.from_dict("evaluate", {k: v for k, v in batched.items() if k != "batching"}).headline_batch_size is None
    assert RS.from_dict("evaluate", {**batched, "schema": 2, "headline_batch_size": 1}).headline_batch_size == 1


def test_an_unknown_schema_version_is_refused_with_the_file_and_the_version(tmp_path):
    rec = read_json(ROOT / "results" / "default" / "export.json")
    path = write_json(tmp_path / "export.json", {**rec, "schema": 99})
    with pytest.raises(RS.ResultSchemaError, match=rf"{tmp_path}/export.json: schema version 99 "):
        RS.from_json(path)


def test_the_report_refuses_an_unknown_version_too(smoke_cfg):
    rec = read_json(ROOT / "results" / "default" / "data.json")
    write_json(smoke_cfg.results_dir / "data.json", {**rec, "schema": 3})
    with pytest.raises(RS.ResultSchemaError, match=r"smoke/data.json: schema version 3"):
        Results(smoke_cfg).data


def test_a_field_a_step_does_not_declare_is_refused_before_anything_is_written(smoke_cfg):
    rec = {k: v for k, v in read_json(ROOT / "results" / "default" / "hostdrift.json").items()
           if k not in ("step", "provenance")}
    with pytest.raises(RS.ResultSchemaError, match=r"hostdrift.json: field\(s\) colour are not declared by Hostdrift"):
        RS.write_result(smoke_cfg, "hostdrift", {**rec, "colour": "blue"})
    assert not (smoke_cfg.results_dir / "hostdrift.json").exists()
    with pytest.raises(RS.ResultSchemaError, match=r"not a hostdrift result: .*'saturation'"):
        RS.write_result(smoke_cfg, "hostdrift", {k: v for k, v in rec.items() if k != "saturation"})
    with pytest.raises(RS.ResultSchemaError, match=r"no step 'unit' declares a result"):
        RS.write_result(smoke_cfg, "unit", {"x": 1})
    assert not smoke_cfg.results_dir.exists() or not any(smoke_cfg.results_dir.iterdir())


def test_a_written_result_carries_its_version_and_provenance_and_reads_back_typed(smoke_cfg):
    rec = {k: v for k, v in read_json(ROOT / "results" / "default" / "cuda_placement.json").items()
           if k not in ("step", "provenance")}
    path = RS.write_result(smoke_cfg, "cuda_placement", rec)
    raw = json.loads(path.read_text())
    assert list(raw)[:2] == ["step", "schema"] and raw["schema"] == RS.SCHEMA and list(raw)[-1] == "provenance"
    back = RS.load_result(smoke_cfg, "cuda_placement")
    assert isinstance(back, RS.CudaPlacement) and back.files == rec["files"]
    assert back.provenance["profile"] == "smoke" and back.provenance["threads"] >= 1


def test_a_file_of_another_step_is_refused(tmp_path):
    path = write_json(tmp_path / "bench.json", read_json(ROOT / "results" / "default" / "export.json"))
    with pytest.raises(RS.ResultSchemaError, match="holds the 'export' step's result, not 'bench'"):
        RS.from_json(path, "bench")


def test_the_report_reads_results_as_typed_objects():
    res = Results(load_config("default", root=ROOT))
    assert isinstance(res.evaluate, RS.Evaluate) and isinstance(res.bench, RS.Bench)
    assert res.bench.headline == res.bench.cpu[f"threads_{res.bench.threads}"]["headline"]
    assert set(res.export.files) == {"fp32", "qat-fp32"}
