"""Pure builders of the study's figures: each reads ``Results`` and returns a ``Drawn`` (the matplotlib
figure and its file name), or None where the profile's results have nothing to draw; ``writer`` saves
them. Colours come from the variants' families in the registry, so a variant keeps its colour in every
figure; what a figure plots is a frame of ``frames``, testable without drawing."""
from __future__ import annotations

import re
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .. import variants as V
from ..explain import indexed, segments
from ..metrics import metric
from ..ort_inspect import MATMUL_OPS
from . import frames as F
from .readers import Results, short
from .writer import Drawn

# print: every figure the paper includes is drawn at the width it is printed at (the text width of an A4 page
# with 2.3 cm margins, 6.46 in; ``PRINT_WIDTH``, or a fraction of it) in fonts of 8 pt or more, so that it reads
# at 100% (``utils.paper check-print`` measures both in the PDF)
PRINT_WIDTH = 6.2
FONT_PT = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
           "legend.fontsize": 8, "legend.title_fontsize": 8, "figure.titlesize": 9}
sns.set_theme(context="paper", style="whitegrid", rc=FONT_PT)


# variant families and the seaborn palette each draws its shades from, so that 17 lines stay apart:
# PyTorch (greys), ONNX floating point, dynamic INT8 (the seed's QAT pipeline among them), static INT8,
# INT8 with the QAT scales
def variant_palette(names) -> dict:
    """variant -> colour: one palette per family of the registry (``variants.FAMILIES``), a shade per
    member in the order given; variants outside the registry get grey."""
    groups: dict = {}
    for n in names:
        fam = V.family_of(n)
        groups.setdefault(fam.palette if fam else None, []).append(n)
    out = {}
    for pal, members in groups.items():
        shades = (sns.color_palette(pal, len(members) + 2)[2:] if pal == "Greys" else   # no near-white grey
                  sns.color_palette(pal, len(members) + 1)[:len(members)]) if pal else [(0.5, 0.5, 0.5)] * len(members)
        out.update(zip(members, shades))
    return out


def data_figure(res: Results):
    r, fr = res.data, F.data_frames(res)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
    sns.barplot(fr["class_counts"], x="split", y="n", hue="class", ax=axes[0])
    axes[0].set(title="Examples per split and class", ylabel="examples", xlabel="")
    sns.lineplot(fr["token_lengths"], x="tokens", y="share", hue="split", ax=axes[1], drawstyle="steps-mid")
    axes[1].axvline(r.max_length, color="k", ls="--", lw=1)
    axes[1].text(r.max_length, axes[1].get_ylim()[1] * 0.9, f" max_length={r.max_length}", fontsize=9)
    axes[1].set(title="Text length in tokens (special tokens included)", ylabel="share of split")
    fig.tight_layout()
    return Drawn("data_overview", fig)


