"""The `hearth` command line, run as a subprocess the way an operator runs it."""

from __future__ import annotations

import getpass
import os
import sqlite3
import subprocess
import sys

from cryptography.fernet import Fernet

from resources.storage.db import create_engine
from tests.audit_log import search_log
from tests.shared import ROOT


def hearth(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_version():
    out = hearth("version")
    assert out.returncode == 0 and "FHIR 4.0.1" in out.stdout


def test_upgrade_load_twice_and_refusals(tmp_path):
    env = {"HEARTH_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    refused = hearth("serve", env=env)
    assert refused.returncode != 0 and "hearth db upgrade" in refused.stderr
    up = hearth("db", "upgrade", env=env)
    assert up.returncode == 0, up.stderr
    first = hearth("load", "--quiet", str(ROOT / "demo"), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "failed 0" in first.stdout
    second = hearth("load", "--quiet", str(ROOT / "demo"), env=env)
    assert second.returncode == 0 and "failed 0" in second.stdout
    bad = tmp_path / "bad.ndjson"
    bad.write_text(
        '{"resourceType": "Patient", "gender": "robot"}\n{"resourceType": "Patient"}\nnot json\n'
    )
    out = hearth("load", "--quiet", str(bad), env=env)
    assert out.returncode == 1
    assert "created 1" in out.stdout and "FAILED" in out.stdout and "gender" in out.stdout


def test_bad_settings_are_refused(tmp_path):
    out = hearth(
        "serve",
        env={"HEARTH_BASE_URL": "ftp://nope", "HEARTH_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"},
    )
    assert out.returncode != 0 and "HEARTH_BASE_URL" in out.stderr


def test_reindex_command(tmp_path):
    env = {"HEARTH_DATABASE_URL": f"sqlite:///{tmp_path / 'ri.db'}"}
    assert hearth("db", "upgrade", env=env).returncode == 0
    assert hearth("load", "--quiet", str(ROOT / "demo"), env=env).returncode == 0
    out = hearth("reindex", "--type", "Patient", env=env)
    assert out.returncode == 0, out.stderr
    assert "6 resources re-indexed" in out.stdout  # the demo bundle's six patients
    resumed = hearth("reindex", "--resume", env=env)
    assert resumed.returncode == 0 and "no unfinished reindex job" in resumed.stdout


def test_clients_users_token_commands(tmp_path):
    from tests.shared import shared_path

    env = {
        "HEARTH_DATABASE_URL": f"sqlite:///{tmp_path / 'auth.db'}",
        "HEARTH_DATA_DIR": str(tmp_path / "data"),  # `users create` keeps its secret key there
    }
    assert hearth("db", "upgrade", env=env).returncode == 0
    made = hearth(
        "clients",
        "create",
        "--name",
        "Ops script",
        "--kind",
        "confidential-symmetric",
        "--scope",
        "system/*.rs",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    client_id = made.stdout.split("client_id: ")[1].split()[0]
    assert "client_secret:" in made.stdout
    backend = hearth(
        "clients",
        "create",
        "--name",
        "Backend",
        "--kind",
        "confidential-asymmetric",
        "--scope",
        "system/*.rs",
        "--jwks",
        str(shared_path("smart", "keys", "ES384.public.json")),
        env=env,
    )
    assert backend.returncode == 0, backend.stderr
    private = hearth(
        "clients",
        "create",
        "--name",
        "Bad",
        "--kind",
        "confidential-asymmetric",
        "--scope",
        "system/*.rs",
        "--jwks",
        str(shared_path("smart", "keys", "ES384.private.json")),
        env=env,
    )
    assert private.returncode != 0 and "private key" in private.stderr
    by_url = [
        *("clients", "create", "--name", "By URL", "--kind", "confidential-asymmetric"),
        *("--scope", "system/*.rs", "--jwks-url", "https://keys.example.org/jwks.json"),
    ]
    refused = hearth(*by_url, env={**env, "HEARTH_JWKS_ALLOWED_HOSTS": "other.example.org"})
    assert refused.returncode != 0 and "HEARTH_JWKS_ALLOWED_HOSTS" in refused.stderr
    allowed = hearth(*by_url, env={**env, "HEARTH_JWKS_ALLOWED_HOSTS": "keys.example.org"})
    assert allowed.returncode == 0 and "client_id:" in allowed.stdout, allowed.stderr
    listed = hearth("clients", "list", env=env)
    assert client_id in listed.stdout and "Backend" in listed.stdout
    token = hearth("token", "--client", client_id, "--scope", "system/Patient.rs", env=env)
    assert token.returncode == 0 and len(token.stdout.strip()) > 30
    wider = hearth("token", "--client", client_id, "--scope", "system/Patient.c", env=env)
    assert wider.returncode != 0 and "may not have" in wider.stderr
    user = hearth(
        "users",
        "create",
        "dr-ada",
        "--role",
        "doctor",
        "--fhir-user",
        "Practitioner/1",
        "--password",
        "a long enough password",
        env=env,
    )
    assert user.returncode == 0, user.stderr
    assert "otpauth://totp/" in user.stdout and "recovery codes" in user.stdout
    assert "Practitioner/1 has PractitionerRole/" in user.stdout  # the role comes from it
    seed = user.stdout.split("secret=")[1].split("&")[0]
    key = Fernet((tmp_path / "data" / "keys" / "secret-keys").read_text().split()[0])
    with sqlite3.connect(tmp_path / "auth.db") as db:  # the seed is stored encrypted
        (stored,) = db.execute(
            "SELECT totp_secret FROM auth_user WHERE username = 'dr-ada'"
        ).fetchone()
    assert seed not in stored and key.decrypt(stored.encode()).decode() == seed
    nurse = hearth("users", "create", "no-prac", "--role", "cadre", "--password", "x" * 12, env=env)
    assert nurse.returncode != 0 and "Practitioner" in nurse.stderr
    synced = hearth("users", "sync-roles", env=env)  # idempotent: the role exists already
    assert synced.returncode == 0 and "dr-ada: Practitioner/1 PractitionerRole/" in synced.stdout
    role_id = user.stdout.split("PractitionerRole/")[1].split()[0]
    assert f"PractitionerRole/{role_id} " in synced.stdout
    engine = create_engine(env["HEARTH_DATABASE_URL"])
    try:  # the PractitionerRole write is audited with the operator and the command as agents
        events = search_log(engine, [("entity", f"PractitionerRole/{role_id}")])
    finally:
        engine.dispose()
    assert [e["agent"][1]["who"]["identifier"]["value"] for e in events] == [
        "hearth users create"  # sync-roles found the role there: no write, no event
    ]
    assert events[0]["agent"][0]["altId"] == getpass.getuser()
    weak = hearth("users", "create", "pat", "--role", "patient", "--password", "short", env=env)
    assert weak.returncode != 0 and "10 to 1024" in weak.stderr
    verify = hearth("audit", "verify", env=env)
    assert verify.returncode == 0 and "intact" in verify.stdout


def _imported_modules(path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_command_modules_form_no_import_cycle():
    """``fhir_server/cli/__init__.py`` registers the commands of ``cli/ai.py``; neither imports the
    other back (the shared settings helper is ``cli/settings.py``)."""
    folder = ROOT / "fhir_server" / "cli"
    modules = {"cli": folder / "__init__.py"} | {
        f"cli.{p.stem}": p for p in folder.glob("*.py") if not p.stem.startswith("__")
    }
    graph = {
        name: {m.removeprefix("fhir_server.") for m in _imported_modules(path)} & set(modules)
        for name, path in modules.items()
    }
    assert "cli.ai" in graph["cli"]  # the edge that must stay one-way

    def reaches(start: str, goal: str, seen: frozenset = frozenset()) -> bool:
        return any(
            n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start]
        )

    cycles = sorted(name for name in graph if reaches(name, name))
    assert cycles == [], f"import cycle through {cycles}"
