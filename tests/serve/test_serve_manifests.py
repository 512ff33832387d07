"""The deployment recipe (deploy/): Kubernetes manifests valid against the Kubernetes schema
(kubernetes-validate, strict), consistent with what ``avatarkit serve`` does, free of secrets,
and shown verbatim in docs/guide/deploy.md."""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from avatarkit.serve.options import add_serve_arguments

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
KUBERNETES = "1.30"  # the oldest release the recipe promises to work on


def resources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in MANIFESTS:
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def by_kind(kind: str) -> dict[str, Any]:
    (resource,) = [r for r in resources() if r["kind"] == kind]
    return resource


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_the_manifests_validate_strictly(path: Path) -> None:
    for resource in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(resource, KUBERNETES, strict=True)
        kubernetes_validate.validate(resource, kubernetes_validate.utils.latest_version(), True)


def test_the_validator_catches_mistakes() -> None:
    deployment = copy.deepcopy(by_kind("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    typo = copy.deepcopy(by_kind("Deployment"))
    typo["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES, strict=True)


def serve_args() -> Any:
    import argparse

    container = by_kind("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["avatarkit"]
    assert container["args"][0] == "serve"
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(container["args"][1:]), container


def slowest_close() -> float:
    """Seconds a paid session's close may take at most, by the renderers' defaults: a start
    still in flight is waited for (shielded: the session it creates must be stopped), then
    the stop."""
    from avatarkit_heygen.heygen_options import HeyGenRendererOptions
    from avatarkit_heygen.liveavatar_options import LiveAvatarOptions

    heygen = HeyGenRendererOptions.model_fields
    request = LiveAvatarOptions.model_fields["request_timeout"].default
    liveavatar = request + min(30.0, 3 * request + 1)  # LiveAvatarRenderer._stop_session
    return float(max(heygen["start_timeout"].default + heygen["close_timeout"].default, liveavatar))


def test_the_deployment_matches_what_serve_does() -> None:
    args, container = serve_args()  # every option parses, as `avatarkit serve` would
    spec = by_kind("Deployment")["spec"]["template"]["spec"]
    assert args.host == "0.0.0.0"
    assert args.auth != "none"  # reachable by others: a credential before any paid session
    # SIGKILL must not come before the drain is over and every paid session is stopped, even
    # by a provider slow to answer: the longest a renderer's close may take.
    assert spec["terminationGracePeriodSeconds"] >= args.drain_grace + slowest_close() + 5
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == args.port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    service = by_kind("Service")
    assert service["spec"]["selector"] == by_kind("Deployment")["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    ingress = by_kind("Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] in args.allow_hosts  # the public name passes the Host allowlist
    routed = {p["path"] for p in rule["http"]["paths"]}
    assert routed == {"/", "/ws", "/static", "/vendor"}  # ops endpoints stay in the cluster
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"


def test_no_secret_is_in_the_manifests_or_the_image() -> None:
    for resource in resources():
        assert resource["kind"] != "Secret"
    container = serve_args()[1]
    assert "env" not in container  # values come from a Secret, by reference
    assert container["envFrom"] == [{"secretRef": {"name": "avatar-serve-secrets"}}]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert not re.search(r"^\s*(ENV|ARG)\b", dockerfile, re.MULTILINE)
    text = "\n".join(p.read_text() for p in [*MANIFESTS, DEPLOY / "Dockerfile"])
    assert not re.search(r"(sk-|hg-|AKIA)[A-Za-z0-9]{8,}", text)


def test_the_guide_shows_the_recipe_verbatim() -> None:
    guide = (REPO / "docs" / "guide" / "deploy.md").read_text()
    blocks = re.findall(r"```(?:yaml|dockerfile)\n(.*?)```", guide, re.DOTALL)
    for path in [DEPLOY / "Dockerfile", *MANIFESTS]:
        assert path.read_text() in blocks, f"docs/guide/deploy.md does not show {path.name}"


def test_the_image_installs_our_distributions() -> None:
    """PyPI's ``avatarkit`` is an unrelated project whose files overwrite ours
    (``avatarkit._install``): the image must name ``avatarkit-core`` and our plugins only."""
    ours = {
        tomllib.loads(path.read_text())["project"]["name"]
        for path in [REPO / "pyproject.toml", *REPO.glob("plugins/*/pyproject.toml")]
    }
    dockerfile = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    (install,) = re.findall(r"^RUN pip install (.*?)(?:&&|$)", dockerfile, re.MULTILINE)
    wanted = [word for word in shlex.split(install) if not word.startswith("-")]
    names = {re.split(r"[\[<>=!~;\s]", word, maxsplit=1)[0].lower() for word in wanted}
    assert names
    assert names <= ours, names - ours
    assert "avatarkit-core[serve]" in wanted  # starlette, uvicorn, prometheus-client