def training_figure(res: Results):
    """FP32 fine-tuning's loss and validation accuracy per epoch; None for an adopted checkpoint (not trained)."""
    if not res.train_fp32.history:
        return None
    r, h = res.train_fp32, F.training_frames(res)["history"]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(h["epoch"], h["train_loss"], "o-", label="training loss")
    ax.set(xlabel="epoch", ylabel="training loss", title="FP32 fine-tuning")
    ax2 = ax.twinx()
    ax2.plot(h["epoch"], h["val_accuracy"], "s-", color="C1", label="validation accuracy")
    ax2.set_ylabel("validation accuracy")
    ax2.grid(False)
    ax.axvline(r.best_epoch, color="gray", ls=":", lw=1)
    fig.legend(loc="upper center", ncol=2, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout()
    return Drawn("training_fp32", fig)


def evaluation_figure(res: Results):
    """Left: every variant's accuracy change from the reference at batch 1 with its paired bootstrap
    interval, one row each (no markers on top of each other at the same file size), its file size
    written beside it. Right: the evaluation's batch-1 latency on the short test texts, labelled as
    such: the benchmark's numbers, at its longer length, differ from these by design."""
    r, f = res.evaluate, F.evaluation_frame(res)
    conf = 100 * res.confidence()
    colours = variant_palette(f["variant"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.3 * len(f) + 2.2))
    ax = axes[0]
    d = f.dropna(subset=["diff"])
    d = d[d["diff_ci"].notna() & (d["variant"] != r.reference)].sort_values("diff")
    y = np.arange(len(d))
    lo = np.array([c[0] for c in d["diff_ci"]])
    hi = np.array([c[1] for c in d["diff_ci"]])
    diff = d["diff"].to_numpy()
    # a variant far below all others (the every-op static file) would squeeze the rest into a sliver: it is
    # drawn at the left edge with its value written beside it
    far = np.zeros(len(d), bool)
    if len(d) > 2:
        rest_lo, span = np.sort(lo)[1], hi.max() - np.sort(lo)[1]
        far = hi < rest_lo - span
    edge = (np.min(lo[~far]) - 0.15 * (hi.max() - np.min(lo[~far]))) if far.any() else None
    shown = np.where(far, edge if edge is not None else 0, diff)
    ax.errorbar(100 * diff[~far], y[~far], xerr=[100 * (diff - lo)[~far], 100 * (hi - diff)[~far]], fmt="none",
                ecolor="0.5", capsize=2, lw=1)
    ax.scatter(100 * shown, y, c=[colours[v] for v in d["variant"]], s=28, zorder=3, edgecolor="0.2", lw=0.4,
               marker="o")
    for yy in y[far]:
        i = int(yy)
        ax.annotate(f"\u2190 {100 * diff[i]:+.1f} [{100 * lo[i]:+.1f}, {100 * hi[i]:+.1f}] (off scale)",
                    (100 * edge, yy), xytext=(6, 0), textcoords="offset points", va="center", fontsize=7)
    ax.axvline(0, color="k", lw=1, ls="--")
    ax.set_yticks(y, labels=d["variant"], fontsize=7)
    right = 100 * hi.max() if len(hi) else 1
    for yy, mb in zip(y, d["size_mb"]):
        ax.annotate(f"{mb:.0f} MB", (right, yy), xytext=(6, 0), textcoords="offset points", va="center",
                    fontsize=6, color="0.35", annotation_clip=False)
    ax.set(xlabel=f"test accuracy change from {r.reference} (points; paired {conf:g}% bootstrap interval)",
           title=f"Accuracy as deployed (batch 1), {r.n_test:,} test texts")
    g = f.dropna(subset=["latency_ms"]).sort_values("latency_ms")
    sns.barplot(g, y="variant", x="latency_ms", hue="variant", ax=axes[1], legend=False, orient="h", palette=colours)
    for p, (ratio, lat) in zip(axes[1].patches, zip(g["size_ratio"], g["latency_ms"])):
        axes[1].annotate(f" {lat:.1f} ms, {ratio:.2f}x size", (p.get_width(), p.get_y() + p.get_height() / 2),
                         va="center", fontsize=7)
    tok = res.data.token_lengths["test"]["median"]
    length = res.bench.length if res.has("bench") else None
    axes[1].set(xlabel="median latency, batch 1 (ms)", ylabel="",
                title=f"Latency on the test texts (median {tok:.0f} tokens"
                      + (f"; the benchmark times {length})" if length else ")"))
    axes[1].tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return Drawn("evaluation", fig)


def batching_figure(res: Results):
    """Whether a variant's answer depends on its batch: the test predictions that move between each text
    alone and in batches (top); and why, for the dynamic INT8 files: each activation scale of the texts that moved,
    in the batch over alone (1: the same scale)."""
    fr = F.batching_frames(res)
    if fr is None:
        return None
    m, sc = fr["moves"], fr["scales"]
    sc = sc[sc["group"] == "moved"]
    rows = 2 if len(sc) else 1
    per = 0.2 if len(m) <= 20 else 0.16          # a row per variant: two runtimes' variants still fit a page
    fig, axes = plt.subplots(rows, 1, figsize=(PRINT_WIDTH, per * len(m) + 1.3 + (2.6 if rows == 2 else 0)),
                             gridspec_kw={"height_ratios": [per * len(m) + 1.0, 2.0][:rows]}, squeeze=False)
    axes = axes[:, 0]
    colours = variant_palette(m["variant"])
    y = np.arange(len(m))
    for off, key, hatch, label in ((-0.2, "moved_batch1_vs_sorted", None, "alone vs length-sorted batches"),
                                   (0.2, "moved_batch1_vs_random", "//", "alone vs a random batching")):
        axes[0].barh(y + off, m[key], height=0.4, color=[colours[v] for v in m["variant"]], hatch=hatch,
                     edgecolor="0.3", lw=0.4, label=label)
    for yy, (a_, b_) in zip(y, zip(m["moved_batch1_vs_sorted"], m["moved_batch1_vs_random"])):
        if not a_ and not b_:
            axes[0].annotate(" none", (0, yy), va="center", fontsize=8, color="0.4")
    axes[0].set_yticks(y, [short(v) for v in m["variant"]])
    axes[0].set_xlim(0, max(1, int(m[["moved_batch1_vs_sorted", "moved_batch1_vs_random"]].to_numpy().max())) * 1.25)
    axes[0].invert_yaxis()
    n = res.evaluate.n_test
    axes[0].set(xlabel=f"test predictions that change (of {n:,})")
    axes[0].legend(loc="lower right")
    if rows == 2:
        for v, d in sc.groupby("variant", sort=False):
            axes[1].plot(d["node"], d["median_ratio"], "o-", ms=3, lw=1, color=colours[v], label=short(v))
        axes[1].axhline(1, color="k", lw=0.8)
        axes[1].set(xlabel="DynamicQuantizeLinear node (graph order)", ylabel="scale in batch /\nscale alone")
        axes[1].legend(ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.32), frameon=False)
    fig.tight_layout()
    return Drawn("batching", fig)


