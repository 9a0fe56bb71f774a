"""The study's steps, one function each; notebooks call these and narrate.

Each step reads the outputs of the previous ones from disk, writes its artifacts
atomically and records ``results/<profile>/<step>.json`` with provenance.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from transformers import AutoConfig

from . import data as D
from . import evaluate as E
from . import modeling as M
from . import onnx_export as X
from . import quantize as Q
from .config import Config
from .predict import OrtPredictor, TorchPredictor, disabled_optimizers
from .provenance import atomic_path, load_result, read_json, repo_relative, write_json, write_result


# --------------------------------------------------------------------------- paths
def checkpoint_dir(cfg: Config, kind: str = "fp32") -> Path:
    """``fp32`` or ``qat`` (the QAT-trained weights, fake quantizers stripped, + qat_scales.json)."""
    return cfg.artifacts_dir / kind


def onnx_path(cfg: Config, variant: str) -> Path:
    return cfg.artifacts_dir / "onnx" / f"{variant}.onnx"


# --------------------------------------------------------------------------- 01 data
def run_data(cfg: Config) -> dict:
    ds = D.load_dataset(cfg)
    splits = D.save_splits(ds, cfg.processed_dir)
    for sp in splits.values():     # recorded relative to the repository, not this machine's folders
        sp["path"] = repo_relative(sp["path"], cfg.root)
    src, kw = M.model_source(cfg.model, cfg.root)
    tok = M.load_tokenizer(src, **kw)
    lengths = {}
    for name, df in ds.splits.items():
        L = D.token_lengths(df["text"], tok)
        values, counts = np.unique(L, return_counts=True)
        lengths[name] = {
            "median": float(np.median(L)), "mean": float(L.mean()), "p95": float(np.percentile(L, 95)),
            "max": int(L.max()), "truncated_fraction": float(np.mean(L > cfg.model.max_length)),
            "histogram": {int(v): int(c) for v, c in zip(values, counts)},
        }
    total = sum(s["n"] for s in splits.values())
    payload = {
        "source": ds.source, "labels": ds.labels, "n_examples": total, "splits": splits,
        "group_overlap": D.group_overlap(ds.splits), "token_lengths": lengths,
        "max_length": cfg.model.max_length,
        "majority_class_test_accuracy": max(splits["test"]["class_counts"].values()) / splits["test"]["n"],
    }
    write_result(cfg, "data", payload)
    return payload


def labels_of(cfg: Config) -> list:
    return load_result(cfg, "data")["labels"]


# --------------------------------------------------------------------------- 02 train
def run_train_fp32(cfg: Config, progress: bool = True) -> dict:
    from .training import fine_tune

    splits = D.load_splits(cfg)
    labels = labels_of(cfg)
    model, tok = M.build_classifier(cfg, labels, attn="sdpa")
    t0 = time.perf_counter()
    hist = fine_tune(model, tok, splits["train"], splits["validation"], cfg.train, cfg.model.max_length,
                     cfg.seed, threads=cfg.threads, progress=progress, eval_batch_size=cfg.eval.batch_size)
    seconds = time.perf_counter() - t0
    out = M.save_checkpoint(model, tok, checkpoint_dir(cfg))
    payload = {**hist, "train_seconds": seconds, "n_train": len(splits["train"]),
               "n_validation": len(splits["validation"]), "parameters": M.count_parameters(model),
               "checkpoint": str(out.relative_to(cfg.root)),
               "checkpoint_mb": M.file_size_mb(out / "model.safetensors")}
    write_result(cfg, "train_fp32", payload)
    return payload


# --------------------------------------------------------------------------- 03 QAT
def run_train_qat(cfg: Config, progress: bool = True) -> dict:
    """Fine-tune the FP32 checkpoint with fake quantizers that simulate the deployed INT8
    arithmetic (see qat.py); save the weights (fake quantizers stripped) and the learned
    activation scales, plus the whole fake-quant state as the seed study would have saved it."""
    import copy

    from safetensors.torch import save_model

    from . import qat as QA
    from .config import TrainConfig
    from .training import fine_tune

    splits = D.load_splits(cfg)
    model, tok = M.load_checkpoint(checkpoint_dir(cfg), attn="eager")
    QA.prepare_qat(model, cfg.qat.averaging_constant)
    M.set_seed(cfg.seed)
    calib = splits["train"].sample(n=min(cfg.qat.calibration_examples, len(splits["train"])),
                                   random_state=cfg.seed)["text"].tolist()
    QA.calibrate(model, tok, calib, cfg.model.max_length)
    tc = TrainConfig(epochs=cfg.qat.epochs, batch_size=cfg.qat.batch_size, learning_rate=cfg.qat.learning_rate,
                     weight_decay=cfg.train.weight_decay, warmup_ratio=cfg.qat.warmup_ratio,
                     patience=cfg.train.patience, max_grad_norm=cfg.train.max_grad_norm,
                     group_by_length=cfg.train.group_by_length)
    t0 = time.perf_counter()
    hist = fine_tune(model, tok, splits["train"], splits["validation"], tc, cfg.model.max_length, cfg.seed + 1,
                     threads=cfg.threads, progress=progress, eval_batch_size=cfg.eval.batch_size)
    seconds = time.perf_counter() - t0
    QA.set_observers(model, False)
    acts, weights = QA.activation_scales(model), QA.weight_qparams(model)
    out = checkpoint_dir(cfg, "qat")
    fq_file = cfg.artifacts_dir / "qat_fakequant.safetensors"
    with atomic_path(fq_file) as tmp:     # what a fake-quant checkpoint weighs: FP32 + observer state
        save_model(model, str(tmp))
    plain = QA.strip_qat(copy.deepcopy(model))
    M.save_checkpoint(plain, tok, out)
    write_json(out / "qat_scales.json", {"activation": acts, "weight": weights,
                                         "averaging_constant": cfg.qat.averaging_constant})
    payload = {**hist, "train_seconds": seconds, "calibration_examples": len(calib),
               "quantized_linears": len(QA.quantized_linears(plain)),
               "quantized_embeddings": list(QA.quantized_embeddings(plain)),
               "activation_quantizers": len(QA.activation_groups(plain)),
               "activation_scales": acts, "checkpoint": str(out.relative_to(cfg.root)),
               "fakequant_state_mb": M.file_size_mb(fq_file),
               "checkpoint_mb": M.file_size_mb(out / "model.safetensors")}
    write_result(cfg, "train_qat", payload)
    return payload


def read_qat_scales(cfg: Config) -> dict:
    """The scales QAT ended with: {"activation": {layer: (scale, zp)}, "weight": {module: (scales, zps)}}."""
    return read_json(checkpoint_dir(cfg, "qat") / "qat_scales.json")


def load_qat_model(cfg: Config, attn: str = "sdpa"):
    """The fake-quant PyTorch model, rebuilt from the QAT checkpoint and its scales."""
    from . import qat as QA

    model, tok = M.load_checkpoint(checkpoint_dir(cfg, "qat"), attn=attn)
    return QA.load_qat(model, read_qat_scales(cfg)["activation"]), tok


# --------------------------------------------------------------------------- 04 export
def run_export(cfg: Config) -> dict:
    """ONNX exports of the FP32 checkpoint and of the QAT-trained weights, each parity-checked."""
    test = D.load_splits(cfg)["test"]
    texts = test["text"].tolist()[: cfg.export.parity_examples]
    payload = {}
    for kind, variant in (("fp32", "fp32"), ("qat", "qat-fp32")):
        model, tok = M.load_checkpoint(checkpoint_dir(cfg, kind), attn="eager")
        path = onnx_path(cfg, variant)
        par = X.export_with_parity(model, tok, path, texts, cfg.model.max_length, opset=cfg.export.opset,
                                   atol=cfg.export.parity_atol, threads=cfg.threads)
        payload[variant] = {"path": str(path.relative_to(cfg.root)), "size_mb": M.file_size_mb(path),
                            "parity": par, "graph": Q.graph_stats(path)}
    write_result(cfg, "export", payload)
    return payload


# --------------------------------------------------------------------------- 05 quantize
def _qat_overrides(cfg: Config, src: Path) -> tuple[list, dict]:
    """Nodes to quantize and the QAT scales for their inputs, keyed by ONNX tensor name."""
    sc = read_qat_scales(cfg)
    lin = Q.module_nodes(src, sc["activation"])
    emb_names = [n for n in sc["weight"] if n not in sc["activation"]]
    emb = Q.module_nodes(src, emb_names, op_types=("Gather",))
    overrides = {}
    for name, node in lin.items():
        scale, zp = sc["activation"][name]
        prev = overrides.setdefault(node.input[0], (scale, zp))
        if prev != (scale, zp):   # Q, K, V share one quantizer in QAT, so this cannot differ
            raise ValueError(f"tensor {node.input[0]} has two QAT scales: {prev} and {(scale, zp)}")
    for name, node in emb.items():
        scales, zps = sc["weight"][name]
        overrides[node.input[0]] = (scales[0], zps[0])
    return [n.name for n in lin.values()] + [n.name for n in emb.values()], overrides


def run_quantize(cfg: Config, progress: bool = True) -> dict:
    """Every ONNX variant, each with what is inside it and what ONNX Runtime runs."""
    from .bench import session_ops

    fp32, qat_fp32 = onnx_path(cfg, "fp32"), onnx_path(cfg, "qat-fp32")
    fp32_mb = M.file_size_mb(fp32)
    tok = M.load_tokenizer(str(checkpoint_dir(cfg)))
    input_names = [i.name for i in Q.load_onnx(fp32).graph.input]
    val = D.load_splits(cfg)["validation"]
    calib = val.sample(n=min(cfg.quantize.calibration_examples, len(val)), random_state=cfg.seed)["text"].tolist()
    reader = Q.TextCalibrationReader(tok, calib, cfg.model.max_length, input_names)
    nodes, overrides = _qat_overrides(cfg, qat_fp32)
    hf = AutoConfig.from_pretrained(str(checkpoint_dir(cfg)))

    def build(name, fn, **meta):
        t0 = time.perf_counter()
        path = onnx_path(cfg, name)
        out = fn(path)
        extra = out if isinstance(out, dict) else {}
        return name, {"path": str(path.relative_to(cfg.root)), "seconds": time.perf_counter() - t0,
                      "size_mb": M.file_size_mb(path), "size_ratio_to_fp32": M.file_size_mb(path) / fp32_mb,
                      **meta, **extra, "graph": Q.graph_stats(path),
                      "ort_cpu_disabled_optimizers": disabled_optimizers(path), "session_ops": session_ops(path)}

    def static(method):
        def fn(dst):
            Q.quantize_static_int8(fp32, dst, reader, method=method, nodes_to_quantize=nodes,
                                   percentile=cfg.quantize.percentile)
        return fn

    jobs = [
        ("fp32-opt", lambda d: {"fusions": Q.optimize_transformer(
            fp32, d, hf.num_attention_heads, hf.hidden_size, skip_layer_norm=cfg.quantize.skip_layer_norm_fusion)},
         {"source": "fp32", "method": "onnxruntime.transformers optimize_model"
                                      + ("" if cfg.quantize.skip_layer_norm_fusion else ", no SkipLayerNormalization")}),
        ("int8-dynamic", lambda d: Q.quantize_dynamic_int8(fp32, d, per_channel=True, weight_type=cfg.quantize.weight_type),
         {"source": "fp32", "method": "quantize_dynamic", "per_channel": True}),
        ("int8-dynamic-pt", lambda d: Q.quantize_dynamic_int8(fp32, d, per_channel=False, weight_type=cfg.quantize.weight_type),
         {"source": "fp32", "method": "quantize_dynamic", "per_channel": False}),
        # ONNX Runtime's recipe for BERT: fuse (Attention, EmbedLayerNorm, ...), then quantize -> QAttention
        ("int8-dynamic-opt", lambda d: Q.quantize_dynamic_int8(onnx_path(cfg, "fp32-opt"), d, per_channel=False,
                                                              weight_type=cfg.quantize.weight_type),
         {"source": "fp32-opt", "method": "transformer optimizer, then quantize_dynamic", "per_channel": False}),
        *[(f"int8-static-{m}", static(m), {"source": "fp32", "method": f"quantize_static QDQ, {m} calibration",
                                          "calibration_examples": len(calib), "nodes_quantized": len(nodes)})
          for m in cfg.quantize.calibration_methods],
        # int8 activations with zero point 0: the explicit-quantization format TensorRT takes
        ("int8-static-sym", lambda d: Q.quantize_static_int8(fp32, d, reader, method="minmax", nodes_to_quantize=nodes,
                                                             activation_type="qint8", symmetric_activations=True),
         {"source": "fp32", "method": "quantize_static QDQ, minmax calibration, symmetric int8 activations "
                                      "(zero point 0: TensorRT's format)",
          "calibration_examples": len(calib), "nodes_quantized": len(nodes)}),
        # the measurement behind excluding LayerNorm, Softmax, GELU and residual Adds above
        ("int8-static-allops", lambda d: Q.quantize_static_int8(fp32, d, reader, method="minmax", op_types=None),
         {"source": "fp32", "method": "quantize_static QDQ, minmax calibration, every quantizable op",
          "calibration_examples": len(calib)}),
        ("int8-qat-seed", lambda d: Q.quantize_dynamic_int8(qat_fp32, d, per_channel=True, weight_type=cfg.quantize.weight_type),
         {"source": "qat-fp32", "method": "the seed's pipeline: QAT weights -> FP32 export -> quantize_dynamic"}),
        ("int8-qat", lambda d: Q.quantize_static_int8(qat_fp32, d, reader, nodes_to_quantize=nodes, overrides=overrides),
         {"source": "qat-fp32", "method": "quantize_static QDQ with the QAT scales as TensorQuantOverrides",
          "scales_from_qat": len(overrides), "nodes_quantized": len(nodes)}),
        ("fp16", lambda d: Q.convert_fp16(fp32, d),
         {"source": "fp32", "method": "onnxconverter_common float16, keep_io_types",
          "blocked_ops": list(Q.FP16_BLOCK)}),
    ]
    variants = dict(build(name, fn, **meta) for name, fn, meta in tqdm(jobs, desc="ONNX variants", disable=not progress))
    variants["int8-qat"]["scales_match_qat"] = qat_scales_match(cfg, onnx_path(cfg, "int8-qat"))
    payload = {"fp32_mb": fp32_mb, "calibration_split": "validation", "variants": variants}
    write_result(cfg, "quantize", payload)
    return payload


def qat_scales_match(cfg: Config, path: Path) -> dict:
    """Compare the scales stored in the int8-qat file with the ones QAT ended with."""
    sc = read_qat_scales(cfg)
    stored = Q.qdq_scales(path)
    nodes = Q.module_nodes(onnx_path(cfg, "qat-fp32"), sc["activation"])
    act_ok = w_ok = 0
    worst = 0.0
    for name, node in nodes.items():
        rec = stored[node.name]
        a = rec["activation"]
        act_ok += (np.float32(a["scale"][0]) == np.float32(sc["activation"][name][0])
                   and int(a["zero_point"][0]) == sc["activation"][name][1])
        w, wq = np.asarray(rec["weight"]["scale"], np.float32), np.asarray(sc["weight"][name][0], np.float32)
        rel = float(np.max(np.abs(w - wq) / wq))
        worst = max(worst, rel)
        w_ok += rel <= 1e-6
    return {"layers": len(nodes), "activation_scales_equal": int(act_ok), "weight_scales_equal": int(w_ok),
            "max_weight_scale_rel_diff": worst}


# --------------------------------------------------------------------------- 06 evaluate
REFERENCE = "pytorch-fp32"


def variant_table(cfg: Config, baselines: bool = False) -> dict:
    """name -> (runtime, artifact path) for every variant: PyTorch FP32, the PyTorch fake-quant
    QAT model, and every ONNX file (export + quantize steps). ``baselines`` adds what a user could
    run instead, built in memory from FP32: PyTorch's own dynamic INT8
    (``torch.ao.quantization.quantize_dynamic``) and PyTorch in bfloat16 (fast on CPUs with
    AVX512-BF16 or AMX)."""
    q = load_result(cfg, "quantize")["variants"]
    table = {REFERENCE: ("pytorch", checkpoint_dir(cfg) / "model.safetensors")}
    if baselines:
        table["pytorch-int8-dynamic"] = ("pytorch", checkpoint_dir(cfg) / "model.safetensors")
        table["pytorch-bf16"] = ("pytorch", checkpoint_dir(cfg) / "model.safetensors")
    table["pytorch-qat-fakequant"] = ("pytorch", cfg.artifacts_dir / "qat_fakequant.safetensors")
    table["onnx-fp32"] = ("onnxruntime", onnx_path(cfg, "fp32"))
    for name, v in q.items():
        table[f"onnx-{name}"] = ("onnxruntime", Path(cfg.root) / v["path"])
    return table


def make_predictor(cfg: Config, name: str, threads=None, batch_size=None, tokenizer=None, spinning: bool = False,
                   spin_stop: bool = False):
    """The predictor of one variant by name (see ``variant_table``); ``spinning``: ONNX Runtime's
    threads busy-wait between ops (its default; off unless one model runs at a time); ``spin_stop``:
    and stop when a call returns (``predict.ort_session``)."""
    threads = threads or cfg.threads
    bs = batch_size or cfg.eval.batch_size
    table = variant_table(cfg, baselines=True)
    if name not in table:
        raise KeyError(f"unknown variant {name!r}; known: {', '.join(table)}")
    runtime, path = table[name]
    if runtime == "onnxruntime":
        tok = tokenizer or M.load_tokenizer(str(checkpoint_dir(cfg)))
        return OrtPredictor(path, tok, cfg.model.max_length, bs, threads, name=name, spinning=spinning,
                            spin_stop=spin_stop)
    if name == "pytorch-qat-fakequant":
        model, tok = load_qat_model(cfg)
    else:
        model, tok = M.load_checkpoint(checkpoint_dir(cfg), attn="sdpa")
        if name == "pytorch-bf16":
            import torch
            model = model.to(torch.bfloat16)
        if name == "pytorch-int8-dynamic":
            import warnings

            import torch
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return TorchPredictor(model, tokenizer or tok, cfg.model.max_length, bs, threads, name=name)


def predictors(cfg: Config, baselines: bool = False, **kw) -> dict:
    tok = M.load_tokenizer(str(checkpoint_dir(cfg)))
    return {n: make_predictor(cfg, n, tokenizer=tok, **kw) for n in variant_table(cfg, baselines)}


def run_evaluate(cfg: Config, progress: bool = True) -> dict:
    from .bench import interleaved_latency

    test = D.load_splits(cfg)["test"]
    labels = labels_of(cfg)
    texts, y = test["text"].tolist(), test["label"].to_numpy()
    table, preds_by = variant_table(cfg), predictors(cfg)
    preds, rows, confidences = {}, {}, {}
    for name, pr in preds_by.items():
        runtime, path = table[name]
        proba = pr.predict_proba(texts, progress=progress)
        preds[name], confidences[name] = proba.argmax(-1), proba.max(-1)
        rows[name] = {"runtime": runtime, "path": str(Path(path).relative_to(cfg.root)),
                      "size_mb": M.file_size_mb(path)}
    fp32_mb = rows["onnx-fp32"]["size_mb"]
    scores = E.evaluate_variants(y, preds, reference=REFERENCE, reps=cfg.eval.bootstrap,
                                 confidence=cfg.eval.confidence, seed=cfg.seed)
    lat_texts = test.sample(n=min(cfg.eval.latency_examples, len(test)), random_state=cfg.seed)["text"].tolist()
    latency = interleaved_latency(preds_by, lat_texts, progress=progress)
    for name in rows:
        rows[name].update(scores[name])
        rows[name]["size_ratio_to_onnx_fp32"] = rows[name]["size_mb"] / fp32_mb
        rows[name]["latency_b1"] = latency[name]
        rows[name]["predictions"] = preds[name].tolist()
        rows[name]["confidence"] = np.round(confidences[name], 5).tolist()
    fq = preds["pytorch-qat-fakequant"]
    # the same QAT model evaluated with the integer kernel's arithmetic (exact integer sums, then
    # the float32 scales) instead of float32 sums of dequantized values
    from .qat import set_integer_eval

    qmodel, qtok = load_qat_model(cfg)
    integer = TorchPredictor(set_integer_eval(qmodel), qtok, cfg.model.max_length, cfg.eval.batch_size,
                             cfg.threads, name="pytorch-qat-integer").predict(texts, progress=progress)
    for name in ("onnx-int8-qat", "onnx-int8-qat-seed"):
        rows[name]["agreement_with_qat_fakequant"] = float(np.mean(preds[name] == fq))
        rows[name]["agreement_with_qat_integer"] = float(np.mean(preds[name] == integer))
    rows["pytorch-qat-fakequant"]["agreement_integer_vs_float_fakequant"] = float(np.mean(integer == fq))
    payload = {"reference": REFERENCE, "labels": labels, "n_test": len(y),
               "majority_class_accuracy": float(np.bincount(y, minlength=len(labels)).max() / len(y)),
               "latency_note": (f"batch 1, {len(lat_texts)} test texts, tokenization excluded, variants "
                                f"interleaved, {cfg.threads} threads; a first look: see the benchmark for more"),
               "variants": rows}
    write_result(cfg, "evaluate", payload)
    return payload
