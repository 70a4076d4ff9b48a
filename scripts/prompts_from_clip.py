"""Write src/cloob/evals/prompts/<name>.json from CLIP's published prompt lists (openai/CLIP, data/prompts.md).

Only for datasets whose class names neither clip-benchmark's JSON nor open_clip's metadata has:
    git -C <openai/CLIP checkout> show HEAD:data/prompts.md > prompts.md
    git -C <ml-jku/cloob checkout> show HEAD:src/training/zeroshot_data.py > zeroshot_data.py
    python scripts/prompts_from_clip.py prompts.md <CLIP commit> zeroshot_data.py <cloob commit>

The reference repository labels its preprocessed zips by its own list order: where it has a list
(Birdsnap, UCF101, Stanford Cars) the names are taken in that order (Birdsnap's differs from CLIP's
alphabetical one; the names are the same), so that its zips are read as the paper read them.
"""
import ast
import json
import re
import sys
from pathlib import Path

# CLIP's section -> cloob's dataset name (clip-benchmark's key where it has templates for it)
SECTIONS = {"Birdsnap": "birdsnap", "UCF101": "ucf101", "StanfordCars": "stanford_cars", "CIFAR10": "cifar10",
            "CIFAR100": "cifar100", "DescribableTextures": "dtd", "FGVCAircraft": "fgvc_aircraft",
            "Food101": "food101", "SUN397": "sun397", "STL10": "stl10", "RESISC45": "resisc45",
            "SST2": "renderedsst2"}


def _reference_lists(path: str) -> dict:
    """The reference file's ``*_classnames`` lists (its templates are lambdas: not read)."""
    tree = ast.parse(Path(path).read_text())
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if t.id.endswith("_classnames")}


def main(md_path: str, commit: str, reference_path: str, reference_commit: str) -> None:
    text = Path(md_path).read_text()
    reference = _reference_lists(reference_path)
    out = Path(__file__).resolve().parents[1] / "src" / "cloob" / "evals" / "prompts"
    out.mkdir(exist_ok=True)
    for section, name in SECTIONS.items():
        body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        lists = {k: ast.literal_eval(v) for k, v in re.findall(r"^(classes|templates) = (\[.*?^\])", body, re.M | re.S)}
        record = {"dataset": name,
                  "source": f"CLIP's published prompt lists: openai/CLIP, data/prompts.md, section '{section}', "
                            f"commit {commit}",
                  "classnames": lists["classes"], "templates": lists["templates"]}
        ours = reference.get(f"{name}_classnames")
        if ours is not None:
            if sorted(ours) != sorted(lists["classes"]):
                raise SystemExit(f"{name}: the reference repository's names differ from CLIP's")
            record["classnames"] = ours
            record["source"] += (f"; the same lists as the CLOOB reference repository (ml-jku/cloob, commit "
                                 f"{reference_commit}, src/training/zeroshot_data.py), in its class order "
                                 f"({name}_classnames), which labels its zips")
        (out / f"{name}.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: {len(record['classnames'])} classes, {len(record['templates'])} templates")


if __name__ == "__main__":
    main(*sys.argv[1:5])
