"""The run's typed configuration: one schema built from each layer's dataclasses, registered with
hydra so that every default is written once (in the dataclasses) and the YAML files under conf/
only override. Only this package and the entry points (unique_asr/bin) read hydra."""

from unique_asr.config.paths import CONFIG_PATH
from unique_asr.config.schema import RunConfig, compose, register

__all__ = ["CONFIG_PATH", "RunConfig", "compose", "register"]
