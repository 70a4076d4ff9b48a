"""Benchmark 3: forward+backward time and peak memory of cloob_loss and clip_loss vs the
dense form (full N×N matrices, method.md §1 read literally), d = 512, float32.

Each case runs in a fresh process; peak memory = ru_maxrss after the work minus before.
Where the dense form runs, the memory-efficient result is checked against it (1e-5).

    python bench/bench_loss.py [--sizes 256,1024,4096,8192,16384,32768] [--dense-max 8192] [--profile-n 4096]

A torch.profiler breakdown at --profile-n says where the time of clip_loss and
cloob_loss goes (matmul calls and their share, in units of one N×512×N matmul).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ENV, ROOT, python, write  # noqa: E402

CASE = r"""
import json, resource, sys, time
import torch, torch.nn.functional as F
sys.path.insert(0, {tests!r})
torch.set_num_threads(2)
from cloob.losses import cloob_loss, clip_loss
from dense import dense_cloob_loss, dense_clip_loss
impl, n, reps = {impl!r}, {n}, {reps}
fn = {{"cloob": lambda x, y: cloob_loss(x, y, 30.0, 14.3), "clip": lambda x, y: clip_loss(x, y, 30.0),
      "dense-cloob": lambda x, y: dense_cloob_loss(x, y, 30.0, 14.3),
      "dense-clip": lambda x, y: dense_clip_loss(x, y, 30.0)}}[impl]
g = torch.Generator().manual_seed(0)
x0 = F.normalize(torch.randn(n, 512, generator=g), dim=-1)
# matched pairs with cosine ~0.45, unmatched ~0: a loss that is not saturated
y0 = F.normalize(x0 + 2.0 * F.normalize(torch.randn(n, 512, generator=g), dim=-1), dim=-1)
for _ in range(3):  # warm-up: the first calls of a process pay one-off kernel and thread-pool set-up
    w = torch.randn(64, 512, requires_grad=True)
    fn(F.normalize(w, dim=-1), F.normalize(w.detach() + 1, dim=-1)).backward()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(reps):
    x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
    t = time.perf_counter()
    loss = fn(x, y)
    loss.backward()
    times.append(time.perf_counter() - t)
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
if impl in ("cloob", "clip") and {check}:
    ref = {{"cloob": lambda a, b: dense_cloob_loss(a, b, 30.0, 14.3), "clip": lambda a, b: dense_clip_loss(a, b, 30.0)}}[impl]
    xr, yr = x0.clone().requires_grad_(), y0.clone().requires_grad_()
    lr = ref(xr, yr); lr.backward()
    err = max(abs(loss.item() - lr.item()), (x.grad - xr.grad).abs().max().item(), (y.grad - yr.grad).abs().max().item())
else:
    err = None
print(json.dumps({{"seconds": min(times), "peak_mib": peak, "loss": loss.item(), "max_abs_diff_vs_dense": err}}))
"""


PROFILE = r"""
import json, sys, time
import torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
torch.set_num_threads(2)
from cloob.losses import cloob_loss, clip_loss
impl, n = {impl!r}, {n}
fn = {{"cloob": lambda x, y: cloob_loss(x, y, 30.0, 14.3), "clip": lambda x, y: clip_loss(x, y, 30.0)}}[impl]
g = torch.Generator().manual_seed(0)
x0 = F.normalize(torch.randn(n, 512, generator=g), dim=-1)
y0 = F.normalize(x0 + 2.0 * F.normalize(torch.randn(n, 512, generator=g), dim=-1), dim=-1)
a, b = torch.randn(n, 512), torch.randn(512, n)
for _ in range(2):
    a @ b
    x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
    fn(x, y).backward()
mm_times = []
for _ in range(3):
    t = time.perf_counter()
    a @ b
    mm_times.append(time.perf_counter() - t)
mm = min(mm_times)
x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    t = time.perf_counter()
    fn(x, y).backward()
    total = time.perf_counter() - t
ops = {{}}
for e in prof.key_averages():
    ops[e.key] = (e.count, e.self_cpu_time_total / 1e6)
matmul = {{k: v for k, v in ops.items() if k in ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm")}}
top = sorted(ops.items(), key=lambda kv: -kv[1][1])[:8]
print(json.dumps({{"total_s": total, "one_matmul_s": mm, "matmul_equivalents": total / mm,
                  "matmul_calls": sum(c for c, _ in matmul.values()), "matmul_s": sum(s for _, s in matmul.values()),
                  "top_ops": [[k, c, round(s, 4)] for k, (c, s) in top]}}))
"""


def profile_case(impl: str, n: int) -> dict:
    """torch.profiler over one fwd+bwd: where the time goes, in units of one N×512×N matmul."""
    out = subprocess.run([python(), "-c", PROFILE.format(impl=impl, n=n)], env=ENV, capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_case(impl: str, n: int, reps: int, check: bool) -> dict:
    code = CASE.format(tests=str(ROOT / "tests"), impl=impl, n=n, reps=reps, check=check)
    out = subprocess.run([python(), "-c", code], env=ENV, capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,1024,4096,8192,16384,32768")
    ap.add_argument("--dense-max", type=int, default=8192, help="largest N for the dense form (memory)")
    ap.add_argument("--profile-n", type=int, default=4096, help="N of the torch.profiler breakdown (0: none)")
    ap.add_argument("--out", default="loss", help="results name: bench/results/<out>.json (the report reads 'loss')")
    args = ap.parse_args()
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        reps = 3 if n <= 4096 else 1
        for impl in ("clip", "cloob", "dense-clip", "dense-cloob"):
            if impl.startswith("dense") and n > args.dense_max:
                rows.append({"impl": impl, "n": n, "skipped": f"N > {args.dense_max}: several N×N float32 matrices"})
                continue
            res = run_case(impl, n, reps, check=n <= args.dense_max)
            rows.append({"impl": impl, "n": n, **res})
            print(f"  N={n:>6} {impl:<12} {res}", flush=True)
    profiles = {}
    if args.profile_n:
        for impl in ("clip", "cloob"):
            profiles[impl] = profile_case(impl, args.profile_n)
            p = profiles[impl]
            print(f"  profile N={args.profile_n} {impl}: {p.get('total_s', 0):.3f} s = "
                  f"{p.get('matmul_equivalents', 0):.1f} matmuls; {p.get('matmul_calls')} mm calls, "
                  f"{p.get('matmul_s', 0):.3f} s in them", flush=True)
    write(args.out, {"rows": rows, "profile_n": args.profile_n, "profiles": profiles, "setup": {"d": 512, "dtype": "float32", "inv_tau": 30, "beta": 14.3}},
          "python bench/bench_loss.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
