"""The door to the workflow engine: what ``make`` calls to run the study's DAG (``workflow/Snakefile``) with Snakemake.

    python -m utils.workflow study PROFILE [--seed N]      # `make paper-figures`: every step, then the report
    python -m utils.workflow step STEP PROFILE [--seed N]  # `make bench`, `make explain`, `make sizes`, ...
    python -m utils.workflow seeds PROFILE                 # `make seeds`: each seed's steps 01-06, the summary
    python -m utils.workflow grid configs/grid.yaml        # `make grid`: profiles x seeds
    python -m utils.workflow unlock                        # `make unlock`: after a run killed hard

Common options: ``--cores`` (default: this machine's), ``--cluster slurm`` (each step a SLURM job, through
``profiles/slurm``), ``--dry-run``, ``--cpu-feature`` (the node feature the CPU-timed steps ask for),
``--gpu-request gres`` (``--gres=gpu:1`` where a cluster rejects ``--gpus``), ``--redo`` (a grid's committed,
finished runs are redone too). Before the DAG, each profile is checked (``utils.preflight``) where its files changed
since the last check. A run always resumes: steps a killed run left unfinished are rerun (``--rerun-incomplete``;
every step writes its outputs under a temporary name and renames them, so none is half-written). A lock left by a
run killed hard is explained, with the command that clears it, never cleared here: another run may hold it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import yaml

from . import steps as S
from .config import ConfigError, available_cpus, find_root, load_config, profile_chain, replicate_dir

SNAKEFILE = "workflow/Snakefile"
CLUSTER_PROFILES = ("slurm",)


class WorkflowError(RuntimeError):
    """A run that cannot start (a lock, a grid file, a profile): one message, exit status 2."""


# --------------------------------------------------------------------------- the grid
def read_grid(path: str | os.PathLike, root: Path) -> dict:
    """``{profile name: {"profile": name or YAML path, "seeds": [...] or None, "study": bool}}`` from a grid file:

        profiles: [default, drugs, base]     # names under configs/ or YAML paths
        seeds: [42, 43, 44, 45, 46]          # every profile's replicates (absent: each profile's own ``seeds:``)
        study: true                          # each profile's own study too, through its report (default true)
        only: {seeds: {study: false}}        # per profile, in place of the two above
    """
    p = Path(path)
    p = p if p.is_absolute() else (Path.cwd() / p if (Path.cwd() / p).is_file() else root / p)
    if not p.is_file():
        raise WorkflowError(f"grid file not found: {path}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise WorkflowError(f"grid file {p} is not valid YAML: {e}") from None
    unknown = set(raw) - {"profiles", "seeds", "study", "only"}
    if unknown:
        raise WorkflowError(f"grid file {p}: unknown key(s) {sorted(unknown)}; known: profiles, seeds, study, only")
    if not raw.get("profiles"):
        raise WorkflowError(f"grid file {p}: 'profiles' lists no profile")
    out = {}
    for given in raw["profiles"]:
        cfg = _profile(str(given), root, p)
        entry = {"seeds": raw.get("seeds"), "study": raw.get("study", True),
                 **(raw.get("only") or {}).get(cfg.name, {})}
        seeds = entry["seeds"] if entry["seeds"] is not None else cfg.seeds
        if seeds is not None and (not isinstance(seeds, list) or not all(isinstance(s, int) and s >= 0
                                                                          for s in seeds)):
            raise WorkflowError(f"grid file {p}: the seeds of {cfg.name} must be a list of integers >= 0, "
                                f"not {seeds!r}")
        if entry["seeds"] is not None:
            _profile(str(given), root, p, {"seeds": seeds})      # the profile with the grid's seeds validates
        if not entry["study"] and not seeds:
            raise WorkflowError(f"grid file {p}: {cfg.name} runs no study and has no seeds: nothing to run")
        if cfg.name in out:
            raise WorkflowError(f"grid file {p}: profile {cfg.name} listed twice")
        out[cfg.name] = {"profile": _arg(given, root), "seeds": entry["seeds"], "study": bool(entry["study"])}
    extra = set((raw.get("only") or {})) - set(out)
    if extra:
        raise WorkflowError(f"grid file {p}: 'only' names {sorted(extra)}, which 'profiles' does not list")
    return out


def _arg(given, root: Path) -> str:
    """A profile as the steps are given it: a name under configs/, or the absolute path of a YAML file."""
    g = str(given)
    return str(profile_chain(g, root)[0]) if g.endswith((".yaml", ".yml")) else g


def _profile(given: str, root: Path, where, overrides: Optional[dict] = None):
    try:
        return load_config(given, overrides=overrides, root=root)
    except ConfigError as e:
        raise WorkflowError(f"grid file {where}: {e}") from None


# --------------------------------------------------------------------------- committed, finished runs
def _git_files(root: Path) -> tuple:
    """(files git tracks, files that differ from the last commit) under results/; both empty outside a checkout."""
    def git(*args):
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return set(r.stdout.split("\n")) - {""} if r.returncode == 0 else set()
    return git("ls-files", "--", "results"), git("diff", "--name-only", "HEAD", "--", "results")


def finished(root: Path, grid: dict) -> tuple:
    """(runs, summaries) of ``grid`` whose results are committed and unmodified: every step's results JSON of a
    profile's study (``steps.PAPER_FIGURES``) or of a seed's replicate (``steps.REPLICATE``), and each summary over
    seeds whose replicates are all finished. The grid takes them as they are (their artifacts are not kept)."""
    tracked, changed = _git_files(root)
    done = lambda run, names: all(   # noqa: E731
        (f := S.outputs(n, run)[0]) in tracked and f not in changed for n in names)
    runs, summaries = [], []
    for name, entry in grid.items():
        study = list(S.STUDY)       # a derived step's file (CUDA placement) may postdate a committed run
        if entry["study"] and done(name, study):
            runs.append(name)
        seeds = entry["seeds"] if entry["seeds"] is not None else load_config(entry["profile"], root=root).seeds
        reps = [f"{name}/{replicate_dir(s)}" for s in seeds or []]
        fin = [r for r in reps if done(r, S.REPLICATE)]
        runs += fin
        if reps and len(fin) == len(reps) and done(name, ["seeds"]):
            summaries.append(name)
    return runs, summaries


# --------------------------------------------------------------------------- the lock
def live_runs(root: Path) -> list:
    """(pid, command line) of the snakemake processes running in ``root`` on this machine."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        words = [c.decode(errors="replace") for c in cmd if c]
        if int(proc.name) != os.getpid() and Path(cwd) == root and any(
                Path(w).name == "snakemake" or w.endswith("snakemake/__main__.py") for w in words[:3]):
            out.append((int(proc.name), " ".join(words)))
    return out


