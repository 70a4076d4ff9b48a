"""Embedding diagnostics of the CLOOB paper (method.md §3), their plots and the ``analyze`` command.

Pure functions (numpy/torch in, numbers out) live in :mod:`cloob.analysis.diagnostics`
and :mod:`cloob.analysis.stats`; figures in :mod:`cloob.analysis.plots`; encoding a
dataset with a checkpoint and writing ``analysis.json`` + PNGs in
:mod:`cloob.analysis.analyze`. The HTML report of runs is :mod:`cloob.analysis.report` (its primitives: :mod:`cloob.html`).
"""
from cloob.lazy import lazy_exports

# imported on first use: the diagnostics need numpy and torch, and `cloob --help` imports this package
_EXPORTS = {
    **dict.fromkeys(("ajne_statistic", "alignment", "effective_eigenvalues", "eigenvalue_spectrum", "relative_change",
                     "saturation_terms", "similarity_distributions", "uniformity"), "cloob.analysis.diagnostics"),
    **dict.fromkeys(("welch_p", "welch_table"), "cloob.analysis.stats"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)