def _family_panels(names) -> list:
    """(family, its variants in the given order) for every family of the registry that has a variant here,
    in the registry's order; variants outside the registry last, under None."""
    groups: dict = {}
    for n in names:
        fam = V.family_of(n)
        groups.setdefault(fam.name if fam else None, []).append(n)
    order = [f for f in V.FAMILIES if f in groups] + ([None] if None in groups else [])
    return [(f, groups[f]) for f in order]


def bench_figure(res: Results):
    """Small multiples, one column per variant family (latency against length above, throughput against
    batch size below), each member in a colour of its own and ONNX FP32 dashed in every panel as the
    common reference; right, the batch-1 speed-up of every variant in its family's colours, with the
    range over rounds."""
    r = res.bench
    cpu, fr = r.all_threads, F.bench_frames(res)
    seq, thr, sp = fr["seq_length"], fr["throughput"], fr["speedup"]
    panels = _family_panels(list(cpu["headline"]))
    colours = variant_palette(cpu["headline"])          # the family shades, as in every other figure
    nf = len(panels)
    fig = plt.figure(figsize=(3.0 * nf + 6, 7.2), layout="constrained")
    gs = fig.add_gridspec(2, nf + 1, width_ratios=[1] * nf + [1.9])
    ref = "onnx-fp32"
    share = {}
    for j, (fam, members) in enumerate(panels):
        distinct = dict(zip(members, sns.color_palette("tab10", max(len(members), 3))))
        for i, (df, x, y) in enumerate(((seq, "tokens", "ms"), (thr, "batch", "texts/s"))):
            ax = fig.add_subplot(gs[i, j], sharey=share.get(i))
            share.setdefault(i, ax)
            if ref not in members and ref in set(df["variant"]):
                d = df[df["variant"] == ref]
                ax.plot(d[x], d[y], color="k", ls="--", lw=1, label=f"{ref} (reference)")
            for n in members:
                d = df[df["variant"] == n]
                if len(d):
                    ax.plot(d[x], d[y], marker="o", ms=3, color=distinct[n], label=n,
                            ls="--" if n == ref else "-", lw=1.4)
            ax.set(xscale="log", yscale="log")
            ticks = sorted(df[x].unique())
            ax.set_xticks(ticks, labels=ticks)
            ax.xaxis.set_minor_formatter(NullFormatter())
            if i == 0:
                label = V.FAMILIES[fam].label.split(" (")[0] if fam else "other"
                ax.set_title("\n".join(textwrap.wrap(label, 24)), fontsize=8)
                ax.set_xlabel("sequence length (tokens)", fontsize=8)
                ax.legend(fontsize=6, loc="upper left")
            else:
                ax.set_xlabel("batch size", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"median latency, batch 1 (ms), {r.provenance['threads']} threads" if i == 0
                              else f"texts/s at length {r.length}", fontsize=8)
            else:
                ax.tick_params(labelleft=False)
            ax.tick_params(labelsize=7)
    ax = fig.add_subplot(gs[:, nf])
    ax.barh(sp["variant"], sp["speedup"], xerr=[sp["speedup"] - sp["lo"], sp["hi"] - sp["speedup"]],
            color=[colours.get(n, (0.5, 0.5, 0.5)) for n in sp["variant"]], capsize=3)
    ax.axvline(1, color="k", lw=1, ls="--")
    ax.set(xlabel="speed-up over ONNX fp32 (range over rounds)", title=f"Batch 1, length {r.length}")
    ax.tick_params(axis="y", labelsize=7)
    return Drawn("benchmark", fig)


