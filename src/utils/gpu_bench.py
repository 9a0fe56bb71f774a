"""The GPU measurement as one command, for a GPU machine that cannot build this project's venv.

A lent GPU machine has its own PyTorch (CUDA) and transformers, no network, and takes at most
64 MiB of files per call: the FP32 checkpoint (91 MB) does not fit, so ``pack`` writes a
half-precision copy of it (weights stored in FP16, loaded back as FP32; the latency does not
depend on the weights' values, and the logit change of FP16 / BF16 is measured against that
same FP32 model) and the test texts into one folder to carry::

    # here, after `make paper-figures`:
    python -m utils.gpu_bench pack default gpu_pack            # ~46 MB, git-ignored
    # there (in the repository root, the folder carried along):
    PYTHONPATH=src python3 -m utils.gpu_bench run default --pack gpu_pack --out $OUT/bench_gpu.json
    # here: copy bench_gpu.json to results/default/, then `python -m utils.report default`

``run`` measures PyTorch eager FP32 / FP16 / BF16 on the GPU, and ONNX Runtime's CUDA (and
TensorRT) provider with I/O binding and the Memcpy count of every ONNX file in the pack where
onnxruntime-gpu is installed; without a GPU it writes nothing and says why.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .config import load_config


def pack(cfg, out_dir: str | Path, onnx: tuple = ()) -> Path:
    """A folder to carry to a GPU machine: the checkpoint with FP16-stored weights, the tokenizer,
    the test texts, and the named ONNX variants (``onnx``: file stems under artifacts/<profile>/onnx)."""
    import torch

    from . import data as D
    from .modeling import load_checkpoint, save_checkpoint
    from .pipeline import checkpoint_dir, onnx_path
    from .provenance import atomic_path

    model, tok = load_checkpoint(checkpoint_dir(cfg), attn="sdpa")
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        save_checkpoint(model.to(torch.float16), tok, Path(tmp) / "checkpoint")
        D.load_splits(cfg)["test"][["text"]].head(512).to_csv(Path(tmp) / "texts.csv", index=False)
        for stem in onnx:
            shutil.copy(onnx_path(cfg, stem), Path(tmp) / f"{stem}.onnx")
    return out_dir


def run(cfg, pack_dir: str | Path, device: str = "cuda", reps: int | None = None) -> dict:
    """PyTorch per dtype and ONNX Runtime GPU providers on ``device``; {"skipped": why} without one."""
    import pandas as pd

    from .bench import fixed_length_batch, gpu_provider_chains, gpu_status, ort_gpu_runs, torch_dtype_latency
    from .modeling import load_tokenizer

    status = gpu_status()
    if device.startswith("cuda") and not status["torch_cuda"]:
        return {"skipped": status["note"], **status}
    pack_dir = Path(pack_dir)
    ckpt = pack_dir / "checkpoint"
    tok = load_tokenizer(str(ckpt))
    texts = pd.read_csv(pack_dir / "texts.csv")["text"].tolist()
    b = cfg.bench
    reps = reps or b.reps
    out = {**status, **_driver(), "length": b.length, "batch_sizes": list(b.batch_sizes), "reps": reps,
           "weights": "stored in FP16 for transport, run as each dtype below",
           "pytorch": torch_dtype_latency(ckpt, tok, texts, b.length, b.batch_sizes, reps, device=device)}
    feed = fixed_length_batch(tok, texts, b.length, 1)
    chains = gpu_provider_chains(status["ort_providers"])
    files = {f"onnx-{f.stem}": f for f in sorted(pack_dir.glob("*.onnx"))}
    out["placement"], out["onnxruntime"] = ort_gpu_runs(files, feed, reps, chains)
    if not chains:
        out["onnxruntime_note"] = "onnxruntime has no CUDA / TensorRT provider here (install onnxruntime-gpu)"
    return out


def _driver() -> dict:
    """CUDA runtime of PyTorch and the NVIDIA driver, where they can be read."""
    import subprocess

    import torch

    rec = {"torch_cuda_version": torch.version.cuda}
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        rec["nvidia_smi"] = r.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        rec["nvidia_smi"] = None
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utils.gpu_bench", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="write the folder to carry to a GPU machine")
    p.add_argument("profile")
    p.add_argument("out_dir")
    p.add_argument("--onnx", nargs="*", default=[],
                   help="ONNX variants to include (file stems, e.g. fp16 int8-qat): only useful where "
                        "onnxruntime-gpu is brought along too, and each adds 23-91 MB to the 46 MB pack")
    r = sub.add_parser("run", help="measure on the GPU (or --device cpu, to try the command anywhere)")
    r.add_argument("profile")
    r.add_argument("--pack", required=True)
    r.add_argument("--device", default="cuda")
    r.add_argument("--reps", type=int)
    r.add_argument("--out", help="results JSON (default: results/<profile>/bench_gpu.json)")
    args = ap.parse_args(argv)
    cfg = load_config(args.profile)
    if args.cmd == "pack":
        out = pack(cfg, args.out_dir, tuple(args.onnx))
        mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
        print(f"{out} ({mb:.0f} MiB{'; over the 64 MiB one device call carries' if mb > 64 else ''})")
        return 0
    res = run(cfg, args.pack, device=args.device, reps=args.reps)
    if "skipped" in res:
        print(f"gpu_bench: skipped: {res['skipped']}", file=sys.stderr)
        return 3
    from .provenance import provenance, write_json

    path = Path(args.out) if args.out else cfg.results_dir / "bench_gpu.json"
    write_json(path, {"step": "bench_gpu", **res, "provenance": provenance(cfg, threads=cfg.threads)})
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
