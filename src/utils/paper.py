"""Checks of the paper (paper/main.tex) that `make paper` and the tests run.

* ``check_log``: after latexmk, the LaTeX and BibTeX logs: an undefined reference or citation, a missing
  file or figure, a float that never found a place, a missing database entry are errors (the build fails);
  overfull boxes are counted. Returns the page count.
* ``check_sources``: without TeX: every ``\\cite`` key is in references.bib, every entry of it carries an
  identifier a reader can check (doi, eprint or url), every macro the text uses is generated for the
  profile (numbers.tex; the default's also its companion runs': seeds, base, drugs) or used only inside an
  ``\\ifdefined`` block, every figure and table (main.tex's and the generated tables it inputs) is referenced in
  the text, and a run without QAT (no ``QatRan``) has no sentence on QAT in the abstract or on its own run.

* ``check_print``: after latexmk, whether the paper reads in print: every generated table is measured in the
  log (``PRINTCHECK table``) and fails below ``MIN_TABLE_SCALE`` of its size; every figure included with
  ``\\printfigure`` is measured as printed (``PRINTCHECK figure``) and set against its ``.print.json`` (the
  width it was saved at, its smallest font, its most series per panel): its smallest font as printed must be
  ``MIN_FONT_PT`` or more and no panel may show more than ``MAX_SERIES`` series.

    python -m utils.paper check-log paper/main.log
    python -m utils.paper check-sources [profile]
    python -m utils.paper check-print paper/main.log [profile]
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Iterable

USAGE = ("python -m utils.paper check-log <main.log>\npython -m utils.paper check-sources [profile]\n"
         "python -m utils.paper check-print <main.log> [profile]")
MIN_TABLE_SCALE = 0.85     # a table shrunk further prints its 8-9 pt text below ~7.5 pt
MIN_FONT_PT = 8.0          # the smallest font of a figure as printed
MAX_SERIES = 8             # series one panel of a figure shows (legend entries)
PT_PER_IN = 72.27          # TeX points per inch

# LaTeX's own capitalised commands that main.tex uses (every generated macro is capitalised too)
LATEX_COMMANDS = frozenset({"IfFileExists"})

LOG_ERRORS = (
    (re.compile(r"LaTeX Warning: Reference `([^']+)' on page \d+ undefined"), "undefined reference {}"),
    (re.compile(r"LaTeX Warning: Citation `([^']+)' on page \d+ undefined"), "undefined citation {}"),
    (re.compile(r"Package natbib Warning: Citation `([^']+)' on page \d+ undefined"), "undefined citation {}"),
    (re.compile(r"LaTeX Warning: File `([^']+)' not found"), "file not found: {}"),
    (re.compile(r"! LaTeX Error: File `([^']+)' not found"), "file not found: {}"),
    (re.compile(r"! (Too many unprocessed floats)"), "{}: a float never found a place"),
    (re.compile(r"LaTeX Warning: (Float too large for page)"), "{}"),
    (re.compile(r"! Undefined control sequence"), "undefined control sequence (a macro not generated?)"),
)
BLG_ERRORS = (
    (re.compile(r"Warning--I didn't find a database entry for \"([^\"]+)\""), "no references.bib entry for {}"),
    (re.compile(r"I couldn't open database file (\S+)"), "bibliography not found: {}"),
)


class PaperError(RuntimeError):
    """The paper did not build cleanly (the message lists every problem found)."""


def log_problems(log: str, blg: str = "") -> list:
    found = []
    for text, rules in ((log, LOG_ERRORS), (blg, BLG_ERRORS)):
        for rx, msg in rules:
            for m in rx.finditer(text):
                found.append(msg.format(*m.groups()) if m.groups() else msg)
    return list(dict.fromkeys(found))


def pages(log: str) -> int:
    m = re.search(r"Output written on \S+ \((\d+) pages?", log)
    if not m:
        raise PaperError("the LaTeX log says no PDF was written")
    return int(m.group(1))


def check_log(log_path: str | Path) -> dict:
    """Errors in a latexmk run's main.log (and main.blg beside it): raises PaperError listing them all;
    else the page count and the number of overfull boxes."""
    log_path = Path(log_path)
    if not log_path.is_file():
        raise PaperError(f"LaTeX log not found: {log_path} (did latexmk run?)")
    log = log_path.read_text(errors="replace")
    blg_path = log_path.with_suffix(".blg")
    blg = blg_path.read_text(errors="replace") if blg_path.is_file() else ""
    problems = log_problems(log, blg)
    if problems:
        raise PaperError(f"{log_path}: " + "; ".join(problems))
    return {"pages": pages(log), "overfull": len(re.findall(r"^Overfull \\[hv]box", log, re.M))}


def _pt(x: str) -> float:
    return float(x.rstrip("pt"))


def print_problems(log: str, facts: dict) -> tuple:
    """Problems of print in a LaTeX log with PRINTCHECK lines, and what was measured: ``facts`` maps a figure
    file's stem to its .print.json. A figure measured in the log without facts is a problem (it cannot be
    checked), and so is a log that measured nothing (the tables and figures were not the checked ones)."""
    problems, measured = [], {"tables": {}, "figures": {}}
    for m in re.finditer(r"PRINTCHECK table (\S+) ([\d.]+pt) ([\d.]+pt)", log):
        scale = min(1.0, _pt(m.group(3)) / _pt(m.group(2)))
        measured["tables"][m.group(1)] = round(scale, 3)
        if scale < MIN_TABLE_SCALE:
            problems.append(f"table {m.group(1)} is printed at {100 * scale:.0f}% of its size (at least "
                            f"{100 * MIN_TABLE_SCALE:.0f}%): split it, transpose it or move columns out")
    for m in re.finditer(r"PRINTCHECK figure (\S+) ([\d.]+pt)", log):
        stem = Path(m.group(1)).stem
        f = facts.get(stem)
        if f is None:
            problems.append(f"figure {m.group(1)} has no {stem}.print.json beside it (regenerate the figures)")
            continue
        scale = _pt(m.group(2)) / PT_PER_IN / f["width_in"]
        font = (f["min_font_pt"] or 0) * scale
        measured["figures"][stem] = {"scale": round(scale, 3), "min_font_pt": round(font, 2),
                                     "max_series": f["max_series"]}
        if font < MIN_FONT_PT - 0.05:
            problems.append(f"figure {stem}: its smallest font prints at {font:.1f} pt (at least {MIN_FONT_PT:g}): "
                            f"saved {f['width_in']:.2f} in wide with {f['min_font_pt']:.1f} pt, printed at "
                            f"{100 * scale:.0f}%")
        if f["max_series"] > MAX_SERIES:
            problems.append(f"figure {stem}: a panel shows {f['max_series']} series (at most {MAX_SERIES}): group "
                            f"them by family or split the panel")
    if not measured["tables"] and not measured["figures"]:
        problems.append("the log measured no table or figure (PRINTCHECK lines): tables not generated by this "
                        "repository's writer, or figures not included with \\printfigure")
    return problems, measured


def check_print(log_path: str | Path, figures_dir: str | Path) -> dict:
    """``print_problems`` of a latexmk run's log, with the figures' facts from ``figures_dir``: raises PaperError
    listing every problem; else what was measured."""
    log_path = Path(log_path)
    if not log_path.is_file():
        raise PaperError(f"LaTeX log not found: {log_path} (did latexmk run?)")
    facts = {p.name[:-len(".print.json")]: json.loads(p.read_text())
             for p in Path(figures_dir).glob("*.print.json")}
    problems, measured = print_problems(log_path.read_text(errors="replace"), facts)
    if problems:
        raise PaperError(f"{log_path}: " + "; ".join(problems))
    return measured


# --------------------------------------------------------------------------- sources, without TeX
def strip_comments(tex: str) -> str:
    return re.sub(r"(?<!\\)%.*", "", tex)


def unguarded(tex: str) -> str:
    """``tex`` without the parts inside ``\\ifdefined\\X ... \\fi`` (nested \\if...\\fi counted): what is
    typeset whatever macros a profile has."""
    out, depth, i = [], 0, 0
    token = re.compile(r"\\(ifdefined|if[a-zA-Z]*|fi)(?![a-zA-Z])")
    for m in token.finditer(tex):
        if depth == 0:
            out.append(tex[i:m.start()])
        name = m.group(1)
        if name == "fi":
            depth = max(depth - 1, 0)
        elif name == "ifdefined" or depth > 0:
            depth += 1
        elif depth == 0:
            out.append(m.group(0))
        i = m.end()
    if depth == 0:
        out.append(tex[i:])
    return "".join(out)


def typeset(tex: str, defined: set) -> str:
    """What of ``tex`` is typeset for a profile whose generated macros are ``defined``: every ``\\ifdefined\\X``
    block kept or dropped (its ``\\else`` part the other way), nested blocks too; other conditionals kept whole."""
    out, stack, i = [], [], 0     # stack: per open \if..., whether its current branch is typeset
    token = re.compile(r"\\(ifdefined\\([A-Za-z]+)|if[a-zA-Z]*|else|fi)(?![a-zA-Z])")
    for m in token.finditer(tex):
        if all(x is not False for x in stack):
            out.append(tex[i:m.start()])
        word = m.group(1)
        if word.startswith("ifdefined"):
            stack.append(m.group(2) in defined)
        elif word == "else":
            if stack:
                stack[-1] = not stack[-1] if stack[-1] is not None else None
        elif word == "fi":
            if stack:
                stack.pop()
        else:                     # \ifx and the like: not decided here, both branches kept
            stack.append(None)
        i = m.end()
    if all(x is not False for x in stack):
        out.append(tex[i:])
    return "".join(out)


# what a paper says of QAT, from the Data paragraph of its Setting to the other profiles' sections: its own run (the
# introduction, related work and the study it reproduces name the method)
QAT_WORDS = re.compile(r"QAT|int8-qat|qat-fp32|fake-quant|fake quant|fp32-plus-epoch")
OWN_RUN = (r"\\paragraph{Data.}", r"\\section{At the original study's scale}")


def qat_sentences(tex: str, defined: set) -> list:
    """Sentences of the abstract and of the sections on the profile's own run that name QAT, as typeset with
    ``defined``; for a run without QAT (no ``QatRan``) every one is a sentence left dangling."""
    text = typeset(strip_comments(tex), defined)
    start, end = (re.search(p, text) for p in OWN_RUN)
    abstract = re.search(r"\\begin{abstract}(.*?)\\end{abstract}", text, re.S)
    parts = [abstract.group(1) if abstract else "", text[start.start() if start else 0:end.start() if end else None]]
    sentences = [x.strip() for part in parts for x in re.split(r"(?<=[.:;])\s+(?=[A-Z\\])", part)]
    return [" ".join(x.split())[:160] for x in sentences if QAT_WORDS.search(x)]


def macros_used(tex: str) -> set:
    return set(re.findall(r"\\([A-Z][A-Za-z]*)", tex)) - LATEX_COMMANDS


def macros_defined(numbers: str) -> set:
    return set(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}", numbers))


def cite_keys(tex: str) -> set:
    return {k.strip() for grp in re.findall(r"\\cite[tp]?\*?(?:\[[^\]]*\])?\{([^}]*)\}", tex)
            for k in grp.split(",") if k.strip()}


def bib_entries(bib: str) -> dict:
    """key -> the entry's fields (lower-case names), from a references.bib."""
    out = {}
    for m in re.finditer(r"@(\w+)\s*\{\s*([^,\s]+)\s*,(.*?)\n\}", strip_comments(bib), re.S):
        fields = {f.lower() for f in re.findall(r"(?:^|,)\s*(\w+)\s*=", m.group(3), re.M)}
        out[m.group(2)] = fields
    return out


