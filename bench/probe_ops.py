"""Probe: cost of the N×N elementwise steps of the losses, at N = 4,096 float32, 2 threads.

Why the losses work in place: a freshly allocated N×N result costs page faults on top of
the arithmetic, and a transposed operand makes an elementwise op read memory column-wise.
Not part of `make bench`; bench/NOTES.md quotes it.

    python bench/probe_ops.py [--n 4096] [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import THREADS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import torch

    from cloob.hopfield import softmax_

    torch.set_num_threads(THREADS)
    s0 = torch.randn(args.n, args.n, generator=torch.Generator().manual_seed(0)) * 10
    a, b = torch.randn(args.n, 512), torch.randn(512, args.n)
    cases = {
        "matmul N×512×N (for scale)": lambda s: a @ b,
        "exp_ (in place)": lambda s: s.exp_(),
        "exp (new tensor)": lambda s: s.exp(),
        "torch.logsumexp rows": lambda s: torch.logsumexp(s, dim=1),
        "logsumexp + exp(s − lse) in place": lambda s: s.sub_(torch.logsumexp(s, dim=1)[:, None]).exp_(),
        "softmax_ (ours, in place)": softmax_,
        "s + s.T (transposed add)": lambda s: s + s.T,
    }
    print(f"N = {args.n}, float32, {THREADS} threads, best of {args.repeats} (ms)")
    for name, fn in cases.items():
        times = []
        for _ in range(args.repeats):
            s = s0.clone()
            t = time.perf_counter()
            fn(s)
            times.append(time.perf_counter() - t)
        print(f"  {name:<36} {min(times) * 1e3:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