def op_time_figure(res: Results):
    """Where a batch-1 call's kernel time goes, per operator type, for every ONNX variant on the CPU."""
    r, fr = res.bench, F.op_time_frames(res)
    if fr is None:
        return None
    # every variant's three costliest operator types get their own colour (the QAttention of the optimized
    # INT8 file, the QLinear ops of the all-ops file), the rest of each row is "other"
    df = fr["op_ms"]
    top = list(df.columns[:-1])
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(df) + 1.8))
    left = np.zeros(len(df))
    palette = sns.color_palette("tab10" if len(top) <= 10 else "tab20", len(top)) + [(0.78, 0.78, 0.78)]  # other: grey
    for color, op in zip(palette, df.columns):
        ax.barh(df.index, df[op], left=left, color=color, label=op, hatch="//" if op in MATMUL_OPS else None,
                edgecolor="white", linewidth=0.5)
        left += df[op].to_numpy()
    pt = r.profile_threads
    ax.set(xlabel=f"kernel time per call (ms; each node's median), batch 1, length {r.length}, "
                  f"{pt} thread{'s' if pt != 1 else ''}",
           title="Where the time goes (ONNX Runtime profiler; hatched: matrix products)")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return Drawn("op_times", fig)


# a family's name in a legend that must stay short (the registry's label says more)
FAMILY_SHORT = {"pytorch": "PyTorch", "onnx-float": "ONNX float", "int8-dynamic": "dynamic INT8",
                "int8-static": "static INT8", "int8-qat": "INT8, QAT scales", "openvino": "OpenVINO"}


def _family_colour(name: str):
    """One colour per family (its palette's middle shade), for figures that group variants by family."""
    fam = V.family_of(name)
    return sns.color_palette(fam.palette, 3)[1] if fam else (0.5, 0.5, 0.5)


NICE_TICKS = [m * 10.0 ** e for e in range(-2, 5) for m in (1, 1.5, 2, 3, 4, 5, 6, 8)]


def _plain_log_ticks(ax, axis: str = "x", most: int = 7) -> None:
    """Log-scale ticks at round numbers inside the axis' range (3, 4, 6, 10, 20), written plainly, not as powers of
    ten; at most ``most`` of them, evenly thinned."""
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    ticks = [t for t in NICE_TICKS if lo <= t <= hi]
    if len(ticks) > most:
        ticks = ticks[::int(np.ceil(len(ticks) / most))]
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    set_ticks(ticks, [f"{t:g}" for t in ticks])
    (ax.xaxis if axis == "x" else ax.yaxis).set_minor_formatter(NullFormatter())


def _minus(text: str) -> str:
    """A number's minus sign as a minus sign (U+2212), not a hyphen."""
    return re.sub(r"(?<![\w.])-(?=\d)", "\u2212", text)


