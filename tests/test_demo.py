"""The demo pipeline end to end at a toy budget (the real `make demo` uses 150 steps)."""
import pytest

from cloob import demo


@pytest.mark.slow
def test_demo_trains_both_methods_evaluates_and_writes_the_report(tmp_path, capsys):
    assert demo.main(["--steps", "2", "--n", "512", "--out", str(tmp_path / "runs"),
                      "--data", str(tmp_path / "scenes")]) == 0
    out = capsys.readouterr().out
    report = tmp_path / "runs" / "report.html"
    assert report.is_file() and "<html" in report.read_text()[:500].lower()
    for method in ("clip", "cloob"):
        evals = {p.name.split("-")[0] for p in (tmp_path / "runs" / method / "eval").glob("*.json")}
        assert evals == {"zeroshot", "retrieval"}
        assert (tmp_path / "runs" / method / "analysis").is_dir()
    for label, _, _ in demo.ROWS:
        line = next(ln for ln in out.splitlines() if ln.startswith(label))
        assert "n/a" not in line
    assert f"report: {report}" in out and "demo wall time:" in out
