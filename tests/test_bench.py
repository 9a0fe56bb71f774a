"""The benchmark harness on real (tiny) models: shapes, interleaving, placement, memory probe.
No timing is asserted: speed is measured by `make bench`, not by unit tests."""
import shutil

import numpy as np
import onnx
import pytest

from utils import bench as B
from utils import ort_inspect as I
from utils import pipeline as P
from utils.modeling import load_checkpoint
from utils.predict import OrtPredictor, TorchPredictor


@pytest.fixture(scope="module")
def onnx_file(tiny_onnx):
    return tiny_onnx[0]


def test_fixed_length_batches_are_real_text_of_exact_length(tokenizer, sentences):
    enc = B.fixed_length_batch(tokenizer, sentences, 48, 4)
    assert enc["input_ids"].shape == (4, 48) and enc["attention_mask"].all()
    assert (enc["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    assert (enc["input_ids"][:, -1] == tokenizer.sep_token_id).all()
    assert len({tuple(r) for r in enc["input_ids"]}) == 4             # different rows
    assert not np.isin(enc["input_ids"][:, 1:-1], [tokenizer.pad_token_id]).any()


def test_time_calls_interleaves_every_predictor(onnx_file, tiny_model_dir, tokenizer, sentences):
    model, _ = load_checkpoint(tiny_model_dir)
    preds = {"torch": TorchPredictor(model, tokenizer, 64), "ort": OrtPredictor(onnx_file, tokenizer, 64)}
    inputs = [B.fixed_length_batch(tokenizer, sentences, 16, 2, offset=i) for i in range(3)]
    t = B.time_calls(preds, inputs, reps=5, warmup=1)
    assert {k: len(v) for k, v in t.items()} == {"torch": 5, "ort": 5}
    s = B.summarize(t["ort"])
    assert s["n"] == 5 and s["p10_ms"] <= s["median_ms"] <= s["p99_ms"]


class _Recorder:
    """A real predictor that also records which input (by identity) it was given, in call order."""

    def __init__(self, pred, log, index):
        self.pred, self.log, self.index = pred, log, index

    def _forward(self, enc):
        self.log.append((self.pred.name, self.index[id(enc)]))
        return self.pred._forward(enc)


def test_time_calls_in_blocks_warm_each_block_and_rotate_the_order(onnx_file, tiny_model_dir, tokenizer, sentences):
    model, _ = load_checkpoint(tiny_model_dir)
    inputs = [B.fixed_length_batch(tokenizer, sentences, 16, 1, offset=i) for i in range(7)]
    index, log = {id(e): i for i, e in enumerate(inputs)}, []
    preds = {"torch": _Recorder(TorchPredictor(model, tokenizer, 64, name="torch"), log, index),
             "ort": _Recorder(OrtPredictor(onnx_file, tokenizer, 64, name="ort", spinning=True), log, index)}
    t = B.time_calls(preds, inputs, reps=7, warmup=1, block=3, block_warmup=2)
    assert {k: len(v) for k, v in t.items()} == {"torch": 7, "ort": 7}
    assert log[:2] == [("torch", 0), ("ort", 0)]                  # one warm-up call each
    # blocks of 3 timed calls (the last one short), each after 2 untimed calls on the block's own
    # inputs (cycled); the order rotates every block
    expected = []
    for order, start in ((["torch", "ort"], 0), (["ort", "torch"], 3), (["torch", "ort"], 6)):
        for n in order:
            expected += [(n, start), (n, (start + 1) % 7)] + [(n, i) for i in range(start, min(start + 3, 7))]
    assert log[2:] == expected


def test_predecessor_effect_splits_every_call_by_the_runtime_before_it(onnx_file, tiny_model_dir, tokenizer,
                                                                       sentences):
    model, _ = load_checkpoint(tiny_model_dir)
    preds = {"torch": TorchPredictor(model, tokenizer, 64), "ort-a": OrtPredictor(onnx_file, tokenizer, 64),
             "ort-b": OrtPredictor(onnx_file, tokenizer, 64)}
    runtimes = {"torch": "pytorch", "ort-a": "onnxruntime", "ort-b": "onnxruntime"}
    inputs = [B.fixed_length_batch(tokenizer, sentences, 16, 1, offset=i) for i in range(4)]
    res = B.predecessor_effect(preds, runtimes, inputs, reps=12, seed=0)
    assert all(r["n"] == 12 for r in res.values())
    assert sum(a["n"] for r in res.values() for a in r["after"].values()) == 3 * 12 - 1
    assert set(res["torch"]["after"]) <= {"pytorch", "onnxruntime"}
    assert res["ort-a"]["after"]["pytorch"]["n"] > 0 and res["ort-a"]["after"]["onnxruntime"]["n"] > 0


def test_cpu_placement_has_no_memcpy(onnx_file, tokenizer, sentences):
    feed = B.fixed_length_batch(tokenizer, sentences, 16, 1)
    rec = I.node_placement(onnx_file, ["CPUExecutionProvider"], feed)
    assert rec["memcpy_nodes"] == 0
    assert set(rec["nodes_per_provider"]) == {"CPUExecutionProvider"}
    assert 0 < rec["nodes_per_provider"]["CPUExecutionProvider"] <= rec["graph_nodes"]


def test_operator_times_add_up_and_show_integer_matmuls_after_quantization(onnx_file, tokenizer, sentences, tmp_path):
    from utils.quantize import quantize_dynamic_int8

    feed = B.fixed_length_batch(tokenizer, sentences, 16, 1)
    files = {"fp32": onnx_file, "int8": quantize_dynamic_int8(onnx_file, tmp_path / "int8.onnx")}
    recs = I.operator_profiles(files, ["CPUExecutionProvider"], feed, reps=3, threads=1)   # in turns
    fp, q8 = recs["fp32"], recs["int8"]
    assert fp["profiled_runs"] == 3 and fp["threads"] == 1
    assert fp["kernel_ms"] == pytest.approx(sum(fp["op_ms"].values()))
    assert 0 < fp["matmul_ms"] < fp["kernel_ms"] and "MatMul" in fp["op_ms"]
    assert fp["profiled_call_ms"] > 0 and q8["profiled_call_ms"] > 0
    integer = {"MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulInteger"}
    assert integer & set(q8["op_ms"]) and q8["matmul_ms"] > 0


def test_operator_times_are_each_nodes_median_over_the_warm_calls(onnx_file):
    # one call of ten hit by a burst of load on the host (the first is cold and left out): it moves the
    # node's median, not the time the profile reports
    def node(ts, dur):
        return {"cat": "Node", "name": "mm_kernel_time", "ts": ts, "dur": dur,
                "args": {"provider": "CPUExecutionProvider", "op_name": "MatMul"}}
    events = [node(0, 9000)] + [node(10 * i, 1000) for i in range(1, 10)] + [node(100, 50000)]
    events += [{"cat": "Session", "name": "model_run", "ts": 10 * i, "dur": 1100} for i in range(11)]
    rec = I._profile_record(events, onnx.load(str(onnx_file)), ["CPUExecutionProvider"], reps=10, threads=1)
    assert rec["op_ms"] == {"MatMul": 1.0} and rec["matmul_ms"] == 1.0 and rec["profiled_call_ms"] == 1.1


def test_gpu_status_explains_a_skip():
    st = B.gpu_status()
    assert "CPUExecutionProvider" in st["ort_providers"]
    if not st["torch_cuda"]:
        assert "skipped" in st["note"]


def test_the_gpu_dtype_path_runs_on_the_cpu(tiny_model_dir, tokenizer, sentences):
    # the code the GPU run uses (fp32 / fp16 / bf16 PyTorch), exercised here on the CPU
    out = B.torch_dtype_latency(tiny_model_dir, tokenizer, sentences, 16, [1, 2], reps=2, device="cpu", warmup=1)
    assert list(out) == ["pytorch-cpu-fp32", "pytorch-cpu-fp16", "pytorch-cpu-bf16", "pytorch-cpu-int8"]
    assert out["pytorch-cpu-fp32"]["max_abs_logit_diff_vs_first"] == 0.0
    for rec in out.values():
        assert set(rec["batch_size"]) == {"1", "2"} and rec["batch_size"]["2"]["n"] == 2
        assert rec["max_abs_logit_diff_vs_first"] < 0.1      # half precision / int8 move logits, a little
        assert "cuda_graph" not in rec                      # CUDA graphs only on CUDA
    assert out["pytorch-cpu-bf16"]["max_abs_logit_diff_vs_first"] > 0
    # int8: the 2 x 6 encoder linears and the pooler in integers, the 3-label head (3 % 8) kept in float
    assert out["pytorch-cpu-int8"]["int8_linears"] == 13 and out["pytorch-cpu-int8"]["float_linears"] == ["classifier"]
    assert out["pytorch-cpu-int8"]["max_abs_logit_diff_vs_first"] > 0


def test_a_variant_that_fails_records_its_error_and_the_others_run(tiny_model_dir, tokenizer, sentences, monkeypatch):
    monkeypatch.setitem(B.TORCH_VARIANTS, "bad", ("float128", False))   # no such torch dtype
    out = B.torch_dtype_latency(tiny_model_dir, tokenizer, sentences, 16, [1], reps=1, device="cpu", warmup=0,
                                dtypes=("bad", "fp32"))
    assert "float128" in out["pytorch-cpu-bad"]["error"] and out["pytorch-cpu-fp32"]["batch_size"]["1"]["n"] == 1


def test_iobinding_latency_runs_with_the_cpu_provider(onnx_file, tokenizer, sentences):
    # the code the ONNX Runtime CUDA / TensorRT measurement uses, exercised on the CPU
    feed = B.fixed_length_batch(tokenizer, sentences, 16, 1)
    rec = B.iobinding_latency(onnx_file, feed, reps=3, providers=["CPUExecutionProvider"], device="cpu", warmup=1)
    assert rec["n"] == 3 and rec["providers"] == ["CPUExecutionProvider"]
    direct = OrtPredictor(onnx_file, tokenizer, 64)._forward(feed)
    np.testing.assert_allclose(rec["logits_row0"], direct.ravel()[:8], atol=1e-6)
    if "CUDAExecutionProvider" not in B.available_providers():
        assert "skipped" in B.iobinding_latency(onnx_file, feed, 1, ["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_gpu_provider_chains_prefer_tensorrt_and_fall_back_to_the_cpu():
    assert B.gpu_provider_chains(["CPUExecutionProvider"]) == []
    assert B.gpu_provider_chains(["CUDAExecutionProvider", "CPUExecutionProvider", "TensorrtExecutionProvider"]) == [
        ["TensorrtExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]]


def _bench_repo(smoke_cfg, tiny_model_dir, tiny_onnx, sentences):
    """The smoke profile in the isolated repository, holding what the bench step reads: the tiny
    checkpoint as FP32, its ONNX export, the test split; no quantized files."""
    import json

    import pandas as pd

    cfg = smoke_cfg
    shutil.copytree(tiny_model_dir, cfg.artifacts_dir / "fp32")
    (cfg.artifacts_dir / "onnx").mkdir(parents=True)
    shutil.copy(tiny_onnx[0], cfg.artifacts_dir / "onnx" / "fp32.onnx")
    cfg.processed_dir.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        pd.DataFrame({"text": sentences, "label": [i % 3 for i in range(len(sentences))]}).to_csv(
            cfg.processed_dir / f"{split}.csv", index=False)
    cfg.results_dir.mkdir(parents=True)
    (cfg.results_dir / "quantize.json").write_text(json.dumps({"variants": {}}))
    return cfg


def test_fresh_process_memory_loads_each_variant_in_a_new_process(smoke_cfg, tiny_model_dir, tiny_onnx, sentences):
    """The child's own peak, not its parent's: with 1.5 GB held here, a child that imports the project's
    libraries and loads a tiny model peaks far lower (ru_maxrss reported this process's peak instead)."""
    import psutil

    cfg = _bench_repo(smoke_cfg, tiny_model_dir, tiny_onnx, sentences)
    held = np.ones(3 * 2**26)                        # 1.5 GiB, touched
    parent = psutil.Process().memory_info().rss / 2**20
    for name in ("pytorch-fp32", "onnx-fp32"):
        m = B.fresh_process_memory("smoke", name, 1, cfg.root)
        assert set(m) == {"peak_rss_mb", "model_rss_mb", "create_seconds", "batch"} and m["batch"] == B.MEMORY_BATCH
        assert m["peak_rss_mb"] > m["model_rss_mb"] > 0 and m["create_seconds"] > 0
        assert m["peak_rss_mb"] < parent - 1000
    assert held[-1] == 1.0
    assert 0 < B.peak_rss_mb() and B.peak_rss_mb() >= parent - 1


def test_a_failing_fresh_process_names_the_variant(smoke_cfg, tiny_model_dir, tiny_onnx, sentences):
    cfg = _bench_repo(smoke_cfg, tiny_model_dir, tiny_onnx, sentences)
    (cfg.artifacts_dir / "onnx" / "fp32.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(RuntimeError, match="onnx-fp32"):
        B.fresh_process_memory("smoke", "onnx-fp32", 1, cfg.root)


def test_headline_only_variants_are_timed_in_the_headline_rounds_alone(smoke_cfg, tiny_model_dir, tiny_onnx, sentences):
    """run_bench on a real tiny model: a headline-only variant has its headline rounds and speed-ups,
    and no entry in the sweeps, the one-thread round or the protocol checks; the rest have all."""
    cfg = _bench_repo(smoke_cfg, tiny_model_dir, tiny_onnx, sentences)
    b = cfg.bench
    b.variants, b.headline_only = ["pytorch-fp32", "pytorch-int8-dynamic", "onnx-fp32"], ["pytorch-int8-dynamic"]
    b.reps, b.rounds, b.throughput_reps, b.seq_lengths, b.batch_sizes, b.memory = 2, 2, 2, [8], [1, 2], False
    b.threads = [None, 1]
    r = P.run_bench(cfg, progress=False)
    cpu, one = r["cpu"][f"threads_{cfg.threads}"], r["cpu"]["threads_1"]["headline"]
    swept = {"pytorch-fp32", "onnx-fp32"}
    assert set(cpu["headline"]) == swept | {"pytorch-int8-dynamic"} == set(r["speedup_vs_onnx_fp32"])
    assert r["protocol"]["headline_only"] == ["pytorch-int8-dynamic"] and r["seconds"] > 0
    if cfg.threads != 1:
        assert set(one) == swept
    assert all(set(row) == swept for row in [*cpu["seq_length"].values(), *cpu["batch_size"].values()])
    assert set(cpu["per_call"]) == swept and set(cpu["spinning"]["variants"]) == swept
    b.headline_only = ["pytorch-int9"]
    with pytest.raises(KeyError, match="bench.headline_only: unknown variant"):
        P.run_bench(cfg, progress=False)