def tradeoff_figure(res: Results):
    """The headline: test accuracy change (paired bootstrap interval, against the evaluation's FP32 reference)
    against batch-1 latency, one colour per variant family (its legend), the accuracy / latency frontier drawn and
    its variants named; a variant far below the others is written at the bottom edge with its value, off scale."""
    r, ref = res.bench, res.evaluate.reference
    df = F.tradeoff_frames(res)["points"].reset_index(drop=True)
    core = df[df["lo"] > -5] if (df["lo"] > -5).sum() >= 2 else df
    off = df.drop(core.index)
    fig, ax = plt.subplots(figsize=(PRINT_WIDTH, 3.9))
    seen = set()
    for _, row in core.iterrows():
        fam = V.family_of(row["variant"])
        label = FAMILY_SHORT.get(fam.name, fam.name) if fam and fam.name not in seen else None
        seen.add(fam.name if fam else None)
        c = _family_colour(row["variant"])
        ax.errorbar(row["ms"], row["diff"], yerr=[[row["diff"] - row["lo"]], [row["hi"] - row["diff"]]], color=c,
                    lw=0.8, capsize=2, zorder=1, alpha=0.7)
        ax.scatter(row["ms"], row["diff"], s=30 if row["frontier"] else 18, color=c, edgecolor="k" if row["frontier"]
                   else "white", linewidth=0.7, zorder=3, label=label)
    fr = core[core["frontier"]].sort_values("ms")
    ax.plot(fr["ms"], fr["diff"], color="k", lw=0.8, ls=":", zorder=2, label="frontier")
    for k, (_, row) in enumerate(fr.iterrows()):     # labels alternate right-above and left-below their point
        ax.annotate(short(row["variant"]), (row["ms"], row["diff"]), xytext=(6, 5) if k % 2 == 0 else (-6, -12),
                    textcoords="offset points", fontsize=8, ha="left" if k % 2 == 0 else "right")
    ax.axhline(0, color="k", lw=0.6, ls="--")
    ax.set_ylim(min(core["lo"].min(), -1.0) - 0.3, max(core["hi"].max(), 0.5) + 0.3)
    if len(off):
        ax.text(0.99, 0.02, "off scale: " + ", ".join(_minus(f"{short(r_['variant'])} {r_['diff']:+.1f} pt")
                                                      for _, r_ in off.iterrows()),
                transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="0.3")
    ax.set_xscale("log")
    # room on the left for a frontier label set left of its point (alternate labels go left-below)
    ax.set_xlim(left=min(ax.get_xlim()[0], core["ms"].min() / 1.35))
    _plain_log_ticks(ax)
    lvl = f"{100 * res.confidence():g}"
    ax.set(xlabel=f"median latency, batch 1, {r.length} tokens, {r.provenance['threads']} threads (ms)",
           ylabel=f"accuracy change vs\n{ref} (pt, {lvl}% CI)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    fig.tight_layout()
    return Drawn("tradeoff", fig)


def _draw_highlighted(ax, text: str, weights, fontsize: float = 8.0) -> None:
    """The text as LIME split it, each word shaded by its weight (green: supports, red: opposes)."""
    ax.set_axis_off()
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    width = ax.get_window_extent(renderer).width
    top = max((abs(w) for w in weights), default=0) or 1.0
    x, y, line = 0.0, 1.0, 0.0
    for piece, j in segments(" ".join(text.split())):
        box = None
        if j is not None:
            w = weights[j] / top
            box = {"facecolor": (0.18, 0.49, 0.2) if w > 0 else (0.78, 0.16, 0.16), "alpha": min(0.85, abs(w)),
                   "pad": 0.6, "edgecolor": "none"}
        t = ax.text(x, y, piece, transform=ax.transAxes, va="top", ha="left", fontsize=fontsize, bbox=box)
        ext = t.get_window_extent(renderer)
        line = max(line, 1.5 * ext.height / ax.get_window_extent(renderer).height)
        w_ax = ext.width / width
        if x > 0 and x + w_ax > 1.0:
            y -= line
            x = 0.0
            t.set_position((x, y))
        x += w_ax


def explain_example_figure(res: Results):
    """The seed's "LIME example", side by side: the reference and the compared INT8 variant on
    the same text and the same perturbations (bars: the ten largest word weights toward the
    reference's predicted class; below: the text highlighted)."""
    r = res.explain
    names = res.labels
    ref, cmp_ = r.reference, r.compare
    picks = r.figure_examples
    if cmp_ not in r.explanations or not picks:
        return None
    fig = plt.figure(figsize=(PRINT_WIDTH, 2.8 * len(picks)))
    gs = fig.add_gridspec(2 * len(picks), 2, height_ratios=[2.2, 1.2] * len(picks), hspace=0.75, wspace=0.45)
    for row, i in enumerate(picks):
        e = r.examples[i]
        label = str(e["reference_pred"])
        wr = np.asarray(r.explanations[ref][i]["weights"][label])
        words = _example_words(e["text"])
        order = np.argsort(-np.abs(wr), kind="stable")[:10][::-1]
        lim = max(np.abs(wr).max(), np.abs(r.explanations[cmp_][i]["weights"][label]).max())
        for col, v in enumerate((ref, cmp_)):
            x = r.explanations[v][i]
            w = np.asarray(x["weights"][label])
            ax = fig.add_subplot(gs[2 * row, col])
            ax.barh([words[j] for j in order], w[order], color=["C2" if w[j] > 0 else "C3" for j in order])
            ax.axvline(0, color="k", lw=0.8)
            ax.set_xlim(-1.1 * lim, 1.1 * lim)
            rho = ("" if v == ref else
                   f"\nSpearman vs FP32 (other seeds): {r.agreement_per_example[v][i]['spearman']:.2f}")
            head = (f"text {e['index']} (true: {names[e['label']]}; {e['reason']})\n" if col == 0 else "\n")
            ax.set_title(f"{head}{short(v)}: {names[x['pred']]} ({max(x['proba']):.2f}){rho}", fontsize=8, loc="left")
            ax.set_xlabel(f"LIME weight toward '{names[int(label)]}'", fontsize=8)
            ax.tick_params(labelsize=8)
            _draw_highlighted(fig.add_subplot(gs[2 * row + 1, col]), e["text"], w)
    return Drawn("lime_examples", fig)


def _example_words(text: str) -> list:
    return list(indexed(text).inverse_vocab)


def _explain_colors(r: dict) -> dict:
    """One colour per explained variant, by its family as in every other figure; the noise floor grey."""
    names = list(r.variants) + list((r.cost_variants or []))
    return {**variant_palette(names), "noise-floor": "0.6"}


def explain_agreement_figure(res: Results):
    """Left: per text of the random sample, each variant's agreement with FP32's explanations under the other
    seeds, beside FP32's own (the floor). Right: the paired difference to the floor with its interval, on the
    random sample and on the flipped texts, the equivalence margin shaded."""
    r, fr = res.explain, F.explain_agreement_frames(res)
    noise = "FP32, other seeds (floor)"
    df = fr["per_example"].assign(metric=lambda d: d["metric"].map(lambda k: metric(k).LABEL),
                                  variant=lambda d: d["variant"].map(
                                      lambda v: noise if v == "noise-floor" else short(v)))
    fig, axes = plt.subplots(1, 2, figsize=(PRINT_WIDTH, 3.4), gridspec_kw={"width_ratios": [1.5, 1]})
    order = [short(v) for v in r.agreement_per_example if v != "noise-floor"] + [noise]
    colors = {**{short(k): v for k, v in _explain_colors(r).items()}, noise: "0.6"}
    sns.boxplot(df, x="metric", y="value", hue="variant", hue_order=order, ax=axes[0], fliersize=1.5,
                palette=[colors[v] for v in order], showmeans=True, linewidth=0.7,
                meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "k", "markersize": 3})
    n_random = (r.selection or {}).get("n_random", r.n_examples)
    axes[0].set(ylabel=f"agreement with FP32\n({n_random} random texts)", xlabel="")
    axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    d = fr["minus_noise"]
    if len(d):
        names = list(dict.fromkeys(d["variant"]))
        y = np.arange(len(names))
        for where, off, fill in (("random", -0.15, True), ("disagreement", 0.15, False)):
            dd = d[d["texts"] == where].set_index("variant").reindex(names)
            ok = dd["mean"].notna().to_numpy()
            if not ok.any():
                continue
            err = [(dd["mean"] - dd["lo"])[ok], (dd["hi"] - dd["mean"])[ok]]
            axes[1].errorbar(dd["mean"][ok], y[ok] + off, xerr=err, fmt="o" if fill else "s",
                             mfc=None if fill else "white", color="k", capsize=2, ms=4,
                             label="random texts" if fill else "flipped texts")
        axes[1].set_yticks(y, [short(v) for v in names])
        axes[1].invert_yaxis()
        axes[1].axvline(0, color="k", lw=0.8, ls="--")
        m = r.equivalence_margin
        if m:
            axes[1].axvspan(-m, m, color="0.88", zorder=0, label=f"margin $\\pm${m:g}")
        conf = 100 * res.confidence("explain")
        axes[1].set(xlabel=f"Spearman minus floor\n(paired, {conf:g}% interval)")
        axes[1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=1, frameon=False)
    else:
        axes[1].set_axis_off()
    fig.tight_layout()
    return Drawn("lime_agreement", fig)


