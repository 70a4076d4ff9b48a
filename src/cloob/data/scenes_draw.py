"""The world of the built-in scenes dataset and how one sample is drawn and captioned (see :mod:`cloob.data.scenes`).

Scene types, object colours, shapes and sizes, caption templates, and :func:`make_sample`: one image and its
metadata, a pure function of (split, index, parameters) through its own generator
``default_rng([seed, split, index])``.
"""
from __future__ import annotations

import math
import re

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon", "ring")
COLOURS = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 180, 60),
    "cyan": (40, 205, 215),
    "blue": (45, 75, 225),
    "purple": (150, 60, 200),
    "white": (245, 245, 245),
}
SIZES = ("small", "large")
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
SIZE_FRACTION = {"small": 0.11, "large": 0.2}  # radius / image size

SCENES: dict[str, tuple[tuple[str, str], ...]] = {
    "harbor": (("blue", "ring"), ("white", "triangle"), ("orange", "square"), ("cyan", "diamond")),
    "kitchen": (("white", "circle"), ("red", "square"), ("yellow", "hexagon"), ("orange", "cross")),
    "tea house": (("white", "hexagon"), ("green", "circle"), ("yellow", "square"), ("purple", "cross"), ("red", "diamond")),
    "garden": (("green", "star"), ("yellow", "circle"), ("purple", "diamond"), ("red", "triangle")),
    "forest": (("green", "triangle"), ("orange", "ring"), ("yellow", "star")),
    "beach": (("yellow", "circle"), ("cyan", "square"), ("orange", "star"), ("white", "ring")),
    "workshop": (("orange", "hexagon"), ("blue", "cross"), ("white", "square"), ("red", "ring")),
    "classroom": (("blue", "square"), ("red", "circle"), ("green", "hexagon"), ("white", "cross"), ("yellow", "triangle")),
    "circus": (("red", "star"), ("yellow", "diamond"), ("blue", "circle"), ("purple", "triangle")),
    "night sky": (("white", "star"), ("yellow", "ring"), ("purple", "circle")),
    "playground": (("green", "square"), ("orange", "triangle"), ("cyan", "circle"), ("red", "hexagon")),
    "market": (("purple", "square"), ("orange", "circle"), ("green", "diamond"), ("blue", "star"), ("yellow", "cross")),
}
SCENE_NAMES = tuple(SCENES)
OBJECT_CLASSES = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)  # label = colour_index * 8 + shape_index

# zero-shot prompts for the evaluation splits
SCENE_TEMPLATES = ("a photo of the {}.", "a picture of a {}.", "the {}.", "a scene from the {}.", "objects in the {}.")
OBJECT_TEMPLATES = ("a {}.", "a picture of a {}.", "a {} on a plain background.", "a single {}.")

EVAL_SEED_OFFSET = 1_000_003
CAPTIONS_PER_IMAGE = 5
SPLITS = ("train", "eval_scene", "eval_object", "eval_retrieval")
_SPLIT_CODE = {s: i for i, s in enumerate(SPLITS)}

TEMPLATES_1 = ("a {a}", "a picture of a {a}", "a {a} {pos}", "there is a {a} {pos}", "an image with a {a}",
               "a {a} on a textured background")
TEMPLATES_2 = ("a {a} {rel} a {b}", "a {a} and a {b}", "a picture of a {a} and a {b}", "there is a {a} {rel} a {b}",
               "a {b} with a {a} {rel} it", "a {a} near a {b}")
TEMPLATES_3 = ("a {a}, a {b} and a {c}", "a {a} {rel} a {b}, and a {c}", "a picture of a {a}, a {b} and a {c}",
               "a {c} near a {a} {rel} a {b}")
SCENE_SUFFIXES = (", in the {s}", ", at the {s}", " in a {s}")
SCENE_PREFIXES = ("the {s}: ", "a {s} scene: ")


