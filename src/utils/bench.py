"""Latency measurement and what ONNX Runtime actually runs.

``time_calls`` times several predictors on the same inputs, interleaved in short turns, so
drift on a shared machine hits all of them alike; ``predecessor_effect`` measures what the
previous runtime's threads, still busy on the cores, cost a call; ``interleaved_latency`` is the
quick call-by-call look the evaluation uses. ``operator_profiles`` reads ONNX Runtime's profiler:
which provider ran each node, Memcpy nodes, kernel time per operator type. ``session_ops`` lists
the operators of the graph ONNX Runtime executes after its own optimizations (e.g.
DequantizeLinear + MatMul fused into MatMulIntegerToFloat), which is the proof that an INT8 file
runs integer kernels.
"""
from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnx
from tqdm.auto import tqdm


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


def session_ops(path: str | os.PathLike, providers: Optional[list] = None) -> dict:
    """Operator counts of the graph an ONNX Runtime session runs (after its optimizations)."""
    from .predict import ort_session

    with tempfile.TemporaryDirectory() as d:
        # quiet: the saved graph is hardware specific, and that is the point here
        ort_session(path, providers=providers, optimized_model=Path(d) / "optimized.onnx", quiet=True)
        m = onnx.load(str(Path(d) / "optimized.onnx"))
    return dict(sorted(Counter(n.op_type for n in m.graph.node).items()))


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
    import onnxruntime as ort

    return ort.get_available_providers()


def gpu_status() -> dict:
    """What GPU paths exist here, with the reason when one does not."""
    import torch

    import onnxruntime as ort

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

# operator types that compute a matrix product (float or integer), for the time breakdown
MATMUL_OPS = frozenset({"MatMul", "FusedMatMul", "Gemm", "FusedGemm", "MatMulInteger", "MatMulIntegerToFloat",
                        "DynamicQuantizeMatMul", "QLinearMatMul", "QGemm", "MatMulNBits"})


def node_placement(path: str | os.PathLike, providers: list, feed: dict, reps: int = 1,
                   threads: Optional[int] = None, spinning: bool = False, spin_stop: bool = False) -> dict:
    """One file's ``operator_profiles`` record."""
    return operator_profiles({"file": path}, providers, feed, reps=reps, threads=threads, spinning=spinning,
                             spin_stop=spin_stop)["file"]


def operator_profiles(files: dict, providers: list, feed: dict, reps: int = 1, threads: Optional[int] = None,
                      spinning: bool = False, spin_stop: bool = False, progress: bool = False) -> dict:
    """For each ONNX file (name -> path), from ONNX Runtime's profiler: the nodes each execution
    provider ran, the Memcpy nodes ONNX Runtime inserted between providers, and the kernel time per
    operator type (ms per call: each node's median over ``reps`` profiled calls after a cold one, so a
    burst of load on a shared host that hits a few calls does not count).

    The files are profiled in turns, one call each, the order rotating, so drift hits all alike. The
    profiler slows calls down (``profiled_call_ms``, the median profiled call, says by how much against
    an unprofiled median at the same thread count)."""
    import json

    from .predict import ort_session

    with tempfile.TemporaryDirectory() as d:
        sessions, feeds = {}, {}
        names = list(files)
        for i, n in enumerate(names):
            sessions[n] = ort_session(files[n], threads=threads, providers=providers, spinning=spinning,
                                      spin_stop=spin_stop, profile_prefix=Path(d) / f"prof{i}",
                                      optimized_model=Path(d) / f"optimized{i}.onnx", quiet=True)
            feeds[n] = {x.name: feed[x.name] for x in sessions[n].get_inputs()}
        for j in tqdm(range(1 + reps), desc="operator profiles", disable=not progress, leave=False):
            for n in names[j % len(names):] + names[:j % len(names)]:
                sessions[n].run(None, feeds[n])
        out = {n: _profile_record(json.loads(Path(sessions[n].end_profiling()).read_text()),
                                  onnx.load(str(Path(d) / f"optimized{i}.onnx")), providers, reps, threads)
               for i, n in enumerate(names)}
        del sessions
    return out


