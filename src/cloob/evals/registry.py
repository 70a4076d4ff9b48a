"""The one list of evaluators: name -> how to run it, its ``cloob eval <name>`` options and their defaults.

Everything that names an evaluator reads :data:`EVALUATORS`: the ``cloob eval`` parser
(:mod:`cloob.evals.commands`), ``cloob experiment`` (a grid's ``evals:`` entries are validated with
:func:`parse_args` and run in-process with :func:`evaluate`) and ``cloob benchmark`` (the evaluators it
mirrors, :attr:`Evaluator.clip_benchmark`, and the batch-size / workers defaults, :func:`common_default`).
``cloob finetune`` is declared the same way (:data:`FINETUNE`) but is its own command, not a grid evaluator.

An evaluator's ``run(ctx, spec, args)`` gets a loaded :class:`~cloob.evals.context.Context`, the dataset spec
and the parsed arguments, and returns the parts of its result JSON (``metrics``, ``details``, ``bad``,
``files``; ``evaluator`` to name the file otherwise); :func:`evaluate` writes it. Light at import.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cloob.data import spec_slug
from cloob.errors import CloobError
from cloob.evals.context import (Context, classnames, dataset_labels, format_table, split_metrics,
                                 templates, train_test)


class EvalArgumentError(CloobError, ValueError):
    """An unknown evaluator or arguments its parser refuses (one line)."""


@dataclass(frozen=True)
class Option:
    """One ``argparse`` option: its flags and ``add_argument`` keywords."""

    flags: tuple[str, ...]
    kwargs: dict = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.flags[0].lstrip("-").replace("-", "_")

    @property
    def default(self):
        return self.kwargs.get("default", False if self.kwargs.get("action") == "store_true" else None)


def opt(*flags: str, **kwargs) -> Option:
    return Option(flags, kwargs)


COMMON = (
    opt("--checkpoint", default=None, help="model source: a cloob run or checkpoint directory (its latest), a state "
        "dict, an open_clip epoch_N.pt, an OpenAI CLIP file or a CLOOB reference checkpoint (see cloob.model_source); "
        "for the image evaluations also imagenet:efficientnet-lite0 (see cloob.image_source)"),
    opt("--model", default=None, help="open_clip architecture of a weights file (e.g. RN50-quickgelu)"),
    None,  # --dataset: its help depends on the evaluator's kind of spec
    opt("--out", default=None, help="output directory (default: <run>/eval)"),
    opt("--cache-dir", default=None, help="feature cache directory (default: <checkpoint>/features, "
                                          "<dir>/features-<stem> for a weights file)"),
    opt("--no-cache", action="store_true", help="neither read nor write cached features"),
    opt("--batch-size", type=int, default=256),
    opt("--workers", type=int, default=0, help="DataLoader worker processes"),
    opt("--device", default=None, help="cuda / cpu (default: cuda if available)"),
    opt("--resize", choices=("bicubic", "bilinear"), default="bicubic", help="interpolation to the model's input size"),
)
LABELLED_SPEC = "labelled spec (image folder, .tar, cifar10-test:, scenes-scene:DIR, scenes-object:DIR)"
RETRIEVAL_SPEC = "retrieval spec (scenes-retrieval:DIR, flickr8k-val:, flickr8k-test:, CSV)"
GROUPS = {
    "zeroshot": (
        opt("--templates", default=None, help="template set (cifar, imagenet, generic, scenes, scenes-object) "
                                              "or a file with one template per line"),
        opt("--classnames", default=None, help="file with one class name per line (label order)"),
    ),
    "split": (
        opt("--train-dataset", default=None, help="labelled spec of the training split "
                                                  "(default: a stratified split of --dataset)"),
        opt("--test-fraction", type=float, default=0.5, help="without --train-dataset: test share of --dataset"),
        opt("--split-seed", type=int, default=0),
    ),
    # the evaluations that need only an image encoder take image-only sources (cloob.image_source)
    "image": (
        opt("--features", choices=("embedding", "backbone"), default=None,
            help="the joint embedding, or the image tower's pooled features before the projection (default: "
                 "embedding where the source has one, backbone for image-only sources)"),
        opt("--timm", default=None, metavar="NAME", help="a timm architecture instead of --checkpoint (with --weights)"),
        opt("--weights", default=None, metavar="FILE", help="--timm's weights: a local .safetensors or torch file"),
        opt("--image-size", type=int, default=None, help="input size in px (CNNs that pool globally; default: the "
                                                         "model's own)"),
    ),
}


@dataclass(frozen=True)
class Evaluator:
    """An evaluator: ``run(ctx, spec, args) -> result parts`` and its command-line options (after the common
    ones and the shared ``groups``, in that order)."""

    name: str
    help: str
    run: Callable
    options: tuple[Option, ...] = ()
    groups: tuple[str, ...] = ()
    retrieval: bool = False  # --dataset is a retrieval spec, not a labelled one
    clip_benchmark: str | None = None  # the CLIP_benchmark task that `cloob benchmark` runs in its stead
    text: Callable[[dict], str] | None = None  # printed after the result table

    def all_options(self) -> list[Option]:
        dataset = opt("--dataset", required=True, help=RETRIEVAL_SPEC if self.retrieval else LABELLED_SPEC)
        shared = [o for g in self.groups for o in GROUPS[g]]
        return [o or dataset for o in COMMON] + shared + list(self.options)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add every option (and the read-policy flags of :func:`cloob.data.policy.add_read_arguments`) to ``parser``."""
        from cloob.data.policy import add_read_arguments

        common = len(COMMON)
        for i, o in enumerate(self.all_options()):
            parser.add_argument(*o.flags, **o.kwargs)
            if i == common - 1:
                add_read_arguments(parser)

    def defaults(self) -> dict:
        """dest -> default of every option but the read-policy flags."""
        return {o.dest: o.default for o in self.all_options()}


