"""Reading a run directory's ``config.yaml``: the one reader that evals, analysis and experiments share."""
from __future__ import annotations

from pathlib import Path

from cloob.errors import CloobError, first_line

CONFIG_FILE = "config.yaml"


class RunError(CloobError, ValueError):
    """A run directory or file that cannot be read."""


def read_config(run: str | Path) -> dict:
    """The mapping in ``<run>/config.yaml``; ``{}`` when the file is absent.

    Raises:
        RunError: the file is not valid YAML, or not a mapping of config keys.
    """
    import yaml

    f = Path(run) / CONFIG_FILE
    if not f.is_file():
        return {}
    try:
        data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RunError(f"{f}: not valid YAML ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise RunError(f"{f}: expected a mapping of config keys")
    return data
