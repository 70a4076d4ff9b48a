"""Scenes generation speed (images/s), single process and with the multi-process cache writer.

Reproduce:  .venv/bin/python bench/bench_scenes.py --n 20000 --size 64 --workers 2
"""
import argparse
import os
import tempfile
import time

from cloob.data import scenes

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=20000)
ap.add_argument("--size", type=int, default=64)
ap.add_argument("--workers", type=int, default=os.cpu_count())
a = ap.parse_args()

tx = scenes._textures(a.size, 0)
k = min(a.n, 3000)
t = time.perf_counter()
for i in range(k):
    scenes.make_sample("train", i, size=a.size, seed=0, p=0.7, q=0.3, textures=tx)
single = k / (time.perf_counter() - t)
with tempfile.TemporaryDirectory() as d:
    m = scenes.generate_scenes(d, a.n, size=a.size, n_eval=1000, workers=a.workers)
print(f"{'mode':<34}{'images/s':>10}")
print(f"{'render only, 1 process':<34}{single:>10.0f}")
print(f"{f'generate_scenes, {a.workers} workers (to disk)':<34}{m['images_per_s']:>10.0f}")
print(f"cpus: {os.cpu_count()}, size {a.size}px, n {a.n} (+3x1000 eval)")
print("command: .venv/bin/python bench/bench_scenes.py " + f"--n {a.n} --size {a.size} --workers {a.workers}")