def common_default(dest: str):
    """The default of an option every evaluator has (``batch_size``, ``workers``, ``device``, ...)."""
    return next(o.default for o in COMMON if o is not None and o.dest == dest)


# ------------------------------------------------------------------ the evaluators
def _zeroshot(ctx: Context, spec: str, args) -> dict:
    from cloob.evals.zeroshot import evaluate_zeroshot

    _, feats = ctx.labelled(spec)
    classes, temps = classnames(args, feats), templates(args)
    metrics, details = split_metrics(evaluate_zeroshot(ctx.model, ctx.tokenizer, feats, classes, temps, details=True))
    details.update({"classes": classes, "templates": temps,
                    "confusion_matrix_convention": "m[a][b] = #(predicted a, true b)"})
    return {"metrics": metrics, "details": details, "bad": feats.report}


def _retrieval(ctx: Context, spec: str, args) -> dict:
    from cloob.evals.retrieval import retrieval_metrics

    _, feats = ctx.retrieval(spec)
    return {"metrics": retrieval_metrics(feats.image_features, feats.text_features, feats.text_image),
            "bad": feats.report}


def _linear_probe(ctx: Context, spec: str, args) -> dict:
    from cloob.evals.linear_probe import linear_probe

    train, test, note = train_test(ctx, args)
    m = linear_probe(train.features, train.labels, test.features, test.labels, val_fraction=args.val_fraction,
                     seed=args.split_seed, standardize=args.standardize)
    return {"metrics": m, "details": {"protocol": note, "standardize": args.standardize}, "bad": test.report}


def _few_shot(ctx: Context, spec: str, args) -> dict:
    from cloob.evals.fewshot import fewshot, plot_fewshot
    from cloob.evals.zeroshot import evaluate_zeroshot

    train, test, note = train_test(ctx, args)
    zs, why_no_zeroshot = None, None if args.no_zeroshot else ctx.why_no_zeroshot()
    if why_no_zeroshot:
        ctx.log(f"few-shot: no k = 0 (zero-shot) row: {why_no_zeroshot}")
    if not args.no_zeroshot and not why_no_zeroshot:
        zs = evaluate_zeroshot(ctx.model, ctx.tokenizer, (test.features, test.labels), classnames(args, test),
                               templates(args))["top1"]
    ks = [2**i for i in range(args.max_log2_k + 1)]
    m = fewshot(train.features, train.labels, test.features, test.labels, ks=ks, seeds=args.seeds, C=args.C,
                zeroshot_top1=zs)
    metrics, details = split_metrics(m)
    png = ctx.out / f"{ctx.result_stem('few-shot', spec)}.png"
    plot_fewshot(m, png, title=f"{ctx.meta.get('method')} step {ctx.meta.get('step')} · {spec_slug(spec)}")
    details["protocol"] = note
    if why_no_zeroshot:
        details["zeroshot"] = f"left out: {why_no_zeroshot}"
    return {"metrics": metrics, "details": details, "bad": test.report, "files": {"plot": str(png)}}


