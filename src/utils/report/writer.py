"""The one writer: tables as booktabs LaTeX, figures as PDF + PNG, the paper's macros, summary.md.

Builders (``tables``, ``figures``, ``macros``) are pure: they return a ``Table``, a ``Drawn`` figure or
a dict; only this module writes, always atomically (a temporary sibling renamed into place).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd
from matplotlib.text import Text

from ..config import Config
from ..provenance import atomic_path

# the first line of every generated table says which code wrote it (`python -m utils.report <profile>`)
GENERATED_BY = "src/utils/report/"


@dataclass
class Table:
    """A table of pre-formatted cells, its caption and label: what ``write_table`` renders."""
    name: str
    df: pd.DataFrame
    caption: str
    label: str
    column_format: Optional[str] = None


@dataclass
class Drawn:
    """A drawn figure and the file name it is saved under (figures/<profile>/<name>.pdf|png)."""
    name: str
    fig: object


def tex_escape(s) -> str:
    """Escape LaTeX specials, except in strings that already hold math (``$...$``)."""
    s = str(s)
    return s if "$" in s else re.sub(r"([&%$#_{}])", r"\\\1", s)


def tex_numbers(s: str) -> str:
    """Typeset the numbers of a (LaTeX-escaped) cell or macro: a minus sign where a hyphen stands before a
    number, an en dash in a range of two numbers, the times sign after a ratio ("2.05x"), and no sign on a
    zero ("-0.00" and "+0.00" are 0.00)."""
    s = re.sub(r"(?<![\w.])[-+](0(?:\.0+)?)(?![\d.])", r"\1", s)                 # -0.00, +0.0: no sign
    s = re.sub(r"(?<=\d\.\d)(\d*)-(?=\d)", r"\1--", s)                              # 2.30-2.55: a range
    s = re.sub(r"(?<![\w.\-$])-(?=\.?\d)", r"\\ensuremath{-}", s)                  # -0.04: a minus sign
    return re.sub(r"(?<=\d)x(?![\w])", r"\\ensuremath{\\times}", s)                 # 2.05x: times


# the estimated width of a column set in \\small (lmodern at 10 pt: ~5.3 pt a character) and the text width it must
# fit (an A4 page with 2.3 cm margins: 483 pt; a little less, for the estimate's error)
# the lines a float of parts may take on an A4 page in \\small (~560 pt of text height left for it, ~12.5 pt a line),
# and the caption's characters a line; a taller table's parts become floats of their own
FLOAT_LINES, CAPTION_CHARS_PER_LINE = 44, 95
TALL_SHRINK = 0.9           # such a table is set in one part where that part shrinks to no less than this
PT_PER_CHAR, PT_PER_COLUMN, FIT_PT = 5.3, 9.0, 510.0      # calibrated on the default's tables; a part up to ~10%
                                                          # wider than the text shrinks to it (above the 85% floor)


def _shown(s: str) -> int:
    """Characters a cell prints (its LaTeX commands and braces not counted)."""
    s = re.sub(r"\\ensuremath\{(.)\}|\\ensuremath\{\\times\}", "x", str(s))
    s = re.sub(r"\\[A-Za-z]+\s*", "", s)
    return len(re.sub(r"[{}$]", "", s))


def two_line_header(header: str, cells) -> str:
    """A header much longer than its column's cells, broken at its middle space into two lines (a one-column
    tabular), so that the header does not set the column's width."""
    longest = max([_shown(v) for v in cells] + [1])
    words = header.split(" ")
    if _shown(header) <= longest + 4 or len(words) < 2 or "$" in header:
        return header
    cut = min(range(1, len(words)), key=lambda i: abs(_shown(" ".join(words[:i])) - _shown(" ".join(words[i:]))))
    return ("\\begin{tabular}[b]{@{}c@{}}" + " ".join(words[:cut]) + " \\\\ " + " ".join(words[cut:])
            + "\\end{tabular}")


