"""Project-level checks: migrations match the models, production settings pass check --deploy,
and settings fail loudly on bad environment values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_SETTINGS_MODULE", "SECURE_SSL")}
    env.update(
        DJANGO_SETTINGS_MODULE="mmplatform.settings",
        DEBUG="0",
        SECRET_KEY="a-long-random-production-secret-key-" + "k" * 40,
        ALLOWED_HOSTS="mm.example.com",
        CREDENTIAL_KEYS=Fernet.generate_key().decode(),
    )
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_migrations_are_complete(db: object) -> None:
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_check_deploy_is_clean_under_production_settings() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_missing_secret_key_in_production_fails_loudly() -> None:
    result = manage("check", env=production_env(SECRET_KEY=""))
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_malformed_boolean_fails_loudly() -> None:
    result = manage("check", env=production_env(DEBUG="maybe"))
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_missing_credential_keys_in_production_fails_loudly() -> None:
    result = manage("check", env=production_env(CREDENTIAL_KEYS=""))
    assert result.returncode != 0
    assert "CREDENTIAL_KEYS" in result.stderr


def fresh_machine_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    """A shell of a fresh clone: none of the platform's variables set (a var dir of the test's own)."""
    unset = ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "DEBUG", "DJANGO_ENV", "SECURE_SSL", "SECRET_KEY",
             "ALLOWED_HOSTS", "CREDENTIAL_KEYS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(MMPLATFORM_VAR_DIR=str(var_dir), **overrides)
    return env


def test_nothing_set_gives_the_development_settings(tmp_path: Path) -> None:
    code = "from django.conf import settings as s; print(s.ENVIRONMENT, s.DEBUG, s.ALLOWED_HOSTS, s.SECURE_SSL)"
    result = manage("shell", "-c", code, env=fresh_machine_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "development True ['localhost', '127.0.0.1', '[::1]'] False"


@pytest.mark.parametrize(("overrides", "error"), [
    ({"DJANGO_ENV": "production"}, "SECRET_KEY is required in production"),
    ({"DEBUG": "0"}, "SECRET_KEY is required in production"),
    ({"DJANGO_ENV": "production", "DEBUG": "1", "SECRET_KEY": "k" * 60}, "DEBUG=1 is not allowed"),
    ({"DJANGO_ENV": "production", "SECRET_KEY": "k" * 60}, "ALLOWED_HOSTS is required in production"),
    ({"DJANGO_ENV": "staging"}, "DJANGO_ENV must be one of development, production"),
])
def test_production_asked_for_is_strict(tmp_path: Path, overrides: dict[str, str], error: str) -> None:
    result = manage("check", env=fresh_machine_env(tmp_path, **overrides))
    assert result.returncode != 0
    assert error in result.stderr


def test_django_env_production_passes_check_deploy() -> None:
    env = production_env()
    del env["DEBUG"]
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={**env, "DJANGO_ENV": "production"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_rotating_keys_before_the_database_exists_says_what_to_do(tmp_path: Path) -> None:
    result = manage("rotate_credential_keys", env=fresh_machine_env(tmp_path))
    assert result.returncode == 1
    assert "run `manage.py migrate` first" in result.stderr
    assert "Traceback" not in result.stderr
