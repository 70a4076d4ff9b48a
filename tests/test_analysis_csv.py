"""`cloob analyze` on a CSV of image-caption pairs (the pairs path of the encoder)."""
import json

from test_report import cli, ckpt_dir  # noqa: F401  (fixture)


def test_analyze_a_csv_pairs_spec(tmp_path, pairs, ckpt_dir):  # noqa: F811
    rows = ["filepath,title"]
    for i, (img, cap) in enumerate(pairs):
        img.save(tmp_path / f"{i}.png")
        rows.append(f'{tmp_path / f"{i}.png"},"{cap}"')
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "analysis"
    assert cli("analyze", "--checkpoint", ckpt_dir, "--dataset", tmp_path / "pairs.csv", "--out", out,
               "--max-samples", 5, "--k", 3) == 0
    result = json.loads((out / "analysis.json").read_text())
    e = result["checkpoints"][0]
    assert e["n"] == 5 and e["step"] == 10 and e["similarity"]["k"] == 3
    assert "relative_change" not in result and "eigen_change" not in result["figures"]
