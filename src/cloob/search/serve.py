"""``cloob serve``: a local search page over an embedding directory (standard library HTTP server).

Routes (everything else is 404):

=========================  =====================================================================
``GET /``                  the page; ``?q=TEXT&k=N`` shows the hits of a text query
``POST /``                 the page for a ``multipart/form-data`` query: ``q`` and/or ``image``, ``k``
``GET|POST /api/search``   the same queries, answered as JSON ``{"query", "hits": [...]}``
``GET /thumb/<row>``       the thumbnail of row ``<row>`` of the index (0 <= row < N)
=========================  =====================================================================

Only rows of the index are served, addressed by number: no request names a path, so no
request can reach another file (the row's source is read through
:class:`~cloob.search.sources.ImageReader`, limited to the embedding's data roots). The server
binds 127.0.0.1 unless told otherwise. An uploaded image must pass the training data's limits:
the request body is refused unread above ``max_image_bytes`` (plus the form's own bytes), and the
image is decoded only after its header passed ``max_image_pixels`` (:func:`cloob.data.bad.decode_image`).
"""
from __future__ import annotations

import json
import re
import sys
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cloob.data.bad import BadSampleError, decode_image
from cloob.data.policy import DEFAULT_POLICY, ReadPolicy
from cloob.search.store import Store

FORM_OVERHEAD = 64 * 1024  # bytes a multipart form may add around the uploaded file
MAX_K = 500
THUMB_PATH = re.compile(r"/thumb/(0|[1-9][0-9]{0,11})")
CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'"


class QueryError(ValueError):
    """A bad query (HTTP 400 with the message)."""


class SearchApp:
    """What the handler needs: the collection, its index, the encoder, the upload limits."""

    def __init__(self, store: Store, index, encoder, policy: ReadPolicy = DEFAULT_POLICY, k: int = 24):
        self.store, self.index, self.encoder, self.policy, self.k = store, index, encoder, policy, k
        self._lock = threading.Lock()  # one query encodes at a time: the model's threads are already busy

    def parse_k(self, value) -> int:
        if value in (None, ""):
            return self.k
        try:
            k = int(value)
        except ValueError:
            raise QueryError(f"k must be a whole number, got {value!r}") from None
        if not 1 <= k <= MAX_K:
            raise QueryError(f"k must be between 1 and {MAX_K}, got {k}")
        return k

    def query(self, text: str | None, image: bytes | None, image_name: str | None, k: int):
        """(hits, description); :class:`QueryError` for an empty query or an image that fails the limits."""
        from cloob.search.page import describe_query
        from cloob.search.query import query_vector, ranked

        text = text.strip() if text else None
        pil = None
        if image:
            if len(image) > self.policy.max_image_bytes:
                raise QueryError(f"file_too_large: the upload has {len(image)} bytes, more than "
                                 f"max_image_bytes {self.policy.max_image_bytes}")
            try:
                pil = decode_image(image, f"upload {image_name or ''}".strip(), policy=self.policy)
            except BadSampleError as e:
                raise QueryError(f"the uploaded image was refused: {e.reason}: {e.detail}") from None
        if not text and pil is None:
            raise QueryError("type a text query or upload an image")
        with self._lock:
            q = query_vector(self.encoder, text, pil)
        return ranked(self.store, self.index, q, k), describe_query(text, image_name if pil is not None else None)


def form_html(text: str = "", k: int = 24) -> str:
    from cloob.html import esc

    return ('<form class="query" method="post" action="/" enctype="multipart/form-data">'
            f'<input type="text" name="q" value="{esc(text)}" placeholder="describe what to find" autofocus>'
            '<input type="file" name="image" accept="image/*">'
            f'<label>k <input type="number" name="k" value="{k}" min="1" max="{MAX_K}" style="width:5em"></label>'
            '<button type="submit">Search</button></form>')


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[bytes, str | None]]:
    """``{field name: (bytes, filename or None)}`` of a multipart/form-data body."""
    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
    if not msg.is_multipart():
        raise QueryError("expected a multipart/form-data body")
    fields = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = (part.get_payload(decode=True) or b"", part.get_filename())
    return fields


