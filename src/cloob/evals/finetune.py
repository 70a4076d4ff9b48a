"""Fine-tuning with a linear or a cosine-similarity head (method.md §4).

Cosine head: class text embeddings T[c, k, :] (K prompt templates per class, unit rows),
learnable template weights w_k (initialised uniform 1/K), T̃_c = Σ_k w_k T[c, k],
logits_c = exp(t)·cos(I, T̃_c) with learnable t (initialised from the model's inv_tau, else
log(1/0.07)). Linear head: ``nn.Linear(d, C)`` on the (unit-norm) image features.
Backbone (image tower only; the text tower is never trained): ``none`` frozen (in eval
mode, BatchNorm statistics fixed), ``last`` only its last block trainable (ResNet: layer4 +
attention pool; ViT: last residual block + ln_post + proj; the frozen rest stays in eval mode),
``all`` trainable. Loss:
cross-entropy; optimiser AdamW, constant learning rate (``backbone_lr`` for the backbone).
The augmentations are the training dataset's transform (``image_transform(..., augment=True)``).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from cloob.data import make_loader
from cloob.evals.features import encode_labelled
from cloob.evals.zeroshot import classification_metrics

HEADS = ("linear", "cosine")
UNFREEZE = ("none", "last", "all")


class LinearHead(nn.Module):
    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (B, C) logits."""
        return self.linear(image_features)


class CosineHead(nn.Module):
    """logits_c = exp(t) · cos(I, Σ_k w_k T[c, k])."""

    def __init__(self, text_embeddings: torch.Tensor, inv_tau: float = 1 / 0.07):
        super().__init__()
        C, K, d = text_embeddings.shape
        self.register_buffer("T", nn.functional.normalize(text_embeddings.detach().float(), dim=-1))
        self.template_weights = nn.Parameter(torch.full((K,), 1.0 / K))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(inv_tau)))

    def class_weights(self) -> torch.Tensor:
        """T̃: (C, d), T̃_c = Σ_k w_k T[c, k]."""
        return torch.einsum("k,ckd->cd", self.template_weights, self.T)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        x = nn.functional.normalize(image_features, dim=-1)
        w = nn.functional.normalize(self.class_weights(), dim=-1)
        return self.logit_scale.exp() * x @ w.T


def last_block(visual: nn.Module) -> list[nn.Module]:
    """The modules ``--unfreeze last`` trains: open_clip's ResNet / ViT image towers, timm towers and timm models.

    ResNet: layer4 + attention pool (or timm's ``fc``); ViT: the last residual block + ln_post; a timm tower
    (``trunk`` + ``head``): its trunk's last block and the head; EfficientNet-like (``blocks`` + ``conv_head``):
    the last stage, the head convolution and its BatchNorm; other timm models: the last of ``stages`` /
    ``blocks`` and the final norm.
    """
    if hasattr(visual, "trunk") and hasattr(visual, "head"):  # open_clip's TimmModel
        return last_block(visual.trunk) + [visual.head]
    if hasattr(visual, "blocks") and hasattr(visual, "conv_head"):
        return [visual.blocks[-1], visual.conv_head] + [m for m in (getattr(visual, "bn2", None),) if m is not None]
    for name in ("stages", "blocks"):
        seq = getattr(visual, name, None)
        if isinstance(seq, (nn.Sequential, nn.ModuleList)) and len(seq) and not hasattr(visual, "layer4"):
            tail = [getattr(visual, n, None) for n in ("norm", "norm_pre", "fc_norm", "head_norm")]
            return [seq[-1]] + [m for m in tail if isinstance(m, nn.Module) and any(True for _ in m.parameters())]
    if hasattr(visual, "layer4"):
        return [m for m in (visual.layer4, getattr(visual, "attnpool", None)) if m is not None]
    if hasattr(visual, "transformer") and hasattr(visual.transformer, "resblocks"):
        mods = [visual.transformer.resblocks[-1], getattr(visual, "ln_post", None)]
        return [m for m in mods if m is not None]
    children = [m for m in visual.children() if any(True for _ in m.parameters())]
    if not children:
        raise ValueError(f"cannot find a last block in {type(visual).__name__}")
    return [children[-1]]


