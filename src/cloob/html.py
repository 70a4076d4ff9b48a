"""HTML primitives shared by the run report, the benchmark table and the search pages: inline CSS,
escaping, number formatting, embedded PNG figures and tables. Imports nothing of cloob."""
from __future__ import annotations

import base64
import html
import math
from typing import Sequence

CSS = """
:root { --fg:#1d2327; --muted:#5f6b73; --line:#dde3e8; --bg:#ffffff; --soft:#f5f7f9; --accent:#2c5d8f; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:#17324d; color:#fff; padding:22px 32px 16px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:600; }
header p { margin:0; color:#c8d6e3; font-size:13px; }
nav { position:sticky; top:0; background:#fff; border-bottom:1px solid var(--line); padding:8px 32px; z-index:2; }
nav a { color:var(--accent); text-decoration:none; margin-right:18px; font-size:14px; }
main { max-width:1240px; margin:0 auto; padding:8px 32px 48px; }
section { margin-top:28px; }
h2 { font-size:20px; border-bottom:2px solid var(--line); padding-bottom:4px; margin:0 0 12px; }
h3 { font-size:16px; margin:18px 0 8px; color:#2b3a46; }
table { border-collapse:collapse; font-size:13px; margin:6px 0 14px; }
th, td { border-bottom:1px solid var(--line); padding:4px 10px; text-align:right; white-space:nowrap; }
th { background:var(--soft); font-weight:600; }
td.l, th.l { text-align:left; }
tbody tr:nth-child(even) td { background:#fafbfc; }
td.best { text-decoration: underline; text-decoration-color:#9bb; }
td.sig { font-weight:700; }
.scroll { overflow-x:auto; }
.figs { display:flex; flex-wrap:wrap; gap:14px; align-items:flex-start; }
figure { margin:0; border:1px solid var(--line); border-radius:6px; padding:8px; background:#fff; max-width:100%; }
figure img { display:block; max-width:100%; height:auto; }
figure.small img { max-width:590px; }
figcaption { font-size:12px; color:var(--muted); margin-top:4px; }
.note { color:var(--muted); font-size:13px; }
.empty { color:var(--muted); font-style:italic; }
.dot { display:inline-block; width:10px; height:10px; border-radius:50%; margin-right:6px; vertical-align:middle; }
ul.reading li { margin:4px 0; }
details { margin:6px 0 10px; }
summary { cursor:pointer; color:var(--accent); font-size:14px; }
pre { background:var(--soft); padding:10px; font-size:12px; overflow-x:auto; }
"""


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def fmt(v, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        return f"{v:.{digits}g}"
    return str(v)


def img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def figure(png: bytes, caption: str, small: bool = False) -> str:
    """A captioned embedded PNG; ``small`` caps its width so that two fit side by side."""
    cls = ' class="small"' if small else ""
    return f"<figure{cls}>{img_tag(png, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def table(head: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """``head``/``rows`` are already-escaped HTML cells (a row cell may be ``(html, css_class)``)."""
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            text, cls = cell if isinstance(cell, tuple) else (cell, "")
            cls = " ".join(c for c in (cls, "l" if i < left else "") if c)
            out.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)
