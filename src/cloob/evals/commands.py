"""``cloob eval {zeroshot,retrieval,linear-probe,few-shot,knn,confusions}``, ``cloob finetune``, ``cloob compare``.

Every eval command loads a checkpoint (a checkpoint dir or a run dir), encodes the dataset
once (features cached under ``<checkpoint>/features/`` or ``--cache-dir``), writes
``<out>/<evaluator>-<dataset slug>.json`` (default ``<run>/eval/``) and prints a Markdown table.
Bad input: one line ``error: …`` on stderr, exit code 2.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from cloob.data.commands import add_read_arguments


# ------------------------------------------------------------------ helpers
def dataset_slug(spec: str) -> str:
    """'scenes-scene:/x/cache' -> 'scenes-scene-cache'; 'cifar10-test:' -> 'cifar10-test'."""
    from cloob.data import PREFIXES

    spec = str(spec)
    head, sep, rest = spec.partition(":")
    prefix = head if sep and head in PREFIXES else ""
    rest = rest if prefix else spec
    name = Path(rest.rstrip("/")).name if rest else ""
    name = re.sub(r"\.(csv|tsv|tar)$", "", name)
    slug = "-".join(s for s in (prefix, name) if s)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", slug).strip("-") or "dataset"


def default_out(checkpoint: str | Path) -> Path:
    """``<run>/eval`` for ``<run>/checkpoints/step-…``; ``<dir>/eval-<stem>`` for a weights file; else ``<checkpoint>/eval``."""
    ckpt = Path(checkpoint)
    if ckpt.is_file():
        return ckpt.parent / f"eval-{ckpt.stem}"
    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / "eval"
    return ckpt / "eval"


def default_cache_dir(checkpoint: str | Path) -> Path:
    """``<checkpoint>/features`` for a checkpoint directory; ``<dir>/features-<stem>`` for a weights file."""
    ckpt = Path(checkpoint)
    return ckpt.parent / f"features-{ckpt.stem}" if ckpt.is_file() else ckpt / "features"


class Context:
    """A loaded checkpoint with its tokenizer, eval transform, output and cache directories."""

    def __init__(self, args):
        from cloob.data import image_transform
        from cloob.data.commands import read_policy
        from cloob.device import default_device
        from cloob.models import get_tokenizer
        from cloob.model_source import load_model

        self.args = args
        self.t0 = time.perf_counter()
        self.policy = read_policy(args)
        device = default_device(args.device)
        self.model, self.meta = load_model(args.checkpoint, model_name=getattr(args, "model", None), device=device,
                                           warn=self.log)
        self.ckpt = Path(self.meta["checkpoint"])
        self.tokenizer = get_tokenizer(self.model.model_name)
        self.transform = image_transform(self.model, train=False, resize=args.resize)
        self.out = Path(args.out) if args.out else default_out(self.ckpt)
        self.cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir(self.ckpt)

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr)

    def _cache_file(self, spec: str, kind: str):
        from cloob.data.policy import DEFAULT_POLICY
        from cloob.evals.features import cache_key, cache_path

        if self.cache_dir is None:
            return None
        # another read policy may skip other samples: its features are cached apart (the default's keys stay)
        read = str(spec) if self.policy == DEFAULT_POLICY else f"{spec} {self.policy!r}"
        key = cache_key(self.ckpt, self.meta.get("step"), read, self.transform, kind)
        return cache_path(self.cache_dir, key, dataset_slug(spec), kind)

    def labelled(self, spec: str):
        """(dataset, Features) of a labelled spec, features from the cache when present."""
        from cloob.data import open_labelled
        from cloob.evals.features import Features, cached, encode_labelled

        ds = open_labelled(spec, image_transform=self.transform, policy=self.policy)
        feats = cached(lambda: encode_labelled(self.model, ds, batch_size=self.args.batch_size,
                                               num_workers=self.args.workers, progress=True),
                       Features, self._cache_file(spec, "labelled"), self.log)
        if not feats.classes:
            feats.classes = list(ds.classes)
        return ds, feats

    def retrieval(self, spec: str):
        from cloob.data import open_retrieval
        from cloob.evals.features import RetrievalFeatures, cached, encode_retrieval

        ds = open_retrieval(spec, image_transform=self.transform, policy=self.policy)
        return ds, cached(lambda: encode_retrieval(self.model, self.tokenizer, ds, batch_size=self.args.batch_size,
                                                   num_workers=self.args.workers, progress=True),
                          RetrievalFeatures, self._cache_file(spec, "retrieval"), self.log)

    def write(self, evaluator: str, spec: str, metrics: dict, details: dict | None = None,
              bad: dict | None = None, files: dict | None = None, extra: dict | None = None) -> Path:
        """Write the result JSON and print its table; returns the JSON path."""
        cfg = self.meta.get("config") or {}
        result = {
            "evaluator": evaluator, "dataset": str(spec), "dataset_slug": dataset_slug(spec),
            "checkpoint": str(self.ckpt), "step": self.meta.get("step"), "method": self.meta.get("method"),
            "model": self.meta.get("model"), "seed": cfg.get("seed") if isinstance(cfg, dict) else None,
            "seconds": round(time.perf_counter() - self.t0, 3), "metrics": metrics, "details": details or {},
            "bad_samples": bad or {}, "files": files or {}, **(extra or {}),
        }
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{evaluator}-{dataset_slug(spec)}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1, default=float))
        tmp.replace(path)
        print(format_table(result))
        from cloob.evals.features import report_text

        text = report_text(bad or {})
        if text:
            print(text)
        print(f"\nwrote {path}")
        return path


def format_table(result: dict) -> str:
    """Markdown table of a result JSON's scalar metrics."""
    lines = [f"## {result['evaluator']} · {result['dataset']} · {result.get('method')} step {result.get('step')}",
             "", "| metric | value |", "| --- | --- |"]
    for k, v in result["metrics"].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    lines.append(f"\n({result['seconds']:.1f} s)")
    return "\n".join(lines)


