"""HTML of search results, in the report's style (:data:`cloob.html.CSS`): a grid of thumbnails with
scores and captions. ``search --html`` embeds each thumbnail as a data URI (one self-contained
file); ``serve`` links them to ``/thumb/<row>``."""
from __future__ import annotations

import base64
import io
from typing import Callable, Sequence

from cloob.data.bad import BadSampleError
from cloob.search.query import Hit
from cloob.search.store import Store

THUMB = 224  # longest side of a thumbnail in pixels
GRID_CSS = """
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(190px, 1fr)); gap:14px; margin-top:14px; }
.hit { border:1px solid var(--line); border-radius:6px; padding:8px; background:#fff; }
.hit img, .hit .missing { display:block; width:100%; aspect-ratio:1/1; object-fit:contain; background:var(--soft);
  image-rendering:pixelated; }
.hit .missing { display:flex; align-items:center; justify-content:center; color:var(--muted); font-size:12px;
  text-align:center; padding:8px; }
.hit .score { font-weight:600; color:var(--accent); font-size:14px; margin-top:6px; }
.hit .cap { font-size:13px; line-height:1.35; margin-top:2px; }
.hit .src { font-size:11px; color:var(--muted); word-break:break-all; margin-top:4px; }
form.query { display:flex; flex-wrap:wrap; gap:10px; align-items:center; background:var(--soft);
  border:1px solid var(--line); border-radius:6px; padding:12px; margin-top:16px; }
form.query input[type=text] { flex:1 1 320px; font-size:15px; padding:6px 8px; }
form.query button { font-size:15px; padding:6px 16px; background:var(--accent); color:#fff; border:0;
  border-radius:4px; }
.error { color:#a12622; font-weight:600; }
"""


def thumbnail(store: Store, row: int, size: int = THUMB) -> tuple[bytes, str]:
    """(bytes, MIME type) of a row's image, at most ``size`` px a side: PNG for small images (lossless,
    shown pixelated), JPEG otherwise. Raises :class:`BadSampleError` when the source cannot be read."""
    image = store.image(row)
    image.thumbnail((size, size))
    buf = io.BytesIO()
    if image.width * image.height <= 128 * 128:
        image.save(buf, format="PNG")
        return buf.getvalue(), "image/png"
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue(), "image/jpeg"


def data_uri(store: Store, row: int) -> str:
    """A thumbnail as a ``data:`` URI (raises :class:`BadSampleError` when unreadable)."""
    data, mime = thumbnail(store, row)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _card(hit: Hit, src: str | None, why: str) -> str:
    from cloob.html import esc

    text = hit.caption or (f"class: {hit.label}" if hit.label else "")
    img = (f'<img alt="{esc(text or hit.where())}" src="{esc(src)}">' if src
           else f'<div class="missing">image unavailable<br>{esc(why)}</div>')
    return (f'<div class="hit" data-row="{hit.row}">{img}<div class="score">#{hit.rank} · {hit.score:.4f}</div>'
            f'<div class="cap">{esc(text)}</div><div class="src">{esc(hit.where())}</div></div>')


def results_html(store: Store, hits: Sequence[Hit], *, query: str, thumb: Callable[[Hit], str], form: str = "",
                 error: str = "", title: str = "cloob search") -> str:
    """A whole page: header (query, collection, model), optional form and error, then the grid.

    ``thumb(hit)`` gives the image's URL (a data URI or a server path); a :class:`BadSampleError`
    from it shows the card without an image, with the reason.
    """
    from cloob.html import CSS, esc
    from cloob.search.encoder import describe

    m = store.manifest
    cards = []
    for h in hits:
        try:
            cards.append(_card(h, thumb(h), ""))
        except BadSampleError as e:
            cards.append(_card(h, None, f"{e.reason}: {e.detail}"))
    sub = (f"{esc(m['spec'])} · {m['rows']} rows · {esc(describe(m['encoder']))}")
    body = "".join(cards) if cards else ('<p class="empty">No results yet: type a query or upload an image.</p>'
                                         if not query else '<p class="empty">No results.</p>')
    head = f"<h2>{esc(query)}</h2>" if query else ""
    err = f'<p class="error">{esc(error)}</p>' if error else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{CSS}{GRID_CSS}</style></head><body><header><h1>{esc(title)}</h1><p>{sub}</p></header>"
            f"<main>{form}{err}<section>{head}<div class=\"grid\">{body}</div></section></main></body></html>")


def describe_query(text: str | None, image_name: str | None) -> str:
    parts = ([f"“{text}”"] if text else []) + ([f"image {image_name}"] if image_name else [])
    return " + ".join(parts)
