"""The chunked diagnostics on 24,000 × 512 embeddings stay within 2 GiB, their own working memory within 1 GiB.

One dense 24,000² float32 matrix alone is 2.1 GiB, so a pairwise diagnostic that forgot to chunk fails here. (The
size was 50,000 until the suite outgrew 15 minutes under load; pairwise time grows as n², the chunk bound does not.)"""
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import resource, time, torch
    from cloob.analysis import (ajne_statistic, effective_eigenvalues, saturation_terms,
                                similarity_distributions, uniformity)
    torch.manual_seed(0)
    x = torch.randn(24_000, 512)
    x /= x.norm(dim=1, keepdim=True)
    y = torch.randn(24_000, 512).mul_(0.5).add_(x)
    y /= y.norm(dim=1, keepdim=True)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    a = ajne_statistic(x)
    u = uniformity(x)
    m, top = similarity_distributions(x, y)
    s = saturation_terms(x, y, 30.0)
    k = effective_eigenvalues(x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"ajne {a:.3f} uniformity {u:.4f} k {k} matched {m.mean():.3f} top10 {top.mean():.3f} "
          f"a/b {s['infoloob_term']:.3g} seconds {time.perf_counter() - t0:.1f}")
    print(f"PEAK_MIB {peak / 1024:.0f} BASE_MIB {base / 1024:.0f}")
""")


@pytest.mark.slow
def test_diagnostics_of_24k_by_512_fit_in_2_gib():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    print(out.stdout)
    peak = float(out.stdout.split("PEAK_MIB ")[1].split()[0])
    base = float(out.stdout.split("BASE_MIB ")[1].split()[0])
    assert peak < 2048, out.stdout  # whole process: python, torch, inputs (2 × 100 MiB) and the diagnostics
    assert peak - base < 1024, out.stdout  # the diagnostics' own working memory
    ajne = float(out.stdout.split("ajne ")[1].split()[0])
    assert ajne < 5  # isotropic points: about 1/4
