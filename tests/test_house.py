"""The house rules of the library, checked on its source: steps that import one way (no cycle, no
function-level import but the optional runtimes), one shape per step, one source of defaults, and no
variant chosen by a name prefix outside the registry."""
from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import yaml

from utils import pipeline, steps
from utils.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "utils"
# (module, function) -> the only modules it may import inside a function: optional runtimes
OPTIONAL_IMPORTS = {("data", "load_hub"): {"datasets"}, ("quantize", "convert_fp16"): {"onnxconverter_common"},
                    ("openvino_rt", "nncf_int8"): {"nncf"}, ("openvino_rt", "_nncf_version"): {"nncf"}}


def _modules() -> dict:
    return {".".join(p.relative_to(SRC).with_suffix("").parts): p for p in SRC.rglob("*.py")}


def _internal(node: ast.ImportFrom, module: str, mods: dict) -> list:
    """The library modules a relative import in ``module`` names (``from .x import y``, ``from . import x``)."""
    if not node.level:
        return []
    pkg = module.split(".")[:-1]
    base = pkg[:len(pkg) - (node.level - 1)]
    target = base + (node.module.split(".") if node.module else [])
    out = []
    for alias in node.names:
        for cand in (target + [alias.name], target + ["__init__"], target):
            if ".".join(cand) in mods:
                out.append(".".join(cand))
                break
    return out


def test_the_library_has_no_import_cycle():
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.parse(path.read_text()).body:           # module level only
            if isinstance(node, ast.ImportFrom):
                deps |= set(_internal(node, name, mods))
        graph[name] = deps - {name}
    seen, stack = set(), []

    def visit(n):
        if n in stack:
            raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(n):] + [n])}")
        if n in seen:
            return
        stack.append(n)
        for d in sorted(graph[n]):
            visit(d)
        stack.pop()
        seen.add(n)

    for n in sorted(graph):
        visit(n)
    assert {"bench", "explain", "variants"} <= graph["pipeline"] and "pipeline" not in graph["bench"]


def test_imports_are_made_at_module_level_except_optional_runtimes():
    found = []
    for name, path in _modules().items():
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    if mod not in OPTIONAL_IMPORTS.get((name, fn.name), set()):
                        found.append(f"{name}.{fn.name}: {mod}")
    assert found == []


def test_every_step_has_one_shape():
    assert pipeline.STEPS == steps.STUDY == ("data", "train_fp32", "train_qat", "export", "quantize", "evaluate",
                                             "bench", "explain")
    for step in pipeline.STEPS:
        sig = inspect.signature(getattr(pipeline, f"run_{step}"))
        assert list(sig.parameters) == ["cfg", "progress"] and sig.parameters["progress"].default is True, step


def test_the_default_profile_is_the_dataclass_defaults():
    """configs/default.yaml holds only what differs from the defaults in config.py (its description)."""
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    assert set(raw) == {"description"}
    cfg = load_config("default")
    plain = Config()
    for f in dataclasses.fields(Config):
        if f.name not in ("name", "root", "profile_file", "description"):
            assert getattr(cfg, f.name) == getattr(plain, f.name), f.name


def test_no_variant_is_chosen_by_a_name_prefix_outside_the_registry():
    """Families, integer files and runtimes are read from the registry (variants.py), not from names."""
    found = []
    for name, path in _modules().items():
        if name == "variants":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if any(p in line for p in ('startswith("onnx', 'startswith("pytorch', 'startswith("int8',
                                       '"int8" in n', "startswith('onnx")):
                found.append(f"{name}:{i}: {line.strip()}")
    assert found == []


def _long_functions(path: Path, limit: int) -> list:
    return [f"{path.name}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > limit]


def test_the_orchestrator_orchestrates_in_short_functions():
    """Every function of the pipeline (a step runs models and writes raw records) and the analyses that make a
    step's result (``summarise`` in evaluate, bench and explain) fit a screen: 60 lines; the profile's validation
    too."""
    long = [*_long_functions(SRC / "pipeline.py", 60), *_long_functions(SRC / "config.py", 60)]
    for module in ("evaluate", "bench", "explain"):
        long += [f for f in _long_functions(SRC / f"{module}.py", 60) if "summarise" in f or f.split(":")[1][0] == "_"]
    assert not long, long
    for module in ("evaluate", "bench", "explain"):
        assert callable(getattr(__import__(f"utils.{module}", fromlist=["summarise"]), "summarise"))


def test_the_report_reads_no_step_result_by_string_key_at_its_top_level():
    """The report reads each step's typed result (``utils.results``) by attribute: ``res.evaluate["variants"]``
    and its like would fail on the typed object, and are not written anywhere in the report."""
    steps = "|".join(__import__("utils.results", fromlist=["RESULTS"]).RESULTS)
    import re
    pattern = re.compile(rf"\bres\.({steps})(\[|\.get\()")
    found = [f"{p.name}: {m.group(0)}" for p in (SRC / "report").glob("*.py") for m in pattern.finditer(p.read_text())]
    assert not found, found