def _split_metrics(d: dict) -> tuple[dict, dict]:
    scalars = {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return scalars, {k: v for k, v in d.items() if k not in scalars}


def _classnames(args, feats) -> list[str]:
    from cloob.evals.templates import load_classnames

    if getattr(args, "classnames", None):
        return load_classnames(args.classnames, len(feats.classes) or None)
    return list(feats.classes)


def _templates(args) -> list[str]:
    from cloob.evals.templates import default_templates, load_templates

    return load_templates(args.templates or default_templates(args.dataset))


def _train_test(ctx, args):
    """(train Features, test Features, protocol note): ``--train-dataset`` or a stratified split of ``--dataset``."""
    from cloob.evals.features import Features
    from cloob.evals.linear_probe import stratified_split

    _, test = ctx.labelled(args.dataset)
    if args.train_dataset:
        _, train = ctx.labelled(args.train_dataset)
        return train, test, {"train_dataset": args.train_dataset}
    tr, te = stratified_split(test.labels, args.test_fraction, args.split_seed)
    sub = lambda f, p: Features(f.features[p], f.labels[p], f.indices[p], f.classes, f.report)  # noqa: E731
    return sub(test, tr), sub(test, te), {"train_dataset": None, "split": f"stratified {1 - args.test_fraction:g}/"
                                          f"{args.test_fraction:g} of --dataset, seed {args.split_seed}"}


# ------------------------------------------------------------------ commands
def cmd_zeroshot(args) -> int:
    from cloob.evals.zeroshot import evaluate_zeroshot

    ctx = Context(args)
    _, feats = ctx.labelled(args.dataset)
    classes, templates = _classnames(args, feats), _templates(args)
    m = evaluate_zeroshot(ctx.model, ctx.tokenizer, feats, classes, templates, details=True)
    metrics, details = _split_metrics(m)
    details.update({"classes": classes, "templates": templates,
                    "confusion_matrix_convention": "m[a][b] = #(predicted a, true b)"})
    ctx.write("zeroshot", args.dataset, metrics, details, feats.report)
    return 0


def cmd_retrieval(args) -> int:
    from cloob.evals.retrieval import retrieval_metrics

    ctx = Context(args)
    _, feats = ctx.retrieval(args.dataset)
    m = retrieval_metrics(feats.image_features, feats.text_features, feats.text_image)
    ctx.write("retrieval", args.dataset, m, bad=feats.report)
    return 0


def cmd_linear_probe(args) -> int:
    from cloob.evals.linear_probe import linear_probe

    ctx = Context(args)
    train, test, note = _train_test(ctx, args)
    m = linear_probe(train.features, train.labels, test.features, test.labels, val_fraction=args.val_fraction,
                     seed=args.split_seed, standardize=args.standardize)
    ctx.write("linear-probe", args.dataset, m, {"protocol": note, "standardize": args.standardize}, test.report)
    return 0


def cmd_few_shot(args) -> int:
    from cloob.evals.fewshot import fewshot, plot_fewshot
    from cloob.evals.zeroshot import evaluate_zeroshot

    ctx = Context(args)
    train, test, note = _train_test(ctx, args)
    zs = None
    if not args.no_zeroshot:
        zs = evaluate_zeroshot(ctx.model, ctx.tokenizer, (test.features, test.labels), _classnames(args, test),
                               _templates(args))["top1"]
    ks = [2**i for i in range(args.max_log2_k + 1)]
    m = fewshot(train.features, train.labels, test.features, test.labels, ks=ks, seeds=args.seeds, C=args.C,
                zeroshot_top1=zs)
    metrics, details = _split_metrics(m)
    png = ctx.out / f"few-shot-{dataset_slug(args.dataset)}.png"
    plot_fewshot(m, png, title=f"{ctx.meta.get('method')} step {ctx.meta.get('step')} · {dataset_slug(args.dataset)}")
    details["protocol"] = note
    ctx.write("few-shot", args.dataset, metrics, details, test.report, files={"plot": str(png)})
    return 0


def cmd_knn(args) -> int:
    from cloob.evals.knn import knn_classify

    ctx = Context(args)
    train, test, note = _train_test(ctx, args)
    m = knn_classify(train.features, train.labels, test.features, test.labels, k=args.k, weighting=args.weighting,
                     temperature=args.temperature, n_classes=len(test.classes) or None)
    ctx.write("knn", args.dataset, m, {"protocol": note, "weighting": args.weighting}, test.report)
    return 0


def cmd_confusions(args) -> int:
    from cloob.data.transforms import preprocess_cfg
    from cloob.evals.confusions import evaluate_confusions, mistakes_grid
    from cloob.evals.zeroshot import zeroshot_classifier

    ctx = Context(args)
    ds, feats = ctx.labelled(args.dataset)
    classes = _classnames(args, feats)
    W = zeroshot_classifier(ctx.model, ctx.tokenizer, classes, _templates(args)).cpu().numpy()
    pred = (feats.features @ W.T).argmax(1)
    m = evaluate_confusions(pred, feats.labels, classes, top=args.top)
    metrics, details = _split_metrics(m)
    cfg = preprocess_cfg(ctx.model)
    png = ctx.out / f"confusions-{dataset_slug(args.dataset)}.png"
    mistakes_grid(ds, feats.indices, feats.labels, pred, classes, png, mean=cfg["mean"], std=cfg["std"])
    ctx.write("confusions", args.dataset, metrics, details, feats.report, files={"mistakes": str(png)})
    print("\n| # | class a | class b | IoU | m_ab | m_ba |\n| --- | --- | --- | --- | --- | --- |")
    for i, p in enumerate(details["pairs"], 1):
        print(f"| {i} | {p['class_a']} | {p['class_b']} | {p['iou']:.4f} | {p['m_ab']} | {p['m_ba']} |")
    return 0


def cmd_finetune(args) -> int:
    from torch.utils.data import Subset

    from cloob.data import image_transform, open_labelled
    from cloob.evals.finetune import finetune
    from cloob.evals.linear_probe import stratified_split
    from cloob.evals.zeroshot import class_text_embeddings
    from cloob.weights import save_safetensors

    args.no_cache, args.cache_dir = True, None
    ctx = Context(args)
    train_tf = image_transform(ctx.model, train=True, resize=args.resize, augment=not args.no_augment)
    test_tf = image_transform(ctx.model, train=False, resize=args.resize)
    test_ds = open_labelled(args.dataset, image_transform=test_tf, policy=ctx.policy)
    if args.train_dataset:
        train_ds = open_labelled(args.train_dataset, image_transform=train_tf, policy=ctx.policy)
        note = {"train_dataset": args.train_dataset}
    else:
        labels = dataset_labels(test_ds)
        tr, te = stratified_split(labels, args.test_fraction, args.split_seed)
        train_ds = Subset(open_labelled(args.dataset, image_transform=train_tf, policy=ctx.policy), tr.tolist())
        test_ds_full, test_ds = test_ds, Subset(test_ds, te.tolist())
        test_ds.classes, test_ds.name = test_ds_full.classes, test_ds_full.name
        note = {"train_dataset": None, "split": f"stratified, test fraction {args.test_fraction}, seed {args.split_seed}"}
    classes = list(open_labelled(args.dataset, image_transform=None, check=False, policy=ctx.policy).classes)
    if args.classnames:
        from cloob.evals.templates import load_classnames

        classes = load_classnames(args.classnames, len(classes))
    T = None
    if args.head == "cosine":
        T = class_text_embeddings(ctx.model, ctx.tokenizer, classes, _templates(args))
    m, head = finetune(ctx.model, train_ds, test_ds, len(classes), head=args.head, text_embeddings=T,
                       unfreeze=args.unfreeze, epochs=args.epochs, lr=args.lr, backbone_lr=args.backbone_lr,
                       weight_decay=args.weight_decay, max_steps=args.max_steps, batch_size=args.batch_size,
                       num_workers=args.workers, seed=args.seed, classes=classes, progress=True)
    name = f"finetune-{args.head}-{args.unfreeze}-{dataset_slug(args.dataset)}"
    ctx.out.mkdir(parents=True, exist_ok=True)
    files = {"head": str(ctx.out / f"{name}.head.safetensors")}
    save_safetensors({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, files["head"])
    if args.unfreeze != "none":
        files["backbone"] = str(ctx.out / f"{name}.visual.safetensors")
        save_safetensors({k: v.detach().contiguous().cpu() for k, v in ctx.model.clip.visual.state_dict().items()},
                  files["backbone"])
    metrics, details = _split_metrics(m)
    details.update({"protocol": note, "head": args.head, "unfreeze": args.unfreeze, "resize": args.resize,
                    "augment": not args.no_augment, "epochs": args.epochs, "lr": args.lr, "max_steps": args.max_steps})
    if args.head == "cosine":
        details["template_weights"] = head.template_weights.detach().cpu().tolist()
    ctx.write(f"finetune-{args.head}-{args.unfreeze}", args.dataset, metrics, details, files=files)
    return 0


def dataset_labels(ds) -> list[int]:
    """Labels of a labelled dataset without decoding images where the dataset knows them."""
    if hasattr(ds, "labels"):
        return list(ds.labels)
    if hasattr(ds, "items"):
        return [label for _, label in ds.items]
    raise ValueError(f"cannot list the labels of {getattr(ds, 'name', ds)!r}; pass --train-dataset")


def cmd_compare(args) -> int:
    from cloob.evals.compare import compare_runs, to_markdown

    result = compare_runs(args.runs, args.out, metric_files=args.metric_files, group_by=args.group_by,
                          baseline=args.baseline, metrics=args.metric or None, alpha=args.alpha)
    print(to_markdown(result))
    print(f"wrote {Path(args.out) / 'compare.md'}, compare.csv, compare.json ({len(result['runs'])} runs)")
    return 0


# ------------------------------------------------------------------ parser
def _common(p, retrieval: bool = False) -> None:
    p.add_argument("--checkpoint", required=True, help="model source: a cloob run or checkpoint directory (its "
                   "latest), a state dict, an open_clip epoch_N.pt, an OpenAI CLIP file or a CLOOB reference "
                   "checkpoint (see cloob.model_source)")
    p.add_argument("--model", default=None, help="open_clip architecture of a weights file (e.g. RN50-quickgelu)")
    p.add_argument("--dataset", required=True, help="retrieval spec (scenes-retrieval:DIR, CSV)" if retrieval
                   else "labelled spec (image folder, .tar, cifar10-test:, scenes-scene:DIR, scenes-object:DIR)")
    p.add_argument("--out", default=None, help="output directory (default: <run>/eval)")
    p.add_argument("--cache-dir", default=None, help="feature cache directory (default: <checkpoint>/features, "
                                                                 "<dir>/features-<stem> for a weights file)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached features")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    p.add_argument("--resize", choices=("bicubic", "bilinear"), default="bicubic",
                   help="interpolation to the model's input size")
    add_read_arguments(p)


def _zs_args(p) -> None:
    p.add_argument("--templates", default=None, help="template set (cifar, imagenet, generic, scenes, scenes-object) "
                                                     "or a file with one template per line")
    p.add_argument("--classnames", default=None, help="file with one class name per line (label order)")


def _split_args(p) -> None:
    p.add_argument("--train-dataset", default=None, help="labelled spec of the training split "
                                                         "(default: a stratified split of --dataset)")
    p.add_argument("--test-fraction", type=float, default=0.5, help="without --train-dataset: test share of --dataset")
    p.add_argument("--split-seed", type=int, default=0)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint: zero-shot, retrieval, linear probe, few-shot, "
                                           "kNN, confusions")
    sub = p.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True)

    s = sub.add_parser("zeroshot", help="template-ensemble zero-shot classifier: top-1/5, per class, confusion matrix")
    _common(s); _zs_args(s)  # noqa: E702
    s.set_defaults(func=cmd_zeroshot)

    s = sub.add_parser("retrieval", help="image<->text Recall@1/5/10 and median rank")
    _common(s, retrieval=True)
    s.set_defaults(func=cmd_retrieval)

    s = sub.add_parser("linear-probe", help="logistic regression on frozen features, C chosen on a validation split")
    _common(s); _split_args(s)  # noqa: E702
    s.add_argument("--val-fraction", type=float, default=0.2)
    s.add_argument("--standardize", action="store_true", help="z-score features (default: raw unit features)")
    s.set_defaults(func=cmd_linear_probe)

    s = sub.add_parser("few-shot", help="k = 1..128 shots per class, several draws, mean ± std, plot")
    _common(s); _split_args(s); _zs_args(s)  # noqa: E702
    s.add_argument("--seeds", type=int, default=5, help="random draws per k")
    s.add_argument("--max-log2-k", type=int, default=7, help="largest k is 2^this (capped at the class size)")
    s.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    s.add_argument("--no-zeroshot", action="store_true", help="leave out the k = 0 (zero-shot) row")
    s.set_defaults(func=cmd_few_shot)

    s = sub.add_parser("knn", help="cosine k-nearest-neighbour classification on embeddings")
    _common(s); _split_args(s)  # noqa: E702
    s.add_argument("--k", type=int, default=20)
    s.add_argument("--weighting", choices=("similarity", "majority"), default="similarity")
    s.add_argument("--temperature", type=float, default=0.07)
    s.set_defaults(func=cmd_knn)

    s = sub.add_parser("confusions", help="top confused class pairs (IoU) and a PNG grid of mistakes (zero-shot)")
    _common(s); _zs_args(s)  # noqa: E702
    s.add_argument("--top", type=int, default=10)
    s.set_defaults(func=cmd_confusions)

    f = subparsers.add_parser("finetune", help="train a linear or cosine-similarity head (backbone frozen or not)")
    _common(f); _zs_args(f); _split_args(f)  # noqa: E702
    f.add_argument("--head", choices=("linear", "cosine"), default="linear")
    f.add_argument("--unfreeze", choices=("none", "last", "all"), default="none")
    f.add_argument("--epochs", type=int, default=10)
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--backbone-lr", type=float, default=None, help="default: lr / 10")
    f.add_argument("--weight-decay", type=float, default=0.0)
    f.add_argument("--max-steps", type=int, default=None)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--no-augment", action="store_true", help="train without the method.md §4 augmentations")
    f.set_defaults(func=cmd_finetune)

    c = subparsers.add_parser("compare", help="mean ± std per method over runs, Welch's t-test marks (Markdown/CSV)")
    c.add_argument("runs", nargs="+", metavar="RUN_GLOB", help="run directories or glob patterns")
    c.add_argument("--group-by", default="method", help="config.yaml key that names the method")
    c.add_argument("--metric-files", default="eval/*.json", help="glob of eval JSONs inside each run")
    c.add_argument("--metric", action="append", default=[], help="metric name/pattern to include (repeatable)")
    c.add_argument("--baseline", default=None, help="compare every method with this one (default: every pair)")
    c.add_argument("--alpha", type=float, default=0.05)
    c.add_argument("--out", required=True, help="output directory for compare.md/.csv/.json")
    c.set_defaults(func=cmd_compare)
