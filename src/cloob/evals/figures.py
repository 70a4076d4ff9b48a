"""Writing the evaluators' matplotlib figures (Agg backend, no screen needed)."""
from __future__ import annotations

from pathlib import Path


def save_figure(fig, path) -> Path:
    """Lay out, write as PNG (creating the folder) and close ``fig``; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
