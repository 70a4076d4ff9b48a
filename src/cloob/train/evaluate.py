"""Evaluation during training: the validation loss and the zero-shot hook."""
from __future__ import annotations

import torch

from cloob.data import make_loader
from cloob.distributed import get_rank, get_world_size
from cloob.losses import method_loss
from cloob.models import get_tokenizer


@torch.no_grad()
def validation_loss(run) -> float:
    """Contrastive loss of the method over the held-out pairs (mean over full batches)."""
    model = run.model
    was_training = model.training
    model.eval()
    loader = make_loader(run.val_dataset, run.cfg.batch_size, shuffle=False, seed=0, rank=get_rank(),
                         world_size=get_world_size(), num_workers=run.cfg.workers, drop_last=False)
    total, count = 0.0, 0
    beta = model.hopfield_beta
    for images, tokens in loader:
        x, y = model(images.to(run.device), tokens.to(run.device))
        if len(x) < 2 and run.cfg.method != "clip":
            continue
        loss = method_loss(run.cfg.method, x.float(), y.float(), model.inv_tau, beta, logit_bias=model.logit_bias)
        total += float(loss) * len(x)
        count += len(x)
    model.train(was_training)
    return total / max(count, 1)


def evaluate(run, zeroshot: bool = True) -> dict:
    """``val_loss`` (with held-out pairs) and, with ``zeroshot``, the top-1 (and top-5) of each zero-shot set."""
    out = {}
    if run.val_dataset is not None:
        out["val_loss"] = validation_loss(run)
    if run.zeroshot_sets and zeroshot:
        from cloob.evals.zeroshot import evaluate_zeroshot

        was_training = run.model.training
        run.model.eval()
        tokenizer = get_tokenizer(run.cfg.model)
        for top1, top5, ds, classes, templates in run.zeroshot_sets:
            res = evaluate_zeroshot(run.model, tokenizer, ds, classes, templates, batch_size=run.cfg.batch_size,
                                    num_workers=run.cfg.workers, progress=False)
            out[top1] = float(res["top1"])
            if top5 and "top5" in res:
                out[top5] = float(res["top5"])
        run.model.train(was_training)
    return out
