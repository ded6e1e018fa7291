"""Settings, from DOCKET_* variables. Read once, in the entry points."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class MailTransport(StrEnum):
    maildir = "maildir"
    smtp = "smtp"


class WorkflowSandbox(StrEnum):
    """How docket's workflow modules meet the SDK's sandbox (docs/operations.md)."""

    shared = "shared"  # loaded once per process and passed through: each workflow's sandbox is lighter
    checked = "checked"  # imported afresh into each workflow's sandbox, which refuses the clock, I/O


class SmtpSecurity(StrEnum):
    none = "none"
    starttls = "starttls"
    tls = "tls"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCKET_", extra="ignore")

    var_dir: Path = Path("var")
    database_url: str = Field(default="", description="SQLAlchemy async URL; default: SQLite under var/")
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_api_key: str | None = None
    task_queue: str = "docket-orders"
    activity_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="default: 2 on SQLite with the maildir, else 8 (docs/operations.md)",
    )
    workflow_cache: int = Field(
        default=1000, ge=1, le=100_000, description="workflows a worker keeps in memory (docs/operations.md)"
    )
    workflow_sandbox: WorkflowSandbox = WorkflowSandbox.shared
    workflow_id_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]*$")
    answer_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="seconds a command waits for its workflow to answer"
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    operator: str | None = None
    # Payments (docs/payments.md)
    sandbox_url: str = Field(default="http://127.0.0.1:8099", pattern=r"^https?://")
    sandbox_secret: str = Field(
        default="sandbox-secret", min_length=8, description="for `docket dev`'s sandbox"
    )
    # Mail (docs/notifications.md)
    mail_transport: MailTransport = MailTransport.maildir
    mail_from: str = Field(default="docket@localhost", pattern=r"^[^@\s]+@[^@\s]+$")
    maildir: Path | None = Field(default=None, description="default: var/mail")
    templates_dir: Path | None = Field(default=None, description="shop overrides; default: var/templates")
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_security: SmtpSecurity = SmtpSecurity.none
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(
                "DOCKET_DATABASE_URL must start with sqlite:/// or postgresql:// (postgresql+psycopg://)"
            )
        return value

    @property
    def mail_folder(self) -> Path:
        return self.maildir or self.var_dir / "mail"

    @property
    def template_overrides(self) -> Path:
        return self.templates_dir or self.var_dir / "templates"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'docket.db'}"

    @property
    def worker_threads(self) -> int:
        """Threads that run the worker's activities. On SQLite with mail into the maildir (the
        embedded defaults) a move waits for nothing but SQLite's one write lock, so threads beyond
        two only take turns at the interpreter lock, which costs CPU (docs/performance.md). Moves
        that wait on PostgreSQL or a mail server get eight."""
        if self.activity_threads is not None:
            return self.activity_threads
        local = self.database.startswith("sqlite") and self.mail_transport is MailTransport.maildir
        return 2 if local else 8


# Variables docket's own tests and benchmarks read: not settings, and not typos.
TOOLING = frozenset(
    {
        "DOCKET_TEST_DATABASE_URL",
        "DOCKET_REQUIRE_POSTGRES",
        "DOCKET_BENCH_GC_LOG",
        "DOCKET_BENCH_DIR",
        "DOCKET_RECORD_HISTORIES",
    }
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """DOCKET_* variables that name no setting, each with the setting it is closest to: a
    misspelt one (DOCKET_DATABSE_URL) would leave the default in force without a word."""
    known = [name.upper() for name in Settings.model_fields]
    said = []
    for name in sorted(n.upper() for n in environ if n.upper().startswith("DOCKET_")):
        if name.removeprefix("DOCKET_") in known or name in TOOLING:
            continue
        close = difflib.get_close_matches(name.removeprefix("DOCKET_"), known, n=1, cutoff=0.75)
        said.append(
            f"{name} is not a docket setting" + (f"; did you mean DOCKET_{close[0]}?" if close else "")
        )
    return said
