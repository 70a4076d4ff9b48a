import subprocess
import sys

import cloob


def run(*args):
    return subprocess.run([sys.executable, "-m", "cloob.cli", *args], capture_output=True, text=True, timeout=300)


def test_version():
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"cloob {cloob.__version__}"


def test_info_lists_versions_threads_and_models():
    import open_clip
    import torch

    out = run("info")
    assert out.returncode == 0, out.stderr
    assert torch.__version__ in out.stdout
    assert open_clip.__version__ in out.stdout
    assert "threads" in out.stdout
    for name in ("cloob-rn-tiny", "cloob-vit-tiny", "RN50", "ViT-B-32"):
        assert name in out.stdout


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("cloob") or str(__import__("pathlib").Path(sys.executable).parent / "cloob")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "cloob" in out.stdout
