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

``run`` measures PyTorch eager FP32 / FP16 / BF16 / INT8 on the GPU (eager and as CUDA graph
replays), and ONNX Runtime's CUDA (and TensorRT) provider with I/O binding and the Memcpy count of
every ONNX file (in the pack, or built there with ``--build-onnx DIR``) where onnxruntime-gpu is
installed; without a GPU it writes nothing and says why. onnxruntime-gpu does not fit one call:
``wheels`` splits it into parts here, ``install`` joins and installs them there (docs/gpu.md).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from . import data as D
from . import quantize as Q
from . import variants as V
from .bench import error_record, fixed_length_batch, gpu_provider_chains, gpu_status, ort_gpu_runs, torch_dtype_latency
from .config import QuantizeConfig, load_config
from .modeling import load_checkpoint, load_tokenizer, save_checkpoint
from .onnx_export import export_with_parity
from .provenance import atomic_path, provenance, read_json, write_json


def pack(cfg, out_dir: str | Path, onnx: tuple = ()) -> Path:
    """A folder to carry to a GPU machine: the checkpoint with FP16-stored weights, the tokenizer,
    the test texts, and the named ONNX variants (``onnx``: file stems under artifacts/<profile>/onnx)."""
    model, tok = load_checkpoint(V.checkpoint_dir(cfg), attn="sdpa")
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        save_checkpoint(model.to(torch.float16), tok, Path(tmp) / "checkpoint")
        D.load_splits(cfg)["test"][["text"]].head(512).to_csv(Path(tmp) / "texts.csv", index=False)
        for stem in onnx:
            shutil.copy(V.onnx_path(cfg, stem), Path(tmp) / f"{stem}.onnx")
    return out_dir


# --------------------------------------------------------------------------- onnxruntime-gpu, carried in parts
# the GPU machine's Python and onnxruntime (its CPU build); onnxruntime-gpu 1.30 on PyPI is built for
# CUDA 13 and finds cuBLAS / cuDNN in the nvidia-* packages that machine's PyTorch already has
DEVICE_PYTHON, DEVICE_ORT = "3.12", "1.30.0"
PART_MIB = 56      # a call carries 64 MiB with the working tree (~5 MiB): four parts, then the pack + the rest
SMALL_WHEELS = ("onnxconverter-common==1.16.0",)   # the FP16 conversion (pure Python)


def wheels(out_dir: str | Path, ort_version: str = DEVICE_ORT, python: str = DEVICE_PYTHON,
           part_mib: int = PART_MIB) -> dict:
    """Download onnxruntime-gpu (and the small wheels the ONNX builds need) for the GPU machine's
    Python, and split the big wheel into parts of ``part_mib`` MiB, each small enough for one call.
    ``manifest.json`` names the wheel, its parts and its SHA-256; ``install`` joins them there."""
    plat = ["--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_27_x86_64",
            "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"]
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as dl, atomic_path(out_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
               python, "--implementation", "cp", *plat, "-d", dl, f"onnxruntime-gpu=={ort_version}", *SMALL_WHEELS]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"pip download of onnxruntime-gpu=={ort_version} failed: {r.stderr.strip()[-500:]}")
        big = next(Path(dl).glob("onnxruntime_gpu-*.whl"))
        return split_wheel(big, tmp, part_mib * 2**20, small=[w for w in Path(dl).glob("*.whl") if w != big])


