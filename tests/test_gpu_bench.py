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