def explain_faithfulness_figure(res: Results):
    """Comprehensiveness (higher: more faithful) and sufficiency (lower), normalized where the result has it, against
    a random ranking (crosses), and the cost of an explanation per variant."""
    r = res.explain
    fig, axes = plt.subplots(1, 3, figsize=(PRINT_WIDTH, 0.3 * len(r.cost) + 1.6), sharey=False)
    f = r.faithfulness
    names = list(f)
    colors = _explain_colors(r)
    pre = "normalized_" if r.naopc else ""
    labels = [short(n) for n in names]
    for ax, key in ((axes[0], "comprehensiveness"), (axes[1], "sufficiency")):
        better = metric(key).better
        m = np.array([f[n][pre + key]["mean"] for n in names])
        lo = np.array([f[n][pre + key]["ci"][0] for n in names])
        hi = np.array([f[n][pre + key]["ci"][1] for n in names])
        ax.barh(labels, m, xerr=[m - lo, hi - m], capsize=2, color=[colors[n] for n in names])
        ax.scatter([f[n]["random_" + pre + key]["mean"] for n in names], labels, marker="x", color="k", zorder=3,
                   label="random ranking")
        ax.axvline(0, color="k", lw=0.8)
        ax.set(xlabel=f"{'NAOPC' if pre else 'AOPC'} ({better}: better)", title=key.capitalize())
        ax.invert_yaxis()
    axes[1].set_yticklabels([])
    axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
    c = r.cost
    cn = sorted(c, key=lambda n: c[n]["throughput_vs_baseline"])
    axes[2].barh([short(n) for n in cn], [c[n]["throughput_vs_baseline"] for n in cn], color=[colors[n] for n in cn])
    axes[2].axvline(1, color="k", lw=0.8, ls="--")
    axes[2].set(xlabel=f"explanations/s vs {short(r.throughput_baseline)}", title="Cost")
    fig.tight_layout()
    return Drawn("lime_faithfulness", fig)


