"""Run metadata (provenance) and atomic writes.

Every results JSON carries ``provenance``: the configuration, git commit, package
versions, CPU with its instruction set (``cpu_isa``), thread count and date, so a number
in the paper can be traced to the run that produced it, and runs on hosts whose INT8
kernels differ are never mixed. Every file is written to a temporary sibling first and
renamed into place, so a crash never leaves a half-written output behind.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

OUTPUTS = ("results", "figures", "paper/tables")   # generated, committed for the paper
PACKAGES = ("torch", "transformers", "tokenizers", "onnx", "onnxruntime", "numpy", "scikit-learn",
            "scipy", "pandas", "lime", "shap", "datasets", "safetensors", "openvino", "nncf")


# --------------------------------------------------------------------------- atomic writes
class OutputError(OSError):
    """An output cannot be written (full disk, read-only folder); nothing half-written is left."""


OUTPUT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Works for files and folders. On an exception the temporary is removed and the
    previous ``path`` (if any) is left untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror} (a read-only folder, or no permission?); "
                          f"nothing was written") from None
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary {tmp} for {path}")
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        if isinstance(e, OSError) and e.errno in OUTPUT_ERRNOS:
            raise OutputError(f"cannot write {path}: {e.strerror}; nothing was written (the previous "
                              f"{path.name}, if any, is untouched)") from None
        raise


def _json_default(o: Any):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default, sort_keys=False) + "\n")
    return path


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path} (run the step that writes it first)")
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- metadata
def git_info(root: str | os.PathLike) -> dict:
    def run(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    try:
        commit = run("rev-parse", "HEAD")
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        # the study's own outputs are tracked too: only changes to anything else make a run "dirty"
        dirty = run("status", "--porcelain", "--untracked-files=no", "--", ".", *(f":!{p}" for p in OUTPUTS))
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# the instruction-set features that decide how fast (and, without VNNI, how exactly) INT8 runs on x86
ISA_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def cpu_flags() -> set:
    """The CPU's feature flags (/proc/cpuinfo; empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_gemm_path(flags: set) -> str:
    """The family of ONNX Runtime's (MLAS) u8s8 integer GEMM kernels these features select, inferred from
    the flags (MLAS picks AMX, then AVX512-VNNI, AVX-VNNI, AVX512 core, AVX2): without VNNI the products
    are summed in pairs into saturating 16-bit lanes (vpmaddubsw), with VNNI in 32-bit (vpdpbusd)."""
    if "amx_int8" in flags:
        return "amx"
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx_vnni" in flags:
        return "avx_vnni"
    if {"avx512f", "avx512bw"} <= flags:
        return "avx512_core (vpmaddubsw, 16-bit saturation)"
    if "avx2" in flags:
        return "avx2 (vpmaddubsw, 16-bit saturation)"
    return "other"


def cpu_isa(flags: Optional[set] = None) -> dict:
    """The ISA record of every result: which of ``ISA_FEATURES`` the CPU has, and the INT8 GEMM path."""
    flags = cpu_flags() if flags is None else set(flags)
    return {"features": [f for f in ISA_FEATURES if f in flags], "int8_gemm": int8_gemm_path(flags)}


def package_versions(names=PACKAGES) -> dict:
    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = None
    return out


def provenance(cfg=None, threads: Optional[int] = None, extra: Optional[dict] = None) -> dict:
    root = cfg.root if cfg is not None else "."
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_info(root),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_isa": cpu_isa(),
        "cpu_count": os.cpu_count(),
        "threads": threads if threads is not None else (cfg.threads if cfg is not None else None),
        "packages": package_versions(),
    }
    if cfg is not None:
        info["profile"] = cfg.name
        info["profile_file"] = cfg.profile_file
        info["config"] = cfg.to_dict()
    if extra:
        info.update(extra)
    return info


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, or of a folder's files (names and contents, in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def array_sha256(values) -> str:
    """A short hash of an array's values (e.g. a variant's predictions): tells "another file or another
    CPU" from "the same predictions" across runs."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(values)).tobytes()).hexdigest()[:16]


def repo_relative(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to the repository ``root`` where it lies inside it (what results record,
    so they do not carry this machine's folders), else the absolute path."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return str(p.relative_to(r)) if p.is_relative_to(r) else str(p)
