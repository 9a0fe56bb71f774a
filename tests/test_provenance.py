import json

import pytest

from utils.provenance import atomic_path, provenance, read_json, repo_relative, write_json
from utils.results import write_result


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "result.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_write_keeps_the_previous_file_on_failure(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{broken")
            raise RuntimeError("crash")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_atomic_folder_replaces_old_folder(tmp_path):
    target = tmp_path / "ckpt"
    for v in ("old", "new"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "w.txt").write_text(v)
    assert (target / "w.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_result_json_carries_provenance(smoke_cfg):
    path = write_result(smoke_cfg, "cuda_placement", {"kernel_table": {}, "method": "m", "inputs": {}, "files": {}})
    obj = json.loads(path.read_text())
    prov = obj["provenance"]
    assert obj["step"] == "cuda_placement" and obj["method"] == "m"
    for key in ("date", "git", "python", "cpu", "threads", "packages", "config", "profile"):
        assert key in prov
    assert prov["profile"] == "smoke" and prov["config"]["data"]["max_examples"] == 400
    assert prov["threads"] >= 1
    assert prov["packages"]["torch"].startswith("2.")
    assert prov["packages"]["onnxruntime"]


def test_missing_result_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="results file not found: .*nothing.json"):
        read_json(tmp_path / "nothing.json")


def test_provenance_without_config():
    p = provenance(threads=2)
    assert p["threads"] == 2 and "config" not in p


def test_paths_are_recorded_relative_to_the_repository(tmp_path):
    (tmp_path / "data" / "processed").mkdir(parents=True)
    assert repo_relative(tmp_path / "data" / "processed" / "test.csv", tmp_path) == "data/processed/test.csv"
    assert repo_relative(tmp_path / "data" / ".." / "x.csv", tmp_path) == "x.csv"
    outside = tmp_path.parent / "elsewhere.csv"
    assert repo_relative(outside, tmp_path) == str(outside.resolve())


def test_the_isa_record_names_the_int8_gemm_path_of_each_host_kind():
    from utils.provenance import cpu_isa, provenance

    vnni = cpu_isa({"avx2", "avx512f", "avx512bw", "avx512_vnni", "fpu"})
    assert vnni == {"features": ["avx2", "avx512f", "avx512bw", "avx512_vnni"], "int8_gemm": "avx512_vnni"}
    assert cpu_isa({"avx2", "fma"})["int8_gemm"].startswith("avx2")        # the AVX2-only host: saturating pairs
    assert cpu_isa({"avx2", "avx_vnni"})["int8_gemm"] == "avx_vnni"
    assert cpu_isa({"amx_int8", "avx512_vnni"})["int8_gemm"] == "amx"
    assert set(provenance()["cpu_isa"]) == {"features", "int8_gemm"}


def test_file_and_prediction_hashes_tell_files_apart(tmp_path):
    from utils.provenance import array_sha256, sha256

    (tmp_path / "a").write_bytes(b"x")
    (tmp_path / "b").write_bytes(b"y")
    assert sha256(tmp_path / "a") != sha256(tmp_path / "b") and len(sha256(tmp_path / "a")) == 64
    assert array_sha256([0, 1, 1]) == array_sha256([0, 1, 1]) != array_sha256([0, 1, 0])