def check_lock(root: Path) -> None:
    """A lock under .snakemake/locks/ with no snakemake process of this machine running here: a run was killed hard.
    Said, with the command that clears it; never cleared here (a run on another machine sharing this folder, a
    cluster's login node, would not show)."""
    locks = root / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return
    live = live_runs(root)
    if live:
        pid, cmd = live[0]
        raise WorkflowError(f"another run is live in {root} (pid {pid}: {cmd[:160]}): wait for it to finish, "
                            f"or stop it (kill {pid})")
    raise WorkflowError(
        f"{locks} holds the lock of a run that is no longer running on this machine: one was killed hard (SIGKILL, "
        f"a lost session or power). If no run of this folder is live elsewhere (another node of a cluster sharing "
        f"it), clear it with `make unlock` (snakemake --unlock) and run again: the steps it left unfinished are "
        f"rerun, the finished ones kept")


# --------------------------------------------------------------------------- the profile's check
def preflight(root: Path, profile: str) -> None:
    """``python -m utils.preflight`` where the profile's files or the check's modules changed since its last pass
    (its mark: build/<name>.preflight): the steps never wait on it, so it reruns none of them."""
    step = S.get("preflight")
    name = load_config(profile, root=root).name
    mark = root / S.outputs(step, name)[0]
    ins = [*profile_chain(profile, root), *(root / f for f in S.module_files(step))]
    if mark.is_file() and all(p.stat().st_mtime <= mark.stat().st_mtime for p in ins):
        return
    r = subprocess.run(S.command(step, name, profile, python=sys.executable), shell=True, cwd=root)
    if r.returncode:
        raise SystemExit(r.returncode)