def seeds_figure(res: Results):
    """Each variant's accuracy change against PyTorch FP32 of the same seed, every seed a dot, the mean with
    its interval over the seeds; QAT's files also against their control (FP32 trained as long)."""
    f = F.seeds_frame(res)
    f = f[f["diff"].notna()].reset_index(drop=True)
    if f.empty:
        return None
    r = res.seeds
    ctl = f[f["vs_control"].notna()].reset_index(drop=True)
    fig, axes = plt.subplots(1, 2 if len(ctl) else 1, figsize=(12 if len(ctl) else 7, 0.42 * len(f) + 1.6),
                             gridspec_kw={"width_ratios": [1.4, 1]} if len(ctl) else None, squeeze=False)
    colours = variant_palette(f["variant"])
    lvl = int(100 * r.confidence)
    panels = [(axes[0][0], f, "diff", "per_seed", "diff_ci", f"against {r.reference}")]
    if len(ctl):
        panels.append((axes[0][1], ctl, "vs_control", "vs_control_per_seed", "vs_control_ci",
                       f"QAT against its control ({r.control})"))
    for ax, fr, mean, per_seed, ci_key, title in panels:
        for y, row in fr.iterrows():
            xs = 100 * np.asarray(row[per_seed])
            ax.scatter(xs, y + np.linspace(-0.15, 0.15, len(xs)), s=14, color=colours[row["variant"]], alpha=0.8,
                       edgecolor="0.3", lw=0.3)
            m, (lo, hi) = 100 * row[mean], (100 * x for x in row[ci_key])
            ax.errorbar(m, y, xerr=[[m - lo], [hi - m]], fmt="D", ms=5, color="k", capsize=3, lw=1)
        ax.axvline(0, color="0.3", lw=0.8, ls="--")
        ax.set_yticks(range(len(fr)), fr["variant"], fontsize=8)
        ax.invert_yaxis()
        ax.set(xlabel="accuracy change (pt), batch 1", title=title)
    axes[0][0].annotate(f"dots: seeds {', '.join(map(str, r.seeds))}; diamond: mean, {lvl}% t-interval over seeds",
                        (0, -0.16), xycoords="axes fraction", fontsize=7, color="0.35", va="top")
    fig.tight_layout()
    return Drawn("seeds", fig)


