"""README's "Your own images", command for command, on generated photos.

The commands are read from README.md (the first bash block of the
section) and run as written, with the size flags the README documents for
a quick try appended (`--weights=none --image_size=32`, `--epochs=1
--batch_size=4`): label space from a names file and a small GloVe-format
text file, features, training, export, and tags for new photos with a
vocabulary holding two labels never trained on.
"""

import csv
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import tiny

TAGS = ["cat", "dog", "sky", "tree", "golden retriever", "beach", "car",
        "zebra", "street_art"]
NEW_TAGS = ["dog", "sky", "zebra", "boat", "yellow taxi"]  # boat, taxi: new
WORDS = ["cat", "dog", "sky", "tree", "golden", "retriever", "beach", "car",
         "zebra", "street", "art", "boat", "yellow", "taxi", "the"]
QUICK = {
    "make_label_space": [],
    "extract_features": ["--weights=none", "--image_size=32"],
    "train.py": ["--epochs=1", "--batch_size=4"],
    "tag": ["--weights=none", "--image_size=32"],
}


def readme_commands():
    text = (tiny.ROOT / "README.md").read_text()
    section = text.split("## Your own images", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(c) for c in block.replace("\\\n", " ").splitlines()
            if c.strip()]


def _write_inputs(root):
    rng = np.random.default_rng(0)
    with open(root / "glove.6B.300d.txt", "w") as f:
        for w in WORDS:
            f.write(w + " " + " ".join(f"{v:.5f}" for v in rng.normal(size=20))
                    + "\n")
    (root / "tags.txt").write_text("\n".join(TAGS) + "\n")
    (root / "new_tags.txt").write_text("\n".join(NEW_TAGS) + "\n")
    for folder, count in (("photos", 30), ("new_photos", 3)):
        (root / folder).mkdir()
        for i in range(count):
            pixels = rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / f"p{i}.jpg")
    rows = [f"p{i}.jpg," + ";".join(rng.choice(TAGS, 3, replace=False))
            for i in range(30)]
    (root / "train.csv").write_text("image,labels\n" + "\n".join(rows[:22]))
    (root / "test.csv").write_text("image,labels\n" + "\n".join(rows[22:]))


@pytest.mark.slow
def test_readme_walkthrough(tmp_path):
    _write_inputs(tmp_path)
    commands = readme_commands()
    assert [c[0] for c in commands] == ["python"] * 5
    outputs = []
    for command in commands:
        program = command[2] if command[1] == "-m" else command[1]
        key = next(k for k in QUICK if program.endswith(k))
        if program == "train.py":
            command = [command[0], str(tiny.ROOT / "train.py"), *command[2:]]
        argv = [sys.executable, *command[1:], *QUICK[key]]
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True,
                                text=True, env=tiny.child_env(), timeout=600)
        assert result.returncode == 0, (argv, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        outputs.append(result.stdout)
    assert "exported SavedModel: runs/mine/export/1" in outputs[3]
    with open(tmp_path / "tags.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["image"] for r in rows}) == ["p0.jpg", "p1.jpg",
                                                  "p2.jpg"]
    assert len(rows) == 15  # top 5 of the 5 new tags, per photo
    marks = {r["label"]: r["unseen"] for r in rows}
    # zebra was held out of training; boat and yellow taxi never existed.
    assert marks == {"dog": "0", "sky": "0", "zebra": "1", "boat": "1",
                     "yellow taxi": "1"}