def _profile_record(events: list, graph: onnx.ModelProto, providers: list, reps: int, threads: Optional[int]) -> dict:
    """``operator_profiles``' record of one file from its profile ``events`` (the first call is cold)."""
    per_provider: Counter = Counter()
    runs: dict = {}
    calls = []
    for e in events:
        args = e.get("args", {})
        if e.get("cat") == "Node" and "provider" in args:
            runs.setdefault(e["name"], []).append(e)
        elif e.get("cat") == "Session" and e.get("name") == "model_run":
            calls.append(e)
    op_ms: Counter = Counter()
    for evs in runs.values():
        per_provider[evs[0]["args"]["provider"]] += 1
        warm = [e["dur"] for e in sorted(evs, key=lambda e: e["ts"])[1:]]
        if warm:
            op_ms[evs[0]["args"]["op_name"]] += float(np.median(warm)) / 1e3
    calls = [e["dur"] / 1e3 for e in sorted(calls, key=lambda e: e["ts"])[1:]]
    memcpy = sum(1 for n in graph.graph.node if n.op_type.startswith("Memcpy"))
    op_ms = dict(op_ms.most_common())
    return {"providers": providers, "nodes_per_provider": dict(per_provider), "memcpy_nodes": memcpy,
            "graph_nodes": len(graph.graph.node), "profiled_runs": reps, "threads": threads,
            "profiled_call_ms": float(np.median(calls)) if calls else None, "op_ms": op_ms,
            "kernel_ms": float(sum(op_ms.values())),
            "matmul_ms": float(sum(v for k, v in op_ms.items() if k in MATMUL_OPS))}


def iobinding_latency(path: str | os.PathLike, feed: dict, reps: int, providers: list, device: str = "cuda",
                      warmup: int = 5) -> dict:
    """ONNX Runtime latency with I/O binding: inputs copied to ``device`` once, outputs left there,
    so the timing is the graph and its Memcpy nodes, not the host<->device copies of the feed.
    ``device`` "cuda" with the CUDA / TensorRT providers; "cpu" with the CPU provider (how the
    tests exercise it without a GPU)."""
    import onnxruntime as ort

    from .predict import ort_session

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
        import onnxruntime as ort

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
    latency = {c[0]: {n: guarded(iobinding_latency, f, feed, reps, providers=c, device="cuda") for n, f in files.items()}
               for c in chains}
    return placement, latency


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
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024   # bytes on macOS, KiB elsewhere


def _import_runtimes(cfg) -> None:
    """Import what creating any variant's predictor imports on first use: ONNX Runtime, and the
    transformers module of the checkpoint's architecture (transformers imports it lazily, which
    otherwise counts as PyTorch's load time: measured 1.7-1.8 s, against 0.2 s to create the model)."""
    import onnxruntime  # noqa: F401
    import transformers

    from .pipeline import checkpoint_dir

    for arch in transformers.AutoConfig.from_pretrained(str(checkpoint_dir(cfg))).architectures or []:
        getattr(transformers, arch)


def probe_main(argv: Sequence[str]) -> None:
    """The child of ``fresh_process_memory``: argv = profile, variant, threads. Imports the libraries
    of both runtimes, loads one variant, predicts a batch of 32 and prints one JSON line: peak resident
    set, resident memory the model added after the imports, time to create the predictor (tokenizer
    and model or session)."""
    import json

    import psutil

    from .config import load_config
    from .pipeline import make_predictor

    profile, variant, threads = argv[0], argv[1], int(argv[2])
    cfg = load_config(profile)
    _import_runtimes(cfg)        # the clock and the memory baseline start with every library imported
    before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    p = make_predictor(cfg, variant, threads=threads)
    created = time.perf_counter() - t0
    p.predict_proba(["a short review", "a much longer review that goes on about the plot and the cast"] * 16)
    after = psutil.Process().memory_info().rss
    print(json.dumps({"peak_rss_mb": peak_rss_mb(),
                      "model_rss_mb": (after - before) / 2**20, "create_seconds": created}))