def unreferenced(tex: str, tables: Iterable[str] = (), profile: str = "default") -> list:
    """Labels of figures and tables (main.tex's, and the generated tables' it inputs, written with the
    profile's name where main.tex writes ``\\profile``) that no ``\\ref`` in main.tex points to."""
    named = lambda found: {x.replace("\\profile", profile) for x in found}  # noqa: E731
    refs = named(re.findall(r"\\ref\{([^}]+)\}", tex))
    labels = named(lab for t in (tex, *tables) for lab in re.findall(r"\\label\{((?:fig|tab):[^}]+)\}", t))
    return sorted(labels - refs)


def source_problems(tex: str, bib: str, numbers: Iterable[str], tables: Iterable[str] = (),
                    profile: str = "default") -> list:
    tex = strip_comments(tex)
    entries, problems = bib_entries(bib), []
    for lab in unreferenced(tex, tables, profile):
        problems.append(f"{lab} is never referenced in the text (\\ref it, or drop it)")
    for k in sorted(cite_keys(tex) - set(entries)):
        problems.append(f"\\cite{{{k}}} has no entry in references.bib")
    for k, fields in sorted(entries.items()):
        if not fields & {"doi", "eprint", "url"}:
            problems.append(f"references.bib entry {k} has no doi, eprint or url to check it by")
    defined = set().union(*(macros_defined(n) for n in numbers))
    for name in sorted(macros_used(unguarded(tex)) - defined):
        problems.append(f"\\{name} is used outside an \\ifdefined block but not generated for this profile")
    if "QatRan" not in defined:        # a run without QAT (qat.enabled: false): no sentence of it may name QAT
        for sentence in qat_sentences(tex, defined):
            problems.append(f"a sentence on QAT is typeset for a run without QAT: {sentence!r}")
    return problems


