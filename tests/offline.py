"""Run Python code in a subprocess whose every network call fails, and report what it tried.

The prelude replaces ``socket.socket.connect``/``connect_ex`` and ``socket.getaddrinfo`` by a recorder that
raises; the code under test must end with ``assert not attempts``. Hugging Face's offline switches are
removed and its cache is an empty directory, so only local files can make such a test pass.
"""
import os
import subprocess
import sys
import textwrap

PRELUDE = """
import socket
attempts = []
def record(*args, **kwargs):
    attempts.append(args[1:2] or args[:1])
    raise OSError("network disabled by the test")
socket.socket.connect = record
socket.socket.connect_ex = record
socket.getaddrinfo = record
"""


def run_offline(code: str, tmp_path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -c PRELUDE + code`` with the network off; returns the finished process (output captured)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "empty-hf-home"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)
