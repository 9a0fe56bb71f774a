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
    Metric("top5_overlap", "top-5 overlap", False, "agreement"),
    Metric("top10_overlap", "top-10 overlap", False, "agreement"),
    Metric("top5_sign", "sign (top-5)", False, "agreement"),
    Metric("top10_sign", "sign (top-10)", False, "agreement"),
    Metric("spearman", "Spearman", False, "agreement"),
    Metric("kendall", "Kendall", False, "agreement"),
    # ERASER (DeYoung et al. 2020): the probability lost when the top words are removed (higher: the
    # explanation found the words the model relies on), or when only they are kept (lower: they suffice)
    Metric("comprehensiveness", "comprehensiveness", False, "faithfulness"),
    Metric("sufficiency", "sufficiency", True, "faithfulness"),
    Metric("local_r2", "local $R^2$", False, "faithfulness"),
):
    register_metric(_m)
