from pathlib import Path

import pytest

from utils.config import ConfigError, load_config


def test_default_profile_is_the_embedded_default(repo):
    cfg = load_config("default", root=repo)
    assert cfg.name == "default"
    assert cfg.data.source == "packaged" and cfg.model.source == "packaged"
    assert cfg.results_dir == repo / "results" / "default"
    assert cfg.artifacts_dir == repo / "artifacts" / "default"
    assert cfg.export.opset >= 17


def test_smoke_extends_default_and_overrides_fields(repo):
    cfg = load_config("smoke", root=repo)
    base = load_config("default", root=repo)
    assert cfg.name == "smoke"
    assert cfg.data.max_examples == 400 and base.data.max_examples is None
    assert cfg.model.max_length == 32
    assert cfg.train.weight_decay == base.train.weight_decay   # inherited


def test_user_yaml_extends_builtin_and_names_outputs_by_stem(repo, tmp_path):
    user = tmp_path / "elsewhere" / "my_study.yaml"
    user.parent.mkdir()
    user.write_text("extends: smoke\n"
                    "data: {source: file, path: my_reviews.csv, text_column: review, label_column: sentiment}\n")
    cfg = load_config(user, root=repo)
    assert cfg.name == "my_study"
    assert cfg.results_dir == repo / "results" / "my_study"
    assert cfg.data.path == "my_reviews.csv" and cfg.data.text_column == "review"
    assert cfg.data.label_column == "sentiment"
    assert cfg.model.max_length == 32                          # from smoke
    assert cfg.data.train_fraction == 0.7                      # from default


def test_overrides_are_merged_last(repo):
    cfg = load_config("smoke", {"train": {"epochs": 3}, "seed": 7}, root=repo)
    assert cfg.train.epochs == 3 and cfg.seed == 7 and cfg.train.batch_size == 16


@pytest.mark.parametrize("text, message", [
    ("extends: default\ntrian: {epochs: 1}\n", "unknown key(s) in profile: trian"),
    ("extends: default\ntrain: {epochs: many}\n", "train.epochs = 'many'"),
    ("extends: default\ndata: {test_fraction: 0.5}\n", "sum to 1"),
    ("extends: default\ndata: {source: file}\n", "data.path is not set"),
    ("extends: default\nmodel: {source: hub}\n", "model.name_or_path is not set"),
    ("extends: default\nname: other\n", "'name' is set by the loader"),
    ("extends: nonexistent\n", "unknown profile 'nonexistent'"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_bad_profiles_get_one_clear_error(repo, tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p, root=repo)
    assert message in str(e.value)


def test_circular_extends_is_detected(repo, tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml", root=repo)


def test_missing_profile_file(repo):
    with pytest.raises(ConfigError, match="profile file not found: nowhere.yaml"):
        load_config("nowhere.yaml", root=repo)


def test_every_shipped_profile_loads():
    root = Path(__file__).resolve().parents[1]
    names = sorted(p.stem for p in (root / "configs").glob("*.yaml") if p.stem != "grid")   # grid.yaml: `make grid`'s
    assert {"default", "smoke", "indobert-gpu"} <= set(names)
    for n in names:
        assert load_config(n, root=root).name == n


def test_bench_spinning_threads_need_blocks_with_untimed_calls():
    with pytest.raises(ConfigError, match="spinning"):
        load_config("smoke", overrides={"bench": {"block": 1, "spinning": True, "spin_stop": False}})
    with pytest.raises(ConfigError, match="spinning"):
        load_config("smoke", overrides={"bench": {"block": 10, "block_warmup": 0, "spinning": True,
                                                  "spin_stop": False}})
    # threads that stop spinning when a call returns do not hold the next model's cores
    assert load_config("smoke", overrides={"bench": {"block": 1, "block_warmup": 0, "spinning": True,
                                                     "spin_stop": True}}).bench.spin_stop
    assert load_config("smoke", overrides={"bench": {"block": 10, "block_warmup": 2, "spinning": True}}).bench.spinning
    assert load_config("smoke", overrides={"bench": {"block": 1, "spinning": False}}).bench.block == 1
    with pytest.raises(ConfigError, match="headline_only cannot hold the FP32 references onnx-fp32"):
        load_config("smoke", overrides={"bench": {"headline_only": ["onnx-fp32"]}})
    assert load_config("default").bench.headline_only == ["pytorch-qat-fakequant"]
    with pytest.raises(ConfigError, match="block_warmup"):
        load_config("smoke", overrides={"bench": {"block_warmup": -1}})


def test_operator_profiles_take_a_positive_thread_count_or_all_cores():
    assert load_config("default").bench.profile_threads == 1
    assert load_config("smoke", overrides={"bench": {"profile_threads": None}}).bench.profile_threads is None
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="bench.profile_threads"):
            load_config("smoke", overrides={"bench": {"profile_threads": bad}})
