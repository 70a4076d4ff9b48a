"""What every evaluator shares: a loaded checkpoint (:class:`Context`), its feature cache and output
directory, the result JSON it writes, and the data helpers of the classification evaluators.

``cloob eval <name>`` and ``cloob experiment`` (in-process, through :mod:`cloob.evals.registry`) both build a
:class:`Context` from the parsed ``cloob eval`` arguments, so the cache keys and result files are the same.
Light at import: torch and the data readers load inside the methods.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from cloob.data import spec_slug


# ------------------------------------------------------------------ names and directories
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


def result_path(out: str | Path, evaluator: str, spec: str, features: str = "embedding") -> Path:
    """Where an evaluator's result JSON for a dataset spec goes: ``<out>/<evaluator>-<dataset slug>.json``
    (``<evaluator>-backbone-<slug>.json`` for ``--features backbone``)."""
    tag = "" if features == "embedding" else f"-{features}"
    return Path(out) / f"{evaluator}{tag}-{spec_slug(spec)}.json"


# ------------------------------------------------------------------ the loaded checkpoint
class Context:
    """A loaded checkpoint with its tokenizer, eval transform, output and cache directories.

    ``args`` is a parsed ``cloob eval`` namespace (checkpoint, model, device, resize, out, cache_dir,
    no_cache, batch_size, workers and the read-policy flags).
    """

    def __init__(self, args):
        from cloob.data import image_transform
        from cloob.data.policy import policy_from
        from cloob.device import default_device
        from cloob.cache import cache_root
        from cloob.image_source import ImageSourceError, is_image_only, load_image_model, source_slug
        from cloob.models import get_tokenizer
        from cloob.model_source import load_model

        self.args = args
        self.t0 = time.perf_counter()
        self.policy = policy_from(args)
        device = default_device(args.device)
        if hasattr(args, "features"):  # an image evaluation: image-only sources and backbone features too
            self.model, self.meta, self.features = load_image_model(
                args.checkpoint, timm_name=args.timm, weights=args.weights, features=args.features,
                model_name=getattr(args, "model", None), image_size=args.image_size, device=device, warn=self.log)
        else:
            if is_image_only(args.checkpoint, None):
                raise ImageSourceError(f"{getattr(args, 'evaluator', 'this evaluation')} needs a text tower: "
                                       f"{args.checkpoint} is an image-only model")
            if not args.checkpoint:
                raise ImageSourceError("--checkpoint SOURCE is required")
            self.model, self.meta = load_model(args.checkpoint, model_name=getattr(args, "model", None), device=device,
                                               warn=self.log)
            self.features = "embedding"
        self.ckpt = Path(self.meta["checkpoint"])
        self.has_text = getattr(self.model, "has_text", True)
        self.tokenizer = get_tokenizer(self.model.model_name) if self.has_text else None
        self.transform = image_transform(self.model, train=False, resize=args.resize)
        packaged = self.meta.get("format") == "imagenet"  # weights inside an installed package: write elsewhere
        slug = source_slug(self.meta.get("source", ""))
        self.out = Path(args.out) if args.out else Path(f"eval-{slug}") if packaged else default_out(self.ckpt)
        self.cache_dir = (None if args.no_cache else Path(args.cache_dir) if args.cache_dir
                          else cache_root() / "features" / slug if packaged else default_cache_dir(self.ckpt))

    def why_no_zeroshot(self) -> str | None:
        """Why these features cannot be classified zero-shot (no text tower, or not the joint embedding); else None."""
        if self.meta.get("format") in ("imagenet", "timm"):
            return f"{self.meta['source']} is an image-only model (no text tower)"
        if self.features != "embedding":
            return "--features backbone is not in the joint image-text space"
        return None

    def require_zeroshot(self, what: str) -> None:
        """Raise one line when ``what`` needs class text embeddings that these features cannot be compared with."""
        from cloob.image_source import ImageSourceError

        why = self.why_no_zeroshot()
        if why:
            raise ImageSourceError(f"{what} needs class text embeddings in the joint space (a CLIP-like checkpoint "
                                   f"with --features embedding): {why}")

    def result_stem(self, evaluator: str, spec: str) -> str:
        """``<evaluator>[-backbone]-<dataset slug>``: the name of a result's files (backbone features apart)."""
        return result_path("", evaluator, spec, self.features).stem

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr)

    def _cache_file(self, spec: str, kind: str):
        from cloob.data.policy import DEFAULT_POLICY
        from cloob.evals.features import cache_key, cache_path

        if self.cache_dir is None:
            return None
        # another read policy may skip other samples: its features are cached apart (the default's keys stay)
        read = str(spec) if self.policy == DEFAULT_POLICY else f"{spec} {self.policy!r}"
        if self.features != "embedding":  # other features of the same weights: other cache entries
            kind = f"{kind}-{self.features}"
        key = cache_key(self.ckpt, self.meta.get("step"), read, self.transform, kind)
        return cache_path(self.cache_dir, key, spec_slug(spec), kind)

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
        """(dataset, RetrievalFeatures) of a retrieval spec, features from the cache when present."""
        from cloob.data import open_retrieval
        from cloob.evals.features import RetrievalFeatures, cached, encode_retrieval

        ds = open_retrieval(spec, image_transform=self.transform, policy=self.policy)
        return ds, cached(lambda: encode_retrieval(self.model, self.tokenizer, ds, batch_size=self.args.batch_size,
                                                   num_workers=self.args.workers, progress=True),
                          RetrievalFeatures, self._cache_file(spec, "retrieval"), self.log)

    def write(self, evaluator: str, spec: str, metrics: dict, details: dict | None = None,
              bad: dict | None = None, files: dict | None = None, extra: dict | None = None) -> tuple[Path, dict]:
        """Write the result JSON (atomically) to ``<out>/<evaluator>-<slug>.json``; returns (path, result)."""
        cfg = self.meta.get("config") or {}
        result = {
            "evaluator": evaluator, "dataset": str(spec), "dataset_slug": spec_slug(spec),
            "checkpoint": str(self.ckpt), "step": self.meta.get("step"), "method": self.meta.get("method"),
            "model": self.meta.get("model"), "seed": cfg.get("seed") if isinstance(cfg, dict) else None,
            "source": self.meta.get("source", str(self.ckpt)), "features": self.features,
            "seconds": round(time.perf_counter() - self.t0, 3), "metrics": metrics, "details": details or {},
            "bad_samples": bad or {}, "files": files or {}, **(extra or {}),
        }
        self.out.mkdir(parents=True, exist_ok=True)
        path = result_path(self.out, evaluator, spec, self.features)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1, default=float))
        tmp.replace(path)
        return path, result