def backbone_parameters(model, unfreeze: str) -> list[nn.Parameter]:
    """Set requires_grad on the model for ``unfreeze`` and return the trainable backbone parameters."""
    if unfreeze not in UNFREEZE:
        raise ValueError(f"unfreeze must be one of {UNFREEZE}, got {unfreeze!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    visual = model.clip.visual if hasattr(model, "clip") else getattr(model, "visual", model)
    if unfreeze == "none":
        return []
    params = list(visual.parameters()) if unfreeze == "all" else [p for m in last_block(visual) for p in m.parameters()]
    if unfreeze == "last" and hasattr(visual, "proj") and isinstance(visual.proj, nn.Parameter):
        params.append(visual.proj)
    for p in params:
        p.requires_grad_(True)
    return params


def set_train_modes(model, unfreeze: str) -> None:
    """Training mode for the trained part only: frozen layers stay in eval mode, so their BatchNorm keeps its
    running statistics (neither normalising with the batch's nor updating them) and dropout stays off.
    ``none``: all eval; ``last``: only :func:`last_block` trains; ``all``: the whole image tower."""
    model.eval()
    visual = model.clip.visual if hasattr(model, "clip") else getattr(model, "visual", model)
    if unfreeze == "all":
        visual.train()
    elif unfreeze == "last":
        for module in last_block(visual):
            module.train()


def make_head(head: str, dim: int, n_classes: int, text_embeddings: torch.Tensor | None = None,
              inv_tau: float = 1 / 0.07) -> nn.Module:
    if head == "linear":
        return LinearHead(dim, n_classes)
    if head == "cosine":
        if text_embeddings is None:
            raise ValueError("the cosine head needs class text embeddings (C, K, d)")
        return CosineHead(text_embeddings, inv_tau)
    raise ValueError(f"head must be one of {HEADS}, got {head!r}")


def probe_head_init(model, probe_dataset, n_classes: int, *, batch_size: int = 64, num_workers: int = 0,
                    seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The linear head's start for LP-FT (Kumar et al. 2022, "fine-tuning can distort pretrained features"):
    a logistic-regression probe (C chosen on a validation part, :func:`~cloob.evals.linear_probe.fit_probe`)
    on the frozen features of the training images, read with the evaluation transform.

    Returns (weight (n_classes, d), bias (n_classes,), probe info): ``weight @ x + bias`` are the probe's
    logits; a class the training images lack gets weight 0 and a bias 10 below the lowest.
    """
    from cloob.evals.linear_probe import fit_probe

    feats = encode_labelled(model, probe_dataset, batch_size=batch_size, num_workers=num_workers, progress=progress)
    clf, info = fit_probe(feats.features, feats.labels, seed=seed)
    coef, intercept = np.asarray(clf.coef_, dtype=np.float32), np.asarray(clf.intercept_, dtype=np.float32)
    present = np.asarray(clf.classes_)
    weight = np.zeros((n_classes, feats.features.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, float(intercept.min()) - 10.0, dtype=np.float32)
    if coef.shape[0] == 1:  # two classes: sklearn keeps one row, the logit of the second class against the first
        weight[present[1]], bias[present[1]], bias[present[0]] = coef[0], intercept[0], 0.0
    else:
        weight[present], bias[present] = coef, intercept
    return torch.from_numpy(weight), torch.from_numpy(bias), {"probe_C": info["C"], "probe_val_top1": info["val_top1"]}


def finetune(model, train_dataset, test_dataset, n_classes: int, *, head: str = "linear",
             text_embeddings: torch.Tensor | None = None, unfreeze: str = "none", epochs: int = 1,
             lr: float = 1e-3, backbone_lr: float | None = None, weight_decay: float = 0.0,
             max_steps: int | None = None, batch_size: int = 64, num_workers: int = 0, seed: int = 0,
             classes=None, progress: bool = False,
             head_init: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[dict, nn.Module]:
    """Train a head (and optionally the backbone) with cross-entropy; score on ``test_dataset``.

    ``head_init``: (weight (C, d), bias (C,)) the linear head starts from (see :func:`probe_head_init`).
    Returns (flat metrics: ``top1``, ``top5``, ``per_class/…``, ``train_loss`` (last epoch mean),
    ``steps``, ``train_seconds``; the trained head).
    """
    from tqdm import tqdm

    torch.manual_seed(seed)
    device = next(model.parameters()).device
    if text_embeddings is not None:
        dim = int(text_embeddings.shape[-1])
    else:
        model.eval()
        with torch.no_grad():
            dim = int(model.encode_image(train_dataset_sample(train_dataset).unsqueeze(0).to(device)).shape[-1])
    inv_tau = float(model.inv_tau.detach()) if hasattr(model, "inv_tau") else 1 / 0.07
    head_mod = make_head(head, dim, n_classes, text_embeddings, inv_tau).to(device)
    if head_init is not None:
        if not isinstance(head_mod, LinearHead):
            raise ValueError("head_init starts a linear head; the cosine head starts from the class text embeddings")
        with torch.no_grad():
            head_mod.linear.weight.copy_(head_init[0])
            head_mod.linear.bias.copy_(head_init[1])
    bb_params = backbone_parameters(model, unfreeze)
    groups = [{"params": list(head_mod.parameters()), "lr": lr}]
    if bb_params:
        groups.append({"params": bb_params, "lr": backbone_lr if backbone_lr is not None else lr / 10})
    opt = torch.optim.AdamW(groups, weight_decay=weight_decay)
    steps, losses, t0 = 0, [], time.perf_counter()
    for epoch in range(epochs):
        set_train_modes(model, unfreeze)
        head_mod.train()
        loader = make_loader(train_dataset, batch_size, shuffle=True, seed=seed, epoch=epoch, drop_last=False,
                             num_workers=num_workers)
        losses = []
        for images, labels in tqdm(loader, desc=f"finetune epoch {epoch}", disable=not progress, leave=False):
            images, labels = images.to(device), labels.to(device)
            with torch.set_grad_enabled(unfreeze != "none"):
                feats = model.encode_image(images)
            loss = nn.functional.cross_entropy(head_mod(feats), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        if max_steps is not None and steps >= max_steps:
            break
    train_seconds = time.perf_counter() - t0
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    head_mod.eval()
    feats = encode_labelled(model, test_dataset, batch_size=batch_size, num_workers=num_workers, progress=progress)
    with torch.no_grad():
        logits = head_mod(torch.from_numpy(feats.features).to(device)).float().cpu().numpy()
    classes = list(classes) if classes is not None else (feats.classes or [str(c) for c in range(n_classes)])
    out = classification_metrics(logits, feats.labels, classes)
    out.update({"train_loss": float(np.mean(losses)) if losses else float("nan"), "steps": steps,
                "train_seconds": train_seconds})
    if isinstance(head_mod, CosineHead):
        out["inv_tau"] = float(head_mod.logit_scale.detach().exp())
    return out, head_mod


def train_dataset_sample(dataset) -> torch.Tensor:
    """The first valid image tensor of a dataset (to learn the feature dimension)."""
    from cloob.data import BadSample

    for i in range(len(dataset)):
        s = dataset[i]
        if not isinstance(s, BadSample):
            return s[0]
    raise ValueError("training set has no valid image")
