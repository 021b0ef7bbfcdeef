"""A new user's first run, each step a fresh process: gen_dataset.py --help
shows the defaults, --val-per-class makes a train/val split a config can
name, and README's Python loader example trains for two epochs against the
daemon (issue 15 item 12 and the README part of "done when")."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, Daemon

GEN = REPO / "scripts" / "gen_dataset.py"


def run(args, **kw):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(kw.pop("env", {}))
    r = subprocess.run(args, capture_output=True, text=True, timeout=180, env=env, **kw)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_gen_dataset_help_shows_defaults():
    out = " ".join(run([sys.executable, str(GEN), "--help"]).split())
    for want in ("--per-class PER_CLASS images per class", "(default: 30)", "(default: 10)",
                 "(default: 160x120)", "(default: 444)", "--val-per-class",
                 "OUT/train and OUT/val"):
        assert want in out, want


def test_gen_dataset_train_val_split(tmp_path):
    out = run([sys.executable, str(GEN), str(tmp_path / "data"), "--classes", "3",
               "--per-class", "4", "--val-per-class", "2", "--size", "40x32"])
    train, val = tmp_path / "data" / "train", tmp_path / "data" / "val"
    assert "root = %s" % train in out and "root = %s" % val in out
    tr = sorted(train.rglob("*.jpg"))
    va = sorted(val.rglob("*.jpg"))
    assert len(tr) == 12 and len(va) == 6
    assert sorted(p.name for p in train.iterdir()) == sorted(p.name for p in val.iterdir())
    assert not {p.read_bytes() for p in tr} & {p.read_bytes() for p in va}  # other images
    pipes = {"train": dict(batch_size=4, size=32, crop="random_resized", flip=0.5),
             "val": dict(dataset="val", eval="true", batch_size=2, size=32)}
    d = ValDaemon(tmp_path / "d", {"root": str(train)}, pipes)
    d.val_root = val
    with d:
        with d.client("val", eval=True) as c:
            assert c.info()["dataset_size"] == 6
        with d.client("train") as c:
            assert c.info()["dataset_size"] == 12


class ValDaemon(Daemon):
    """A daemon whose config also has [dataset.val] (root = val_root)."""

    def write_config(self):
        path = super().write_config()
        with open(path, "a") as f:
            f.write("\n[dataset.val]\nroot = %s\n" % self.val_root)
        return path


def readme_loader_example():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python client"):]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    code = [b for b in blocks if "cutmixd.torch.loader(" in b]
    assert code, "README's Python section has no loader example"
    return code[0]


def test_readme_loader_example_runs(tmp_path):
    pytest.importorskip("torch")
    run([sys.executable, str(GEN), str(tmp_path / "data"), "--classes", "3",
         "--per-class", "4", "--val-per-class", "2", "--size", "40x32"])
    pipes = {"train": dict(batch_size=4, size=32, crop="random_resized", flip=0.5,
                           cutmix_alpha=1.0, label_smoothing=0.1)}
    code = readme_loader_example()
    with Daemon(tmp_path / "d", {"root": str(tmp_path / "data" / "train")}, pipes) as d:
        code = code.replace('"tcp://127.0.0.1:5555"', repr(d.endpoint))
        code = code.replace("range(90)", "range(2)")
        prelude = ("import torch\n"
                   "def make_model(k):\n"
                   "    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), "
                   "torch.nn.Flatten(), torch.nn.Linear(3, k))\n")
        epilogue = ("\nimport json\nprint(json.dumps({'state': torch.load('loader.pt'), "
                    "'loss': float(loss), 'classes': ds.num_classes}))\n")
        script = tmp_path / "readme_example.py"
        script.write_text(prelude + code + epilogue)
        out = run([sys.executable, str(script)], cwd=str(tmp_path),
                  env={"PYTHONPATH": str(REPO / "client" / "python")})
    res = json.loads(out.strip().splitlines()[-1])
    assert res["state"] == {"epoch": 2, "next_batch": 0}
    assert res["classes"] == 3 and 0 < res["loss"] < 10