def _knn(ctx: Context, spec: str, args) -> dict:
    from cloob.evals.knn import knn_classify

    train, test, note = train_test(ctx, args)
    m = knn_classify(train.features, train.labels, test.features, test.labels, k=args.k, weighting=args.weighting,
                     temperature=args.temperature, n_classes=len(test.classes) or None)
    return {"metrics": m, "details": {"protocol": note, "weighting": args.weighting}, "bad": test.report}


def _confusions(ctx: Context, spec: str, args) -> dict:
    from cloob.data import open_labelled
    from cloob.data.transforms import preprocess_cfg
    from cloob.evals.confusions import evaluate_confusions, mistakes_grid
    from cloob.evals.linear_probe import probe_predictions
    from cloob.evals.zeroshot import zeroshot_classifier

    classifier = args.classifier or ("linear-probe" if ctx.why_no_zeroshot() else "zeroshot")
    if classifier == "zeroshot":
        ctx.require_zeroshot("confusions --classifier zeroshot")
        ds, test = ctx.labelled(spec)
        classes = classnames(args, test)
        W = zeroshot_classifier(ctx.model, ctx.tokenizer, classes, templates(args)).cpu().numpy()
        pred, protocol = (test.features @ W.T).argmax(1), {"classifier": "zeroshot"}
    else:  # a logistic-regression probe's mistakes on the test part (the image-only sources' classifier)
        train, test, note = train_test(ctx, args)
        ds = open_labelled(spec, image_transform=ctx.transform, policy=ctx.policy)
        classes = classnames(args, test)
        probe, pred = probe_predictions(train.features, train.labels, test.features, test.labels, seed=args.split_seed)
        protocol = {"classifier": "linear-probe", "C": probe["C"], **note}
    metrics, details = split_metrics(evaluate_confusions(pred, test.labels, classes, top=args.top))
    details["protocol"] = protocol
    cfg = preprocess_cfg(ctx.model)
    png = ctx.out / f"{ctx.result_stem('confusions', spec)}.png"
    mistakes_grid(ds, test.indices, test.labels, pred, classes, png, mean=cfg["mean"], std=cfg["std"])
    return {"metrics": metrics, "details": details, "bad": test.report, "files": {"mistakes": str(png)}}


def _confusion_pairs(result: dict) -> str:
    lines = ["\n| # | class a | class b | IoU | m_ab | m_ba |", "| --- | --- | --- | --- | --- | --- |"]
    for i, p in enumerate(result["details"]["pairs"], 1):
        lines.append(f"| {i} | {p['class_a']} | {p['class_b']} | {p['iou']:.4f} | {p['m_ab']} | {p['m_ba']} |")
    return "\n".join(lines)


