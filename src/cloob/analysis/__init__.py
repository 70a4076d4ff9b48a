"""Embedding diagnostics of the CLOOB paper (method.md §3), their plots and the ``analyze`` command.

Pure functions (numpy/torch in, numbers out) live in :mod:`cloob.analysis.diagnostics`
and :mod:`cloob.analysis.stats`; figures in :mod:`cloob.analysis.plots`; encoding a
dataset with a checkpoint and writing ``analysis.json`` + PNGs in
:mod:`cloob.analysis.analyze`. The HTML report is :mod:`cloob.report`.
"""
from cloob.analysis.diagnostics import (ajne_statistic, alignment, effective_eigenvalues, eigenvalue_spectrum,
                                        relative_change, saturation_terms, similarity_distributions, uniformity)
from cloob.analysis.stats import welch_p, welch_table

__all__ = [
    "ajne_statistic", "alignment", "effective_eigenvalues", "eigenvalue_spectrum", "relative_change",
    "saturation_terms", "similarity_distributions", "uniformity", "welch_p", "welch_table",
]
