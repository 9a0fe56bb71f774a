"""The repository's front door: README (short, every docs/ page linked, every link resolving inside the repository),
LICENSE and CITATION.cff (valid Citation File Format 1.2.0: checked with jsonschema against the format's rules for
the keys this file may use, since cffconvert 2.0 pins jsonschema < 4, which the lock cannot hold beside nbformat)."""
from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")

# Citation File Format 1.2.0 (https://citation-file-format.github.io/1.2.0/schema): the required keys, the closed set
# of top-level keys, a person or an entity as author, SPDX licence, date format, software or dataset
_PERSON_KEYS = ("family-names", "given-names", "name-particle", "name-suffix", "affiliation", "address", "alias",
                "city", "country", "email", "fax", "orcid", "post-code", "region", "tel", "website")
_ENTITY_KEYS = ("name", "address", "alias", "city", "country", "date-end", "date-start", "email", "fax",
                "location", "orcid", "post-code", "region", "tel", "website")
_STR = {"type": "string", "minLength": 1}
CFF_120 = {
    "type": "object",
    "required": ["cff-version", "message", "title", "authors"],
    "additionalProperties": False,
    "properties": {
        "cff-version": {"type": "string", "pattern": r"^1\.2\.0$"},
        "message": _STR, "title": _STR, "abstract": _STR, "version": {"type": ["string", "number"]},
        "commit": _STR, "doi": {"type": "string", "pattern": r"^10\.\d{4,9}(\.\d+)?/\S+$"},
        "date-released": {"type": "string", "pattern": r"^[0-9]{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[01])$"},
        "type": {"enum": ["software", "dataset"]},
        "license": {"oneOf": [_STR, {"type": "array", "items": _STR, "minItems": 1, "uniqueItems": True}]},
        "license-url": _STR, "repository": _STR, "repository-artifact": _STR, "repository-code": _STR, "url": _STR,
        "keywords": {"type": "array", "items": _STR, "minItems": 1},
        "identifiers": {"type": "array"}, "references": {"type": "array"}, "contact": {"type": "array"},
        "preferred-citation": {"type": "object"},
        "authors": {"type": "array", "minItems": 1, "items": {"anyOf": [
            {"type": "object", "additionalProperties": False, "minProperties": 1,
             "properties": {k: _STR for k in _PERSON_KEYS}},
            {"type": "object", "additionalProperties": False, "required": ["name"],
             "properties": {k: _STR for k in _ENTITY_KEYS}}]}},
    },
}


def _cff() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text())


def test_citation_cff_is_valid_citation_file_format_and_matches_the_package():
    cff = _cff()
    jsonschema.validate(cff, CFF_120)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert str(cff["version"]) == project["version"]
    assert cff["license"] == project["license"]["text"] == "MIT"


@pytest.mark.parametrize("broken", [{"authors": []}, {"cff-version": "1.1.0"}, {"colour": "blue"},
                                    {"authors": [{"nickname": "x"}]}, {"date-released": "7 Dec 2026"}])
def test_the_citation_check_refuses_what_the_format_refuses(broken):
    cff = {**_cff(), **broken}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cff, CFF_120)


def test_license_is_the_mit_licence_the_package_declares():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text


def _links(path: Path) -> list:
    return [m.group(1) for m in LINK.finditer(path.read_text()) if not re.match(r"[a-z]+:", m.group(1))]


def test_readme_is_short_and_reaches_every_docs_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail into docs/"
    linked = {(ROOT / link).resolve() for link in _links(README)}
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert pages, "docs/ holds no page"
    for page in pages:
        assert page.resolve() in linked, f"{page.relative_to(ROOT)} is not linked from README.md"


@pytest.mark.parametrize("doc", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_documentation_points_only_inside_the_repository_and_at_files_that_exist(doc):
    path = ROOT / doc
    text = path.read_text()
    for link in _links(path):
        target = (path.parent / link).resolve()
        assert target.is_relative_to(ROOT), f"{doc} links outside the repository: {link}"
        assert target.exists(), f"{doc} links to a missing file: {link}"
    assert "../shared" not in text, f"{doc} points outside the repository"
    assert not re.search(r"\bissue \d+|not (been )?run yet", text, re.I), f"{doc} speaks of the tracker or of runs"


def test_the_readme_findings_are_the_committed_default_results_as_the_report_writes_them(tmp_path):
    from utils.config import load_config
    from utils.report.macros import paper_macros
    from utils.report.readers import Results
    from utils.report.readme import BEGIN, END, findings, write_readme
    from utils.report.writer import GENERATED_BY

    numbers = paper_macros(Results(load_config("default", root=ROOT)))
    body = findings(numbers)
    text = README.read_text()
    begin = BEGIN.format(by=GENERATED_BY, profile="default")
    assert f"{begin}\n{body}\n{END}" in text, "README.md's findings are stale: run `python -m utils.report default`"
    assert numbers["HeadIntVsOnnx"] in body and "\\" not in body and "$" not in body
    # the report rewrites the block in place, leaves the rest, and leaves a README without markers alone
    copy = tmp_path / "README.md"
    copy.write_text(text.replace(body, "- stale"))
    assert write_readme(copy, numbers) and copy.read_text() == text
    bare = tmp_path / "bare.md"
    bare.write_text("# a fork's README\n")
    assert not write_readme(bare, numbers) and bare.read_text() == "# a fork's README\n"
