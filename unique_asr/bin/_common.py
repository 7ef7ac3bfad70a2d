"""Shared bits of the hydra entry points: config location, the typed schema, start-up checks."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from unique_asr.config.paths import CONFIG_PATH

log = logging.getLogger("unique_asr")


def _compose_error(overrides: list[str]) -> str | None:
    """Compose the config with the command line's overrides; the error text if that fails."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from unique_asr.config import compose

    try:
        compose(overrides)
    except (HydraException, OmegaConfBaseException) as e:  # the text names the key and class
        parts, err = [], e
        while err is not None:
            parts.append(str(err))
            err = err.__cause__ or err.__context__
        return "\n".join(parts)
    return None


def check_config(overrides: list[str]) -> None:
    """Exit with one clear line when an override or a preset names a key the schema lacks."""
    from unique_asr.config.errors import schema_classes, unknown_key_message
    from unique_asr.config.schema import schema_roots

    text = _compose_error(overrides)
    if text is None:
        return
    msg = unknown_key_message(text, schema_classes(schema_roots()))
    if msg is not None:
        print(f"ERROR: {msg}", file=sys.stderr)
        sys.exit(2)


def hydra_entry(fn: Callable[[DictConfig], None]) -> Callable[[], None]:
    """hydra.main over conf/config.yaml with the typed schema registered and unknown keys
    reported (key and valid keys) before anything runs."""
    import hydra

    @functools.wraps(fn)
    def main() -> None:
        from unique_asr.config import register

        register()
        check_config([a for a in sys.argv[1:] if not a.startswith("-")])
        hydra.main(config_path=CONFIG_PATH, config_name="config", version_base="1.3")(fn)()

    return main


def start(cfg: DictConfig, name: str) -> None:
    """Log what runs and where; the resolved config sits in hydra's run dir (.hydra/)."""
    from hydra.core.hydra_config import HydraConfig

    log.info("%s: recipe_dir=%s data_dir=%s", name, cfg.recipe_dir, cfg.data_dir)
    log.info("%s: resolved config and log in %s", name, HydraConfig.get().runtime.output_dir)


def to_dict(node) -> dict:
    return OmegaConf.to_container(node, resolve=True)
