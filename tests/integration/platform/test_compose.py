"""The production docker-compose.yml and Dockerfile, checked without a Docker engine.

No server is needed (so no ``integration`` mark): the file is parsed with PyYAML and its
``${VAR:?message}`` interpolation is evaluated by a small re-implementation of the Compose
rules, so a missing secret is proven to stop ``docker compose up``. The build machines have
only a Docker *client* without the ``compose`` plugin; where ``docker compose version`` does
work, ``test_docker_compose_config`` also runs the real ``docker compose config -q``, and
otherwise it checks the interpolation with the re-implementation alone (it never skips).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"
SERVICES_SCRIPT = REPO / "scripts" / "services"

SECRET_NAME = re.compile(r"(KEY|KEK|SECRET|PASSWORD|TOKEN|ROOT_USER)")
REQUIRED = re.compile(r"^\$\{(?P<var>[A-Z][A-Z0-9_]*):\?[^}]+\}$")
# Compose interpolation: $$ (literal $), ${VAR}, ${VAR:-default}, ${VAR:?error}, $VAR.
INTERPOLATION = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)

APP_SECRETS = (
    "ARCHIVER_S3_ACCESS_KEY",
    "ARCHIVER_S3_SECRET_KEY",
    "ARCHIVER_APP_SECRETS",
    "ARCHIVER_VERIFY_TOKEN",
    "ARCHIVER_PSEUDONYM_KEY",
    "ARCHIVER_KEK",
    "ARCHIVER_SIGNING_KEY",
    "ARCHIVER_GRAPH_TOKEN",
)


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (the subset this file uses)."""

    def one(match: re.Match[str]) -> str:
        if match["dollar"]:
            return "$"
        name = match["braced"] or match["bare"]
        value = env.get(name, "")
        if match["op"] == ":?" and not value:
            raise MissingVariable(f"{name}: {match['arg']}")
        if match["op"] == ":-" and not value:
            return match["arg"]
        return value

    return INTERPOLATION.sub(one, text)


def walk_strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in walk_strings(key) + walk_strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in walk_strings(item)]
    return []


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping (name: value)"
    return {str(k): str(v) for k, v in env.items()}