def split_wheel(wheel: Path, out_dir: Path, part_bytes: int, small=()) -> dict:
    """``wheel`` cut into parts of ``part_bytes`` in ``out_dir``, the ``small`` wheels copied whole, and
    ``manifest.json``: the wheel's name, size, SHA-256 and parts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = wheel.read_bytes()
    parts = []
    for i in range(0, len(data), part_bytes):
        parts.append(f"part{len(parts):02d}")
        (out_dir / parts[-1]).write_bytes(data[i:i + part_bytes])
    for w in small:
        shutil.copy(w, out_dir / Path(w).name)
    manifest = {"wheel": wheel.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "parts": parts, "small_wheels": sorted(Path(w).name for w in small), "part_bytes": part_bytes}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def install(parts_dir: str | Path, target: str | Path) -> Path:
    """On the GPU machine: join the parts, check the SHA-256, and install every wheel into ``target``
    (put it first on PYTHONPATH). A missing part or a corrupt join is one clear error."""
    parts_dir = Path(parts_dir)
    man = json.loads((parts_dir / "manifest.json").read_text())
    missing = [p for p in man["parts"] if not (parts_dir / p).is_file()]
    if missing:
        raise FileNotFoundError(f"{parts_dir}: parts {missing} of {man['wheel']} have not arrived "
                                "(carry each in a call)")
    data = b"".join((parts_dir / p).read_bytes() for p in man["parts"])
    if len(data) != man["bytes"] or hashlib.sha256(data).hexdigest() != man["sha256"]:
        raise ValueError(f"{parts_dir}: the joined {man['wheel']} does not match its manifest (a part is stale)")
    wheel = Path(target).parent / man["wheel"]
    wheel.parent.mkdir(parents=True, exist_ok=True)
    wheel.write_bytes(data)
    files = [str(wheel), *(str(parts_dir / w) for w in man["small_wheels"])]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--upgrade", "--target", str(target), *files], check=True)
    return Path(target)


# the variants built on the GPU machine (from the registry): the seed's dynamic INT8 (its negative control),
# static QDQ with symmetric int8 activations (TensorRT's format) and FP16
GPU_VARIANTS = ("onnx-int8-dynamic", "onnx-int8-static-sym", "onnx-fp16")


def build_onnx(ckpt: Path, tok, texts: list, out_dir: Path, max_length: int, opset: int,
               settings: QuantizeConfig | None = None, names=GPU_VARIANTS) -> dict:
    """The ONNX files of the GPU run, built there from the carried checkpoint (91 MB of FP32 ONNX do not
    fit a call): FP32 (parity-checked), then each of ``names`` by its registered recipe. Static recipes
    quantize every linear layer, calibrated on the pack's texts (for latency and placement only); FP16
    needs onnxconverter-common (skipped with the reason where it is not importable)."""
    settings = settings or QuantizeConfig()
    model, _ = load_checkpoint(ckpt, attn="eager")
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / "fp32.onnx"
    rec = {"fp32": {"parity": export_with_parity(model, tok, fp32, texts[:64], max_length, opset=opset)}}
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    ctx = V.BuildContext(tok, max_length, settings, calibration=texts[:settings.calibration_examples],
                         nodes=[n.name for n in Q.module_nodes(fp32, linear).values()])
    for name in names:
        v = V.get(name)
        src = out_dir / f"{v.source}.onnx"
        if not src.is_file():
            rec[v.stem] = {"skipped": f"its source {v.source} is not built on the GPU machine"}
            continue
        try:
            rec[v.stem] = V.handler(v.recipe)(v.recipe, src, out_dir / f"{v.stem}.onnx", ctx)
        except ImportError as e:
            rec[v.stem] = {"skipped": f"{e} (carry the onnxconverter-common wheel)"}
            continue
        if isinstance(v.recipe, V.Static):
            rec[v.stem]["calibration"] = "the pack's texts (latency and placement only)"
    return rec


class ReuseError(ValueError):
    """A ``--pytorch-from`` file that cannot stand in for this run's PyTorch part."""


def _pytorch_part(path: str | Path, status: dict, length: int, batch_sizes: list, reps: int) -> dict:
    """The PyTorch part of an earlier ``run`` on this machine (its results JSON), to be reused: it must
    have measured the same GPU, length, batch sizes and repetitions, and hold PyTorch results."""
    rec = read_json(path)
    want = {"torch_device": status.get("torch_device"), "length": length, "batch_sizes": list(batch_sizes),
            "reps": reps}
    got = {k: rec.get(k) for k in want}
    if rec.get("step") != "bench_gpu" or not rec.get("pytorch"):
        raise ReuseError(f"{path}: not a GPU benchmark with PyTorch results (step {rec.get('step')!r})")
    if got != want:
        raise ReuseError(f"{path}: measured {got}, this run is {want}; rerun without --pytorch-from")
    return {"pytorch": rec["pytorch"],
            "pytorch_from": {"file": Path(path).name, "date": rec.get("provenance", {}).get("date"),
                             "commit": rec.get("provenance", {}).get("git", {}).get("commit")}}