def _finetune(ctx: Context, spec: str, args) -> dict:
    from torch.utils.data import Subset

    from cloob.data import image_transform, open_labelled
    from cloob.evals.finetune import finetune
    from cloob.evals.linear_probe import stratified_split
    from cloob.evals.zeroshot import class_text_embeddings
    from cloob.weights import save_safetensors

    train_tf = image_transform(ctx.model, train=True, resize=args.resize, augment=not args.no_augment)
    test_ds = open_labelled(spec, image_transform=image_transform(ctx.model, train=False, resize=args.resize),
                            policy=ctx.policy)
    if args.train_dataset:
        train_ds = open_labelled(args.train_dataset, image_transform=train_tf, policy=ctx.policy)
        note = {"train_dataset": args.train_dataset}
    else:
        tr, te = stratified_split(dataset_labels(test_ds), args.test_fraction, args.split_seed)
        train_ds = Subset(open_labelled(spec, image_transform=train_tf, policy=ctx.policy), tr.tolist())
        test_ds_full, test_ds = test_ds, Subset(test_ds, te.tolist())
        test_ds.classes, test_ds.name = test_ds_full.classes, test_ds_full.name
        note = {"train_dataset": None, "split": f"stratified, test fraction {args.test_fraction}, seed {args.split_seed}"}
    classes = list(open_labelled(spec, image_transform=None, check=False, policy=ctx.policy).classes)
    if args.classnames:
        from cloob.evals.templates import load_classnames

        classes = load_classnames(args.classnames, len(classes))
    head_init, probe = None, {}
    if args.head_init == "probe":  # LP-FT: the linear head starts where a probe on the frozen features ends
        if args.head != "linear":
            raise EvalArgumentError("--head-init probe starts the linear head (--head linear)")
        from cloob.evals.finetune import probe_head_init

        eval_tf = image_transform(ctx.model, train=False, resize=args.resize)
        if args.train_dataset:
            probe_ds = open_labelled(args.train_dataset, image_transform=eval_tf, policy=ctx.policy)
        else:
            probe_ds = Subset(open_labelled(spec, image_transform=eval_tf, policy=ctx.policy), tr.tolist())
        *head_init, probe = probe_head_init(ctx.model, probe_ds, len(classes), batch_size=args.batch_size,
                                            num_workers=args.workers, seed=args.split_seed, progress=True)
    T = None
    if args.head == "cosine":  # the head's class weights are text embeddings: a CLIP-like model's joint space only
        ctx.require_zeroshot("finetune --head cosine")
        T = class_text_embeddings(ctx.model, ctx.tokenizer, classes, templates(args))
    m, head = finetune(ctx.model, train_ds, test_ds, len(classes), head=args.head, text_embeddings=T,
                       unfreeze=args.unfreeze, epochs=args.epochs, lr=args.lr, backbone_lr=args.backbone_lr,
                       weight_decay=args.weight_decay, max_steps=args.max_steps, batch_size=args.batch_size,
                       num_workers=args.workers, seed=args.seed, classes=classes, progress=True, head_init=head_init)
    evaluator = f"finetune-{args.head}-{args.unfreeze}"
    name = ctx.result_stem(evaluator, spec)
    ctx.out.mkdir(parents=True, exist_ok=True)
    files = {"head": str(ctx.out / f"{name}.head.safetensors")}
    save_safetensors({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, files["head"])
    if args.unfreeze != "none":
        files["backbone"] = str(ctx.out / f"{name}.visual.safetensors")
        visual = ctx.model.clip.visual if hasattr(ctx.model, "clip") else ctx.model.visual
        save_safetensors({k: v.detach().contiguous().cpu() for k, v in visual.state_dict().items()}, files["backbone"])
    metrics, details = split_metrics(m)
    details.update({"protocol": note, "head": args.head, "unfreeze": args.unfreeze, "resize": args.resize,
                    "augment": not args.no_augment, "epochs": args.epochs, "lr": args.lr,
                    "backbone_lr": args.lr / 10 if args.backbone_lr is None else args.backbone_lr,
                    "head_init": args.head_init, **probe,
                    "max_steps": args.max_steps})
    if args.head == "cosine":
        details["template_weights"] = head.template_weights.detach().cpu().tolist()
    return {"evaluator": evaluator, "metrics": metrics, "details": details, "files": files}


EVALUATORS: dict[str, Evaluator] = {e.name: e for e in (
    Evaluator("zeroshot", "template-ensemble zero-shot classifier: top-1/5, per class, confusion matrix", _zeroshot,
              groups=("zeroshot",), clip_benchmark="zeroshot_classification"),
    Evaluator("retrieval", "image<->text Recall@1/5/10 and median rank", _retrieval, retrieval=True,
              clip_benchmark="zeroshot_retrieval"),
    Evaluator("linear-probe", "logistic regression on frozen features, C chosen on a validation split", _linear_probe,
              (opt("--val-fraction", type=float, default=0.2),
               opt("--standardize", action="store_true", help="z-score features (default: raw unit features)")),
              groups=("split", "image"), clip_benchmark="linear_probe"),
    Evaluator("few-shot", "k = 1..128 shots per class, several draws, mean ± std, plot", _few_shot,
              (opt("--seeds", type=int, default=5, help="random draws per k"),
               opt("--max-log2-k", type=int, default=7, help="largest k is 2^this (capped at the class size)"),
               opt("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression"),
               opt("--no-zeroshot", action="store_true", help="leave out the k = 0 (zero-shot) row")),
              groups=("split", "zeroshot", "image")),
    Evaluator("knn", "cosine k-nearest-neighbour classification on embeddings", _knn,
              (opt("--k", type=int, default=20),
               opt("--weighting", choices=("similarity", "majority"), default="similarity"),
               opt("--temperature", type=float, default=0.07)),
              groups=("split", "image")),
    Evaluator("confusions", "top confused class pairs (IoU) and a PNG grid of mistakes (zero-shot)", _confusions,
              (opt("--top", type=int, default=10),
               opt("--classifier", choices=("zeroshot", "linear-probe"), default=None,
                   help="whose mistakes: the zero-shot classifier, or a linear probe trained on the split's train "
                        "part (default: zero-shot where the features allow it)")),
              groups=("zeroshot", "split", "image"), text=_confusion_pairs),
)}

FINETUNE = Evaluator(
    "finetune", "train a linear or cosine-similarity head (backbone frozen or not)", _finetune,
    (opt("--head", choices=("linear", "cosine"), default="linear"),
     opt("--unfreeze", choices=("none", "last", "all"), default="none"),
     opt("--head-init", choices=("random", "probe"), default="random",
         help="probe: start the linear head from a logistic-regression probe on the frozen features (LP-FT)"),
     opt("--epochs", type=int, default=10),
     opt("--lr", type=float, default=1e-3),
     opt("--backbone-lr", type=float, default=None, help="default: lr / 10"),
     opt("--weight-decay", type=float, default=0.0),
     opt("--max-steps", type=int, default=None),
     opt("--seed", type=int, default=0),
     opt("--no-augment", action="store_true", help="train without the method.md §4 augmentations")),
    groups=("zeroshot", "split", "image"))


# ------------------------------------------------------------------ running one
def get(name: str) -> Evaluator:
    """The evaluator called ``name`` (``finetune`` included)."""
    if name == FINETUNE.name:
        return FINETUNE
    if name not in EVALUATORS:
        raise EvalArgumentError(f"unknown evaluator {name!r}; expected one of {', '.join(EVALUATORS)}")
    return EVALUATORS[name]


class _Parser(argparse.ArgumentParser):
    """Refuses bad arguments with an exception, not a usage message and exit: its callers report it."""

    def error(self, message: str):
        raise EvalArgumentError(f"{self.prog}: {message}")


def parse_args(name: str, argv: list) -> argparse.Namespace:
    """The namespace ``cloob eval <name> ARGV`` would get (negative numbers read as ``cloob`` reads them).

    Raises:
        EvalArgumentError: an unknown evaluator, or arguments its parser refuses.
    """
    from cloob.argv import numbers_as_values

    ev = get(name)
    parser = _Parser(prog=f"cloob {name}" if ev is FINETUNE else f"cloob eval {name}", add_help=False)
    ev.add_arguments(parser)
    args = parser.parse_args(numbers_as_values([str(a) for a in argv]))
    args.evaluator = name
    return args


def evaluate(ev: Evaluator, args: argparse.Namespace) -> tuple[Path, dict]:
    """Load ``args.checkpoint``, run ``ev`` on ``args.dataset``, write the result JSON; returns (path, result)."""
    ctx = Context(args)
    parts = ev.run(ctx, args.dataset, args)
    return ctx.write(parts.pop("evaluator", ev.name), args.dataset, **parts)


def summary(ev: Evaluator, path: Path, result: dict) -> str:
    """What ``cloob eval`` prints of a result: its table, skipped samples, the path (and the evaluator's own text)."""
    from cloob.evals.features import report_text

    lines = [format_table(result)]
    bad = report_text(result.get("bad_samples") or {})
    if bad:
        lines.append(bad)
    lines.append(f"\nwrote {path}")
    if ev.text:
        lines.append(ev.text(result))
    return "\n".join(lines)
