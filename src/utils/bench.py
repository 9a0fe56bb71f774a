"""Latency, throughput and memory measurement (the benchmark step itself is ``pipeline.run_bench``).

``time_calls`` times several predictors on the same inputs, interleaved in short turns, so
drift on a shared machine hits all of them alike; ``predecessor_effect`` measures what the
previous runtime's threads, still busy on the cores, cost a call; ``interleaved_latency`` is the
quick call-by-call look the evaluation uses. What ONNX Runtime runs (operators, placement,
operator profiles) is ``ort_inspect``. GPU paths: ONNX Runtime with I/O binding, PyTorch per
dtype (``torch_dtype_latency``), skipped with a note where no GPU is present.
"""
from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnxruntime as ort
import psutil
import torch
import transformers
from tqdm.auto import tqdm

from . import variants as V
from .bench_runs import relative_range
from .config import load_config
from .modeling import load_checkpoint
from .ort_inspect import node_placement
from .predict import ort_session
from .torch_int8 import quantize_w8a8


def error_record(e: BaseException) -> dict:
    """What a measurement that failed leaves in the results: the exception, shortened."""
    return {"error": f"{type(e).__name__}: {e}"[:500]}


def summarize(times_ms: Sequence[float]) -> dict:
    t = np.asarray(times_ms, dtype=float)
    return {"n": int(t.size), "median_ms": float(np.median(t)), "mean_ms": float(t.mean()),
            "std_ms": float(t.std(ddof=1)) if t.size > 1 else 0.0,
            "p10_ms": float(np.percentile(t, 10)), "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99))}


def _timed(call, reps: int, warmup: int, sync) -> list:
    """``call()`` run ``warmup`` + ``reps`` times, each between two ``sync()`` (a CUDA synchronize, or
    nothing on the CPU); the last ``reps`` times in ms."""
    times = []
    for i in range(reps + warmup):
        sync()
        t0 = time.perf_counter()
        call()
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def interleaved_latency(predictors: dict, texts: Sequence[str], warmup: int = 5, progress: bool = False) -> dict:
    """Batch-1 latency (tokenization excluded) of each predictor over ``texts``, round-robin.

    ``predictors``: name -> Predictor sharing one tokenizer and max_length; all see the same inputs.
    """
    if not texts:
        raise ValueError("interleaved_latency: no texts")
    first = next(iter(predictors.values()))
    inputs = [first.encode([t]) for t in tqdm(texts, desc="encode", disable=not progress, leave=False)]
    times = time_calls(predictors, inputs, reps=len(inputs), warmup=warmup)
    return {n: summarize(t) for n, t in times.items()}


# --------------------------------------------------------------------------- inputs of a given shape
def fixed_length_batch(tokenizer, texts: Sequence[str], length: int, batch: int, offset: int = 0) -> dict:
    """``batch`` rows of exactly ``length`` real tokens (no padding): consecutive test texts are
    concatenated until the length is filled, so every variant sees the same realistic inputs."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    stream = [t for row in ids for t in row]
    if not stream:
        raise ValueError("fixed_length_batch: the texts have no tokens")
    body = length - 2
    rows = []
    for b in range(batch):
        start = ((offset + b) * body) % len(stream)
        row = itertools.islice(itertools.cycle(stream), start, start + body)
        rows.append([tokenizer.cls_token_id, *row, tokenizer.sep_token_id])
    input_ids = np.asarray(rows, dtype=np.int64)
    return {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids),
            "token_type_ids": np.zeros_like(input_ids)}


def time_calls(predictors: dict, inputs: Sequence[dict], reps: int, warmup: int = 3, block: int = 1,
               block_warmup: int = 0) -> dict:
    """Interleaved timing of ``predictor._forward`` on pre-encoded ``inputs`` (cycled), ms.

    Each predictor in turn runs ``block_warmup`` untimed calls and then ``block`` timed ones, the
    order rotating every turn (``block=1, block_warmup=0``: plain round-robin call by call). The
    untimed calls absorb the previous model's threads still busy on the cores (see
    ``predecessor_effect``). Every predictor sees the same inputs; drift is spread over all of them."""
    names = list(predictors)
    for n in names:
        for enc in inputs[:warmup]:
            predictors[n]._forward(enc)
    times = {n: [] for n in names}
    for j, start in enumerate(range(0, reps, block)):
        for n in names[j % len(names):] + names[:j % len(names)]:
            for i in range(start, start + block_warmup):
                predictors[n]._forward(inputs[i % len(inputs)])
            for i in range(start, min(start + block, reps)):
                enc = inputs[i % len(inputs)]
                t0 = time.perf_counter()
                predictors[n]._forward(enc)
                times[n].append((time.perf_counter() - t0) * 1e3)
    return times


def predecessor_effect(predictors: dict, runtimes: dict, inputs: Sequence[dict], reps: int, seed: int = 0) -> dict:
    """Call by call, in a new random order for every input: each predictor's latency overall and
    split by the runtime (``runtimes[name]``) of the call just before it. A runtime whose threads
    keep spinning after its call (PyTorch's OpenMP pool) slows whichever model runs next."""
    rng = np.random.default_rng(seed)
    names = list(predictors)
    times = {n: [] for n in names}
    after = {n: {} for n in names}
    prev = None
    for i in range(reps):
        enc = inputs[i % len(inputs)]
        for k in rng.permutation(len(names)):
            n = names[k]
            t0 = time.perf_counter()
            predictors[n]._forward(enc)
            dt = (time.perf_counter() - t0) * 1e3
            times[n].append(dt)
            if prev is not None:
                after[n].setdefault(runtimes[prev], []).append(dt)
            prev = n
    return {n: {**summarize(times[n]), "after": {rt: summarize(v) for rt, v in sorted(after[n].items())}}
            for n in names}


# --------------------------------------------------------------------------- processes, providers
def available_providers() -> list:
    return ort.get_available_providers()


def gpu_status() -> dict:
    """What GPU paths exist here, with the reason when one does not."""
    out = {"torch_cuda": torch.cuda.is_available(), "ort_providers": available_providers(),
           "ort_build": f"{ort.__version__} ({ort.get_device()}, {Path(ort.__file__).parent})"}
    out["torch_device"] = torch.cuda.get_device_name(0) if out["torch_cuda"] else None
    if not out["torch_cuda"]:
        out["note"] = "no CUDA device visible to PyTorch: GPU measurements skipped"
    elif "CUDAExecutionProvider" not in out["ort_providers"]:
        out["note"] = "GPU present but onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    return out


# the spinning check: blocks long enough, and enough untimed calls, for a spinning pool to settle
SPIN_BLOCK, SPIN_WARMUP = 10, 2

def iobinding_latency(path: str | os.PathLike, feed: dict, reps: int, providers: list, device: str = "cuda",
                      warmup: int = 5) -> dict:
    """ONNX Runtime latency with I/O binding: inputs copied to ``device`` once, outputs left there,
    so the timing is the graph and its Memcpy nodes, not the host<->device copies of the feed.
    ``device`` "cuda" with the CUDA / TensorRT providers; "cpu" with the CPU provider (how the
    tests exercise it without a GPU)."""
    if providers[0] not in ort.get_available_providers():
        return {"skipped": f"{providers[0]} is not available in this onnxruntime build"}
    sess = ort_session(path, providers=providers)
    active = sess.get_providers()
    if active[0] != providers[0]:
        return {"skipped": f"{providers[0]} unavailable; the session fell back to {active}"}
    io = sess.io_binding()
    for i in sess.get_inputs():
        io.bind_ortvalue_input(i.name, ort.OrtValue.ortvalue_from_numpy(feed[i.name], device, 0))
    for o in sess.get_outputs():
        io.bind_output(o.name, device)
    # run_with_iobinding is synchronous: it returns once the device work is done
    times = _timed(lambda: sess.run_with_iobinding(io), reps, warmup, sync=lambda: None)
    logits = io.copy_outputs_to_cpu()[0]
    return {**summarize(times), "providers": active, "logits_row0": [float(x) for x in np.ravel(logits)[:8]]}


GPU_EPS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def gpu_provider_chains(available: Sequence[str]) -> list:
    """The GPU execution providers present, each with the CPU provider as its fallback."""
    return [[p, "CPUExecutionProvider"] for p in GPU_EPS if p in available]


def ort_gpu_runs(files: dict, feed: dict, reps: int, chains: list) -> tuple:
    """For each ONNX file (name -> path) and GPU provider chain: the node placement of a profiled
    run, and the latency with I/O binding. Returns (placement: name -> [record per chain],
    latency: provider -> name -> record). With a GPU provider, ONNX Runtime first loads the CUDA and
    cuDNN libraries of the nvidia-* Python packages (``preload_dlls``, where this onnxruntime has it)."""
    if chains:
        if hasattr(ort, "preload_dlls"):
            try:
                ort.preload_dlls()
            except Exception as e:  # noqa: BLE001 - the sessions below then say whether CUDA loaded
                print(f"ort_gpu_runs: preload_dlls failed: {e}", file=sys.stderr)

    def guarded(fn, *args, **kw) -> dict:
        """One file on one provider that fails records its error; the others still run."""
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001
            return {"providers": kw.get("providers") or args[1], **error_record(e)}

    placement = {n: [guarded(node_placement, f, c, feed) for c in chains] for n, f in files.items()}
    latency = {c[0]: {n: guarded(iobinding_latency, f, feed, reps, providers=c, device="cuda")
                      for n, f in files.items()} for c in chains}
    return placement, latency


MEMORY_BATCH = 32                   # texts the memory probe predicts in one call (recorded with its numbers)
MEMORY_SNIPPET = """
import sys
from utils.bench import probe_main
probe_main(sys.argv[1:])
"""


def peak_rss_mb() -> float:
    """This process's peak resident set in MB. On Linux, VmHWM of /proc/self/status, which starts anew
    when a process execs; ``ru_maxrss`` does not: a child started from a large process reports the
    parent's peak (measured: a child of a 2 GB Python process reported 2 GB by ru_maxrss, 13 MB by VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024   # bytes on macOS, KiB elsewhere


def _import_runtimes(cfg) -> None:
    """Import what creating any variant's predictor imports on first use (ONNX Runtime and OpenVINO come with the
    registry): the transformers module of the checkpoint's architecture (transformers imports it lazily, which
    otherwise counts as PyTorch's load time: measured 1.7-1.8 s, against 0.2 s to create the model)."""
    for arch in transformers.AutoConfig.from_pretrained(str(V.checkpoint_dir(cfg))).architectures or []:
        getattr(transformers, arch)