def sizes_figure(res: Results):
    """Cost against model size (``make sizes``): file size, batch-1 latency, throughput and peak memory of every
    file against the parameter count; the fastest INT8 file's speed-ups with Amdahl's bound from ONNX FP32's
    own operator profile; the share of that profile in matrix products. Randomly initialised weights, said."""
    fr = F.sizes_frames(res)
    if fr is None:
        return None
    r, v, s = res.sizes, fr["variants"], fr["sizes"]
    L = str(max(r.lengths))
    colours = variant_palette(r.variants)
    mem = v["peak_rss_mb"].notna().any()
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.6))
    axes = axes.ravel()
    v = v.assign(mparams=v["params"] / 1e6)
    s = s.assign(mparams=s["params"] / 1e6)
    panels = [(axes[0], "file_mb", "file size (MB)", "Model file"),
              (axes[1], f"latency_{L}", "ms per call (median)", f"Batch 1, {L} tokens"),
              (axes[2], "texts_per_s", "texts / s", f"Throughput, batch {r.batch_size} x {L} tokens")]
    if mem:
        panels.append((axes[5], "peak_rss_mb", "peak resident memory (MB)",
                       f"Fresh process, one batch of {r.batch_size}"))
    for ax, col, ylabel, title in panels:
        for n, g in v.groupby("variant", sort=False):
            ax.plot(g["mparams"], g[col], marker="o", color=colours[n], label=n, ms=4,
                    ls="--" if n == "onnx-fp32" else "-")
        ax.set(xscale="log", yscale="linear" if col == "peak_rss_mb" else "log", xlabel="parameters (millions)",
               ylabel=ylabel, title=title)
    axes[0].legend(fontsize=7, loc="upper left")
    ax = axes[3]
    for L_, ls in zip(sorted(r.lengths), (":", "-", "-.")):
        ax.plot(s["mparams"], s[f"vs_onnx_{L_}"], marker="o", ls=ls, color="C2", label=f"over ONNX FP32, {L_} tokens",
                ms=4)
    ax.plot(s["mparams"], s[f"vs_torch_{L}"], "s-", color="0.35", label=f"over PyTorch FP32, {L} tokens", ms=4)
    ax.plot(s["mparams"], s["free_matmul"], "k--", lw=1, label="ceiling: matrix products free (FP32 profile)")
    ax.axhline(1, color="0.5", lw=0.8)
    one = s["best_int8"].nunique() == 1
    for _, row in s.iterrows() if not one else ():      # the fastest file's name where it changes with the size
        ax.annotate(short(row["best_int8"]).replace("int8-", ""), (row["mparams"], row[f"vs_onnx_{L}"]), fontsize=6,
                    xytext=(2, -9), textcoords="offset points", color="C2")
    which = f" ({short(s['best_int8'].iloc[0])})" if one else ""
    ax.set(xscale="log", yscale="log", xlabel="parameters (millions)", ylabel="speed-up (x)",
           title=f"Fastest INT8 file{which}, batch 1")
    ax.legend(fontsize=7)
    ax = axes[4]
    ax.plot(s["mparams"], 100 * s["matmul_share"], "o-", color="C0", ms=4, label="share of FP32's kernel time (%)")
    for _, row in s.iterrows():
        ax.annotate(row["size"], (row["mparams"], 100 * row["matmul_share"]), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
    threads = (res.sizes.protocol.get("profile_threads") or res.sizes.provenance["threads"])
    ax.set(xscale="log", xlabel="parameters (millions)", ylabel="% of FP32 kernel time",
           title=f"Matrix products, operator profiles ({threads} thread{'s' if threads != 1 else ''})")
    px = s[s["int8_matmul_speedup"].notna()]
    if len(px):
        tw = ax.twinx()
        tw.grid(False)
        tw.plot(px["mparams"], px["int8_matmul_speedup"], "s-", color="C2", ms=4,
                label=f"INT8 ({short(px.iloc[-1]['products_int8'])}) over FP32 on them (x)")
        tw.axhline(F.INT8_DOT_FACTOR, color="C2", lw=0.8, ls=":")
        tw.set_ylabel("INT8 products' speed-up (x)", color="C2")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = tw.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    if not mem:
        axes[5].axis("off")
        axes[5].text(0.5, 0.5, "peak memory not measured\n(sizes.memory: false)", ha="center", va="center",
                     color="0.4", transform=axes[5].transAxes)
    plain = FuncFormatter(lambda x, _: f"{x:g}")
    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
                axis.set_major_formatter(plain)
                axis.set_minor_formatter(NullFormatter())
    isa = r.provenance["cpu_isa"]["int8_gemm"]
    fig.suptitle(f"Cost against model size: randomly initialised BERT encoders (speed and size need no trained "
                 f"weights); {r.provenance['threads']} threads, INT8 GEMM path {isa}", fontsize=10)
    fig.tight_layout()
    return Drawn("sizes", fig)
