"""Settings from DOCKET_* variables: a variable that names no setting is told of; defaults that
follow from other settings."""

from __future__ import annotations

import pytest

from docket.settings import Settings, unknown_variables


def test_a_variable_naming_no_setting_is_told_with_the_setting_it_is_closest_to() -> None:
    environ = {
        "DOCKET_DATABSE_URL": "postgresql://db/docket",  # a typo: the default SQLite would be used
        "docket_temporal_adress": "temporal:7233",  # the names are not case-sensitive
        "DOCKET_SHINY": "1",
        "DOCKET_DATABASE_URL": "postgresql://db/docket",  # a setting
        "DOCKET_TEST_DATABASE_URL": "postgresql://db/test",  # the tests' own
        "PATH": "/usr/bin",
    }
    assert unknown_variables(environ) == [
        "DOCKET_DATABSE_URL is not a docket setting; did you mean DOCKET_DATABASE_URL?",
        "DOCKET_SHINY is not a docket setting",
        "DOCKET_TEMPORAL_ADRESS is not a docket setting; did you mean DOCKET_TEMPORAL_ADDRESS?",
    ]


@pytest.mark.parametrize(
    ("environ", "threads"),
    [
        ({}, 2),  # the embedded defaults: SQLite and the maildir
        ({"DOCKET_DATABASE_URL": "postgresql://db/docket"}, 8),
        ({"DOCKET_MAIL_TRANSPORT": "smtp"}, 8),
        ({"DOCKET_DATABASE_URL": "postgresql://db/docket", "DOCKET_ACTIVITY_THREADS": "3"}, 3),
        ({"DOCKET_ACTIVITY_THREADS": "16"}, 16),
    ],
)
def test_the_worker_runs_two_activity_threads_where_moves_wait_for_nothing_but_sqlite(
    environ: dict[str, str], threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DOCKET_DATABASE_URL", "DOCKET_MAIL_TRANSPORT", "DOCKET_ACTIVITY_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert Settings().worker_threads == threads
