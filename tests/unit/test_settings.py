"""Settings from DOCKET_* variables: a variable that names no setting is told of."""

from __future__ import annotations

from docket.settings import unknown_variables


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
