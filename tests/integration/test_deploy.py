"""The deployment recipes in deploy/: the Kubernetes manifest parses (a
real YAML parser; `kubectl apply --dry-run=client` where kubectl can work
without a cluster), its Service is headless and matches the StatefulSet
and the daemon's config, and that config passes `cutmixd --check` with a
real dataset in place of the volume; the Slurm script is valid bash
(`bash -n`, shellcheck when installed) and runs daemons in the CPU
component, trainers in the GPU component."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import gen_dataset
from helpers import BIN, require_binary

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s" / "cutmixd.yaml"
SLURM = REPO / "deploy" / "slurm" / "cutmixd-hetjob.sbatch"


def manifests():
    return {d["kind"]: d for d in yaml.safe_load_all(K8S.read_text()) if d}


def test_k8s_manifest_is_consistent():
    m = manifests()
    assert set(m) == {"ConfigMap", "Service", "StatefulSet"}
    svc, sts = m["Service"], m["StatefulSet"]
    assert svc["spec"]["clusterIP"] == "None"          # headless: one A record per pod
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"] == "cutmixd"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert sts["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    c = sts["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == ports
    ini = m["ConfigMap"]["data"]["cutmixd.ini"]
    assert "endpoint = tcp://0.0.0.0:%d" % ports["zmq"] in ini
    assert "metrics = 0.0.0.0:%d" % ports["metrics"] in ini
    assert c["livenessProbe"]["httpGet"]["path"] == "/metrics"
    mounts = {v["mountPath"] for v in c["volumeMounts"]}
    for root in re.findall(r"^root = (\S+)$", ini, re.M):
        assert any(root.startswith(mp + "/") for mp in mounts), root
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_k8s_config_passes_check(tmp_path):
    require_binary()
    ini = manifests()["ConfigMap"]["data"]["cutmixd.ini"]
    cfg = tmp_path / "cutmixd.ini"
    cfg.write_text(ini)
    sets = []
    for i, name in enumerate(("dataset", "dataset.val")):
        root = tmp_path / ("data%d" % i)
        gen_dataset.make_dataset(root, classes=2, per_class=3, size=(32, 32), seed=i)
        sets += ["--set", "%s.root=%s" % (name, root)]
    r = subprocess.run([str(BIN), "--check", "-c", str(cfg)] + sets, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pipeline train" in r.stdout and "pipeline val" in r.stdout


def test_kubectl_dry_run():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed")
    r = subprocess.run([kubectl, "apply", "--dry-run=client", "--validate=false", "-f", str(K8S)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and re.search(r"connection refused|unable to recognize|no configuration",
                                       r.stderr):
        pytest.skip("kubectl needs an API server even for --dry-run=client here: %s"
                    % r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr
    assert "statefulset.apps/cutmixd created (dry run)" in r.stdout


def test_slurm_script_is_valid_bash():
    r = subprocess.run(["bash", "-n", str(SLURM)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", str(SLURM)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
    text = SLURM.read_text().replace("\\\n", " ")  # join continued lines
    assert "#SBATCH hetjob" in text
    assert re.search(r"srun --het-group=0 .*cutmixd -c", text)          # daemons on the CPUs
    assert re.search(r"srun --het-group=1 .*--endpoint", text)          # trainers on the GPUs
    assert "SLURM_JOB_NODELIST_HET_GROUP_0" in text
