"""A results folder's run history: one JSON line per run, kept beside the run's own results.

``bench_runs.jsonl`` (every benchmark run's headline) and ``eval_runs.jsonl`` (every evaluation's predictions,
with the host that computed them) are such files. A run is named by its date and git commit: adding it twice
adds it once, so a history can be filled again from git's committed versions of a result.
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Callable, Optional

from .config import load_config
from .provenance import atomic_path


def read_history(path: Path) -> list:
    """Every recorded run, oldest first; a line that is not JSON is an error naming the file and line."""
    if not path.is_file():
        return []
    runs = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                runs.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {i}: not a JSON run record ({e.msg})") from None
    return sorted(runs, key=lambda r: r["date"])


def add_to_history(path: Path, new: list) -> int:
    """Append the runs not recorded yet (same date and commit: the same run), atomically; returns how many."""
    runs = read_history(path)
    seen = {(r["date"], r["commit"]) for r in runs}
    fresh = []
    for r in new:
        if (r["date"], r["commit"]) not in seen:
            seen.add((r["date"], r["commit"]))
            fresh.append(r)
    if fresh:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in sorted(runs + fresh, key=lambda r: r["date"])))
    return len(fresh)


def _git(root: Path, *args) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def version_at(root: Path, rev: str, rel: Path) -> Optional[dict]:
    """The JSON file ``rel`` (a path under ``root``) as commit ``rev`` holds it; None where it holds none."""
    try:
        return json.loads(_git(root, "show", f"{rev}:{rel}"))
    except subprocess.CalledProcessError:
        return None


def committed_versions(root: Path, rel: Path) -> list:
    """(commit, parsed JSON) of every committed version of ``rel`` (a path under ``root``), newest first."""
    out = []
    for rev in _git(root, "log", "--format=%H", "--", str(rel)).split():
        doc = version_at(root, rev, rel)
        if doc is not None:                     # None: the commit that deleted the file
            out.append((rev, doc))
    return out


def cli(argv, prog: str, doc: str, what: str, runs_path: Callable, from_git: Callable, line: Callable) -> int:
    """``python -m <prog> backfill|show PROFILE``: add the runs of every committed version of the profile's
    result to its history (``backfill``), then print one ``line(run)`` per recorded run, oldest first."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    ap.add_argument("command", choices=["backfill", "show"])
    ap.add_argument("profile")
    args = ap.parse_args(argv)
    cfg = load_config(args.profile)
    if args.command == "backfill":
        print(f"{add_to_history(runs_path(cfg), from_git(cfg))} {what} added to {runs_path(cfg)}")
    for r in read_history(runs_path(cfg)):
        print(r["date"], (r["commit"] or "?")[:7], "dirty" if r["dirty"] else "clean", line(r))
    return 0
