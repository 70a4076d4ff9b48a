"""Evaluators (big_vision style): one module per evaluator, each a function taking a
model (anything with ``encode_image``/``encode_text`` returning unit rows) and data
(a dataset, or precomputed features) and returning a flat dict of metrics.

=================  ==========================================================
zeroshot           class-name × template ensemble classifier (method.md §2)
retrieval          image↔text Recall@1/5/10 and median rank
linear_probe       L2-regularised logistic regression on frozen features; CLIP_benchmark's protocol
fewshot            k-shot logistic regression, k = 1..128, several draws
knn                cosine k-nearest-neighbour classification
confusions         most confused class pairs (IoU, method.md §4), mistake grid
finetune           linear or cosine-similarity head, frozen or trainable backbone
compare            mean ± std over runs per method, Welch's t-test marks
features           encoding with a progress bar, and the on-disk feature cache
templates          the prompt-template sets and class-name files
prompts            class names and templates of benchmark datasets, from clip-benchmark and open_clip
registry           every evaluator by name: function, options and defaults (``cloob eval``, experiment, benchmark)
context            a loaded model for the evaluators: feature cache, output directory, result JSON
commands           ``cloob eval ...``, ``cloob finetune``, ``cloob compare`` (argparse only)
=================  ==========================================================
"""
