"""The study's steps, declared once.

Every step the workflow runs is one ``Step`` here: its name, how it runs (a notebook through papermill, or a
module's command line), the step function its code starts from, the library modules that code calls, the steps
whose outputs it reads, the files it writes, and what it asks of a cluster. The Snakefile (``workflow/Snakefile``)
makes one rule per step from this list; ``pipeline.STEPS``, the report's readers and the tests take the step names
from it; ``tests/test_workflow.py`` compares each step's ``modules`` with what its code calls (``called_modules``),
so a module a step starts to use cannot be left out of what reruns it.

Outputs are patterns over ``{run}`` (a profile's name, or ``<profile>/seed-<n>`` for one seed's replicate) or
``{profile}``; the study's steps write their results JSON and the artifact the next step reads, so a fresh clone
(whose artifacts are git-ignored) runs the whole study, as ``make`` did.
"""
from __future__ import annotations

import ast
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SRC = Path(__file__).resolve().parent          # src/utils
LIBRARY = "src/utils"


@dataclass(frozen=True)
class Step:
    """One step. ``entry``: ``module:function`` its code starts from (the module a package: the whole package);
    ``modules``: the library modules that code calls (``called_modules`` of ``entry``), whose edits rerun it;
    ``notebook``: ``notebooks/<notebook>.ipynb``, run by papermill (else ``command``: its command line, with
    ``{python}``, ``{profile}`` (the profile's name or YAML path), ``{run}`` and ``{seeds}`` (a grid's seeds));
    ``after``: the steps whose outputs it reads; ``outputs``: what it writes;
    ``data_files``: other inputs under src/utils; ``replicate``: run for each seed's replicate too (steps 01-06);
    ``study``: part of ``make paper-figures``; ``kind``: ``study`` (the eight steps of ``pipeline``),
    ``derived`` (measured on the study's files, recording their hashes), ``extra`` (a measurement of its own),
    ``summary`` (over the seeds), ``report``, or ``check`` (the profile, its data and model, checked in seconds
    before any step); ``heavy``: takes every core (one at a time, so timings stay
    comparable); ``gpu``: asks a cluster for a GPU; ``cpu_feature``: asks a cluster for the node feature named by
    the workflow's ``cpu_feature`` (the speed-ups depend on the CPU's instruction set); ``local``: runs on the
    submitting node; ``runtime`` (minutes) and ``mem_mb``: what a cluster job asks for."""
    name: str
    entry: str
    modules: tuple
    outputs: tuple
    notebook: Optional[str] = None
    command: Optional[str] = None
    after: tuple = ()
    data_files: tuple = ()
    replicate: bool = False
    study: bool = False
    kind: str = "study"
    heavy: bool = True
    gpu: bool = False
    cpu_feature: bool = False
    local: bool = False
    runtime: int = 60
    mem_mb: int = 16000
    wildcard: str = "run"

    @property
    def result(self) -> str:
        """The results JSON (the first output)."""
        return self.outputs[0]


def _m(names: str) -> tuple:
    return tuple(names.split())


