"""The Docker route's files, checked offline: compose spec, hadolint, localhost-only ports,
an ai-service that stands alone, and no secrets."""

import ast
import subprocess
import sys
from pathlib import Path

import yaml
from dotenv import dotenv_values

from helpers import REPO

BIN = Path(sys.executable).parent


def test_compose_file_follows_the_compose_spec() -> None:
    done = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run([BIN / "hadolint", "ai-service/Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [
        line.split()[1]
        for line in (REPO / "ai-service" / "Dockerfile").read_text().splitlines()
        if line.startswith("USER ")
    ]
    assert users and users[-1] not in ("root", "0")


def test_compose_publishes_on_localhost_only() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published)


def test_compose_matches_the_workflow_guide() -> None:
    """`docker-compose exec ai-api alembic ...` needs this shape to work as typed."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    api, db = compose["services"]["ai-api"], compose["services"]["db"]
    assert api["build"] == "./ai-service"
    assert "./ai-service:/app" in api["volumes"]  # revisions made in the container land on the host
    assert "@db:5432/" in api["environment"]["DATABASE_URL"]
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(volume.endswith(":/var/lib/postgresql") for volume in db["volumes"])  # `down -v` resets it


def test_env_example_defines_every_variable_compose_requires() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    example = dotenv_values(REPO / ".env.example")
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert f"${{{name}:?" in text, f"{name} should be required from .env"
        assert example.get(name), f".env.example lacks {name}"


def test_ai_service_never_imports_the_kit() -> None:
    for path in (REPO / "ai-service").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in getattr(node, "names", [])]
                if isinstance(node, ast.Import)
                else [getattr(node, "module", "") or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] == "migration_lab" for n in names), path


def test_no_env_files_or_secrets_are_tracked() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    assert ".env" not in tracked and "ai-service/.env" not in tracked
    assert not any(name.endswith((".pem", ".key")) for name in tracked)
