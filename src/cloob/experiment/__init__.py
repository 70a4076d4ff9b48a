"""``cloob experiment --grid FILE.yaml``: a grid of training + evaluation cells, resumable, then compare and report.

An experiment is YAML data (see ``experiments/``). Keys:

.. code-block:: yaml

    name: ablation-scenes               # required
    out: runs/ablation-scenes           # required; cell c lives in <out>/<c>
    archive: results/ablation-scenes    # optional: finished cells' records kept in the repository
    prepare:                            # optional, idempotent data preparation (registry PREPARE)
      - {scenes: {out: data-cache/scenes-demo, n: 20000, size: 64, seed: 0, n_eval: 1000}}
      - {cifar10_holdout: {out: data-cache/cifar10-val.tar, fraction: 0.1, seed: 0}}
    base: configs/scenes-cloob.yaml     # base training config (relative to the current directory)
    set: {max_steps: 150}               # TrainConfig overrides for every cell
    datasets:                           # optional; entries named by a `dataset` axis:
      scenes: {train_data: "scenes:data-cache/scenes-demo"}    #   TrainConfig overrides, plus
                                        #   an optional `evals` list replacing the top-level one
    recipes:                            # optional; entries named by a `recipe` axis: TrainConfig
      ramp: {inv_tau_start: 10.0, inv_tau_ramp: 0.5}           #   overrides (a recipe is a tuned
                                        #   hyper-parameter: --select picks the best per method)
    sources:                            # optional; entries named by a `source` axis: a model to
      imagenet: {label: imagenet-lite0, checkpoint: "imagenet:efficientnet-lite0",   # evaluate only
                 evals: [[linear-probe, "cifar10-test:", "--image-size", "64"]]}
      clip: {checkpoint: "runs/budget/clip-s{seed}", seeds: [0, 1]}     # {seed}: the cell's seed
      net: {timm: resnet50, weights: r50.safetensors}                   # a timm model, local weights
      lit: {label: lit, train: {model: cloob-minilm-rn-tiny, lock_text: true}}  # trained here
                                        #   (evals: replaces the top-level list; seeds: the seeds
                                        #   the source has; cells of other seeds are left out)
    grid:                               # required; the cross product of the lists, in this order
      method: [clip, cloob]             #   every TrainConfig key may be an axis
      seed: [0, 1, 2, 3, 4]
    axes_for:                           # optional: method -> the hyper-parameter axes it sweeps;
      clip: [inv_tau]                   #   other axes are dropped for it (duplicates removed).
    per_method:                         # optional overrides by method, applied last
      cloob: {inv_tau: 30.0, hopfield_beta: 14.3}
    evals:                              # [evaluator, dataset spec, extra `cloob eval` args...]
                                        #   (evaluators and their options: cloob.evals.registry)
      - [zeroshot, "scenes-scene:data-cache/scenes-demo"]
      - [linear-probe, "cifar10-test:", "--train-dataset", "cifar10-train:"]
      - [finetune, "cifar10-test:", "--seed", "{seed}"]    # {seed}: the cell's seed
    analyze: "scenes-retrieval:data-cache/scenes-demo"   # optional `cloob analyze` per cell
    parallel: 1                         # cells at once (--parallel overrides)
    compare: {baseline: clip}           # optional: baseline, metric (list), alpha, group_by
    select: "zeroshot-scenes-scene-scenes-val/top1"      # optional: write <out>/best.json after the run

Override order: base < set < datasets[dataset] < recipes[recipe] < sources[source].train < grid values
< per_method[method]. A cell of an evaluated-only source trains nothing: its evaluations read the source
(``--checkpoint`` or ``--timm``/``--weights``) and write ``<cell>/eval/``; its ``config.yaml`` holds the
label, the axis values (seed) and the source, which is what ``cloob compare`` groups by. ``finetune``
may be an ``evals`` entry too (``[finetune, SPEC, --unfreeze, all, ...]``).

A cell is named from its axis values in grid order: the method bare, ``s<seed>``, the
dataset and the recipe bare, any other axis as ``<key><value>`` (``cloob-inv_tau30-hopfield_beta8-s0``).
``<out>/cells.json`` lists every cell with its axis values and overrides.

Each cell runs in a worker process of its own (so K run in parallel, each with
``threads = max(1, cores // K)`` unless the cell's config sets ``threads``): it trains in a subprocess,
``python -m cloob.cli train --config <cell>/cell.yaml``,
where ``cell.yaml`` is the base config merged with the cell's overrides plus
``run_dir: <cell>`` and ``resume: auto`` (a file rather than flags: lists can be
emptied and floats are written exactly), then runs each evaluation in-process through
:mod:`cloob.evals.registry` (what ``cloob eval …`` runs and writes) and ``cloob analyze``.
With ``parallel: 1`` their output passes through; otherwise it goes to ``<cell>/train.log``
and ``<cell>/eval.log``. See :mod:`cloob.experiment.runner`.

**Finished** means ``<cell>/DONE`` exists (written after training reached the planned
step and every evaluation succeeded) and records the same config and evals: such a
cell is skipped. Any other cell is (re)run: ``resume: auto`` continues training from
its latest checkpoint (or does nothing if training had finished) and the evaluations
run again. A DONE cell whose config changed is an error (delete it or change ``out``).

**Archive** (optional, ``cloob.archive``): each finished cell's records (DONE, cell.yaml, config.yaml,
versions.json, metrics.jsonl, eval/*.json; no checkpoints) go to ``<archive>/<cell>/``, and a cell
without DONE whose archived copy has the same config and evals is restored from there and
skipped. Commit the archive and a grid resumes in a fresh clone, where ``runs/`` is empty.

After the cells: ``cloob compare <cells> --out <out>/compare``, ``cloob report <cells>
--out <out>/report.html``, and ``<out>/experiment.json`` (command line, grid file
text, wall time, per-cell status and seconds).

Tuning: ``--select METRIC`` (or ``select:``) reads each cell's ``eval/*.json``, averages
METRIC over seeds for each (method, hyper-parameters), and writes the best per method to
``<out>/best.json`` (plus the whole sweep) and prints a ``per_method:`` block to copy into
a final grid. METRIC is ``<eval file stem glob>/<metric key>`` (the key may hold "/"), several joined by ``,``
are averaged; a ``min:`` prefix selects the lowest. ``--select`` alone trains nothing.

Modules: :mod:`~cloob.experiment.grid` (the grid file, its cells), :mod:`~cloob.experiment.runner` (cells,
archive, resume, compare and report), :mod:`~cloob.experiment.select` (``--select`` -> best.json),
:mod:`~cloob.experiment.commands` (the ``cloob experiment`` parser).
"""
from cloob.experiment.grid import (COMPARE_KEYS, GRID_KEYS, NOT_HYPER, PREPARE, Cell, GridError, expand,
                                   load_grid)
from cloob.experiment.runner import (cell_commands, cell_threads, compare_and_report, run_cell, run_cell_in_worker,
                                     run_experiment)
from cloob.experiment.select import metric_value, select

__all__ = ["COMPARE_KEYS", "GRID_KEYS", "NOT_HYPER", "PREPARE", "Cell", "GridError", "expand", "load_grid",
           "cell_commands", "cell_threads", "compare_and_report", "run_cell", "run_cell_in_worker", "run_experiment",
           "metric_value", "select"]
