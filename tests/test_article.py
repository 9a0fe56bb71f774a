"""What the article may claim and whether it reads in print: Holm's correction and equivalence verdicts
(utils.stats), numbers typeset with their signs (writer.tex_numbers), tables and figures measured as printed
(utils.paper.print_problems, writer.print_facts), the frontier and the headline of one variant (report)."""
from __future__ import annotations

import copy
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from utils import bench_runs as R  # noqa: E402
from utils import paper as PA  # noqa: E402
from utils import stats as S  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.report import frames as F  # noqa: E402
from utils.report.macros import ACCURACY_VERDICT_WORDS, EXPLAIN_VERDICT_WORDS, claim_macros, explain_macros  # noqa: E402
from utils.report.readers import Results  # noqa: E402
from utils.report.writer import latex, print_facts, tex_numbers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- statistics
def test_holm_steps_down_and_stays_monotone():
    adj = S.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan")})
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1, made monotone
    assert adj["a"] == pytest.approx(0.03) and adj["c"] == pytest.approx(0.06) and adj["b"] == pytest.approx(0.06)
    assert np.isnan(adj["d"])
    assert S.holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}


@pytest.mark.parametrize("ci, word", [([-0.003, 0.004], "equivalent"), ([-0.02, -0.01], "below"),
                                      ([0.01, 0.02], "above"), ([-0.009, -0.001], "lower"),
                                      ([0.001, 0.009], "higher"), ([-0.008, 0.006], "undecided")])
def test_tost_verdicts(ci, word):
    assert S.tost_verdict(ci, 0.005) == word


def test_tost_refuses_a_swapped_interval():
    with pytest.raises(ValueError, match="swapped"):
        S.tost_verdict([0.01, -0.01], 0.005)


def test_the_bootstrap_from_discordant_counts_is_the_paired_bootstrap():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    a = np.where(rng.random(500) < 0.85, y, 1 - y)
    b = np.where(rng.random(500) < 0.83, y, 1 - y)
    only_b, only_a = int(((b == y) & (a != y)).sum()), int(((a == y) & (b != y)).sum())
    direct = S.paired_accuracy_interval(y, a, b, 0.9, 2000, 7)
    counts = S.paired_interval_from_counts(only_b, only_a, 500, 0.9, 2000, 7)
    assert counts == pytest.approx(direct, abs=2.5e-3)
    assert counts[0] < (b == y).mean() - (a == y).mean() < counts[1]
    with pytest.raises(ValueError, match="do not fit"):
        S.paired_interval_from_counts(300, 300, 500)