def test_services_and_their_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"minio", "minio-init", "elasticsearch", "postgres", "archiver"}
    assert services["archiver"]["depends_on"] == {
        "minio": {"condition": "service_healthy"},
        "minio-init": {"condition": "service_completed_successfully"},
        "elasticsearch": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert services["minio-init"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert services["minio-init"]["restart"] == "no"


def test_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("minio", "elasticsearch", "postgres", "archiver"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "timeout", "retries"} <= set(check), name
    assert "/minio/health/live" in " ".join(services["minio"]["healthcheck"]["test"])
    assert "_cluster/health" in " ".join(services["elasticsearch"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services["archiver"]["healthcheck"]["test"])


def test_named_volumes_hold_the_data(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(compose["volumes"]) == {"minio-data", "es-data", "pg-data"}
    assert "pg-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "minio-data:/data" in services["minio"]["volumes"]
    assert "es-data:/usr/share/elasticsearch/data" in services["elasticsearch"]["volumes"]
    assert services["minio"]["command"][:3] == ["minio", "server", "/data"]


def test_no_literal_secret_anywhere(compose: dict[str, Any]) -> None:
    checked = 0
    for name, service in compose["services"].items():
        for var, value in env_of(service).items():
            if SECRET_NAME.search(var):
                assert REQUIRED.match(value), f"{name}.{var} must be ${{VAR:?...}}, is {value!r}"
                checked += 1
    # the app's eight, MinIO root user/password twice, the PostgreSQL password
    assert checked >= len(APP_SECRETS) + 5


def test_app_runs_in_production_mode_with_every_secret(compose: dict[str, Any]) -> None:
    env = env_of(compose["services"]["archiver"])
    assert env["ARCHIVER_MODE"] == "production"
    assert env["ARCHIVER_STORE"] == "s3"
    assert env["ARCHIVER_INDEX"] == "elasticsearch"
    assert env["ARCHIVER_LOCK_MODE"] == "COMPLIANCE"
    # Production mode refuses plain-HTTP S3 to a non-loopback host such as `minio`.
    assert env["ARCHIVER_S3_SECURE"] == "true"
    assert env["ARCHIVER_ES_URL"] == "http://elasticsearch:9200"
    for var in APP_SECRETS:
        match = REQUIRED.match(env[var])
        assert match and match["var"] == var, var


def test_app_keeps_working_state_in_postgres_over_verified_tls(compose: dict[str, Any]) -> None:
    from archiver.settings import _check_state_dsn

    env = env_of(compose["services"]["archiver"])
    assert env["ARCHIVER_STATE"] == "postgres"
    dsn = interpolate(env["ARCHIVER_STATE_DSN"], {"POSTGRES_PASSWORD": "pw"})
    assert dsn.startswith("postgresql://archiver:pw@postgres:5432/archiver?")
    assert "sslmode=verify-full" in dsn and "sslrootcert=/certs/ca-bundle.pem" in dsn
    _check_state_dsn(dsn)  # what production mode checks: accepted
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate(env["ARCHIVER_STATE_DSN"], {})
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:15")  # the major version scripts/services runs
    assert "ssl=on" in pg["command"][0]
    assert "./certs/postgres:/certs:ro" in pg["volumes"]


def test_evidence_bucket_is_made_with_object_lock(compose: dict[str, Any]) -> None:
    script = compose["services"]["minio-init"]["command"][0]
    assert 'mc mb --ignore-existing --with-lock "archive/$$EVIDENCE_BUCKET"' in script
    assert 'mc mb --ignore-existing "archive/$$STATE_BUCKET"' in script
    # The state bucket must stay unlocked: tokens, cursors and leases are overwritten.
    assert script.count("--with-lock") == 1


def test_versions_match_what_the_tests_run() -> None:
    """Production runs the MinIO and Elasticsearch versions the integration tests ran."""
    script = SERVICES_SCRIPT.read_text()
    minio = re.search(r'MINIO_VERSION="(v[^"]+)"', script)
    es = re.search(r'ES_VERSION="([^"]+)"', script)
    assert minio and es
    text = COMPOSE.read_text()
    assert f"github.com/minio/minio@{minio[1]}" in text
    assert f"docker.elastic.co/elasticsearch/elasticsearch:{es[1]}" in text


def test_dockerfile_runs_unprivileged() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    froms = [line for line in lines if line.startswith("FROM")]
    assert froms[0].startswith("FROM python:3.11-slim")
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0")
    assert 'CMD ["archiver", "serve", "--host", "0.0.0.0", "--workers", "2"]' in lines


def full_env(compose: dict[str, Any]) -> dict[str, str]:
    names = {
        m["braced"] for s in walk_strings(compose) for m in INTERPOLATION.finditer(s) if m["braced"]
    }
    return {name: f"test-value-{name.lower()}" for name in names}


def test_interpolation_needs_every_secret(compose: dict[str, Any]) -> None:
    env = full_env(compose)
    text = COMPOSE.read_text()
    resolved = interpolate(text, env)
    assert "${" not in resolved.replace("$${", "")
    for var in (*APP_SECRETS, "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "POSTGRES_PASSWORD"):
        without = {k: v for k, v in env.items() if k != var}
        with pytest.raises(MissingVariable, match=var):
            interpolate(text, without)


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


def test_docker_compose_config(compose: dict[str, Any], tmp_path: Path) -> None:
    """`docker compose config -q` where the compose plugin exists; else the re-implementation.

    Either way a missing secret must stop the stack before anything starts.
    """
    env = full_env(compose)
    if not _compose_plugin():
        # No compose plugin on this machine (only a bare docker client): the interpolation
        # rules above stand in for it; the YAML must still round-trip after substitution.
        resolved = yaml.safe_load(interpolate(COMPOSE.read_text(), env))
        assert (
            resolved["services"]["archiver"]["environment"]["ARCHIVER_KEK"] == env["ARCHIVER_KEK"]
        )
        return
    base = ["docker", "compose", "-f", str(COMPOSE), "--project-directory", str(tmp_path)]
    ok = subprocess.run([*base, "config", "-q"], env=env, capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stderr.decode()
    missing = {k: v for k, v in env.items() if k != "ARCHIVER_KEK"}
    bad = subprocess.run([*base, "config", "-q"], env=missing, capture_output=True, timeout=60)
    assert bad.returncode != 0
    assert b"ARCHIVER_KEK" in bad.stderr