STEPS = (
    Step("preflight", "preflight:main",
         _m("base config data modeling onnx_export openvino_rt packaged packaged_data predict preflight provenance qat "
            "quantize sizes variants"),
         ("build/{profile}.preflight",),
         command="mkdir -p build && {python} -m utils.preflight {profile} && touch build/{run}.preflight",
         kind="check", heavy=False, local=True, wildcard="profile", runtime=10, mem_mb=4000),
    Step("data", "pipeline:run_data",
         _m("config data modeling packaged packaged_data pipeline provenance results variants"),
         ("results/{run}/data.json", "data/processed/{run}/test.csv"), notebook="01_data", replicate=True,
         study=True, runtime=30),
    Step("train_fp32", "pipeline:run_train_fp32",
         _m("config data modeling packaged pipeline predict provenance results training variants"),
         ("results/{run}/train_fp32.json", "artifacts/{run}/fp32/model.safetensors"), notebook="02_train_fp32",
         after=("data",), replicate=True, study=True, gpu=True, runtime=240),
    Step("train_qat", "pipeline:run_train_qat",
         _m("config data modeling pipeline predict provenance qat results training variants"),
         ("results/{run}/train_qat.json", "artifacts/{run}/train_qat.done"), notebook="03_train_qat",
         after=("train_fp32",), replicate=True, study=True, gpu=True, runtime=240),
    Step("export", "pipeline:run_export",
         _m("config data modeling onnx_export ort_inspect pipeline predict provenance quantize results variants"),
         ("results/{run}/export.json", "artifacts/{run}/onnx/fp32.onnx"), notebook="04_export_onnx",
         after=("train_qat",), replicate=True, study=True),
    Step("quantize", "pipeline:run_quantize",
         _m("config data modeling onnx_export openvino_rt ort_inspect pipeline predict provenance qat quantize "
            "results variants"),
         ("results/{run}/quantize.json", "artifacts/{run}/onnx/int8-dynamic.onnx"), notebook="05_quantize",
         after=("export",), replicate=True, study=True),
    Step("evaluate", "pipeline:run_evaluate",
         _m("bench config data eval_runs evaluate history modeling onnx_export openvino_rt ort_inspect pipeline "
            "predict provenance qat quantize results variants"),
         ("results/{run}/evaluate.json",), notebook="06_evaluate", after=("quantize",), replicate=True,
         study=True, runtime=120),
    Step("bench", "pipeline:run_bench",
         _m("bench bench_runs config data history modeling onnx_export openvino_rt ort_inspect pipeline predict "
            "provenance qat quantize results torch_int8 variants"),
         ("results/{run}/bench.json",), notebook="07_benchmark", after=("evaluate", "quantize"), study=True,
         cpu_feature=True, runtime=120),
    Step("explain", "pipeline:run_explain",
         _m("config data explain metrics modeling onnx_export openvino_rt pipeline predict provenance qat quantize "
            "results variants"),
         ("results/{run}/explain.json",), notebook="08_explain", after=("evaluate", "quantize"), study=True,
         runtime=240),
    Step("cuda_placement", "cuda_placement:main",
         _m("base config cuda_placement packaged_data provenance results variants"),
         ("results/{run}/cuda_placement.json",), command="{python} -m utils.cuda_placement {profile}",
         after=("quantize",), data_files=("data/ort_cuda_kernels.json",), study=True, kind="derived", heavy=False,
         local=True, runtime=10, mem_mb=4000),
    Step("hostdrift", "hostdrift:main",
         _m("base config hostdrift modeling onnx_export ort_inspect packaged_data predict provenance quantize "
            "results variants"),
         ("results/{run}/hostdrift.json",), command="{python} -m utils.hostdrift {profile}",
         after=("quantize", "data"), kind="derived", cpu_feature=True),
    Step("gradients", "gradients:main",
         _m("base config explain gradients metrics modeling onnx_export openvino_rt packaged_data predict "
            "provenance qat quantize results variants"),
         ("results/{run}/gradients.json",), command="{python} -m utils.gradients {profile}", after=("explain",),
         kind="derived", runtime=120),
    Step("sizes", "sizes:run_sizes",
         _m("bench config cuda_placement data modeling onnx_export openvino_rt ort_inspect packaged predict "
            "provenance qat quantize results sizes variants"),
         ("results/{run}/sizes.json",), notebook="09_model_size", after=("data",), kind="extra",
         cpu_feature=True, runtime=120),
    Step("bench_gpu", "gpu_bench:main",
         _m("base bench config data gpu_bench modeling onnx_export openvino_rt ort_inspect packaged_data predict "
            "provenance qat quantize torch_int8 variants"),
         ("results/{run}/bench_gpu.json",),
         command=("{python} -m utils.gpu_bench pack {profile} build/gpu-pack/{run} && "
                  "{python} -m utils.gpu_bench run {profile} --pack build/gpu-pack/{run}"),
         after=("quantize",), kind="extra", gpu=True),
    Step("seeds", "seeds:main",
         _m("base config modeling onnx_export openvino_rt packaged_data predict provenance qat quantize results "
            "seeds variants"),
         ("results/{profile}/seeds.json",), command="{python} -m utils.seeds summarize {profile}{seeds}",
         kind="summary", heavy=False, local=True, wildcard="profile", runtime=10, mem_mb=4000),
    Step("report", "report:render_all",
         _m("bench_runs config data eval_runs explain metrics ort_inspect packaged packaged_data provenance results "
            "stats steps variants"),
         ("build/{profile}.report",), command="{python} -m utils.report {profile} && touch build/{run}.report",
         after=("data", "train_fp32", "train_qat", "export", "quantize", "evaluate", "bench", "explain",
                "cuda_placement"),
         kind="report", heavy=False, local=True, wildcard="profile", runtime=30, mem_mb=8000),
)