def format_table(result: dict) -> str:
    """Markdown table of a result JSON's scalar metrics."""
    lines = [f"## {result['evaluator']} · {result['dataset']} · {result.get('method')} step {result.get('step')}",
             "", "| metric | value |", "| --- | --- |"]
    for k, v in result["metrics"].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    lines.append(f"\n({result['seconds']:.1f} s)")
    return "\n".join(lines)


# ------------------------------------------------------------------ data helpers of the evaluators
def split_metrics(d: dict) -> tuple[dict, dict]:
    """(scalar metrics, everything else) of an evaluator's flat output."""
    scalars = {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return scalars, {k: v for k, v in d.items() if k not in scalars}


def classnames(args, feats) -> list[str]:
    """``--classnames`` (label order) when given, else the dataset's own class names."""
    from cloob.evals.templates import load_classnames

    if getattr(args, "classnames", None):
        return load_classnames(args.classnames, len(feats.classes) or None)
    return list(feats.classes)


def templates(args) -> list[str]:
    """``--templates`` (a set name or a file), else the default set for ``--dataset``."""
    from cloob.evals.templates import default_templates, load_templates

    return load_templates(args.templates or default_templates(args.dataset))


def train_test(ctx: Context, args):
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


def dataset_labels(ds) -> list[int]:
    """Labels of a labelled dataset without decoding images where the dataset knows them."""
    if hasattr(ds, "labels"):
        return list(ds.labels)
    if hasattr(ds, "items"):
        return [label for _, label in ds.items]
    raise ValueError(f"cannot list the labels of {getattr(ds, 'name', ds)!r}; pass --train-dataset")
