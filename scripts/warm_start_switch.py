"""What a run's warm-start switch asks of the model: one checkpoint, the same training batches, the loss and
its parameter gradient under the warm-start objective (CLIP's InfoNCE, or the sigmoid for siglip-hopfield)
and under the run's own Hopfield method.

A run with ``clip_warm_start`` trains its first steps with the warm-start objective and then switches. Give it
the checkpoint saved at the switch step (``step == round(clip_warm_start * max_steps)``) and it reports, per
batch and as a mean, for each objective:

- the loss and the l2 norm of its gradient over the trainable parameters (before clipping; the model in
  train mode, as a training step sees it);
- the pairs the loss scores: raw (x, y) for the warm-start objective, (U_x, U_y) and (V_y, V_x) for the
  Hopfield one, with their matched cosine (mean of diagonal), unmatched cosine (mean off-diagonal) and,
  for the sigmoid, the loss split into its matched term (mean over anchors of softplus(−z_ii)) and its
  unmatched term (mean over anchors of Σ_{j≠i} softplus(z_ij)), z = inv_tau·cos + b.

    python scripts/warm_start_switch.py runs/budget-siglip-cifar10/max_steps600-s1-siglip_hopfield/checkpoints/step-00000300 \
        --data "cifar10-captions:" --batches 4

Prints a Markdown table; ``--json FILE`` also writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F


def pair_stats(a: torch.Tensor, s: torch.Tensor, inv_tau: float, bias: float | None) -> dict:
    """Matched/unmatched cosines of unit rows a, s (N, d) and, with a bias, the sigmoid loss's two terms."""
    cos = a @ s.T
    n = len(a)
    eye = torch.eye(n, dtype=torch.bool)
    out = {"matched_cos": cos[eye].mean().item(), "unmatched_cos": cos[~eye].mean().item()}
    if bias is not None:
        z = inv_tau * cos + bias
        out["matched_term"] = F.softplus(-z[eye]).mean().item()
        out["unmatched_term"] = (F.softplus(z) * (~eye)).sum(1).mean().item()
    return out


def measure(model, images, tokens, method: str) -> dict:
    """Loss, gradient norm and scored-pair statistics of ``method`` on one batch (model in train mode)."""
    from cloob.losses import METHODS, hopfield_pairs, method_loss

    model.zero_grad(set_to_none=True)
    x = model.encode_image(images)
    y = model.encode_text(tokens)
    beta = model.hopfield_beta
    bias = model.logit_bias
    loss = method_loss(method, x, y, model.inv_tau, beta, logit_bias=bias)
    loss.backward()
    grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
    out = {"loss": loss.item(), "grad_norm": torch.cat(grads).norm().item()}
    objective, hopfield = METHODS[method]
    t = float(model.inv_tau.detach())
    b = None if bias is None or objective != "sigmoid" else float(bias.detach())
    with torch.no_grad():
        x, y = x.detach(), y.detach()
        if hopfield:
            U_x, U_y, V_x, V_y = hopfield_pairs(x, y, beta.detach())
            out["(U_x, U_y)"] = pair_stats(U_x, U_y, t, b)
            out["(V_y, V_x)"] = pair_stats(V_y, V_x, t, b)
        else:
            out["(x, y)"] = pair_stats(x, y, t, b)
    return out


def _mean(rows: list[dict]) -> dict:
    out = {}
    for key, value in rows[0].items():
        out[key] = _mean([r[key] for r in rows]) if isinstance(value, dict) else sum(r[key] for r in rows) / len(rows)
    return out


def markdown(results: dict, step: int) -> str:
    lines = [f"| objective at step {step} | loss | gradient norm | pairs | matched cos | unmatched cos | "
             "matched term | unmatched term |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for method, r in results.items():
        first = True
        for key, st in r.items():
            if not isinstance(st, dict):
                continue
            head = f"{method} | {r['loss']:.3f} | {r['grad_norm']:.2f}" if first else " | | "
            terms = (f"{st['matched_term']:.3f} | {st['unmatched_term']:.3f}" if "matched_term" in st else "— | —")
            lines.append(f"| {head} | {key} | {st['matched_cos']:.3f} | {st['unmatched_cos']:.3f} | {terms} |")
            first = False
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a checkpoint directory (…/checkpoints/step-N) of a run with a warm start")
    ap.add_argument("--data", required=True, help="the run's training data spec, e.g. cifar10-captions:")
    ap.add_argument("--batches", type=int, default=4, help="batches to average over (default 4)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the run's batch_size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args(argv)

    from cloob.data import image_transform, make_loader, open_pairs
    from cloob.methods import warm_start_method
    from cloob.model_source import load_model
    from cloob.models import get_tokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, meta = load_model(Path(args.checkpoint), device="cpu")
    config = meta.get("config") or {}
    method = meta.get("method") or config.get("method")
    warm = warm_start_method(method)
    if warm == method:
        print(f"{method} has no warm start to switch from", file=sys.stderr)
        return 2
    batch_size = args.batch_size or int(config.get("batch_size") or 256)
    ds = open_pairs(args.data, image_transform=image_transform(model, train=True),
                    tokenizer=get_tokenizer(model.model_name))
    loader = make_loader(ds, batch_size, shuffle=True, seed=args.seed, num_workers=0, drop_last=True)
    model.train()
    per = {warm: [], method: []}
    for i, (images, tokens) in enumerate(loader):
        if i == args.batches:
            break
        for m in per:
            per[m].append(measure(model, images, tokens, m))
        print(f"batch {i + 1}/{args.batches}: " + ", ".join(f"{m} loss {r[-1]['loss']:.3f} grad {r[-1]['grad_norm']:.2f}"
                                                          for m, r in per.items()), file=sys.stderr)
    results = {m: _mean(rows) for m, rows in per.items()}
    step = int(meta.get("step") or 0)
    print(markdown(results, step))
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": args.checkpoint, "step": step, "batches": args.batches,
                                               "batch_size": batch_size, "mean": results, "per_batch": per},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