BY_NAME = {s.name: s for s in STEPS}
STUDY = tuple(s.name for s in STEPS if s.kind == "study")            # the eight steps of ``pipeline``
DERIVED = tuple(s.name for s in STEPS if s.kind == "derived")          # they record the files they measured
PAPER_FIGURES = tuple(s.name for s in STEPS if s.study) + ("report",)   # what `make paper-figures` runs
REPLICATE = tuple(s.name for s in STEPS if s.replicate)                # one seed's replicate: steps 01-06
# the results JSON of every step, by step name (what the report reads)
RESULT_FILES = tuple(Path(s.result).stem for s in STEPS if s.result.startswith("results/"))


def get(name: str) -> Step:
    if name not in BY_NAME:
        raise KeyError(f"unknown step {name!r}; steps: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def outputs(step: str | Step, run: str) -> list:
    """The files ``step`` writes for ``run`` (``<profile>`` or ``<profile>/seed-<n>``)."""
    s = get(step) if isinstance(step, str) else step
    return [o.format(run=run, profile=run.split("/")[0]) for o in s.outputs]


def module_files(step: str | Step) -> list:
    """The library files whose edits rerun ``step`` (repository-relative): its modules (a package: every file of
    it) and its data files."""
    s = get(step) if isinstance(step, str) else step
    out = []
    for m in s.modules:
        out += [f"{LIBRARY}/{m}.py"] if (SRC / f"{m}.py").is_file() else []
    if s.kind == "report":
        out += [f"{LIBRARY}/report/{p.name}" for p in sorted((SRC / "report").glob("*.py"))]
    out += [f"{LIBRARY}/{f}" for f in s.data_files]
    return out


# --------------------------------------------------------------------------- what a step's code calls
def _module_path(module: str, src: Path) -> Path:
    p = src / f"{module}.py"
    return p if p.is_file() else src / module / "__init__.py"


def _imports(tree: ast.Module, package: bool) -> tuple:
    """(alias -> library module, name -> library module it was imported from) of a module's top-level imports.
    A module of the ``report`` package reaches the library with ``..``; its own package is not followed."""
    aliases, names = {}, {}
    for n in tree.body:
        if not isinstance(n, ast.ImportFrom) or n.level == 0:
            continue
        up = n.level - (1 if package else 0)     # how far above src/utils/<package>/ the import climbs
        if package and up < 1:
            continue                             # inside the package itself
        if n.module:
            target = n.module.split(".")[0]
            for a in n.names:
                names[a.asname or a.name] = target
        else:
            for a in n.names:
                aliases[a.asname or a.name] = a.name
    return aliases, names


def _parsed(module: str, cache: dict, src: Path) -> tuple:
    """(aliases, imported names, top-level functions and classes, registries) of a library module, parsed once."""
    if module not in cache:
        path = _module_path(module, src)
        if not path.is_file():
            cache[module] = ({}, {}, {}, {})
        else:
            tree = ast.parse(path.read_text())
            aliases, names = _imports(tree, package=False)
            defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef,
                                                                    ast.AsyncFunctionDef))}
            cache[module] = (aliases, names, defs, _registries(defs))
    return cache[module]


def _registries(defs: dict) -> dict:
    """registry name -> the functions registered in it: a decorator of the module that stores what it decorates
    into a module-level mapping (``register_recipe``: ``_HANDLERS[recipe_cls] = fn``); whoever looks the mapping up
    calls any of them."""
    fills = {}
    for name, node in defs.items():
        for sub in ast.walk(node):
            if isinstance(sub, ast.Subscript) and isinstance(sub.ctx, ast.Store) and isinstance(sub.value, ast.Name):
                fills[name] = sub.value.id
    out: dict = {}
    for name, node in defs.items():
        for d in getattr(node, "decorator_list", []):
            f = d.func if isinstance(d, ast.Call) else d
            if isinstance(f, ast.Name) and f.id in fills:
                out.setdefault(fills[f.id], []).append(name)
    return out