def probe_main(argv: Sequence[str]) -> None:
    """The child of ``fresh_process_memory``: argv = profile, variant, threads. Imports the libraries
    of both runtimes, loads one variant, predicts a batch of MEMORY_BATCH texts and prints one JSON line: peak resident
    set, resident memory the model added after the imports, time to create the predictor (tokenizer
    and model or session)."""
    profile, variant, threads = argv[0], argv[1], int(argv[2])
    cfg = load_config(profile)
    _import_runtimes(cfg)        # the clock and the memory baseline start with every library imported
    before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    p = V.make_predictor(cfg, variant, threads=threads)
    created = time.perf_counter() - t0
    texts = ["a short review", "a much longer review that goes on about the plot and the cast"] * (MEMORY_BATCH // 2)
    p.predict_proba(texts)
    after = psutil.Process().memory_info().rss
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "batch": len(texts),
                      "model_rss_mb": (after - before) / 2**20, "create_seconds": created}))


def fresh_process_memory(profile: str, variant: str, threads: int, root: str) -> dict:
    """Memory of a new Python process that loads one variant and predicts a batch of MEMORY_BATCH texts: its peak
    resident set, and the resident memory the model added once the libraries were imported
    (the imports alone take most of the peak); plus the time to create the predictor."""
    return run_probe(MEMORY_SNIPPET, [profile, variant, str(threads)], root, repr(variant), timeout=600)