def check_sources(root: str | Path = ".", profile: str = "default") -> None:
    paper = Path(root) / "paper"
    companions = (paper / "tables" / "seeds" / "numbers.tex", paper / "tables" / "base" / "scale_numbers.tex",
                  paper / "tables" / "drugs" / "scale_numbers.tex") if profile == "default" else ()
    numbers = [p.read_text() for p in (paper / "tables" / profile / "numbers.tex", *companions) if p.is_file()]
    if not numbers:
        raise PaperError(f"paper/tables/{profile}/numbers.tex not found: run `make paper-figures "
                         f"PROFILE={profile}` first")
    tex = (paper / "main.tex").read_text()
    inputs = re.findall(r"\\input\{tables/\\profile/([^}]+)\}", strip_comments(tex))
    tables = [p.read_text() for p in (paper / "tables" / profile / (i if i.endswith(".tex") else f"{i}.tex")
                                      for i in inputs) if p.is_file()]
    problems = source_problems(tex, (paper / "references.bib").read_text(), numbers, tables, profile)
    if problems:
        raise PaperError("; ".join(problems))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["check-log"] and len(argv) == 2:
            r = check_log(argv[1])
            print(f"{argv[1]}: {r['pages']} pages, {r['overfull']} overfull boxes")
        elif argv[:1] == ["check-print"] and len(argv) in (2, 3):
            m = check_print(argv[1], Path("figures") / (argv[2] if len(argv) == 3 else "default"))
            worst_t = min(m["tables"].values(), default=1.0)
            worst_f = min((f["min_font_pt"] for f in m["figures"].values()), default=float("nan"))
            print(f"{argv[1]}: {len(m['tables'])} tables (smallest scale {100 * worst_t:.0f}%), {len(m['figures'])} "
                  f"figures (smallest font {worst_f:.1f} pt as printed)")
        elif argv[:1] == ["check-sources"] and len(argv) <= 2:
            check_sources(".", argv[1] if len(argv) == 2 else "default")
            print("paper sources: citations, references and macros check out")
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except PaperError as e:
        print(f"paper: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
