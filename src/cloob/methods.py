"""The paper's ablation cells by name: objective and whether Hopfield retrieval is used.

Plain constants without torch, so the configuration and the command line can
read them without paying for the tensor libraries; :mod:`cloob.losses` re-exports them.
"""
from __future__ import annotations

OBJECTIVES = ("infonce", "infoloob")

METHODS = {
    # method name -> (objective, uses Hopfield retrieval)
    "clip": ("infonce", False),
    "infoloob": ("infoloob", False),
    "infonce-hopfield": ("infonce", True),
    "cloob": ("infoloob", True),
}