def run_probe(snippet: str, args: Sequence[str], root: str, what: str, timeout: int) -> dict:
    """Run a memory probe (``snippet`` with ``args``) in a new Python process in ``root``; its last line of
    output, JSON, as a dict; one clear error naming ``what`` if it fails."""
    r = subprocess.run([sys.executable, "-c", snippet, *args], cwd=root, capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"memory probe of {what} failed: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the benchmark step
# PyTorch on the GPU: each name -> (dtype of the model, int8 weights and activations in its linears)
TORCH_VARIANTS = {"fp32": ("float32", False), "fp16": ("float16", False), "bf16": ("bfloat16", False),
                  "int8": ("float16", True)}
DTYPES = tuple(TORCH_VARIANTS)


def _graph_latency(model, enc: dict, reps: int, warmup: int, eager_logits) -> dict:
    """Latency of one CUDA graph replay of the forward pass on static inputs (no kernel-launch
    overhead: what a server that captures its model gets), and how far its logits are from eager's."""
    static = {k: v.clone() for k, v in enc.items() if k != "attention_mask"}   # all ones: no mask needed
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model(**static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model(**static).logits
    times = _timed(graph.replay, reps, warmup, torch.cuda.synchronize)
    return {**summarize(times), "max_abs_logit_diff_vs_eager": float((out.float() - eager_logits.float()).abs().max())}


def torch_dtype_latency(checkpoint, tok, texts, length: int, batch_sizes, reps: int, device: str = "cuda",
                        dtypes=DTYPES, warmup: int = 5, graphs: bool = True) -> dict:
    """PyTorch eager (sdpa attention) per variant of ``TORCH_VARIANTS`` on ``device``: latency per
    batch size, and how far the logits move from the first variant's (FP32) on the same inputs.
    ``int8``: every linear layer with int8 weights and per-token int8 activations (``torch_int8``),
    the rest in fp16. On CUDA, with ``graphs``, also the latency of a CUDA graph replay of the same
    forward pass. Written for the GPU, where it runs with whatever PyTorch / transformers that
    machine has; it runs on the CPU too, which is how the tests exercise it without a GPU. A variant
    that fails records its error and the others still run."""
    cuda = str(device).startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    probe = fixed_length_batch(tok, texts, length, max(batch_sizes))
    out, ref = {}, None
    for name in dtypes:
        dtype, int8 = TORCH_VARIANTS[name]
        key = f"pytorch-{device.split(':')[0]}-{name}"
        try:
            model, _ = load_checkpoint(Path(checkpoint), attn="sdpa")
            model = model.to(device, dtype=getattr(torch, dtype)).eval()
            rec = {"dtype": dtype}
            if int8:
                layers = quantize_w8a8(model)
                rec["int8_linears"], rec["float_linears"] = len(layers["quantized"]), layers["kept"]
            res, graph_res = {}, {}
            with torch.inference_mode():
                for b in batch_sizes:
                    enc = {k: torch.from_numpy(v).to(device)
                           for k, v in fixed_length_batch(tok, texts, length, b).items()}
                    times = _timed(lambda: model(**enc), reps, warmup, sync)
                    res[str(b)] = {**summarize(times), "texts_per_s": 1e3 * b / float(np.median(times))}
                    if cuda and graphs:
                        try:
                            g = _graph_latency(model, enc, reps, warmup, model(**enc).logits)
                            graph_res[str(b)] = {**g, "texts_per_s": 1e3 * b / g["median_ms"]}
                        except Exception as e:  # noqa: BLE001 - recorded; eager numbers stand
                            graph_res[str(b)] = error_record(e)
                logits = model(**{k: torch.from_numpy(v).to(device) for k, v in probe.items()}).logits
                logits = logits.float().cpu().numpy()
            ref = logits if ref is None else ref
            rec.update({"batch_size": res, "max_abs_logit_diff_vs_first": float(np.abs(logits - ref).max()),
                        "argmax_agreement_vs_first": float(np.mean(logits.argmax(-1) == ref.argmax(-1)))})
            if graph_res:
                rec["cuda_graph"] = graph_res
            out[key] = rec
            model = None      # freed before the next dtype loads
        except Exception as e:  # noqa: BLE001 - one dtype that fails (e.g. no bf16 kernels) loses only itself
            out[key] = error_record(e)
        if cuda:
            torch.cuda.empty_cache()
    return out


# --------------------------------------------------------------------------- the benchmark step's analysis
@dataclass
class BenchRaw:
    """The benchmark's timings before any analysis (``summarise`` makes bench.json from them). ``cpu``: thread
    count -> {"variants": the variants timed, "rounds": [variant -> ms per call], and at all cores "seq_length" /
    "batch_size": {setting: variant -> ms}, "per_call", "spinning": variant -> ms}; ``profiles``: thread count ->
    ONNX Runtime's operator profile per file; ``gpu_place``: file -> its GPU placement records."""
    names: list
    sweep: list
    length: int
    all_threads: int
    protocol: dict
    gpu: dict
    cpu: dict = field(default_factory=dict)
    profiles: dict = field(default_factory=dict)
    profile_threads: int = 1
    gpu_place: dict = field(default_factory=dict)
    openvino_profile: Optional[dict] = None
    memory: Optional[dict] = None
    left_out: list = field(default_factory=list)


def summarise(raw: BenchRaw) -> dict:
    """bench.json's fields: per thread count the headline (every call's summary, the median of each round and
    their spread), the sweeps, the protocol checks; placement and what the profiler costs; speed-ups against ONNX
    Runtime FP32 and PyTorch FP32 (overall and round by round, where drift common to a round cancels)."""
    result = {"variants": raw.names, "length": raw.length, "cpu": {}, "gpu": raw.gpu,
              **({"left_out_without_qat": raw.left_out} if raw.left_out else {}), "protocol": raw.protocol}
    for threads, t in raw.cpu.items():
        result["cpu"][f"threads_{threads}"] = _threads_record(t, raw.sweep)
    cpu_place = raw.profiles[raw.profile_threads]
    result["placement"] = {n: [cpu_place[n]] + raw.gpu_place[n] for n in cpu_place}
    result["profiler_overhead"] = {}
    for t, prof in raw.profiles.items():
        ref = result["cpu"].get(f"threads_{t}", {}).get("headline", {})
        result["profiler_overhead"][f"threads_{t}"] = {
            n: {"profiled_call_ms": p["profiled_call_ms"], "unprofiled_median_ms": ref[n]["median_ms"],
                "slowdown": p["profiled_call_ms"] / ref[n]["median_ms"] - 1}
            for n, p in prof.items() if n in ref and p["profiled_call_ms"]}
    if raw.openvino_profile is not None:
        result["openvino_profile"] = raw.openvino_profile
    if raw.memory is not None:
        result["memory"] = raw.memory
    ref, onnx, torch_ = result["cpu"][f"threads_{raw.all_threads}"]["headline"], V.onnx_reference(), V.REFERENCE
    result["speedup_vs_onnx_fp32"] = {n: ref[onnx]["median_ms"] / ref[n]["median_ms"]
                                      for n in raw.names if onnx in ref}
    result["speedup_vs_pytorch_fp32"] = {n: ref[torch_]["median_ms"] / ref[n]["median_ms"]
                                         for n in raw.names if torch_ in ref}
    if onnx in ref:   # per round: drift common to a round cancels in the ratio
        fp = ref[onnx]["round_medians_ms"]
        rr = {n: [a / c for a, c in zip(fp, ref[n]["round_medians_ms"])] for n in raw.names}
        result["speedup_vs_onnx_fp32_rounds"] = {n: {"ratios": r, "spread": relative_range(r)} for n, r in rr.items()}
    return result


def _threads_record(t: dict, sweep: list) -> dict:
    rec = {"headline": {}}
    for n in t["variants"]:
        medians = [float(np.median(r[n])) for r in t["rounds"]]
        rec["headline"][n] = {**summarize([x for r in t["rounds"] for x in r[n]]), "round_medians_ms": medians,
                              "spread": relative_range(medians)}
    if "seq_length" in t:
        rec["seq_length"] = {L: {n: summarize(ms[n]) for n in sweep} for L, ms in t["seq_length"].items()}
        rec["batch_size"] = {bs: {n: {**summarize(ms[n]), "texts_per_s": 1e3 * int(bs) / float(np.median(ms[n]))}
                                  for n in sweep} for bs, ms in t["batch_size"].items()}
    if "per_call" in t:
        rec["per_call"] = t["per_call"]
    if "spinning" in t:
        rec["spinning"] = {**t["spinning"]["settings"], "variants": {n: summarize(t["spinning"]["ms"][n])
                                                                    for n in sweep}}
    return rec
