"""`cloob embed`, `index`, `search`, `serve`, `classify` on a random-init cloob-rn-tiny checkpoint and tiny data.

Expectations come from elsewhere: embeddings from the model called directly, bad-sample counts
from `cloob data check`, top-k from a numpy brute force, the caption→own-image rate from the
retrieval evaluation (cloob.evals.retrieval), zero-shot labels from an explicit template loop.
"""
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cloob.cli import main

ROOT = Path(__file__).resolve().parents[1]
MODEL = "cloob-rn-tiny"
# vivid colours that the page itself never uses: each is one image of the CSV collection
COLOURS = {"red": (230, 30, 30), "green": (30, 200, 60), "yellow": (240, 200, 20), "purple": (150, 40, 200),
           "cyan": (20, 190, 200), "orange": (250, 120, 0)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A random-init checkpoint, a scenes cache, and a CSV of six colour squares with a missing and a corrupt row."""
    from cloob.data.csvfile import write_csv
    from cloob.data.scenes import generate_scenes
    from cloob.models import create_model
    from cloob.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("search")
    generate_scenes(root / "scenes", n=40, size=32, n_eval=12, workers=1)
    torch.manual_seed(0)
    model, _, _ = create_model(MODEL)
    run = root / "run"
    save_checkpoint(run / "checkpoints", 3, model.clip.state_dict(), {"extras": {}},
                    {"model": MODEL, "method": "clip", "step": 3, "config": {}})
    rng = np.random.default_rng(0)
    pairs = []
    for name, rgb in COLOURS.items():
        a = np.tile(np.asarray(rgb, np.uint8), (64, 64, 1))
        a[rng.integers(0, 64, 40), rng.integers(0, 64, 40)] = 255  # a few white specks: distinct embeddings
        pairs.append((Image.fromarray(a), f"a {name} square"))
    csv_path = write_csv(pairs, root / "colours" / "pairs.csv")
    (root / "colours" / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with open(csv_path, "a", encoding="utf-8") as f:
        f.write("images/missing.png,a square that is not there\nimages/broken.png,a broken square\n")
    return {"root": root, "run": run, "scenes": root / "scenes", "csv": csv_path, "pairs": pairs}


def embed(world, data, out, *extra):
    code = main(["embed", "--checkpoint", str(world["run"]), "--data", str(data), "--out", str(out),
                 "--device", "cpu", "--no-progress", *map(str, extra)])
    assert code == 0
    return json.loads((Path(out) / "manifest.json").read_text())


def metadata(out):
    with open(Path(out) / "metadata.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def colours(world):
    out = world["root"] / "emb-colours"
    embed(world, world["csv"], out, "--dtype", "float32")
    return out


@pytest.fixture(scope="module")
def model(world):
    from cloob.models import get_tokenizer
    from cloob.model_source import load_model

    m, _ = load_model(world["run"])
    return m, get_tokenizer(MODEL)


# ------------------------------------------------------------------ embed
def test_embed_scenes_rows_equal_the_model_called_directly(world, model, tmp_path):
    from cloob.data import image_transform
    from cloob.data.scenes import load_split

    m = embed(world, f"scenes:{world['scenes']}", tmp_path / "e", "--chunk-size", "16", "--batch-size", "7")
    assert (m["rows"], m["dim"], m["dtype"], m["chunks"], m["kind"]) == (40, 128, "float16", 3, "pairs")
    assert m["encoder"]["format"] == "cloob" and m["encoder"]["step"] == 3
    images = np.load(tmp_path / "e" / "images.npy")
    texts = np.load(tmp_path / "e" / "texts.npy")
    assert images.dtype == np.float16 and images.shape == texts.shape == (40, 128)
    np.testing.assert_allclose(np.linalg.norm(images.astype(np.float32), axis=1), 1, atol=2e-3)
    rows = metadata(tmp_path / "e")
    arr, metas = load_split(world["scenes"], "train")
    assert [r["row"] for r in rows] == [str(i) for i in range(40)]
    assert [r["caption"] for r in rows] == [x["caption"] for x in metas]
    assert {r["source"] for r in rows} == {str(world["scenes"] / "train" / "images.npy")}
    assert [r["key"] for r in rows] == [str(i) for i in range(40)]
    net, tok = model
    tf = image_transform(net, train=False)
    with torch.no_grad():
        want_i = net.encode_image(torch.stack([tf(Image.fromarray(np.asarray(arr[i]))) for i in range(40)])).numpy()
        want_t = net.encode_text(tok([x["caption"] for x in metas])).numpy()
    np.testing.assert_allclose(images, want_i, atol=3e-3)
    np.testing.assert_allclose(texts, want_t, atol=3e-3)
    assert not (tmp_path / "e" / ".embed").exists()
    # a second run with the same inputs does nothing; other inputs into the same directory are refused
    assert main(["embed", "--checkpoint", str(world["run"]), "--data", f"scenes:{world['scenes']}",
                 "--out", str(tmp_path / "e"), "--chunk-size", "16", "--no-progress"]) == 0
    assert main(["embed", "--checkpoint", str(world["run"]), "--data", str(world["csv"]),
                 "--out", str(tmp_path / "e"), "--no-progress"]) == 2


def test_embed_skips_bad_rows_with_the_reasons_of_data_check(world, colours, capsys):
    m = json.loads((colours / "manifest.json").read_text())
    assert m["rows"] == 6 and m["dtype"] == "float32"
    assert main(["data", "check", str(world["csv"])]) == 1
    out = capsys.readouterr().out
    check = {r: int(n) for r, n in re.findall(r"^  (\w+): (\d+)$", out, re.M)}
    assert check == {"missing_file": 1, "corrupt_image": 1}
    assert m["bad_samples"]["counts"] == check and m["bad_samples"]["n_ok"] == 6
    rows = metadata(colours)
    assert [r["caption"] for r in rows] == [f"a {c} square" for c in COLOURS]
    assert all(Path(r["source"]).is_file() and r["key"] == "" for r in rows)


def test_embed_reads_every_kind_of_source_and_reads_rows_back(world, tmp_path):
    from cloob.data.folder import write_folder
    from cloob.data.wds import write_wds
    from cloob.search.store import Store

    pairs = world["pairs"]
    shards = write_wds(pairs, tmp_path / "shards", per_shard=4)
    folder = write_folder([(img, cap.split()[1]) for img, cap in pairs], tmp_path / "folder",
                          as_tar=str(tmp_path / "folder.tar"))
    cases = {
        "wds": (f"wds:{shards}", "pairs", 6, 2),
        "folder": (str(tmp_path / "folder"), "labelled", 6, 1),
        "tar": (str(folder), "labelled", 6, 1),
        "retrieval": (f"scenes-retrieval:{world['scenes']}", "retrieval", 60, 1),
    }
    for name, (spec, kind, n, chunks) in cases.items():
        # two shards with two workers: their batches interleave, the rows must not
        m = embed(world, spec, tmp_path / name, *(["--workers", "2", "--batch-size", "3"] if name == "wds" else []))
        assert (m["kind"], m["rows"], m["chunks"]) == (kind, n, chunks), name
        assert (tmp_path / name / "texts.npy").exists() == (kind != "labelled")
        store = Store(tmp_path / name)
        for r in (0, n - 1):
            img = store.image(r)  # read back from (source, key)
            meta = store.rows[r]
            if kind == "labelled":
                assert meta["caption"] == "" and meta["label"] in COLOURS
                rgb = np.median(np.asarray(img).reshape(-1, 3), axis=0)
                assert tuple(rgb) == COLOURS[meta["label"]]
            elif kind == "pairs":
                rgb = np.median(np.asarray(img).reshape(-1, 3), axis=0)
                assert tuple(rgb) == COLOURS[meta["caption"].split()[1]]
    assert [r["caption"] for r in Store(tmp_path / "wds").rows] == [c for _, c in pairs]
    assert [r["key"] for r in Store(tmp_path / "wds").rows] == [f"{i:09d}.png" for i in range(6)]
    ret = Store(tmp_path / "retrieval")
    assert ret.manifest["images"] == 12 and ret.manifest["max_rows_per_image"] == 5


def test_a_killed_embed_resumes_without_duplicates(world, tmp_path, monkeypatch):
    import cloob.search.embed as emb
    from cloob.search.encoder import load_encoder
    from cloob.search.sources import open_rows

    enc = load_encoder(world["run"], device="cpu")
    spec = f"scenes:{world['scenes']}"
    full = tmp_path / "full"
    emb.embed(enc, open_rows(spec, transform=enc.transform), full, chunk_size=8, progress=False, log=lambda m: None)

    class Killed(Exception):
        pass

    done = []

    def die_after_two(c):
        done.append(c)
        if len(done) == 2:
            # as if killed while writing the third chunk: a partial temp file is left behind
            (tmp_path / "part" / ".embed" / ".tmp-chunk-000002.npz").write_bytes(b"partial")
            raise Killed

    part = tmp_path / "part"
    with pytest.raises(Killed):
        emb.embed(enc, open_rows(spec, transform=enc.transform), part, chunk_size=8, progress=False,
                  log=lambda m: None, on_chunk=die_after_two)
    assert not (part / "manifest.json").exists()
    assert sorted(p.name for p in (part / ".embed").glob("chunk-*")) == ["chunk-000000.npz", "chunk-000001.npz"]
    with pytest.raises(Exception, match="not a complete cloob embedding directory.*resume"):
        from cloob.search.store import Store

        Store(part)
    resumed = []
    emb.embed(enc, open_rows(spec, transform=enc.transform), part, chunk_size=8, progress=False,
              log=lambda m: None, on_chunk=resumed.append)
    assert resumed == [2, 3, 4]  # only the chunks not on disk
    rows = metadata(part)
    assert len(rows) == 40 and len({r["key"] for r in rows}) == 40
    assert rows == metadata(full)
    for f in ("images.npy", "texts.npy"):
        assert np.array_equal(np.load(part / f), np.load(full / f))


def _embed_child(argv):
    torch.set_num_threads(1)
    os._exit(main(argv))


def test_a_sigkilled_embed_process_resumes_without_duplicates(world, tmp_path, capsys):
    """A real SIGKILL: a forked process (torch already imported, so it starts at once) embeds until
    three chunks are on disk and is killed; the same command then finishes the job."""
    import multiprocessing

    from cloob.data.scenes import load_split

    out = tmp_path / "e"
    argv = ["embed", "--checkpoint", str(world["run"]), "--data", f"scenes-retrieval:{world['scenes']}",
            "--out", str(out), "--chunk-size", "2", "--batch-size", "2", "--device", "cpu", "--no-progress"]
    proc = multiprocessing.get_context("fork").Process(target=_embed_child, args=(argv,))
    proc.start()
    deadline = time.time() + 120
    while time.time() < deadline and proc.is_alive() and len(list((out / ".embed").glob("chunk-*.npz"))) < 3:
        time.sleep(0.002)
    proc.kill()  # SIGKILL
    proc.join()
    assert proc.exitcode == -signal.SIGKILL
    assert not (out / "manifest.json").exists(), "the process finished before it could be killed"
    n_done = len(list((out / ".embed").glob("chunk-*.npz")))
    assert 3 <= n_done < 30
    capsys.readouterr()
    assert main(argv) == 0
    assert f"{n_done} already done (resuming)" in capsys.readouterr().err
    rows = metadata(out)
    _, metas = load_split(world["scenes"], "eval_retrieval")
    assert [(r["key"], r["caption"]) for r in rows] == [(str(i), c) for i, m in enumerate(metas) for c in m["captions"]]


# ------------------------------------------------------------------ index and search
def test_faiss_and_torch_give_the_same_top_k(monkeypatch):
    pytest.importorskip("faiss", reason="faiss-cpu is the optional extra [search]")
    import faiss

    import cloob.search.index as ix

    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 48)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(0, 3000, 40)] + 0.3 * rng.standard_normal((40, 48)).astype(np.float32)
    flat = faiss.IndexFlatIP(48)
    flat.add(x)
    f_index = ix.FaissIndex.__new__(ix.FaissIndex)
    f_index.index, f_index.n = flat, 3000
    monkeypatch.setattr(ix, "BLOCK", 700)  # several blocks: the running top-k merge is exercised
    t_index = ix.TorchIndex(x)
    t_index._rows = None  # and the streaming path
    want = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :25]
    for index in (f_index, t_index, ix.TorchIndex(x)):
        s, r = index.search(q, 25)
        assert np.array_equal(r, want), index.backend
        np.testing.assert_allclose(s, np.take_along_axis(q @ x.T, want, 1), atol=1e-5)


def test_index_and_search_through_both_backends(world, tmp_path, capsys):
    pytest.importorskip("faiss", reason="faiss-cpu is the optional extra [search]")
    from cloob.search.encoder import recorded_encoder
    from cloob.search.index import open_index
    from cloob.search.store import Store

    out = tmp_path / "e"
    embed(world, f"scenes:{world['scenes']}", out, "--dtype", "float32")
    assert main(["index", str(out), "--backend", "faiss"]) == 0
    info = json.loads((out / "index.json").read_text())
    assert info["backend"] == "faiss" and set(info["files"]) == {"images", "texts"}
    store = Store(out)
    enc = recorded_encoder(store.manifest)
    queries = enc.encode_texts([r["caption"] for r in store.rows])
    for over in ("images", "texts"):
        sf, rf = open_index(store, over, "faiss").search(queries, 10)
        st, rt = open_index(store, over, "torch").search(queries, 10)
        np.testing.assert_allclose(sf, st, atol=1e-5)
        clear = np.abs(np.diff(st, axis=1, prepend=np.inf)) > 1e-5  # a rank whose score is not tied with the one above
        clear[:, :-1] &= np.abs(np.diff(st, axis=1))[:, :] > 1e-5
        clear[:, -1] = False  # the last rank may tie with the first rank not returned
        assert np.array_equal(rf[clear], rt[clear])
    capsys.readouterr()
    caption = store.rows[3]["caption"]
    assert main(["search", str(out), "--text", caption, "-k", "5"]) == 0
    printed = capsys.readouterr()
    lines = printed.out.strip().splitlines()
    assert len(lines) == 6 and "(faiss)" in printed.err
    scores = [float(ln.split()[1]) for ln in lines[1:]]
    assert scores == sorted(scores, reverse=True)
    expect = np.sort(store.vectors("images") @ enc.encode_texts([caption])[0])[::-1][:5]
    np.testing.assert_allclose(scores, expect, atol=1e-4)


def test_caption_to_own_image_rate_equals_the_retrieval_evaluation(world, tmp_path):
    """The search path's caption → own-image top-1 rate is the evaluation's text→image R@1 on the same set."""
    from cloob.data import image_transform, open_retrieval
    from cloob.evals.features import encode_retrieval
    from cloob.evals.retrieval import retrieval_metrics
    from cloob.search.encoder import recorded_encoder
    from cloob.search.index import open_index
    from cloob.search.query import ranked
    from cloob.search.store import Store

    out = tmp_path / "e"
    embed(world, f"scenes-retrieval:{world['scenes']}", out, "--dtype", "float32")
    store = Store(out)
    enc = recorded_encoder(store.manifest)
    index = open_index(store)
    first = sum(ranked(store, index, q, 1)[0].key == r["key"]
                for r, q in zip(store.rows, enc.encode_texts([r["caption"] for r in store.rows])))
    ds = open_retrieval(f"scenes-retrieval:{world['scenes']}", image_transform=image_transform(enc.model, train=False))
    f = encode_retrieval(enc.model, enc.tokenizer, ds)
    r1 = retrieval_metrics(f.image_features, f.text_features, f.text_image)["text_to_image/R@1"]
    assert first / store.n == pytest.approx(r1, abs=1 / store.n)


def test_search_by_image_and_the_html_page(world, colours, tmp_path, capsys):
    html = tmp_path / "page.html"
    query = world["csv"].parent / "images" / "0000002.png"  # the yellow square
    assert main(["search", str(colours), "--image", str(query), "-k", "4", "--html", str(html)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    top = lines[1].split()
    assert top[0] == "1" and float(top[1]) > 0.999 and "a yellow square" in lines[1]
    page = html.read_text()
    thumbs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(thumbs) == 4
    first = Image.open(io.BytesIO(__import__("base64").b64decode(thumbs[0]))).convert("RGB")
    assert tuple(np.median(np.asarray(first).reshape(-1, 3), axis=0)) == COLOURS["yellow"]
    assert "http://" not in page and "https://" not in page  # self-contained
    assert "a yellow square" in page and "#1 · 1.0000" in page


def test_search_and_embed_bad_input_is_one_line(world, colours, tmp_path, capsys):
    cases = [
        ["search", str(tmp_path), "--text", "x"],  # not an embedding directory
        ["search", str(colours)],  # no query
        ["search", str(colours), "--image", str(world["csv"].parent / "images" / "broken.png")],
        ["search", str(colours), "--text", "x", "--over", "texts", "--backend", "faiss"],  # no index built
        ["embed", "--checkpoint", str(world["run"] / "checkpoints" / "step-00000003" / "model.safetensors"),
         "--data", str(world["csv"]), "--out", str(tmp_path / "x")],  # a weights file needs --model
        ["embed", "--checkpoint", str(world["run"]), "--data", str(tmp_path / "nope.csv"),
         "--out", str(tmp_path / "y")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), (argv, err)


def test_an_open_clip_weights_file_embeds_like_its_run(world, colours, tmp_path):
    weights = world["run"] / "checkpoints" / "step-00000003" / "model.safetensors"
    code = main(["embed", "--checkpoint", str(weights), "--model", MODEL, "--data", str(world["csv"]),
                 "--out", str(tmp_path / "f"), "--dtype", "float32", "--no-progress"])
    assert code == 0
    m = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert m["encoder"]["format"] == "open_clip"
    ref = json.loads((colours / "manifest.json").read_text())
    assert m["encoder"]["sha256"] == ref["encoder"]["sha256"]
    np.testing.assert_allclose(np.load(tmp_path / "f" / "images.npy"), np.load(colours / "images.npy"), atol=1e-6)


# ------------------------------------------------------------------ serve
@pytest.fixture(scope="module")
def server(colours):
    from cloob.search.encoder import recorded_encoder
    from cloob.search.index import open_index
    from cloob.search.serve import SearchApp, make_server
    from cloob.search.store import Store
    from cloob.data.policy import ReadPolicy

    store = Store(colours)
    app = SearchApp(store, open_index(store), recorded_encoder(store.manifest),
                    ReadPolicy(max_image_bytes=200_000, max_image_pixels=1_000_000), k=6)
    srv = make_server(app, port=0, quiet=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", srv
    srv.shutdown()
    srv.server_close()


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def _post(url, fields: dict, files: dict):
    boundary = "cloobtestboundary"
    body = b""
    for k, v in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    for k, (name, data) in files.items():
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return _get(req)


def test_serve_answers_text_and_image_queries_on_localhost(server, world):
    base, srv = server
    assert srv.server_address[0] == "127.0.0.1"
    status, ctype, body = _get(f"{base}/api/search?q=a+green+square&k=3")
    assert status == 200 and ctype == "application/json"
    hits = json.loads(body)["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:]))
    png = (world["csv"].parent / "images" / "0000004.png").read_bytes()  # the cyan square
    status, _, body = _post(f"{base}/api/search", {"k": "2"}, {"image": ("cyan.png", png)})
    hits = json.loads(body)["hits"]
    assert status == 200 and hits[0]["caption"] == "a cyan square" and hits[0]["score"] > 0.999
    status, ctype, body = _get(f"{base}/?q=a+red+square")
    assert status == 200 and ctype.startswith("text/html")
    rows = re.findall(r'src="/thumb/(\d+)"', body.decode())
    assert len(rows) == 6
    status, ctype, body = _get(f"{base}/thumb/{rows[0]}")
    assert status == 200 and ctype == "image/png" and Image.open(io.BytesIO(body)).size == (64, 64)
    status, _, body = _post(f"{base}/", {"q": "a purple square", "k": "3"}, {})
    assert status == 200 and len(re.findall(r'src="/thumb/\d+"', body.decode())) == 3


def test_serve_refuses_paths_outside_the_index_and_oversized_uploads(server, world, colours):
    base, _ = server
    secret = colours / "secret.txt"
    secret.write_text("do not serve me")
    for path in ["/thumb/6", "/thumb/-1", "/thumb/01", "/thumb/1/../../secret.txt", "/thumb/..%2f..%2fetc%2fpasswd",
                 "/../secret.txt", "/%2e%2e/secret.txt", "/secret.txt", "/manifest.json", "/metadata.csv",
                 "/images.npy", "/etc/passwd", f"/{world['csv']}", "/thumb/", "/static/../../etc/passwd"]:
        status, _, body = _get(base + path)
        assert status == 404, path
        assert b"do not serve me" not in body and b"root:" not in body
    status, _, body = _post(f"{base}/api/search", {}, {"image": ("big.bin", b"\0" * 300_000)})
    assert status == 413 and "file_too_large" in json.loads(body)["error"]
    bomb = io.BytesIO()
    Image.new("L", (2000, 1000)).save(bomb, format="PNG")  # 2 MP, small file: refused from its header
    status, _, body = _post(f"{base}/api/search", {}, {"image": ("bomb.png", bomb.getvalue())})
    assert status == 400 and "too_many_pixels" in json.loads(body)["error"]
    status, _, body = _post(f"{base}/api/search", {}, {"image": ("x.png", b"not an image")})
    assert status == 400 and "corrupt_image" in json.loads(body)["error"]
    status, _, body = _get(f"{base}/api/search?q=")
    assert status == 400
    status, _, body = _get(f"{base}/api/search?q=x&k=100000")
    assert status == 400 and "k must be" in json.loads(body)["error"]


def test_a_tampered_metadata_file_cannot_reach_other_files(world, colours, tmp_path):
    from cloob.data.bad import BadSampleError
    from cloob.search.store import Store

    copy = tmp_path / "copy"
    shutil.copytree(colours, copy)
    outside = tmp_path / "outside.png"
    world["pairs"][0][0].save(outside)
    text = (copy / "metadata.csv").read_text().splitlines()
    src0 = text[1].split(",")[1]
    text[1] = text[1].replace(src0, str(outside))
    (copy / "metadata.csv").write_text("\n".join(text) + "\n")
    store = Store(copy)
    with pytest.raises(BadSampleError) as e:
        store.image(0)
    assert e.value.reason == "outside_root"
    assert store.image(1).size == (64, 64)


def test_serve_binds_localhost_by_default():
    from cloob.cli import build_parser

    args = build_parser().parse_args(["serve", "somewhere"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)


@pytest.mark.slow
def test_chromium_renders_the_search_page_with_thumbnails(server, colours, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not on PATH (Debian: apt-get install chromium, which .ci/run does as root)")
    base, _ = server
    html = tmp_path / "search.html"
    assert main(["search", str(colours), "--text", "a square", "-k", "6", "--html", str(html)]) == 0
    for name, url in (("served", f"{base}/?q=a+square&k=6"), ("file", f"file://{html}")):
        png = tmp_path / f"{name}.png"
        profile = tmp_path / f"profile-{name}"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
                        "--window-size=1280,900", url], capture_output=True, timeout=120)
        assert png.is_file() and png.stat().st_size > 0, name
        shot = np.asarray(Image.open(png).convert("RGB")).astype(int)
        assert shot.shape[:2] == (900, 1280)
        for colour, rgb in COLOURS.items():
            mask = (np.abs(shot - np.asarray(rgb)) <= 6).all(axis=2)
            # a thumbnail is a solid block of its colour, at least 120 px on a side on screen
            assert mask.sum() > 120 * 120, (name, colour, int(mask.sum()))
            ys, xs = np.nonzero(mask)
            assert ys.max() - ys.min() >= 120 and xs.max() - xs.min() >= 120, (name, colour)


# ------------------------------------------------------------------ classify
def test_classify_labels_a_folder_with_the_template_ensemble(world, model, tmp_path):
    from cloob.data import image_transform
    from cloob.evals.templates import load_templates

    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for i, (img, _) in enumerate(world["pairs"]):
        img.save(folder / ("sub" if i % 2 else "") / f"{i}.png")
    (folder / "z-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "pred.csv"
    classes = ["a red thing", "a green thing", "a cyan thing"]
    assert main(["classify", "--checkpoint", str(world["run"]), "--images", str(folder), "--classes",
                 ",".join(classes), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out, newline="")))
    assert [r["path"] for r in rows] == sorted(["0.png", "2.png", "4.png", "sub/1.png", "sub/3.png", "sub/5.png",
                                                "z-broken.jpg"])
    broken = rows[-1]
    assert broken["class"] == "" and broken["skipped"] in ("corrupt_image", "truncated_image")
    # expectation: an explicit loop over classes and templates, with the model called directly
    net, tok = model
    templates = load_templates("generic")
    tf = image_transform(net, train=False)
    with torch.no_grad():
        W = []
        for c in classes:
            t = net.encode_text(tok([tp.format(c) for tp in templates]))
            t = t / t.norm(dim=1, keepdim=True)
            w = t.mean(0)
            W.append(w / w.norm())
        W = torch.stack(W)
        for r in rows[:-1]:
            x = net.encode_image(tf(Image.open(folder / r["path"]).convert("RGB"))[None])[0]
            sims = (W @ x).numpy()
            assert r["class"] == classes[int(sims.argmax())]
            assert float(r["score"]) == pytest.approx(float(sims.max()), abs=1e-4)
            p = np.exp(net.inv_tau.item() * sims)
            assert float(r["probability"]) == pytest.approx(float(p.max() / p.sum()), abs=1e-4)


def test_classify_needs_classes_one_way():
    from cloob.search.classify import parse_classes

    assert parse_classes("cat, dog ,bird", None) == ["cat", "dog", "bird"]
    for bad in (("cat", None), ("a,a,b", None), (None, None)):
        with pytest.raises(ValueError):
            parse_classes(*bad)
