"""Command-line argument lists before argparse reads them (``cloob`` and the grid's eval arguments)."""
from __future__ import annotations


def numbers_as_values(argv: list[str]) -> list[str]:
    """Attach a negative number to the option before it: ``--lr -1e-3`` -> ``--lr=-1e-3``.

    argparse takes ``-1e-3`` for an unknown option (its pattern for negative numbers has no
    exponent) and stops with a usage message; no cloob option looks like a number.
    """
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and out[-1] != "--" and "=" not in out[-1] and _negative_number(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _negative_number(token: str) -> bool:
    if not token.startswith("-"):
        return False
    try:
        float(token)
    except ValueError:
        return False
    return True
