"""What a run writes as it goes: config.yaml, versions.json, metrics.jsonl, TensorBoard, the collapse warning."""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from cloob.distributed import get_rank, get_world_size
from cloob.embedding_stats import collapse_diagnostics, loss_gap_nats, saturation_terms
from cloob.losses import METHODS
from cloob.train.config import save_yaml

# a loss within this many nats per direction of its collapsed value counts as "at collapse"
COLLAPSE_TOLERANCE_NATS = 0.05


def open_logs(run, step: int) -> None:
    """Open metrics.jsonl (append) and the TensorBoard writer; after a resume, drop records past ``step``."""
    if get_rank() != 0:
        return
    from torch.utils.tensorboard import SummaryWriter

    run.run_dir.mkdir(parents=True, exist_ok=True)
    path = run.run_dir / "metrics.jsonl"
    if path.exists():  # after a resume, drop lines from steps the checkpoint does not contain
        path.write_text("".join(ln + "\n" for ln in _records_up_to(path, step)))
    run.metrics_file = open(path, "a")
    run.writer = SummaryWriter(str(run.run_dir / "tb"), purge_step=step if step else None)


def _records_up_to(path, step: int) -> list[str]:
    """The lines of ``path`` with step ≤ ``step``. A line that does not parse was torn by a crash or a full
    disk mid-write; it is dropped with one warning rather than blocking the resume."""
    keep, torn = [], 0
    for ln in path.read_text().splitlines():
        if not ln.strip():
            continue
        try:
            record = json.loads(ln)
        except json.JSONDecodeError:
            torn += 1
            continue
        if record.get("step", 0) <= step:
            keep.append(ln)
    if torn:
        print(f"warning: {path}: dropped {torn} torn line(s) left by an interrupted write", file=sys.stderr)
    return keep


def close_logs(run) -> None:
    if run.metrics_file is not None:
        run.metrics_file.close()
        run.writer.close()


def log_record(run, record: dict) -> None:
    """One line of metrics.jsonl and a scalar per numeric field in TensorBoard (``train/…``, ``eval/…``)."""
    if run.metrics_file is None:
        return
    run.metrics_file.write(json.dumps(record) + "\n")
    run.metrics_file.flush()
    prefix = "train" if record.get("kind") == "train" else "eval"
    for key, value in record.items():
        if key in ("kind", "step") or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        run.writer.add_scalar(key if "/" in key else f"{prefix}/{key}", value, record["step"])


def write_run_info(run) -> None:
    if get_rank() != 0:
        return
    import open_clip

    import cloob

    run.run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(run.cfg, run.run_dir / "config.yaml")
    versions = {
        "cloob": cloob.__version__,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "world_size": get_world_size(),
        "threads": torch.get_num_threads(),
        "device": str(run.device),
    }
    (run.run_dir / "versions.json").write_text(json.dumps(versions, indent=2))


def train_record(run, out: dict, step: int, epoch: float, lr: float, method: str, pairs_per_s: float,
                 skipped_steps: int, t_start: float) -> dict:
    """The ``kind: train`` record of a log step: loss, temperatures, saturation and collapse diagnostics.

    ``loss_gap`` is the loss minus its all-identical value in the loss's own units and
    ``loss_gap_nats`` the same in nats per direction (comparable across methods); the
    Hopfield methods add the effective number of patterns of each retrieval and the
    off-diagonal cosines of the retrieved embeddings (:func:`cloob.embedding_stats.collapse_diagnostics`).
    """
    x, y = out["features"]
    model = run.model
    inv_tau = float(model.inv_tau.detach())
    beta = model.hopfield_beta
    beta = None if beta is None else float(beta.detach())
    bias = None if model.logit_bias is None else float(model.logit_bias.detach())
    objective, hopfield = METHODS[method]
    record = {"kind": "train", "step": step, "epoch": epoch, "time": round(time.time() - t_start, 3),
              "loss": out["loss"], "inv_tau": inv_tau, "beta": beta, "lr": lr, "pairs_per_s": pairs_per_s,
              "grad_norm": out["grad_norm"], "skipped_steps": skipped_steps}
    if bias is not None:
        record["logit_bias"] = bias
    if method != run.cfg.method:
        record["objective"] = method
    if len(x) > 1:
        terms = saturation_terms(x, y, inv_tau)
        record["log_a"], record["log_b"] = terms["mean_log_a"], terms["mean_log_b"]
        gap = loss_gap_nats(objective, out["loss"], len(x), inv_tau, bias)
        record["loss_gap"] = gap * 2.0 / inv_tau if objective == "infoloob" else gap
        record["loss_gap_nats"] = gap
        record.update(collapse_diagnostics(x, y, beta if hopfield else None))
    else:
        record["log_a"] = record["log_b"] = float("nan")
    return record


class CollapseWatch:
    """Warns once when the loss has sat at its collapsed value for ``patience`` consecutive steps.

    At collapse every (retrieved) embedding is the same vector and the loss equals
    :func:`cloob.embedding_stats.collapsed_loss`; a run stuck there learns nothing.
    """

    def __init__(self, patience: int, method: str):
        self.patience, self.method = patience, method
        self.run_length, self.first, self.warned = 0, 0, False

    def update(self, step: int, loss: float, n: int, inv_tau: float, method: str,
               logit_bias: float | None = None) -> str | None:
        """Feed one step's loss; returns the warning line the first time the run counts as collapsed."""
        if self.warned or not self.patience or n < 2 or method != self.method:
            return None
        gap = loss_gap_nats(METHODS[method][0], loss, n, inv_tau, logit_bias)
        if abs(gap) >= COLLAPSE_TOLERANCE_NATS:
            self.run_length = 0
            return None
        if self.run_length == 0:
            self.first = step
        self.run_length += 1
        if self.run_length < self.patience:
            return None
        self.warned = True
        hint = ("a longer warm-up (warmup_fraction), a lower inv_tau or an inv_tau ramp (inv_tau_start), "
                "a beta ramp (hopfield_beta_start) or clip_warm_start")
        return (f"warning: the {method} loss has stayed within {COLLAPSE_TOLERANCE_NATS} nats of its collapsed value "
                f"(all embeddings identical) for {self.run_length} steps ({self.first}–{step}): the run has "
                f"collapsed and learns little. Diagnostics: cos/* and eff_patterns/* in metrics.jsonl. "
                f"Try {hint}.")
