"""Where cloob keeps what it can rebuild (extracted data sets, cached features): never the repository."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$CLOOB_CACHE``, else ``~/.cache/cloob``."""
    return Path(os.environ.get("CLOOB_CACHE") or Path.home() / ".cache" / "cloob")