# ------------------------------------------------------------------ drawing
def background_textures(size: int, seed: int, n: int = 16) -> np.ndarray:
    """(n, 2*size, 2*size) float32 in [-1, 1]: value noise, stripes, checks, dots."""
    rng = np.random.default_rng([seed, 7919])
    s2 = 2 * size
    yy, xx = np.mgrid[0:s2, 0:s2].astype(np.float32)
    out = np.empty((n, s2, s2), np.float32)
    for i in range(n):
        kind = i % 4
        if kind == 0:
            g = rng.uniform(-1, 1, (s2 // 8 + 2, s2 // 8 + 2)).astype(np.float32)
            t = np.asarray(Image.fromarray(g, "F").resize((s2, s2), Image.BICUBIC))
        elif kind == 1:
            f, a = rng.uniform(0.15, 0.6), rng.uniform(0, math.pi)
            t = np.sin(f * (xx * math.cos(a) + yy * math.sin(a)))
        elif kind == 2:
            k = int(rng.integers(3, 8))
            t = (((xx // k) + (yy // k)) % 2) * 2 - 1
        else:
            t = np.sin(rng.uniform(0.3, 0.8) * xx) * np.sin(rng.uniform(0.3, 0.8) * yy)
        t = t + rng.normal(0, 0.35, (s2, s2))
        out[i] = np.clip(t / max(np.abs(t).max(), 1e-6), -1, 1)
    return out


def _polygon(cx, cy, r, n, phase):
    return [(cx + r * math.cos(phase + 2 * math.pi * k / n), cy + r * math.sin(phase + 2 * math.pi * k / n))
            for k in range(n)]


def draw_object(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, rgb) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=rgb)
    elif shape == "square":
        q = r * 0.85
        draw.rectangle((cx - q, cy - q, cx + q, cy + q), fill=rgb)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy + r * 0.15, r * 1.1, 3, -math.pi / 2), fill=rgb)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)], fill=rgb)
    elif shape == "star":
        pts = []
        for k in range(10):
            rr = r * (1.1 if k % 2 == 0 else 0.45)
            a = -math.pi / 2 + math.pi * k / 5
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        draw.polygon(pts, fill=rgb)
    elif shape == "cross":
        w = max(r * 0.33, 1.0)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=rgb)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=rgb)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r, 6, 0.0), fill=rgb)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=rgb, width=max(int(round(r * 0.38)), 1))
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _place(rng, colour, shape, size_name, size, characteristic):
    r = SIZE_FRACTION[size_name] * size
    x, y = rng.uniform(r, size - r, 2)
    return {"colour": colour, "shape": shape, "size": size_name, "x": round(float(x), 2), "y": round(float(y), 2),
            "characteristic": characteristic}


def render(objects: list[dict], size: int, rng, textures: np.ndarray | None) -> np.ndarray:
    """Objects on a textured (``textures``) or plain (None) background -> (size, size, 3) uint8."""
    if textures is None:
        grey = rng.uniform(70, 110)
        bg = np.full((size, size, 3), grey, np.float32)
    else:
        t = textures[rng.integers(len(textures))]
        ox, oy = rng.integers(0, size, 2)
        base = rng.uniform(45, 115, 3).astype(np.float32)
        base = 0.6 * base + 0.4 * base.mean()  # muted background colours
        bg = base + rng.uniform(12, 30) * t[oy : oy + size, ox : ox + size, None]
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for o in objects:
        rgb = tuple(int(min(255, max(0, c + j))) for c, j in zip(COLOURS[o["colour"]], rng.integers(-12, 13, 3)))
        draw_object(draw, o["shape"], o["x"], o["y"], SIZE_FRACTION[o["size"]] * size, rgb)
    return np.asarray(img)


# ------------------------------------------------------------------ captions
def _article(text: str) -> str:
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)


def _phrase(o: dict, rng) -> str:
    if rng.random() < 0.6:
        return f"{SIZE_WORDS[o['size']][int(rng.integers(2))]} {o['colour']} {o['shape']}"
    return f"{o['colour']} {o['shape']}"