def _header_width(h: str) -> int:
    m = re.match(r"\\begin\{tabular\}\[b\]\{@\{\}c@\{\}\}(.*) \\\\ (.*)\\end\{tabular\}$", h)
    return max(_shown(m.group(1)), _shown(m.group(2))) if m else _shown(h)


def column_groups(df: pd.DataFrame, fit_pt: float = FIT_PT) -> list:
    """The columns of ``df`` in groups whose estimated width (with the index column) fits ``fit_pt``, in order: one
    group for a table that fits, more for a wide one (each part repeats the index), so that no table is shrunk."""
    width = lambda col: PT_PER_COLUMN + PT_PER_CHAR * max([_header_width(col)] + [_shown(v) for v in df[col]])  # noqa: E731
    index = PT_PER_COLUMN + PT_PER_CHAR * max([_shown(i) for i in df.index] + [0])
    groups, used = [[]], index
    for col in df.columns:
        w = width(col)
        if groups[-1] and used + w > fit_pt:
            groups.append([])
            used = index
        groups[-1].append(col)
        used += w
    return groups


def latex(t: Table, profile: str) -> str:
    """``t`` as a booktabs table (the file's text), set in \\small; a table wider than the text (estimated) is split
    into parts that each repeat the index, one under the other in the same float. Each part is set in a box and
    measured: one still wider than the text shrinks to it (needs graphicx), and the log says by how much
    (``utils.paper check-print`` fails a table printed below MIN_TABLE_SCALE of its size)."""
    df = t.df.copy()
    df.columns = [tex_escape(c) for c in df.columns]
    df.index = [tex_escape(i) for i in df.index]
    df = df.map(lambda v: tex_numbers(tex_escape(v)) if isinstance(v, str) else v)
    df.columns = [two_line_header(c, df[c]) for c in df.columns]
    fmt = t.column_format or "l" + "r" * df.shape[1]
    groups = [list(df.columns)] if "p{" in fmt else column_groups(df)     # paragraph columns wrap: never split
    tall = lambda g: len(g) * (len(df) + 4) + len(t.caption) / CAPTION_CHARS_PER_LINE > FLOAT_LINES  # noqa: E731
    if len(groups) > 1 and tall(groups) and len(column_groups(df, FIT_PT / TALL_SHRINK)) == 1:
        groups = [list(df.columns)]     # too tall to stack its parts: one part, shrunk a little, rather than two floats
    parts = []
    for k, cols in enumerate(groups):
        pos = [df.columns.get_loc(c) for c in cols]
        sub_fmt = fmt[0] + "".join(fmt[1 + p] for p in pos) if len(fmt) == df.shape[1] + 1 else None
        tab = df[cols].style.to_latex(hrules=True, column_format=fmt if len(groups) == 1 else
                                      sub_fmt or "l" + "r" * len(cols))
        name = t.label if len(groups) == 1 else f"{t.label}/{k + 1}"
        parts.append("\\setbox0=\\hbox{%\n" + tab.rstrip("\n") + "}%\n"
                     f"\\typeout{{PRINTCHECK table {name} \\the\\dimexpr\\wd0\\relax\\space\\the\\linewidth}}%\n"
                     "\\ifdim\\wd0>\\linewidth\\resizebox{\\linewidth}{!}{\\box0}\\else\\box0\\fi")
    if len(parts) > 1 and tall(parts):
        # too tall for one page: each part a float of its own, the later ones captioned as its continuation
        body = "".join(
            "\\begin{table}[tbp]\n\\centering\n\\small\n"
            + (f"\\caption{{{t.caption}}}\n\\label{{{t.label}}}\n" if k == 0 else
               f"\\caption{{Table~\\ref{{{t.label}}}, continued.}}\n")
            + part + "\n\\end{table}\n" for k, part in enumerate(parts))
    else:
        body = ("\\begin{table}[tbp]\n\\centering\n\\small\n"
                f"\\caption{{{t.caption}}}\n\\label{{{t.label}}}\n"
                + "\n\n\\medskip\n".join(parts) + "\n\\end{table}\n")
    return f"% generated by {GENERATED_BY} from results/{profile}/ -- do not edit\n{body}"