class Handler(BaseHTTPRequestHandler):
    server_version = "cloob-serve"
    app: SearchApp  # set on the subclass made by make_server
    quiet = False

    # ---------------------------------------------------------- plumbing
    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, message: str) -> None:
        self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8")

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _page(self, status: int, hits=(), query: str = "", text: str = "", k: int | None = None, error: str = ""):
        from cloob.search.page import results_html

        html = results_html(self.app.store, hits, query=query, thumb=lambda h: f"/thumb/{h.row}",
                            form=form_html(text, k or self.app.k), error=error)
        self._send(status, html.encode("utf-8"), "text/html; charset=utf-8", {"Content-Security-Policy": CSP})

    def _form(self) -> dict[str, tuple[bytes, str | None]]:
        """The POST body as form fields; a body over the upload limit is refused before it is read."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise QueryError("a POST needs a Content-Length") from None
        limit = self.app.policy.max_image_bytes + FORM_OVERHEAD
        if length > limit:
            self.close_connection = True  # the body stays unread
            raise _TooLarge(f"file_too_large: the request has {length} bytes, more than {limit} "
                            f"(max_image_bytes {self.app.policy.max_image_bytes} plus the form)")
        body = self.rfile.read(length)
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            return parse_multipart(ctype, body)
        if ctype.startswith("application/x-www-form-urlencoded"):
            return {k: (v[-1].encode(), None) for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        raise QueryError(f"unsupported Content-Type {ctype!r}; send multipart/form-data")

    # ---------------------------------------------------------- routes
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        m = THUMB_PATH.fullmatch(url.path)
        if m:
            return self._thumb(int(m.group(1)))
        if url.path == "/":
            return self._search_page(params.get("q"), None, None, params.get("k"), blank_ok=True)
        if url.path == "/api/search":
            return self._search_api(params.get("q"), None, None, params.get("k"))
        self._text(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path not in ("/", "/api/search"):
            return self._text(HTTPStatus.NOT_FOUND, "not found")
        api = url.path == "/api/search"
        try:
            fields = self._form()
        except _TooLarge as e:
            return self._json(413, {"error": str(e)}) if api else self._page(413, error=str(e))
        except QueryError as e:
            return self._json(400, {"error": str(e)}) if api else self._page(400, error=str(e))
        text = fields.get("q", (b"", None))[0].decode("utf-8", "replace")
        image, name = fields.get("image", (b"", None))
        k = fields.get("k", (b"", None))[0].decode("utf-8", "replace")
        if api:
            return self._search_api(text, image or None, name, k)
        return self._search_page(text, image or None, name, k, blank_ok=False)

    def _search_page(self, text, image, name, k, blank_ok: bool):
        try:
            kk = self.app.parse_k(k)
            if blank_ok and not (text and text.strip()) and not image:
                return self._page(HTTPStatus.OK, k=kk)
            hits, desc = self.app.query(text, image, name, kk)
        except QueryError as e:
            return self._page(HTTPStatus.BAD_REQUEST, text=text or "", error=str(e))
        self._page(HTTPStatus.OK, hits, query=desc, text=text or "", k=kk)

    def _search_api(self, text, image, name, k):
        try:
            hits, desc = self.app.query(text, image, name, self.app.parse_k(k))
        except QueryError as e:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        self._json(HTTPStatus.OK, {"query": desc, "hits": [h.to_dict() for h in hits]})

    def _thumb(self, row: int):
        from cloob.search.page import thumbnail

        if row >= self.app.store.n:
            return self._text(HTTPStatus.NOT_FOUND, "not found")
        try:
            data, mime = thumbnail(self.app.store, row)
        except BadSampleError as e:
            return self._text(HTTPStatus.NOT_FOUND, f"row {row}: image unavailable ({e.reason})")
        self._send(HTTPStatus.OK, data, mime, {"Cache-Control": "max-age=3600"})


class _TooLarge(QueryError):
    """A request body over the upload limit (HTTP 413)."""


def make_server(app: SearchApp, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> ThreadingHTTPServer:
    """A threading HTTP server for ``app`` (port 0 picks a free port: ``server.server_address[1]``)."""
    handler = type("BoundHandler", (Handler,), {"app": app, "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
