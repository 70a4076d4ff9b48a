"""The CI entry point installs Chromium when it is missing, so the report's screenshot test runs."""
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def _ci(tmp_path, uid: int, apt_installs: bool):
    """Run a copy of .ci/run with stand-ins for id, apt-get and make on a PATH without Chromium."""
    repo, bin_dir, calls = tmp_path / "repo", tmp_path / "bin", tmp_path / "calls"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    bin_dir.mkdir()
    for name in ("dirname", "mktemp", "rm", "tail", "chmod"):
        os.symlink(shutil.which(name), bin_dir / name)
    _tool(bin_dir, "id", f"echo {uid}")
    if apt_installs:  # `apt-get install chromium` puts a chromium on the PATH
        install = f"echo '#!/bin/bash' > {bin_dir}/chromium; chmod +x {bin_dir}/chromium"
        _tool(bin_dir, "apt-get", f'echo "apt-get $*" >> {calls}; if [ "$1" = install ]; then {install}; fi')
    else:  # no package source: update works, install fails
        _tool(bin_dir, "apt-get", f'echo "apt-get $*" >> {calls}; [ "$1" = update ]')
    _tool(bin_dir, "make", f'echo "make $* (chromium: $(command -v chromium || echo none))" >> {calls}')
    out = subprocess.run(["/bin/bash", str(repo / ".ci" / "run")], capture_output=True, text=True, timeout=60,
                         env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    return out, calls.read_text().splitlines() if calls.exists() else []


def test_ci_installs_chromium_as_root_before_the_tests(tmp_path):
    out, calls = _ci(tmp_path, uid=0, apt_installs=True)
    assert out.returncode == 0, out.stderr
    assert calls[0] == "apt-get install -y -q chromium"
    assert calls[-1] == f"make test (chromium: {tmp_path / 'bin' / 'chromium'})"


def test_ci_still_runs_the_tests_where_chromium_cannot_be_installed(tmp_path):
    out, calls = _ci(tmp_path, uid=0, apt_installs=False)
    assert out.returncode == 0 and "could not install chromium" in out.stderr
    assert calls[-1] == "make test (chromium: none)"
    out, calls = _ci(tmp_path / "user", uid=1000, apt_installs=True)
    assert "cannot be installed here" in out.stderr and calls == ["make test (chromium: none)"]
