"""The study's metrics, each declared once with its direction and family (after ferret's evaluators:
a metric says whether lower is better, so a table or figure reads the direction from the metric,
never from a caption typed by hand)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    NAME: str
    LABEL: str
    LOWER_IS_BETTER: bool
    FAMILY: str            # accuracy | speed | agreement | faithfulness

    @property
    def better(self) -> str:
        """``lower`` or ``higher``: the direction in words, as captions say it."""
        return "lower" if self.LOWER_IS_BETTER else "higher"

    def is_better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is better than ``b``."""
        return a < b if self.LOWER_IS_BETTER else a > b


METRICS: dict = {}


def register_metric(m: Metric) -> Metric:
    if m.NAME in METRICS:
        raise ValueError(f"metric {m.NAME!r} is already registered")
    METRICS[m.NAME] = m
    return m


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


for _m in (
    Metric("accuracy", "accuracy", False, "accuracy"),
    Metric("macro_f1", "macro-F1", False, "accuracy"),
    Metric("agreement", "same prediction as FP32", False, "accuracy"),
    Metric("median_ms", "median latency", True, "speed"),
    Metric("texts_per_s", "throughput", False, "speed"),
    Metric("spearman", "Spearman", False, "agreement"),
    Metric("kendall", "Kendall", False, "agreement"),
    # ERASER (DeYoung et al. 2020): the probability lost when the top words are removed (higher: the
    # explanation found the words the model relies on), or when only they are kept (lower: they suffice)
    Metric("comprehensiveness", "comprehensiveness", False, "faithfulness"),
    Metric("sufficiency", "sufficiency", True, "faithfulness"),
    Metric("local_r2", "local $R^2$", False, "faithfulness"),
):
    register_metric(_m)


# the top-k agreement metrics, one pair per k of ``explain.top_k``: registered when a k is first asked for
def top_k(k: int, kind: str = "overlap") -> Metric:
    """The top-``k`` ``overlap`` (the share of the k highest-weighted words both explanations have) or ``sign`` (of
    the shared ones, the share weighted with the same sign) metric, registered on first use."""
    if kind not in ("overlap", "sign") or not isinstance(k, int) or k < 1:
        raise ValueError(f"no top-k metric {kind!r} for k={k!r}: kind is overlap or sign, k a positive integer")
    name = f"top{k}_{kind}"
    if name not in METRICS:
        register_metric(Metric(name, f"top-{k} overlap" if kind == "overlap" else f"sign (top-{k})", False,
                               "agreement"))
    return METRICS[name]


def agreement_metrics(ks) -> list:
    """The names of the agreement metrics of two explanations, for the top-k sizes ``ks``."""
    return [top_k(k, kind).NAME for k in ks for kind in ("overlap", "sign")] + ["spearman", "kendall"]


_ONES = ("Zero One Two Three Four Five Six Seven Eight Nine Ten Eleven Twelve Thirteen Fourteen Fifteen Sixteen "
         "Seventeen Eighteen Nineteen").split()
_TENS = "_ _ Twenty Thirty Forty Fifty Sixty Seventy Eighty Ninety".split()


def number_word(k: int) -> str:
    """``k`` (1-999) in words, capitalised and joined (for a LaTeX macro name, which takes letters only)."""
    if not 0 < k < 1000:
        raise ValueError(f"{k} is outside 1-999")
    if k >= 100:
        return _ONES[k // 100] + "Hundred" + (number_word(k % 100) if k % 100 else "")
    return _ONES[k] if k < 20 else _TENS[k // 10] + (_ONES[k % 10] if k % 10 else "")


for _k in (5, 10):          # the default explain.top_k
    top_k(_k), top_k(_k, "sign")
