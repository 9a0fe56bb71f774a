"""Cost against model size: BERT encoders from tiny to large, FP32 against INT8 and FP16 (``make sizes``).

Speed, file size and memory depend on a model's shape, not on what it learned, so every size is built
randomly initialised (seeded by the profile's seed; the figure and the paper say so) with the default
model's BERT vocabulary: no download, no training. For each size, one at a time, on the same inputs (test
texts concatenated to exact lengths, ``bench.fixed_length_batch``):

* the PyTorch FP32 model (PyTorch's fused attention) and its ONNX export (parity-checked), and the
  registry's recipes named in ``sizes.variants`` built from it (those that need no calibration data and
  no QAT: dynamic INT8, the transformer optimizer then dynamic INT8, FP16);
* file sizes; batch-1 latency at each of ``sizes.lengths``; throughput at ``sizes.batch_size`` texts of
  the longest length; the variants interleaved in the benchmark's turns (``bench.block``,
  ``bench.block_warmup``, ONNX Runtime's threads spinning within a call and stopped after it), with as
  many timed calls as fit ``sizes.budget_s`` (between ``sizes.min_reps`` and ``sizes.reps``);
* the peak resident memory of a fresh process that loads the file and predicts one throughput batch;
* ONNX Runtime's operator profile at the longest length (``bench.profile_threads``): the share of the
  matrix products, from which the report draws Amdahl's bound as the model grows;
* OpenVINO's variants named in ``sizes.variants`` (``openvino-fp32``: the same FP32 export; ``openvino-int8-nncf``:
  NNCF post-training quantization of it, calibrated on ``NNCF_TEXTS`` of the texts: speed, not accuracy, is measured
  here), timed in the same turns;
* the CUDA provider's predicted placement and Memcpy nodes of every ONNX file (``cuda_placement``).

The best INT8 file of a size is its fastest integer variant at batch 1 and the longest length; its
speed-ups over ONNX FP32 and PyTorch FP32 are recorded per length. The files are deleted once a size is
measured (BERT-large's take 4 GB); ``results/<profile>/sizes.json`` keeps the measurements.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import psutil
import torch
from tqdm.auto import tqdm
from transformers import BertConfig, BertForSequenceClassification

from . import bench as B
from . import cuda_placement as C
from . import data as D
from . import modeling as M
from . import onnx_export as X
from . import openvino_rt as OR
from . import variants as V
from .config import Config, ConfigError
from .ort_inspect import operator_profiles
from .predict import OrtPredictor, TorchPredictor, ort_session
from .results import write_result


@dataclass(frozen=True)
class Size:
    """One encoder shape: ``layers`` x ``hidden`` with ``heads`` attention heads and a feed-forward
    layer of ``intermediate`` (None: 4 x hidden, as in BERT)."""
    name: str
    layers: int
    hidden: int
    heads: int
    intermediate: Optional[int] = None

    def __post_init__(self):
        bad = [k for k in ("layers", "hidden", "heads") if not isinstance(getattr(self, k), int)
               or isinstance(getattr(self, k), bool) or getattr(self, k) < 1]
        if bad or self.hidden % self.heads or (self.intermediate is not None and self.intermediate < 1):
            raise ConfigError(f"sizes.models {self.name!r}: layers, hidden, heads (and intermediate) must be positive "
                              f"integers with hidden divisible by heads; got layers={self.layers}, "
                              f"hidden={self.hidden}, heads={self.heads}, intermediate={self.intermediate}")

    @property
    def ffn(self) -> int:
        return self.intermediate or 4 * self.hidden

    def bert_config(self, vocab_size: int, num_labels: int, max_position: int = 512) -> BertConfig:
        return BertConfig(vocab_size=vocab_size, hidden_size=self.hidden, num_hidden_layers=self.layers,
                          num_attention_heads=self.heads, intermediate_size=self.ffn,
                          max_position_embeddings=max_position, num_labels=num_labels)


# Google's BERT miniatures (Turc et al.; tiny / mini / small / medium), all-MiniLM-L6-v2's shape, BERT-base, -large
SIZES = {s.name: s for s in (
    Size("bert-tiny", 2, 128, 2), Size("bert-mini", 4, 256, 4), Size("bert-small", 4, 512, 8),
    Size("minilm-l6", 6, 384, 12), Size("bert-medium", 8, 512, 8), Size("bert-base", 12, 768, 12),
    Size("bert-large", 24, 1024, 16),
)}
SIZE_KEYS = ("name", "layers", "hidden", "heads", "intermediate")
REFERENCES = ("pytorch-fp32", "onnx-fp32")
BUILDABLE = (V.Dynamic, V.Optimize, V.FP16)      # recipes that need no calibration data and no QAT
OPENVINO = ("openvino-fp32", "openvino-int8-nncf")   # OpenVINO variants the sweep builds from the FP32 export alone
NNCF_TEXTS = 64                                  # calibration texts of NNCF's model (random weights: speed only)


def resolve(cfg: Config) -> list:
    """The sizes of ``sizes.models``: preset names (``SIZES``) or {name, layers, hidden, heads[, intermediate]}."""
    out = []
    for i, m in enumerate(cfg.sizes.models):
        if isinstance(m, str):
            if m not in SIZES:
                raise ConfigError(f"sizes.models[{i}]: unknown size {m!r}; known: {', '.join(SIZES)} (or give "
                                  f"{{name, layers, hidden, heads}})")
            out.append(SIZES[m])
        elif isinstance(m, dict):
            unknown, missing = set(m) - set(SIZE_KEYS), {"name", "layers", "hidden", "heads"} - set(m)
            if unknown or missing:
                raise ConfigError(f"sizes.models[{i}]: {'unknown key(s) ' + str(sorted(unknown)) if unknown else ''}"
                                  f"{'; ' if unknown and missing else ''}"
                                  f"{'missing key(s) ' + str(sorted(missing)) if missing else ''}; a size is a preset "
                                  f"name or {{name, layers, hidden, heads[, intermediate]}}")
            out.append(Size(**m))
        else:
            raise ConfigError(f"sizes.models[{i}]: expected a size name or a mapping, got {m!r}")
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"sizes.models names a size twice: {names}")
    return out


def check_variants(cfg: Config) -> list:
    """``sizes.variants``, each a registered ONNX variant the sweep can build from the FP32 export alone."""
    V.check_names(cfg, cfg.sizes.variants, "sizes.variants")
    for n in cfg.sizes.variants:
        v = V.get(n)
        if v.runtime == "openvino":
            if n not in OPENVINO:
                raise ConfigError(f"sizes.variants: {n} runs a file built with calibration data or QAT scales; the "
                                  f"sweep's OpenVINO variants are {', '.join(OPENVINO)}")
            continue
        chain = v
        while chain.recipe is not None and chain.runtime == "onnxruntime":
            if not isinstance(chain.recipe, BUILDABLE):
                raise ConfigError(f"sizes.variants: {n} is built with {type(chain.recipe).__name__}, which needs "
                                  f"calibration data or QAT scales; the sweep's randomly initialised models have "
                                  f"neither: choose among the dynamic INT8, optimized and FP16 variants")
            chain = V.get(f"onnx-{chain.source}")
        if n in REFERENCES or v.runtime != "onnxruntime" or chain.name != "onnx-fp32":
            raise ConfigError(f"sizes.variants: {n} is not an ONNX file built from the FP32 export (the references "
                              f"{' and '.join(REFERENCES)} are always measured)")
    return [*REFERENCES, *[n for n in cfg.sizes.variants if n not in REFERENCES]]


def check(cfg: Config) -> None:
    """Every sizes setting a profile gives, checked before any step runs (preflight)."""
    resolve(cfg)
    check_variants(cfg)


def _build_chain(n: str, work: Path, ctx: V.BuildContext, built: dict) -> Path:
    """The ONNX file of variant ``n`` in ``work``, its sources built first; ``built``: name -> seconds."""
    v = V.get(n)
    dst = work / f"{v.stem}.onnx"
    if n in built:
        return dst
    src = _build_chain(f"onnx-{v.source}", work, ctx, built)
    t0 = time.perf_counter()
    V.handler(v.recipe)(v.recipe, src, dst, ctx)
    built[n] = time.perf_counter() - t0
    return dst


def _reps(call_ms: dict, budget_s: float, lo: int, hi: int) -> int:
    """Timed calls per variant that fit ``budget_s`` given one call of each, between ``lo`` and ``hi``."""
    per_rep = sum(call_ms.values()) / 1e3
    return int(min(hi, max(lo, budget_s // per_rep if per_rep > 0 else hi)))


def _one_call_ms(predictors: dict, enc: dict) -> dict:
    out = {}
    for n, p in predictors.items():
        p._forward(enc)                      # warm
        t0 = time.perf_counter()
        p._forward(enc)
        out[n] = (time.perf_counter() - t0) * 1e3
    return out


MEMORY_SNIPPET = """
import sys
from utils.sizes import probe_main
probe_main(sys.argv[1:])
"""


def probe_main(argv) -> None:
    """The child of ``fresh_process_memory``: argv = file (ONNX, OpenVINO IR) or checkpoint folder, threads, batch,
    length[, runtime]. The runtimes are imported with this module, before the baseline; it loads the model, predicts
    one batch of that shape and prints one JSON line: peak resident set, the resident memory the model added, load
    time."""
    path, threads, batch, length = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    runtime = argv[4] if len(argv) > 4 else "onnxruntime"
    before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    if path.is_dir():
        model, _ = M.load_checkpoint(path, attn="sdpa")
        torch.set_num_threads(threads)
        forward = lambda feed: model(**{k: torch.from_numpy(v) for k, v in feed.items()})  # noqa: E731
    elif runtime == "openvino":
        req = OR.compile_model(path, threads).create_infer_request()
        forward = lambda feed: req.infer(feed)  # noqa: E731
    else:
        sess = ort_session(path, threads=threads)
        inputs = {i.name for i in sess.get_inputs()}
        forward = lambda feed: sess.run(None, {k: v for k, v in feed.items() if k in inputs})  # noqa: E731
    created = time.perf_counter() - t0
    ids = (np.arange(batch * length, dtype=np.int64).reshape(batch, length) % 20000) + 1000
    with torch.inference_mode():
        forward({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    after = psutil.Process().memory_info().rss
    print(json.dumps({"peak_rss_mb": B.peak_rss_mb(), "model_rss_mb": (after - before) / 2**20,
                      "create_seconds": created}))


def fresh_process_memory(path: Path, threads: int, batch: int, length: int, root: str,
                         runtime: Optional[str] = "onnxruntime") -> dict:
    return B.run_probe(MEMORY_SNIPPET, [str(path), str(threads), str(batch), str(length), runtime or "onnxruntime"],
                       root, path.name, timeout=1200)


def measure_size(size: Size, cfg: Config, tok, texts: list, num_labels: int, work: Path,
                 progress: bool = True) -> dict:
    """Build one size's files in ``work`` and measure them (see the module's docstring)."""
    z, b = cfg.sizes, cfg.bench
    names = check_variants(cfg)
    threads = cfg.threads
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = BertForSequenceClassification(size.bert_config(tok.vocab_size, num_labels,
                                                           max_position=max(512, max(z.lengths)))).eval()
    params = int(sum(p.numel() for p in model.parameters()))
    ckpt = M.save_checkpoint(model, tok, work / "pytorch-fp32")
    del model
    L = max(z.lengths)
    built = {}
    t0 = time.perf_counter()
    eager, _ = M.load_checkpoint(ckpt, attn="eager")      # the export's attention, as step 04's
    parity = X.export_with_parity(eager, tok, work / "fp32.onnx", texts[:16], max_length=L, opset=cfg.export.opset,
                                  atol=cfg.export.parity_atol, threads=threads)
    built["onnx-fp32"] = time.perf_counter() - t0
    del eager
    ctx = V.BuildContext(tokenizer=tok, max_length=L, settings=cfg.quantize, num_heads=size.heads,
                         hidden_size=size.hidden)
    files = {"pytorch-fp32": ckpt, "onnx-fp32": work / "fp32.onnx"}
    for n in names[2:]:
        if n == "openvino-fp32":
            files[n] = files["onnx-fp32"]
        elif n == "openvino-int8-nncf":
            t0 = time.perf_counter()
            feeds = [{k: v.astype(np.int64) for k, v in
                      tok(t, truncation=True, max_length=L, return_tensors="np").items()} for t in texts[:NNCF_TEXTS]]
            files[n] = work / "int8-nncf.xml"
            OR.nncf_int8(files["onnx-fp32"], files[n], feeds)
            built[n] = time.perf_counter() - t0
        else:
            files[n] = _build_chain(n, work, ctx, built)
    ort_names = [n for n in names[1:] if V.runtime_of(n) == "onnxruntime"]
    placement = C.predict_files({n: files[n] for n in ort_names})
    sizes_mb = {n: M.file_size_mb(ckpt / "model.safetensors" if n == "pytorch-fp32" else p) for n, p in files.items()}

    torch.set_num_threads(threads)
    spin_stop = b.spinning and b.spin_stop
    model, _ = M.load_checkpoint(ckpt, attn="sdpa")
    preds = {"pytorch-fp32": TorchPredictor(model, tok, L, z.batch_size, threads, name="pytorch-fp32")}
    preds.update({n: OrtPredictor(files[n], tok, L, z.batch_size, threads, name=n, spinning=b.spinning,
                                  spin_stop=spin_stop) if n in ort_names else
                  OR.OvPredictor(files[n], tok, L, z.batch_size, threads, name=n) for n in names[1:]})
    blocks = {"block": b.block, "block_warmup": b.block_warmup}
    latency, reps = {}, {}
    for length in z.lengths:
        inputs = [B.fixed_length_batch(tok, texts, length, 1, offset=i) for i in range(z.reps)]
        k = _reps(_one_call_ms(preds, inputs[0]), z.budget_s, z.min_reps, z.reps)
        t = B.time_calls(preds, inputs, k, **blocks)
        latency[str(length)] = {n: B.summarize(t[n]) for n in names}
        reps[f"latency_{length}"] = k
    thr_in = [B.fixed_length_batch(tok, texts, L, z.batch_size, offset=i * z.batch_size)
              for i in range(z.throughput_reps)]
    k = _reps(_one_call_ms(preds, thr_in[0]), z.budget_s, max(2, z.min_reps // 2), z.throughput_reps)
    t = B.time_calls(preds, thr_in, k, warmup=0, block=max(1, k // 2), block_warmup=0)
    throughput = {n: {**B.summarize(t[n]), "texts_per_s": 1e3 * z.batch_size / float(np.median(t[n]))}
                  for n in names}
    reps["throughput"] = k
    del preds, model
    feed = B.fixed_length_batch(tok, texts, L, 1)
    onnx_files = {n: files[n] for n in ort_names}
    prof = operator_profiles(onnx_files, ["CPUExecutionProvider"], feed, reps=z.profile_reps,
                             threads=b.profile_threads, spinning=b.spinning, spin_stop=spin_stop)
    profiles = {n: {k2: p[k2] for k2 in ("kernel_ms", "matmul_ms", "op_ms", "profiled_call_ms", "threads")}
                for n, p in prof.items()}
    memory = ({n: fresh_process_memory(files[n], threads, z.batch_size, L, cfg.root, V.runtime_of(n))
               for n in tqdm(names, desc=f"{size.name}: fresh-process memory", disable=not progress, leave=False)}
              if z.memory else None)
    ints = [n for n in names if V.is_onnx_int8(n)]
    best = min(ints, key=lambda n: latency[str(L)][n]["median_ms"]) if ints else None
    rec = {**asdict(size), "intermediate": size.ffn, "parameters": params,
           "parity": {k2: parity[k2] for k2 in ("max_abs_diff", "argmax_identical")},
           "build_seconds": built, "file_mb": sizes_mb, "reps": reps, "latency": latency,
           "throughput": throughput, "profiles": profiles, "memory": memory, "best_int8": best,
           "cuda_placement": placement}
    for ref in REFERENCES:
        rec[f"speedup_vs_{ref.replace('-', '_')}"] = {
            ln: {n: v[ref]["median_ms"] / v[n]["median_ms"] for n in names} for ln, v in latency.items()}
    rec["throughput_speedup_vs_onnx_fp32"] = {n: throughput[n]["texts_per_s"] / throughput["onnx-fp32"]["texts_per_s"]
                                              for n in names}
    rec["seconds"] = time.perf_counter() - t_start
    return rec


def run_sizes(cfg: Config, progress: bool = True) -> dict:
    """The sweep: every size of ``sizes.models`` measured, one at a time, its files deleted after it."""
    if cfg.replicate is not None:
        raise ValueError(f"{cfg.run_name} is one seed's replicate: the model-size sweep trains nothing, run it on "
                         f"the profile itself")
    t_start = time.perf_counter()
    sizes = resolve(cfg)
    names = check_variants(cfg)
    tok = M.load_tokenizer(str(M.packaged_model_dir(None, cfg.root)))     # BERT's uncased WordPiece vocabulary
    splits = D.load_splits(cfg)
    texts = splits["test"]["text"].tolist()[:cfg.bench.texts]
    num_labels = int(splits["train"]["label"].nunique())
    work_root = cfg.artifacts_dir / "sizes"
    models = []
    for size in tqdm(sizes, desc="model sizes", disable=not progress):
        work = work_root / size.name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            models.append(measure_size(size, cfg, tok, texts, num_labels, work, progress=progress))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    result = {"random_init": True, "seed": cfg.seed, "tokenizer": "all-MiniLM-L6-v2's (BERT uncased WordPiece)",
              "vocab_size": tok.vocab_size, "num_labels": num_labels, "lengths": list(cfg.sizes.lengths),
              "batch_size": cfg.sizes.batch_size, "variants": names,
              "protocol": {"block": cfg.bench.block, "block_warmup": cfg.bench.block_warmup,
                           "ort_spinning": cfg.bench.spinning,
                           "ort_spin_stop": cfg.bench.spinning and cfg.bench.spin_stop,
                           "budget_s": cfg.sizes.budget_s, "min_reps": cfg.sizes.min_reps, "max_reps": cfg.sizes.reps,
                           "profile_threads": cfg.bench.profile_threads},
              "models": models, "seconds": time.perf_counter() - t_start}
    write_result(cfg, "sizes", result, threads=cfg.threads)
    return result