def write_table(t: Table, cfg: Config) -> Path:
    """A booktabs table in paper/tables/<profile>/<name>.tex."""
    path = cfg.tables_dir / f"{t.name}.tex"
    with atomic_path(path) as tmp:
        tmp.write_text(latex(t, cfg.name))
    return path


def print_facts(fig) -> dict:
    """What decides whether a figure reads in print, independent of where it is included: its smallest font (pt at
    its own size) and the most series one panel shows (legend entries, else labelled artists)."""
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    series = []
    for ax in fig.axes:
        leg = ax.get_legend()
        series.append(len(leg.get_texts()) if leg else len(ax.get_legend_handles_labels()[1]))
    return {"min_font_pt": float(min(sizes)) if sizes else None, "max_series": max(series, default=0)}


def pdf_width_in(data: bytes) -> float:
    """The width of a one-page PDF (its MediaBox), in inches."""
    m = re.search(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\]", data)
    if not m:
        raise ValueError("no MediaBox in the PDF")
    return (float(m.group(3)) - float(m.group(1))) / 72.0


def save_figure(d: Drawn, cfg: Config) -> list:
    """Save a drawn figure as figures/<profile>/<name>.pdf and .png, and beside them <name>.print.json: the
    figure's width as saved, its smallest font and its most series per panel, which ``utils.paper check-print``
    sets against the width the paper prints it at."""
    paths = []
    for ext in ("pdf", "png"):
        path = cfg.figures_dir / f"{d.name}.{ext}"
        with atomic_path(path) as tmp:
            d.fig.savefig(tmp, format=ext, bbox_inches="tight", dpi=150 if ext == "png" else None,
                          metadata={"CreationDate": None} if ext == "pdf" else None)
        paths.append(path)
    facts = {"figure": d.name, "made_by": "src/utils/report/figures.py", "profile": cfg.name,
             "width_in": round(pdf_width_in(paths[0].read_bytes()), 3), **print_facts(d.fig)}
    path = cfg.figures_dir / f"{d.name}.print.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(facts, indent=1) + "\n")
    return paths + [path]


def macro_lines(macros: dict, profile: str) -> str:
    """``\\newcommand`` lines for numbers quoted in the paper (names: letters only)."""
    lines = [f"% generated by {GENERATED_BY} from results/{profile}/ -- do not edit"]
    for k, v in macros.items():
        if not re.fullmatch(r"[A-Za-z]+", k):
            raise ValueError(f"macro name {k!r} must be letters only")
        if re.fullmatch(r"[+-]?[\d.]+", str(v)):     # a number alone: its minus sign, no sign on a zero
            v = tex_numbers(str(v))
        lines.append(f"\\newcommand{{\\{k}}}{{{v}}}")
    return "\n".join(lines) + "\n"


def write_macros(cfg: Config, macros: dict, name: str = "numbers", source: Optional[str] = None) -> Path:
    """``macros`` as paper/tables/<profile>/<name>.tex; ``source``: where they come from, if not only
    results/<profile>/ (the first line says it)."""
    text = macro_lines(macros, source or cfg.name)      # a bad name fails before anything is written
    path = cfg.tables_dir / f"{name}.tex"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def summary_markdown(profile: str, tables: list) -> str:
    """results/<profile>/summary.md: every table in Markdown, for reading on GitHub."""
    md = [f"# Results of the `{profile}` profile\n",
          f"Generated by `python -m utils.report {profile}` from `results/{profile}/*.json`; do not edit.\n"]
    for title, t in tables:
        md += [f"## {title}\n", t.df.to_markdown(disable_numparse=True), ""]
    return "\n".join(md) + "\n"


def write_summary(cfg: Config, tables: list) -> Path:
    path = cfg.results_dir / "summary.md"
    with atomic_path(path) as tmp:
        tmp.write_text(summary_markdown(cfg.name, tables))
    return path