def run(cfg, pack_dir: str | Path, device: str = "cuda", reps: int | None = None,
        onnx_dir: str | Path | None = None, save=None, pytorch_from: str | Path | None = None) -> dict:
    """PyTorch per dtype and ONNX Runtime GPU providers on ``device``; {"skipped": why} without one.
    ``onnx_dir``: build the ONNX files there first (``build_onnx``); else the pack's own *.onnx.
    ``save(record)``, if given, is called once the PyTorch part is done, so that a crash in the ONNX
    Runtime part (a CUDA library that does not load) does not lose it. ``pytorch_from``: the results
    JSON of an earlier run on the same machine, whose PyTorch part is reused instead of measured again
    (a GPU session measures PyTorch in its first call and ONNX Runtime once its wheel has arrived)."""
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
           "weights": "stored in FP16 for transport, run as each dtype below"}
    if pytorch_from is not None:
        out.update(_pytorch_part(pytorch_from, status, b.length, b.batch_sizes, reps))
    else:
        out["pytorch"] = torch_dtype_latency(ckpt, tok, texts, b.length, b.batch_sizes, reps, device=device)
    feed = fixed_length_batch(tok, texts, b.length, 1)
    chains = gpu_provider_chains(status["ort_providers"])
    if save is not None:
        save({**out, "incomplete": "the ONNX Runtime part did not finish"})
    if onnx_dir is not None:
        try:
            out["onnx_built"] = build_onnx(ckpt, tok, texts, Path(onnx_dir), cfg.model.max_length, cfg.export.opset)
        except Exception as e:  # noqa: BLE001 - the files built so far are still measured
            out["onnx_built"] = error_record(e)
    src = Path(onnx_dir) if onnx_dir is not None else pack_dir
    files = {f"onnx-{f.stem}": f for f in sorted(src.glob("*.onnx"))}
    out["placement"], out["onnxruntime"] = ort_gpu_runs(files, feed, reps, chains)
    if not chains:
        out["onnxruntime_note"] = "onnxruntime has no CUDA / TensorRT provider here (install onnxruntime-gpu)"
    return out


def _driver() -> dict:
    """CUDA runtime of PyTorch and the NVIDIA driver, where they can be read."""
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
    r.add_argument("--build-onnx", metavar="DIR",
                   help="build the ONNX files into DIR first (from the pack's checkpoint)")
    r.add_argument("--out", help="results JSON (default: results/<profile>/bench_gpu.json)")
    r.add_argument("--pytorch-from", metavar="JSON",
                   help="reuse the PyTorch part of an earlier run's results JSON on this machine")
    w = sub.add_parser("wheels", help="download onnxruntime-gpu for the GPU machine, split into parts that fit a call")
    w.add_argument("out_dir")
    w.add_argument("--ort", default=DEVICE_ORT)
    w.add_argument("--part-mib", type=int, default=PART_MIB)
    i = sub.add_parser("install", help="on the GPU machine: join the parts, check them, install into a folder")
    i.add_argument("parts_dir")
    i.add_argument("target")
    args = ap.parse_args(argv)
    if args.cmd == "wheels":
        man = wheels(args.out_dir, args.ort, part_mib=args.part_mib)
        print(f"{args.out_dir}: {man['wheel']} in parts {man['parts']} of {args.part_mib} MiB; "
              f"small wheels {man['small_wheels']}")
        return 0
    if args.cmd == "install":
        print(install(args.parts_dir, args.target))
        return 0
    cfg = load_config(args.profile)
    if args.cmd == "pack":
        out = pack(cfg, args.out_dir, tuple(args.onnx))
        mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
        print(f"{out} ({mb:.0f} MiB{'; over the 64 MiB one device call carries' if mb > 64 else ''})")
        return 0
    path = Path(args.out) if args.out else cfg.results_dir / "bench_gpu.json"
    def save(rec: dict) -> None:
        write_json(path, {"step": "bench_gpu", **rec, "provenance": provenance(cfg, threads=cfg.threads)})

    try:
        res = run(cfg, args.pack, device=args.device, reps=args.reps, onnx_dir=args.build_onnx, save=save,
                  pytorch_from=args.pytorch_from)
    except (ReuseError, FileNotFoundError) as e:     # a --pytorch-from file (or the pack) missing or unfit
        print(f"gpu_bench: {e}", file=sys.stderr)
        return 2
    if "skipped" in res:
        print(f"gpu_bench: skipped: {res['skipped']}", file=sys.stderr)
        return 3
    save(res)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
