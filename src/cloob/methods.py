"""The ablation cells by name: objective and whether Hopfield retrieval is used.

The paper's 2 × 2 grid ({InfoNCE, InfoLOOB} × {no Hopfield, Hopfield}) plus SigLIP's pairwise sigmoid loss
(Zhai et al. 2023) in both columns, so the grid is {InfoNCE, InfoLOOB, sigmoid} × {no Hopfield, Hopfield}.

Plain constants without torch, so the configuration and the command line can
read them without paying for the tensor libraries; :mod:`cloob.losses` re-exports them.
"""
from __future__ import annotations

OBJECTIVES = ("infonce", "infoloob", "sigmoid")

METHODS = {
    # method name -> (objective, uses Hopfield retrieval)
    "clip": ("infonce", False),
    "infoloob": ("infoloob", False),
    "infonce-hopfield": ("infonce", True),
    "cloob": ("infoloob", True),
    "siglip": ("sigmoid", False),
    "siglip-hopfield": ("sigmoid", True),
}


def uses_bias(method: str) -> bool:
    """Whether the method's loss has a learned logit bias (the sigmoid objective's b)."""
    return METHODS[method][0] == "sigmoid"


def warm_start_method(method: str) -> str:
    """The objective of a run's warm start (``clip_warm_start``): CLIP's InfoNCE for the softmax methods, as
    the short-budget recipe of CLOOB; SigLIP's sigmoid loss without Hopfield for siglip-hopfield, so that the
    bias b is trained from the first step and only the retrieval is switched on later."""
    return "siglip" if uses_bias(method) else "clip"
