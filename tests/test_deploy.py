"""Issue 15, points 6 and 8: the Dockerfile (linted, and its two stages replayed without a container daemon),
the Kubernetes manifests (validated against the Kubernetes schemas), the systemd unit, the LICENSE."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT
from tests.service.helpers import BANNER_PORT

DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES = ROOT / "deploy" / "kubernetes"
UNIT = ROOT / "deploy" / "systemd" / "affidavit.service"
KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests promise to work on


# -- Dockerfile ------------------------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages(text: str) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for inst in _instructions(text):
        if inst[0] == "FROM":
            stages.append([])
        stages[-1].append(inst)
    return stages


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_non_root_and_runtime_only() -> None:
    build, runtime = _stages(DOCKERFILE.read_text())
    assert re.fullmatch(r"python:3\.\d+-slim-\w+ AS build", build[0][1])
    assert re.fullmatch(r"python:3\.\d+-slim-\w+ AS runtime", runtime[0][1])
    # The build stage builds wheels of the source tree; the runtime stage gets only those wheels.
    assert any(i == "RUN" and "pip wheel" in a and "--wheel-dir /wheels ." in a for i, a in build)
    copies = [a for i, a in runtime if i == "COPY"]
    assert copies == ["--from=build /wheels /wheels"], "the runtime stage copies nothing but the wheels"
    install = next(a for i, a in runtime if i == "RUN" and "pip install" in a)
    assert "--no-index" in install and "/wheels/affidavit-*.whl" in install and "[" not in install
    assert "rm -rf /wheels" in install
    user = [a for i, a in runtime if i == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert [a for i, a in runtime if i == "ENTRYPOINT"] == ['["affidavit"]']
    assert [a for i, a in runtime if i == "CMD"] == ['["serve"]']
    env = " ".join(a for i, a in runtime if i == "ENV")
    assert "AFFIDAVIT_HOST=0.0.0.0" in env and "AFFIDAVIT_PORT=8080" in env
    assert any(i == "HEALTHCHECK" and "/healthz" in a for i, a in runtime)


@pytest.mark.slow
def test_dockerfile_stages_replayed_build_the_wheel_that_serves(tmp_path: Path) -> None:
    """What ``docker build`` would do, without a daemon: the build stage's COPY set is enough to build the
    wheel; the wheel alone (plus its declared dependencies) runs ``affidavit serve``, package data and all."""
    build, _ = _stages(DOCKERFILE.read_text())
    context = tmp_path / "src"
    context.mkdir()
    for inst, args in build:
        if inst == "COPY":
            *sources, dest = args.split()
            for source in sources:
                target = context / dest / Path(source).name if dest.endswith("/") else context / dest
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(ROOT / source, target)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), "."],
                   cwd=context, check=True, capture_output=True, timeout=240)
    (wheel,) = wheels.glob("affidavit-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                    str(site), str(wheel)], check=True, capture_output=True, timeout=240)
    entry = (next(site.glob("affidavit-*.dist-info")) / "entry_points.txt").read_text()
    assert "affidavit = affidavit.cli:main" in entry

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AFFIDAVIT_", "PYTHONPATH"))}
    env.update(PYTHONPATH=str(site), AFFIDAVIT_HOST="127.0.0.1", AFFIDAVIT_PORT="0",  # reported in the banner
               AFFIDAVIT_DATA_DIR=str(tmp_path / "data"), AFFIDAVIT_PCS_URL="none")
    code = ("import sys, affidavit; print('imported', affidavit.__file__, flush=True); "
            "from affidavit.cli import main; sys.exit(main(['serve']))")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            found = BANNER_PORT.search(log_path.read_text(errors="replace"))
            if found is None:
                time.sleep(0.1)
                continue
            port = int(found.group(1))
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        doc = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()  # package data made it in
        assert doc["openapi"] == "3.1.0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert f"imported {site}/affidavit/__init__.py" in log_path.read_text(), "served from the wheel"


# -- Kubernetes ------------------------------------------------------------------------------------------


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path, doc))
    return out


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    manifests = _manifests()
    assert {d["kind"] for _, d in manifests} >= {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap"}
    for path, doc in manifests:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {exc.message} at {'/'.join(map(str, exc.path))}")


def _one(kind: str) -> dict[str, Any]:
    (doc,) = [d for _, d in _manifests() if d["kind"] == kind]
    return doc


def test_deployment_is_a_fleet_with_probes_and_shared_secrets() -> None:
    deployment = _one("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] >= 3 and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    for name, key in (("AFFIDAVIT_DATABASE_URL", "database-url"), ("AFFIDAVIT_ADMIN_TOKEN", "admin-token")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "affidavit", "key": key}
    kek_path = env["AFFIDAVIT_KEY_ENCRYPTION_KEY_FILE"]["value"]
    (secret_volume,) = [v for v in pod["volumes"] if "secret" in v]
    mount = next(m for m in container["volumeMounts"] if m["name"] == secret_volume["name"])
    items = {mount["mountPath"] + "/" + i["path"]: i["key"] for i in secret_volume["secret"]["items"]}
    assert items[kek_path] == "key-encryption-key"
    config = _one("ConfigMap")["data"]
    assert config["AFFIDAVIT_ISSUER"].startswith("https://")
    assert container["envFrom"] == [{"configMapRef": {"name": config and "affidavit"}}]
    # The secret the Deployment reads is the example's shape.
    assert set(_one("Secret")["stringData"]) >= {"database-url", "admin-token", "key-encryption-key"}


def test_pdb_and_service_select_the_deployment() -> None:
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    pdb = _one("PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= pdb["minAvailable"] < _one("Deployment")["spec"]["replicas"]
    service = _one("Service")["spec"]
    assert service["selector"].items() <= labels.items() and service["ports"][0]["targetPort"] == "http"


# -- systemd ---------------------------------------------------------------------------------------------


def _unit() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, _, value = line.partition("=")
        sections[current].setdefault(key, []).append(value)
    return sections


def test_systemd_unit_runs_serve_unprivileged_and_hardened(tmp_path: Path) -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["ExecStart"][0].endswith("/affidavit serve")
    assert service["User"] == ["affidavit"] and service["NoNewPrivileges"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"] and service["StateDirectory"] == ["affidavit"]
    assert service["Restart"] == ["on-failure"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    # systemd's own parser: every directive known and well-formed (ExecStart pointed at a real program).
    copy = tmp_path / "affidavit.service"
    program = service["ExecStart"][0].split()[0]
    copy.write_text(UNIT.read_text().replace(program, shutil.which("true") or "/bin/true"))
    result = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True,
                            timeout=60)
    problems = [ln for ln in (result.stdout + result.stderr).splitlines()
                if "affidavit.service" in ln and "EnvironmentFile" not in ln]
    assert not problems, problems


# -- LICENSE ---------------------------------------------------------------------------------------------


def test_license_is_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()


# -- alert rules -----------------------------------------------------------------------------------------


def test_alert_rules_use_only_exported_metrics() -> None:
    from prometheus_client import REGISTRY

    import affidavit.service.metrics  # noqa: F401 -- registers the families

    exported = {"up", "affidavit_signing_key_age_seconds", "affidavit_signing_keys_published"}
    for family in REGISTRY.collect():
        suffixes = ("_bucket", "_count", "_sum") if family.type == "histogram" else ("_total",)
        exported |= {family.name} | {family.name + suffix for suffix in suffixes}
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "affidavit-rules.yaml").read_text())
    (group,) = rules["groups"]
    names = set()
    for rule in group["rules"]:
        assert rule["alert"].startswith("Affidavit") and rule["annotations"]["summary"]
        for name in re.findall(r"\b((?:affidavit_|up\b)[a-z0-9_]*)", rule["expr"]):
            names.add(name)
            assert name in exported, f"{rule['alert']}: {name} is not exported"
    assert len(names) >= 8