def _relation(a: dict, b: dict) -> str:
    dx, dy = a["x"] - b["x"], a["y"] - b["y"]
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def _position(o: dict, size: int) -> str:
    v = ("top", "middle", "bottom")[min(int(3 * o["y"] / size), 2)]
    h = ("left", "center", "right")[min(int(3 * o["x"] / size), 2)]
    if v == "middle" and h == "center":
        return "in the center"
    if h == "center":
        return f"at the {v}"
    if v == "middle":
        return f"on the {h}"
    return f"in the {v} {h} corner"


def make_caption(objects: list[dict], scene: str | None, size: int, rng, q: float) -> tuple[str, list[int], bool]:
    """Caption naming 1–3 of ``objects`` (returns it, their indices, and whether the scene is named)."""
    k = int(rng.integers(1, min(3, len(objects)) + 1))
    idx = sorted(rng.choice(len(objects), size=k, replace=False).tolist(), key=lambda _: rng.random())
    obs = [objects[i] for i in idx]
    names = {n: _phrase(o, rng) for n, o in zip("abc", obs)}
    templates = (TEMPLATES_1, TEMPLATES_2, TEMPLATES_3)[k - 1]
    t = templates[int(rng.integers(len(templates)))]
    extra = {"pos": _position(obs[0], size)}
    if k >= 2:
        extra["rel"] = _relation(obs[0], obs[1])
    caption = t.format(**names, **extra)
    named = scene is not None and rng.random() < q
    if named:
        if rng.random() < 0.7:
            caption += SCENE_SUFFIXES[int(rng.integers(len(SCENE_SUFFIXES)))].format(s=scene)
        else:
            caption = SCENE_PREFIXES[int(rng.integers(len(SCENE_PREFIXES)))].format(s=scene) + caption
    return _article(caption), idx, named


# ------------------------------------------------------------------ samples
def scene_objects(scene: str, size: int, rng, p: float) -> list[dict]:
    chars = SCENES[scene]
    keep = rng.random(len(chars)) < p
    if not keep.any():
        keep[rng.integers(len(chars))] = True
    objects = [_place(rng, c, s, SIZES[int(rng.integers(2))], size, True) for (c, s), k in zip(chars, keep) if k]
    char_set = set(chars)
    for _ in range(int(rng.integers(0, 3))):
        while True:
            c, s = list(COLOURS)[int(rng.integers(8))], SHAPES[int(rng.integers(8))]
            if (c, s) not in char_set:
                break
        objects.append(_place(rng, c, s, SIZES[int(rng.integers(2))], size, False))
    order = rng.permutation(len(objects))
    return [objects[i] for i in order]


def make_sample(split: str, index: int, *, size: int, seed: int, p: float, q: float, textures) -> tuple[np.ndarray, dict]:
    """One image and its metadata; a pure function of its arguments."""
    split_seed = seed if split == "train" else seed + EVAL_SEED_OFFSET
    rng = np.random.default_rng([split_seed, _SPLIT_CODE[split], index])
    if split == "eval_object":
        label = index % len(OBJECT_CLASSES)
        colour, shape = OBJECT_CLASSES[label].split(" ")
        obj = _place(rng, colour, shape, SIZES[int(rng.integers(2))], size, True)
        return render([obj], size, rng, None), {"label": label, "class": OBJECT_CLASSES[label], "objects": [obj]}
    if split == "eval_scene":
        scene = SCENE_NAMES[index % len(SCENE_NAMES)]
    else:
        scene = SCENE_NAMES[int(rng.integers(len(SCENE_NAMES)))]
    objects = scene_objects(scene, size, rng, p)
    image = render(objects, size, rng, textures)
    meta = {"scene": scene, "label": SCENE_NAMES.index(scene), "objects": objects}
    n_captions = CAPTIONS_PER_IMAGE if split == "eval_retrieval" else 1
    caps = [make_caption(objects, scene, size, rng, q) for _ in range(n_captions)]
    meta["captions"] = [c for c, _, _ in caps]
    meta["caption_objects"] = [i for _, i, _ in caps]
    meta["scene_named"] = [n for _, _, n in caps]
    meta["caption"] = meta["captions"][0]
    return image, meta
