"""Use a trained model: embed a collection, index it, search it by text or image, label a folder.

``cloob embed``    :func:`cloob.search.embed.embed`: a data spec -> an embedding directory
                   (``images.npy``, ``texts.npy``, ``metadata.csv``, ``manifest.json``), chunked and resumable
``cloob index``    :func:`cloob.search.index.build_index`: faiss (when installed) or exact torch matrix products
``cloob search``   :func:`cloob.search.query.search`: ranked hits, printed or as an HTML page (:mod:`.page`)
``cloob serve``    :mod:`cloob.search.serve`: a local search page (standard library HTTP server)
``cloob classify`` :mod:`cloob.search.classify`: zero-shot labels of an image folder as CSV

Modules: :mod:`.encoder` (load a cloob run or an open_clip weights file), :mod:`.sources` (rows of a
data spec and reading a row's image back), :mod:`.store` (reading an embedding directory).
Nothing here imports torch at package import; the command line stays light.
"""
