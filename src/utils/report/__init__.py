"""Results JSON -> figures (seaborn; PDF for the paper, PNG for reading), LaTeX tables and the paper's
macros. Everything here reads ``results/<profile>/*.json`` only; no number is typed by hand.

The package: ``readers`` (typed access to the results), pure builders (``tables``, ``figures`` with the
data they plot in ``frames``, ``macros``), one ``writer``, and ``ARTIFACTS``, the registry that
``render_all`` walks. A new table or figure is a builder and one ``Artifact`` line::

    python -m utils.report default        # every table, figure and macro of the default profile
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt

from ..config import Config, load_config
from ..explain import write_html
from .figures import (
    batching_figure,
    bench_figure,
    data_figure,
    evaluation_figure,
    explain_agreement_figure,
    explain_example_figure,
    explain_faithfulness_figure,
    op_time_figure,
    seeds_figure,
    sizes_figure,
    tradeoff_figure,
    training_figure,
    variant_palette,
)
from .frames import INT8_DOT_FACTOR
from .macros import amdahl_bound, paper_macros, seeds_macros
from .readers import MissingResult, Results
from .readme import README_PROFILE, write_readme
from .runtimes import cuda_placement_table, deploy_table, runtime_profile_table
from .scale import scale_macros, scale_table
from .tables import (
    batching_table,
    bench_runs_table,
    bench_table,
    data_table,
    evaluation_table,
    explain_agreement_table,
    explain_batching_table,
    explain_faithfulness_table,
    explain_shap_table,
    gpu_table,
    gradients_table,
    hosts_table,
    original_table,
    placement_table,
    protocol_table,
    quantize_table,
    seeds_table,
    sizes_table,
    steps_table,
)
from .writer import Drawn, Table, save_figure, write_macros, write_summary, write_table

__all__ = ["ARTIFACTS", "Artifact", "Drawn", "MissingResult", "Results", "Table", "INT8_DOT_FACTOR", "amdahl_bound",
           "build", "figure", "macros", "main", "render_all", "table", "variant_palette", "write_macros",
           "write_table", "save_figure"]


@dataclass(frozen=True)
class Artifact:
    """One output of the report: a table or figure builder and the result step it needs (skipped, with
    a note, where that step's JSON is not there)."""
    builder: Callable
    step: str

    @property
    def name(self) -> str:
        return self.builder.__name__


# the order of summary.md and of the paper's tables
ARTIFACTS = [Artifact(fn, step) for step, fns in (
    ("data", (data_figure, data_table)),
    ("train_fp32", (training_figure,)),
    ("quantize", (quantize_table,)),
    ("evaluate", (evaluation_figure, evaluation_table, batching_figure, batching_table, hosts_table)),
    ("bench", (bench_figure, tradeoff_figure, op_time_figure, bench_table, protocol_table, bench_runs_table,
               placement_table, gpu_table, original_table, deploy_table, runtime_profile_table)),
    ("explain", (explain_example_figure, explain_agreement_figure, explain_faithfulness_figure,
                 explain_agreement_table, explain_faithfulness_table, explain_batching_table, explain_shap_table,
                 steps_table)),
    ("seeds", (seeds_figure, seeds_table)),
    ("sizes", (sizes_figure, sizes_table)),
    ("gradients", (gradients_table,)),
    ("cuda_placement", (cuda_placement_table,)),
) for fn in fns]


# steps that `make paper-figures` does not run (each has its own make target): what the report skips without them
OWN_COMMANDS = {"sizes": "figure and table are", "gradients": "table is"}


def _artifact(name: str) -> Artifact:
    found = [a for a in ARTIFACTS if a.name == name or a.name == f"{name}_table" or a.name == f"{name}_figure"]
    if not found:
        raise KeyError(f"no table or figure {name!r}; known: {', '.join(a.name for a in ARTIFACTS)}")
    return found[0]


def build(cfg: Config, name: str):
    """One table or figure of ``cfg``'s results, built and not written (a ``Table``, a ``Drawn`` or None)."""
    return _artifact(name).builder(Results(cfg))


def table(cfg: Config, name: str):
    """A table as a DataFrame, for a notebook (``name``: e.g. ``evaluation`` or ``evaluation_table``)."""
    t = build(cfg, name if name.endswith("_table") else f"{name}_table")
    return None if t is None else t.df


def figure(cfg: Config, name: str):
    """A figure (matplotlib), for a notebook (``name``: e.g. ``bench`` or ``bench_figure``)."""
    d = build(cfg, name if name.endswith("_figure") else f"{name}_figure")
    return None if d is None else d.fig


def macros(cfg: Config) -> dict:
    """The paper's macros (name -> text), not written."""
    return paper_macros(Results(cfg))


def explain_html(cfg: Config) -> Path:
    """Browsable HTML pages of every explanation, in the git-ignored explanations/<profile>/."""
    res = Results(cfg)
    return write_html(res.explain, cfg.path("explanations", cfg.name), res.labels)


def render_all(cfg: Config) -> list:
    """Every figure and table of the study that the profile's results allow, the paper's macros, the
    browsable explanations and ``results/<profile>/summary.md`` (the tables in Markdown)."""
    res, done, md = Results(cfg), [], []
    missing = [s for s in dict.fromkeys(a.step for a in ARTIFACTS) if not res.has(s)]
    summary_only = res.has("seeds") and not res.has("data")    # `make seeds`: the summary over the seeds
    for step in missing:
        if step == "seeds" or summary_only:    # a profile without seeds has no seeds.json; a summary, no steps
            continue
        if (res.dir / f"{step}.json").is_file():     # there, but of other files than this run's: said by res.has
            continue
        if step in OWN_COMMANDS:                # measured by a command of its own, not by paper-figures
            print(f"report: results/{cfg.name}/{step}.json not found (`make {step} PROFILE={cfg.name}` measures it); "
                  f"its {OWN_COMMANDS[step]} skipped")
            continue
        print(f"report: results/{cfg.name}/{step}.json not found; its figures and tables are skipped")
    for a in ARTIFACTS:
        if a.step in missing:
            continue
        out = a.builder(res)
        if out is None:           # nothing to draw for this profile (e.g. no GPU run)
            continue
        if isinstance(out, Drawn):
            save_figure(out, cfg)
            plt.close(out.fig)
        else:
            write_table(out, cfg)
            md.append((a.name.replace("_", " "), out))
        done.append(a.name)
    if res.has("evaluate") or summary_only:
        numbers = seeds_macros(res) if summary_only else paper_macros(res)
        write_macros(cfg, numbers)
        done.append("paper_macros")
        if cfg.name == README_PROFILE and not summary_only and write_readme(Path(cfg.root) / "README.md", numbers):
            done.append("readme_findings")
    if res.has("explain"):
        explain_html(cfg)
        done.append("explain_html")
    if cfg.compare_with and res.has("evaluate"):
        other = Results(load_config(cfg.compare_with, root=cfg.root))
        if other.has("evaluate"):
            t = scale_table(res, other)
            write_table(t, cfg)
            md.append(("scale table", t))
            write_macros(cfg, scale_macros(res, other), name="scale_numbers",
                         source=f"{cfg.name}/ and results/{other.name}")
            done += ["scale_table", "scale_macros"]
        else:
            print(f"report: results/{other.name}/evaluate.json not found; the table setting {cfg.name!r} beside "
                  f"{other.name!r} is skipped")
    write_summary(cfg, md)
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utils.report",
                                 description="Draw every figure and LaTeX table from results/<profile>/*.json")
    ap.add_argument("profile", nargs="?", default="default", help="profile name or YAML path")
    args = ap.parse_args(argv)
    cfg = load_config(args.profile)
    done = render_all(cfg)
    print(f"report: {len(done)} figures/tables for profile {cfg.name!r} -> {cfg.figures_dir}, {cfg.tables_dir}")
    return 0