def called_modules(entry: str, src: Path = SRC) -> set:
    """The library modules the code of ``entry`` (``module:function``) calls: the function, and every function
    and class it names, followed into the library modules they live in (``B.time_calls``, an imported name, a
    function of the same module), a class with all its methods, and every function a registry lookup can return
    (``variants.handler``: the recipes registered with ``register_recipe``). What runs when a module is imported
    is not followed. A package (``report``): every library
    module its files import."""
    module, func = entry.split(":")
    if (src / module).is_dir():
        found = set()
        for p in sorted((src / module).glob("*.py")):
            aliases, names = _imports(ast.parse(p.read_text()), package=True)
            found |= set(aliases.values()) | set(names.values())
        return found
    cache: dict = {}
    if func not in _parsed(module, cache, src)[2]:
        raise KeyError(f"{entry}: no function {func} in {module}")
    found, seen, todo = set(), set(), [(module, func)]
    while todo:
        mod, name = todo.pop()
        if (mod, name) in seen:
            continue
        seen.add((mod, name))
        found.add(mod)
        aliases, names, defs, registries = _parsed(mod, cache, src)
        for node in ast.walk(defs[name]):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                target = aliases[node.value.id]
                found.add(target)
                if node.attr in _parsed(target, cache, src)[2]:
                    todo.append((target, node.attr))
            elif isinstance(node, ast.Name):
                if node.id in registries and name not in registries[node.id]:
                    todo += [(mod, f) for f in registries[node.id]]
                if node.id in defs:
                    todo.append((mod, node.id))
                elif node.id in names:
                    target = names[node.id]
                    found.add(target)
                    if node.id in _parsed(target, cache, src)[2]:
                        todo.append((target, node.id))
                elif node.id in aliases:
                    found.add(aliases[node.id])
    return found


# --------------------------------------------------------------------------- how a step runs
def split_run(run: str) -> tuple:
    """``<profile>`` -> (profile, None); ``<profile>/seed-<n>`` -> (profile, n)."""
    profile, _, rest = run.partition("/")
    if not rest:
        return profile, None
    if not rest.startswith("seed-") or not rest[5:].isdigit():
        raise ValueError(f"run {run!r}: a profile's name, or <profile>/seed-<n> for one seed's replicate")
    return profile, int(rest[5:])


def command(step: str | Step, run: str, profile_arg: str, python: str = "python",
            seeds: Optional[list] = None) -> str:
    """The shell command that runs ``step`` for ``run``: its notebook through papermill (the executed copy under
    build/notebooks/<run>/; one seed's replicate passed as the override ``replicate``), or its module's command
    line. ``profile_arg``: the profile's name or YAML path; ``seeds``: the seeds, where they are not the profile's
    own (a grid's)."""
    s = get(step) if isinstance(step, str) else step
    _, seed = split_run(run)
    arg = shlex.quote(profile_arg)
    if seed is not None and not s.replicate:
        raise ValueError(f"step {s.name} runs on a profile, not on one seed's replicate ({run})")
    over = {**({"replicate": seed} if seed is not None else {}), **({"seeds": list(seeds)} if seeds else {})}
    if s.notebook:
        out = f"build/notebooks/{run}/{s.notebook}.ipynb"
        extra = f" -y {shlex.quote('overrides: ' + json.dumps(over))}" if over else ""
        return (f"mkdir -p build/notebooks/{run} && {python} -m papermill notebooks/{s.notebook}.ipynb {out} "
                f"-p profile {arg}{extra} --cwd notebooks --no-progress-bar --log-output")
    if seeds and "{seeds}" not in s.command:
        raise ValueError(f"step {s.name} takes no seeds")
    return s.command.format(python=python, profile=arg, run=run,
                            seeds=f" --seeds {','.join(map(str, seeds))}" if seeds else "")