def test_an_interval_over_seeds_is_students_t():
    lo, hi = S.seeds_interval([0.001, -0.002, 0.0, 0.001, -0.001], 0.90)
    assert lo < -0.0002 < hi and hi - lo == pytest.approx(2 * 2.1318 * np.std([0.001, -0.002, 0.0, 0.001, -0.001],
                                                                              ddof=1) / np.sqrt(5), rel=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        S.seeds_interval([0.01])


# ---------------------------------------------------------------- numbers typeset
@pytest.mark.parametrize("raw, typeset", [("-0.04", r"\ensuremath{-}0.04"), ("-0.00", "0.00"), ("+0.0", "0.0"),
                                          ("2.30-2.55", "2.30--2.55"), ("2.05x", r"2.05\ensuremath{\times}"),
                                          ("int8-dynamic", "int8-dynamic"), ("2024-12-01", "2024-12-01"),
                                          ("+0.2 [-0.3, +0.8]", r"+0.2 [\ensuremath{-}0.3, +0.8]")])
def test_numbers_get_their_signs(raw, typeset):
    assert tex_numbers(raw) == typeset


def test_a_generated_table_is_measured_in_the_log():
    import pandas as pd

    from utils.report.writer import Table
    t = Table("x", pd.DataFrame({"a": ["-0.10"]}, index=["v"]), caption="c", label="tab:x")
    tex = latex(t, "p")
    assert r"\typeout{PRINTCHECK table tab:x \the\dimexpr\wd0\relax\space\the\linewidth}" in tex
    assert r"\ensuremath{-}0.10" in tex and "resizebox{\\linewidth}" in tex and "[tbp]" in tex


# ---------------------------------------------------------------- print
def test_print_problems_name_each_fault():
    log = ("PRINTCHECK table tab:wide 600.0pt 455.0pt\nPRINTCHECK table tab:ok 400.0pt 455.0pt\n"
           "PRINTCHECK figure small.pdf 455.0pt\nPRINTCHECK figure big.pdf 455.0pt\nPRINTCHECK figure lost.pdf 10pt\n")
    facts = {"small": {"width_in": 13.0, "min_font_pt": 9.0, "max_series": 3},      # printed at 49%: 4.4 pt
             "big": {"width_in": 6.3, "min_font_pt": 8.0, "max_series": 12}}       # 8.0 pt but 12 series
    problems, measured = PA.print_problems(log, facts)
    text = "; ".join(problems)
    assert "table tab:wide is printed at 76%" in text and "tab:ok" not in text
    assert "figure small: its smallest font prints at 4.4 pt" in text
    assert "figure big: a panel shows 12 series" in text and "big: its smallest" not in text
    assert "lost.pdf has no lost.print.json" in text
    assert measured["tables"] == {"tab:wide": pytest.approx(0.758, abs=1e-3), "tab:ok": 1.0}
    assert PA.print_problems("no lines", {})[0] == [PA.print_problems("no lines", {})[0][0]]
    assert "measured no table or figure" in PA.print_problems("no lines", {})[0][0]


def test_print_facts_read_a_real_figure():
    fig, ax = plt.subplots(figsize=(3, 2))
    for k in range(4):
        ax.plot([0, 1], [k, k], label=f"s{k}")
    ax.legend(fontsize=7)
    ax.set_xlabel("x", fontsize=10)
    f = print_facts(fig)
    assert f == {"min_font_pt": 7.0, "max_series": 4}
    plt.close(fig)


def test_check_print_cli_fails_on_a_small_font(tmp_path, capsys):
    log = tmp_path / "main.log"
    log.write_text("PRINTCHECK figure a.pdf 455.0pt\n")
    figs = tmp_path / "figs"
    figs.mkdir()
    (figs / "a.print.json").write_text('{"width_in": 6.3, "min_font_pt": 8.5, "max_series": 2}')
    assert PA.check_print(log, figs)["figures"]["a"]["min_font_pt"] == pytest.approx(8.5 * 455 / 72.27 / 6.3, 1e-3)
    (figs / "a.print.json").write_text('{"width_in": 6.3, "min_font_pt": 6.0, "max_series": 2}')
    with pytest.raises(PA.PaperError, match="smallest font prints at"):
        PA.check_print(log, figs)


# ---------------------------------------------------------------- claims of the committed default
@pytest.fixture(scope="module")
def default():
    return Results(load_config("default", root=ROOT))


def test_the_frontier_is_not_dominated(default):
    pts = F.tradeoff_frames(default)["points"]
    front = pts[pts["frontier"]]
    assert len(front) >= 1
    for _, p in front.iterrows():
        assert not ((pts["ms"] < p["ms"]) & (pts["diff"] > p["diff"])).any()
    for _, p in pts[~pts["frontier"]].iterrows():
        assert ((pts["ms"] <= p["ms"]) & (pts["diff"] >= p["diff"])).sum() >= 2


def test_the_headline_pairs_speed_and_accuracy_of_one_variant(default):
    m = claim_macros(default)
    cl = F.accuracy_claims(default).set_index("variant")
    head = "onnx-" + m["HeadInt"]
    verdict = cl.loc[head].get("seeds_verdict")
    assert (verdict if isinstance(verdict, str) else cl.loc[head, "verdict"]) == "equivalent"
    assert float(m["HeadIntVsOnnxLo"]) <= float(m["HeadIntVsOnnx"]) <= float(m["HeadIntVsOnnxHi"])
    # the median over the comparable runs, never the best run
    runs, this, _ = default.run_history()
    same = R.comparable(runs, this) or [this]
    assert float(m["HeadIntVsOnnx"]) == pytest.approx(np.median([r["speedup_vs_onnx_fp32"][head] for r in same]),
                                                      abs=0.006)


def test_a_moved_interval_changes_the_verdict_words(default):
    res = Results(load_config("default", root=ROOT))
    ev = copy.deepcopy(default.evaluate)
    v = ev.variants["onnx-int8-qat"]
    v["mcnemar"].update(a_right_b_wrong=80, a_wrong_b_right=0)
    v["accuracy_diff"] = -80 / v["n"]
    res._cache["evaluate"] = ev
    assert claim_macros(res)["QatVerdict"] == ACCURACY_VERDICT_WORDS["below"]
    ex = copy.deepcopy(default.explain)
    if "versus_floor" in ex.agreement.get("onnx-int8-qat", {}):
        ex.agreement["onnx-int8-qat"]["versus_floor"]["equivalence"]["spearman"]["ci90"] = [-0.3, -0.2]
        res._cache["explain"] = ex
        assert explain_macros(res)["ExplainVerdictWordsQat"] == EXPLAIN_VERDICT_WORDS["below"]
