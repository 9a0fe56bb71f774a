"""The GPU command, run here on the CPU: the same code a GPU machine runs (no GPU is needed to
check that it loads a carried pack, measures each dtype and writes a results JSON)."""
import shutil

import pandas as pd
import torch

from utils import gpu_bench
from utils.bench import gpu_status
from utils.modeling import load_checkpoint, save_checkpoint
from utils.provenance import read_json


def _pack(tmp_path, tiny_model_dir, tiny_onnx, sentences):
    d = tmp_path / "pack"
    model, tok = load_checkpoint(tiny_model_dir)
    save_checkpoint(model.to(torch.float16), tok, d / "checkpoint")      # what `pack` writes
    pd.DataFrame({"text": sentences}).to_csv(d / "texts.csv", index=False)
    shutil.copy(tiny_onnx[0], d / "fp32.onnx")
    return d


def test_run_measures_every_dtype_from_a_pack(smoke_cfg, tmp_path, tiny_model_dir, tiny_onnx, sentences):
    d = _pack(tmp_path, tiny_model_dir, tiny_onnx, sentences)
    res = gpu_bench.run(smoke_cfg, d, device="cpu", reps=2)
    assert list(res["pytorch"]) == ["pytorch-cpu-fp32", "pytorch-cpu-fp16", "pytorch-cpu-bf16", "pytorch-cpu-int8"]
    assert set(res["pytorch"]["pytorch-cpu-fp16"]["batch_size"]) == {str(b) for b in smoke_cfg.bench.batch_sizes}
    if "CUDAExecutionProvider" not in res["ort_providers"]:
        assert "onnxruntime-gpu" in res["onnxruntime_note"] and res["onnxruntime"] == {}