def fresh_process_memory(profile: str, variant: str, threads: int, root: str) -> dict:
    """Memory of a new Python process that loads one variant and predicts a batch of 32: its peak
    resident set, and the resident memory the model added once the libraries were imported
    (the imports alone take most of the peak); plus the time to create the predictor."""
    import json
    import subprocess

    r = subprocess.run([sys.executable, "-c", MEMORY_SNIPPET, profile, variant, str(threads)], cwd=root,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"memory probe of {variant!r} failed: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the benchmark step
# PyTorch on the GPU: each name -> (dtype of the model, int8 weights and activations in its linears)
TORCH_VARIANTS = {"fp32": ("float32", False), "fp16": ("float16", False), "bf16": ("bfloat16", False),
                  "int8": ("float16", True)}
DTYPES = tuple(TORCH_VARIANTS)


def _graph_latency(model, enc: dict, reps: int, warmup: int, eager_logits) -> dict:
    """Latency of one CUDA graph replay of the forward pass on static inputs (no kernel-launch
    overhead: what a server that captures its model gets), and how far its logits are from eager's."""
    import torch

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
    import torch

    from .modeling import load_checkpoint
    from .torch_int8 import quantize_w8a8

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
                    enc = {k: torch.from_numpy(v).to(device) for k, v in fixed_length_batch(tok, texts, length, b).items()}
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
            del model
        except Exception as e:  # noqa: BLE001 - one dtype that fails (e.g. no bf16 kernels) loses only itself
            out[key] = error_record(e)
        if cuda:
            torch.cuda.empty_cache()
    return out


def run_bench(cfg, progress: bool = True) -> dict:
    """Latency over sequence lengths, throughput over batch sizes, thread counts, spread over
    rounds, node placement, session creation and fresh-process memory, for every variant; GPU
    paths when a GPU is present (skipped with a note otherwise). The run's headline is appended
    to the run-to-run history (``bench_runs``), with the step's wall time."""
    import torch

    t_start = time.perf_counter()

    from . import data as D
    from .modeling import load_tokenizer
    from .bench_runs import record as record_run
    from .bench_runs import relative_range
    from .pipeline import checkpoint_dir, make_predictor, variant_table
    from .provenance import read_json, write_result

    b = cfg.bench
    table = variant_table(cfg, baselines=True)
    names = [n for n in table if b.variants is None or n in b.variants]
    for key, given in (("variants", b.variants or []), ("headline_only", b.headline_only)):
        unknown = set(given) - set(table)
        if unknown:
            raise KeyError(f"bench.{key}: unknown variant(s) {sorted(unknown)}; known: {', '.join(table)}")
    tok = load_tokenizer(str(checkpoint_dir(cfg)))
    texts = D.load_splits(cfg)["test"]["text"].tolist()[:512]
    sweep = [n for n in names if n not in b.headline_only]   # the rest: timed in the headline rounds only
    spin_stop = b.spinning and b.spin_stop                   # ORT threads spin within a call only
    all_threads = cfg.threads
    result = {"variants": names, "length": b.length, "cpu": {}, "gpu": gpu_status(),
              "protocol": {"block": b.block, "block_warmup": b.block_warmup, "ort_spinning": b.spinning,
                           "ort_spin_stop": spin_stop,
                           "reps": b.reps, "rounds": b.rounds, "headline_only": [n for n in names if n not in sweep],
                           "description": (f"variants interleaved in turns of {b.block} timed call(s) after "
                                           f"{b.block_warmup} untimed one(s), the order rotating every turn; "
                                           + ("ONNX Runtime threads spinning within a call, stopped when it returns"
                                              if spin_stop else
                                              f"ONNX Runtime threads {'' if b.spinning else 'not '}spinning"))}}
    blocks = {"block": b.block, "block_warmup": b.block_warmup}
    # throughput: fewer, longer calls (a spinning tail is a small part of them): two blocks per variant
    thr_blocks = {"block": max(b.block, b.throughput_reps // 2), "block_warmup": min(1, b.block_warmup)}
    for threads in [t or all_threads for t in b.threads]:
        key = f"threads_{threads}"
        torch.set_num_threads(threads)
        here = names if threads == all_threads else sweep
        preds = {n: make_predictor(cfg, n, threads=threads, tokenizer=tok, spinning=b.spinning,
                                   spin_stop=spin_stop) for n in
                 tqdm(here, desc=f"load ({threads} threads)", disable=not progress, leave=False)}
        head = [fixed_length_batch(tok, texts, b.length, 1, offset=i) for i in range(b.reps)]
        rounds = []
        for _ in tqdm(range(b.rounds if threads == all_threads else 1), desc="headline rounds",
                      disable=not progress, leave=False):
            rounds.append(time_calls(preds, head, b.reps, **blocks))
        rec = {"headline": {}}
        for n in here:
            medians = [float(np.median(r[n])) for r in rounds]
            rec["headline"][n] = {**summarize([t for r in rounds for t in r[n]]), "round_medians_ms": medians,
                                  "spread": relative_range(medians)}
        if threads == all_threads:
            preds = {n: preds[n] for n in sweep}          # the headline-only variants are done
            rec["seq_length"] = {}
            for L in tqdm(b.seq_lengths, desc="sequence lengths", disable=not progress, leave=False):
                inputs = [fixed_length_batch(tok, texts, L, 1, offset=i) for i in range(b.reps)]
                t = time_calls(preds, inputs, b.reps, **blocks)
                rec["seq_length"][str(L)] = {n: summarize(t[n]) for n in sweep}
            rec["batch_size"] = {}
            for B in tqdm(b.batch_sizes, desc="batch sizes", disable=not progress, leave=False):
                inputs = [fixed_length_batch(tok, texts, b.length, B, offset=i * B) for i in range(b.throughput_reps)]
                t = time_calls(preds, inputs, b.throughput_reps, warmup=1, **thr_blocks)
                rec["batch_size"][str(B)] = {n: {**summarize(t[n]), "texts_per_s": 1e3 * B / float(np.median(t[n]))}
                                             for n in sweep}
            runtimes = {n: table[n][0] for n in sweep}

            def with_spinning(spinning: bool) -> dict:
                """The loaded predictors, ONNX Runtime ones reloaded where their threads differ from
                ``spinning`` without a stop when a call returns."""
                same = b.spinning == spinning and not spin_stop
                return {n: (make_predictor(cfg, n, threads=threads, tokenizer=tok, spinning=spinning)
                            if runtimes[n] == "onnxruntime" and not same else preds[n]) for n in sweep}

            if b.per_call_check:
                # call by call, no untimed calls, a random order: each latency split by the runtime of the
                # call before it, which is what the untimed calls of the headline protocol absorb
                quiet = with_spinning(False)
                for p in quiet.values():
                    p._forward(head[0])
                rec["per_call"] = predecessor_effect(quiet, runtimes, head, b.reps, seed=cfg.seed)
                del quiet
            if b.spinning_check:
                # ORT's own default: threads busy-wait between ops, as a server running one model has
                # them; long blocks with 2 untimed calls first, so a pool still spinning from the
                # previous model has stopped before the timed calls
                spin = with_spinning(True)
                t = time_calls(spin, head, b.reps, warmup=1, block=SPIN_BLOCK, block_warmup=SPIN_WARMUP)
                rec["spinning"] = {"block": SPIN_BLOCK, "block_warmup": SPIN_WARMUP,
                                   "variants": {n: summarize(t[n]) for n in sweep}}
                del spin
        result["cpu"][key] = rec
        del preds
    feed = fixed_length_batch(tok, texts, b.length, 1)
    onnx_files = {n: table[n][1] for n in names if table[n][0] == "onnxruntime"}
    chains = gpu_provider_chains(result["gpu"]["ort_providers"])
    # ONNX Runtime on the GPU with I/O binding: every ONNX variant, the seed's dynamic INT8 (the
    # negative control: its integer ops fall back to the CPU) included
    gpu_place, gpu_latency = ort_gpu_runs(onnx_files, feed, b.reps, chains)
    # CPU: every node's provider, and where the time of a call goes, per operator type (on
    # bench.profile_threads), and what the profiler costs there and on all cores, against the headlines
    profiles = {t: operator_profiles(onnx_files, ["CPUExecutionProvider"], feed, reps=min(b.reps, 20), threads=t,
                                     spinning=b.spinning, spin_stop=spin_stop, progress=progress)
                for t in dict.fromkeys([b.profile_threads or all_threads, all_threads])}
    cpu_place = profiles[b.profile_threads or all_threads]
    result["placement"] = {n: [cpu_place[n]] + gpu_place[n] for n in onnx_files}
    result["profiler_overhead"] = {}
    for t, prof in profiles.items():
        ref = result["cpu"].get(f"threads_{t}", {}).get("headline", {})
        result["profiler_overhead"][f"threads_{t}"] = {
            n: {"profiled_call_ms": p["profiled_call_ms"], "unprofiled_median_ms": ref[n]["median_ms"],
                "slowdown": p["profiled_call_ms"] / ref[n]["median_ms"] - 1}
            for n, p in prof.items() if n in ref and p["profiled_call_ms"]}
    if chains:
        result["gpu"]["onnxruntime"] = gpu_latency
    if b.memory:
        result["memory"] = {n: fresh_process_memory(cfg.profile_file or cfg.name, n, all_threads, cfg.root)
                            for n in tqdm(names, desc="fresh-process memory", disable=not progress, leave=False)}
    if result["gpu"]["torch_cuda"]:
        result["gpu"]["pytorch"] = torch_dtype_latency(checkpoint_dir(cfg), tok, texts, b.length, b.batch_sizes,
                                                       b.reps, device="cuda")
    ref = result["cpu"][f"threads_{all_threads}"]["headline"]
    result["speedup_vs_onnx_fp32"] = {n: ref["onnx-fp32"]["median_ms"] / ref[n]["median_ms"]
                                      for n in names if "onnx-fp32" in ref}
    result["speedup_vs_pytorch_fp32"] = {n: ref["pytorch-fp32"]["median_ms"] / ref[n]["median_ms"]
                                         for n in names if "pytorch-fp32" in ref}
    if "onnx-fp32" in ref:   # per round: drift common to a round cancels in the ratio
        fp = ref["onnx-fp32"]["round_medians_ms"]
        rr = {n: [a / c for a, c in zip(fp, ref[n]["round_medians_ms"])] for n in names}
        result["speedup_vs_onnx_fp32_rounds"] = {
            n: {"ratios": r, "spread": relative_range(r)} for n, r in rr.items()}
    result["seconds"] = time.perf_counter() - t_start     # the "make bench in under 10 minutes"
    path = write_result(cfg, "bench", result, threads=all_threads)
    record_run(cfg, read_json(path))      # the run-to-run history beside it (bench_runs.jsonl)
    return result