# --------------------------------------------------------------------------- the command line
def snakemake_command(root: Path, targets: list, config: dict, *, cores: Optional[int] = None,
                      cluster: Optional[str] = None, dry_run: bool = False, extra: tuple = ()) -> list:
    """The snakemake command line: the Snakefile, the targets, the workflow's config (written to
    build/workflow/config.yaml), one job per core locally or the cluster's profile, resuming unfinished steps,
    rerunning a step where one of its inputs is newer than its outputs (as make did: no other trigger)."""
    cfg_file = root / "build" / "workflow" / "config.yaml"
    cfg_file.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config, sort_keys=True)
    if not cfg_file.is_file() or cfg_file.read_text() != text:
        _write_text(cfg_file, text)
    cmd = [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "--configfile", str(cfg_file.relative_to(root)),
           "--rerun-incomplete", "--rerun-triggers", "mtime", "--printshellcmds"]
    if cluster:
        if cluster not in CLUSTER_PROFILES:
            raise WorkflowError(f"--cluster {cluster}: known: {', '.join(CLUSTER_PROFILES)}")
        cmd += ["--workflow-profile", f"profiles/{cluster}"]
    else:
        cmd += ["--cores", str(cores or available_cpus())]
    if dry_run:
        cmd += ["--dry-run"]
    return cmd + list(extra) + ["--", *targets]


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def plan(args, root: Path) -> tuple:
    """(targets, config, profiles to check) of a command."""
    config = {"gpu_request": args.gpu_request, **({"cpu_feature": args.cpu_feature} if args.cpu_feature else {})}
    if args.command == "grid":
        grid = read_grid(args.grid, root)
    elif args.command == "seeds":
        grid = {load_config(args.profile, root=root).name: {"profile": _arg(args.profile, root), "seeds": None,
                                                            "study": False}}
        read_seeds = load_config(args.profile, root=root).seeds
        if not read_seeds:
            raise WorkflowError(f"profile {args.profile!r} lists no seeds: set seeds: [42, 43, ...] to repeat its "
                                f"training")
    else:
        cfg = load_config(args.profile, root=root)
        arg = _arg(args.profile, root)
        config["profiles"] = {cfg.name: arg} if arg != cfg.name else {}
        run = cfg.name if args.seed is None else f"{cfg.name}/{replicate_dir(args.seed)}"
        if args.seed is not None and args.seed not in cfg.seeds:
            raise WorkflowError(f"seed {args.seed} is not one of the seeds of profile {cfg.name!r} "
                                f"({cfg.seeds or 'none: the profile has no seeds list'})")
        if args.command == "study":
            targets = S.outputs("report", cfg.name) if args.seed is None else S.outputs("evaluate", run)[:1]
        else:
            step = S.get(args.step)
            if args.seed is not None and not step.replicate:
                raise WorkflowError(f"step {step.name} runs on a profile, not on one seed's replicate")
            targets = S.outputs(step, run)[:1]
        return targets, config, [arg]
    config["profiles"] = {n: e["profile"] for n, e in grid.items() if e["profile"] != n}
    config["grid"] = {n: {"seeds": list(e["seeds"]) if e["seeds"] is not None else None, "study": e["study"]}
                      for n, e in grid.items()}
    if not args.redo:
        config["finished"], config["summaries"] = finished(root, grid)
    # the summaries are targets too: a report drawn before (by paper-figures) would not make snakemake remake them
    seeded = [n for n, e in grid.items() if (e["seeds"] or load_config(e["profile"], root=root).seeds)
              and n not in config.get("summaries", [])]
    targets = [t for n in seeded for t in S.outputs("seeds", n)] + [t for n in grid for t in S.outputs("report", n)]
    return targets, config, [e["profile"] for e in grid.values()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utils.workflow", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cores", type=int, help="local cores (default: this machine's)")
    common.add_argument("--cluster", choices=CLUSTER_PROFILES, help="submit each step as a job (profiles/<name>)")
    common.add_argument("--dry-run", "-n", action="store_true", help="list the jobs, run none")
    common.add_argument("--cpu-feature", help="the node feature the CPU-timed steps ask a cluster for (-C)")
    common.add_argument("--gpu-request", choices=("gpus", "gres"), default="gpus",
                        help="how a GPU is asked for: --gpus=1, or --gres=gpu:1")
    common.add_argument("--redo", action="store_true", help="redo a grid's committed, finished runs too")
    common.add_argument("--snakemake", default="", help="more snakemake options, as one string")
    p = sub.add_parser("study", parents=[common], help="every step of a profile, then its report")
    p.add_argument("profile")
    p.add_argument("--seed", type=int, help="one seed's replicate of the profile: steps 01-06")
    p = sub.add_parser("step", parents=[common], help="one step (and what it needs)")
    p.add_argument("step", choices=[s.name for s in S.STEPS if s.kind not in ("check", "report")])
    p.add_argument("profile")
    p.add_argument("--seed", type=int)
    p = sub.add_parser("seeds", parents=[common], help="each seed's steps 01-06, the summary, the report")
    p.add_argument("profile")
    p = sub.add_parser("grid", parents=[common], help="profiles x seeds, from a grid file")
    p.add_argument("grid")
    sub.add_parser("unlock", help="clear the lock a run killed hard left (no run may be live)")
    args = ap.parse_args(argv)
    root = find_root()
    try:
        if args.command == "unlock":
            live = live_runs(root)
            if live:
                raise WorkflowError(f"a run is live here (pid {live[0][0]}): not unlocking")
            return subprocess.run([sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "--unlock", "--cores", "1"],
                                  cwd=root).returncode
        targets, config, profiles = plan(args, root)
        if not args.dry_run:
            check_lock(root)
            for p in profiles:
                preflight(root, p)
        cmd = snakemake_command(root, targets, config, cores=args.cores, cluster=args.cluster,
                                dry_run=args.dry_run, extra=tuple(args.snakemake.split()))
    except (WorkflowError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("$ snakemake " + " ".join(cmd[3:]), file=sys.stderr)
    return subprocess.run(cmd, cwd=root).returncode


if __name__ == "__main__":
    raise SystemExit(main())