def test_cli_writes_a_results_json_or_says_why_not(smoke_cfg, tmp_path, tiny_model_dir, tiny_onnx, sentences,
                                                   monkeypatch, capsys):
    d = _pack(tmp_path, tiny_model_dir, tiny_onnx, sentences)
    monkeypatch.chdir(smoke_cfg.root)
    out = tmp_path / "bench_gpu.json"
    assert gpu_bench.main(["run", "smoke", "--pack", str(d), "--device", "cpu", "--reps", "2",
                           "--out", str(out)]) == 0
    rec = read_json(out)
    assert rec["step"] == "bench_gpu" and rec["provenance"]["profile"] == "smoke" and "pytorch" in rec
    if not gpu_status()["torch_cuda"]:
        assert gpu_bench.main(["run", "smoke", "--pack", str(d), "--out", str(tmp_path / "x.json")]) == 3
        assert "skipped" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_a_later_call_reuses_the_pytorch_part_of_the_first(smoke_cfg, tmp_path, tiny_model_dir, tiny_onnx, sentences,
                                                            monkeypatch, capsys):
    """A GPU session measures PyTorch in its first call and ONNX Runtime in its last: the last call takes
    the PyTorch part from the first call's JSON, unchanged, and says where it came from."""
    d = _pack(tmp_path, tiny_model_dir, tiny_onnx, sentences)
    monkeypatch.chdir(smoke_cfg.root)
    first, last = tmp_path / "first.json", tmp_path / "last.json"
    run = ["run", "smoke", "--pack", str(d), "--device", "cpu", "--reps", "2"]
    assert gpu_bench.main([*run, "--out", str(first)]) == 0
    assert gpu_bench.main(["run", "smoke", "--pack", str(d), "--device", "cpu", "--reps", "2", "--out", str(last),
                           "--pytorch-from", str(first), "--build-onnx", str(tmp_path / "onnx")]) == 0
    a, b = read_json(first), read_json(last)
    assert b["pytorch"] == a["pytorch"] and b["pytorch_from"]["file"] == first.name
    assert b["pytorch_from"]["date"] == a["provenance"]["date"] and "fp32" in b["onnx_built"]
    capsys.readouterr()
    # measured another way (other repetitions), or not a GPU benchmark: refused, naming the file
    assert gpu_bench.main(["run", "smoke", "--pack", str(d), "--device", "cpu", "--reps", "3",
                           "--out", str(tmp_path / "x.json"), "--pytorch-from", str(first)]) == 2
    assert str(first) in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    other = tmp_path / "other.json"
    other.write_text('{"step": "bench", "length": 32}')
    assert gpu_bench.main(["run", "smoke", "--pack", str(d), "--device", "cpu", "--reps", "2",
                           "--out", str(tmp_path / "x.json"), "--pytorch-from", str(other)]) == 2
    assert "not a GPU benchmark" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def _tiny_wheel(d):
    """A real (minimal) wheel, as pip builds them: a package, METADATA, WHEEL and a RECORD with hashes."""
    import base64
    import hashlib
    import zipfile

    name, ver = "qxai_tiny_probe", "0.1"
    files = {f"{name}/__init__.py": "VALUE = 42\n",
             f"{name}-{ver}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n",
             f"{name}-{ver}.dist-info/WHEEL":
                 "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    digest = lambda b: base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()  # noqa: E731
    record = "".join(f"{p},sha256={digest(c.encode())},{len(c.encode())}\n" for p, c in files.items())
    record += f"{name}-{ver}.dist-info/RECORD,,\n"
    whl = d / f"{name}-{ver}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for p, c in {**files, f"{name}-{ver}.dist-info/RECORD": record}.items():
            z.writestr(p, c)
    return whl


def test_a_wheel_split_into_parts_is_joined_checked_and_installed(tmp_path):
    import pytest

    whl = _tiny_wheel(tmp_path)
    man = gpu_bench.split_wheel(whl, tmp_path / "parts", part_bytes=200)
    assert len(man["parts"]) == -(-whl.stat().st_size // 200) > 1
    target = gpu_bench.install(tmp_path / "parts", tmp_path / "site" / "lib")
    assert (target / "qxai_tiny_probe" / "__init__.py").read_text() == "VALUE = 42\n"
    last = tmp_path / "parts" / man["parts"][-1]
    last.write_bytes(last.read_bytes()[:-1] + b"x")                  # a stale part
    with pytest.raises(ValueError, match="does not match its manifest"):
        gpu_bench.install(tmp_path / "parts", tmp_path / "site2" / "lib")
    last.unlink()
    with pytest.raises(FileNotFoundError, match=man["parts"][-1]):
        gpu_bench.install(tmp_path / "parts", tmp_path / "site3" / "lib")


def test_the_onnx_files_are_built_from_the_pack_where_the_run_is(smoke_cfg, tmp_path, tiny_model_dir, tiny_onnx,
                                                                  sentences):
    from utils import quantize as Q

    d = _pack(tmp_path, tiny_model_dir, tiny_onnx, sentences)
    saved = []
    res = gpu_bench.run(smoke_cfg, d, device="cpu", reps=1, onnx_dir=tmp_path / "built", save=saved.append)
    # the PyTorch part was saved before the ONNX part began
    assert len(saved) == 1 and "incomplete" in saved[0] and "onnx_built" not in saved[0] and "pytorch" in saved[0]
    assert "incomplete" not in res
    built = res["onnx_built"]
    assert built["fp32"]["parity"]["passed"] and set(built) == {"fp32", "int8-dynamic", "int8-static-sym", "fp16"}
    assert sorted(f.name for f in (tmp_path / "built").glob("*.onnx")) == [
        "fp16.onnx", "fp32.onnx", "int8-dynamic.onnx", "int8-static-sym.onnx"]
    sym = Q.qdq_scales(tmp_path / "built" / "int8-static-sym.onnx")
    assert sym and all(z == 0 for r in sym.values() if "activation" in r for z in r["activation"]["zero_point"])


def test_a_failed_onnx_build_is_recorded_and_the_run_still_returns(smoke_cfg, tmp_path, tiny_model_dir, tiny_onnx,
                                                                   sentences):
    d = _pack(tmp_path, tiny_model_dir, tiny_onnx, sentences)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    res = gpu_bench.run(smoke_cfg, d, device="cpu", reps=1, onnx_dir=blocker)
    assert "error" in res["onnx_built"] and list(res["pytorch"])[0] == "pytorch-cpu-fp32"
