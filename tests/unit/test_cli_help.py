"""`docket ... --help` as an operator reads it: what to write after each option, and what it is for."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer.main
from typer.testing import CliRunner, Result

from docket.cli import app


def commands(group: Any, path: tuple[str, ...] = ("docket",)) -> Iterator[tuple[str, Any]]:
    """Every command under `group` with its path (Typer's own click: its classes are not click's)."""
    if hasattr(group, "commands"):
        for name, command in group.commands.items():
            yield from commands(command, (*path, name))
    else:
        yield " ".join(path), group


def docket(*args: str) -> Result:
    return CliRunner().invoke(app, args, env={"COLUMNS": "160"}, prog_name="docket")


def helps(*args: str) -> str:
    result = docket(*args, "--help")
    assert result.exit_code == 0, result.output
    return result.output


def test_an_option_is_followed_by_the_name_of_what_to_write_and_a_flag_by_nothing() -> None:
    place = helps("order", "place")
    for written in ("--line  ", "SKU:QTY:PRICE", "--ship-to  ", "ADDRESS", "--json  ", "FILE", "OPERATOR"):
        assert written in place
    assert "<str>" not in place and "<bool>" not in place and "<list[str]>" not in place
    # a flag takes no value: nothing is written after it
    inbox = helps("payment", "inbox")
    assert "<bool>" not in inbox and "<bool>" not in helps() and "<bool>" not in helps("order")
    assert re.search(r"--replay\s+(\S+)", inbox).group(1) == "Process"  # type: ignore[union-attr]
    # arguments are named in capitals, in the usage line and in what is missing
    assert "docket order ship [OPTIONS] {ORDER_ID} {DELIVERY_NO}" in helps("order", "ship")
    missing = docket("order", "ship")
    assert missing.exit_code == 2 and "Missing argument 'ORDER_ID'" in missing.output


def test_every_option_and_argument_of_every_command_says_what_it_is_for() -> None:
    root = typer.main.get_command(app)
    silent = [
        f"{path} {param.opts[0]}"
        for path, command in commands(root)
        for param in command.params
        if not param.help
    ]
    assert silent == []


def test_an_argument_is_listed_by_its_name_and_what_it_is_not_by_its_python_type() -> None:
    receive = helps("stock", "receive")
    assert re.search(r"WAREHOUSE\s+The warehouse's id\.", receive)
    assert re.search(r"QUANTITY\s+Units received\.", receive)
    assert "<str>" not in receive and "<int>" not in receive
    assert re.search(r"DELIVERY_NO\s+The delivery's number", helps("order", "pack"))
    assert "docket catalogue load [OPTIONS] {FILE}" in helps("catalogue", "load")


def test_a_move_is_also_taken_by_the_name_a_refusal_gives_it() -> None:
    # refusals say `allowed from here: mark_ready`, as the API names the move
    for name in ("mark_ready", "mark-ready"):
        assert "A packed delivery is ready for dispatch." in helps("order", name)
    assert "Confirm an offline payment" in helps("order", "confirm_payment")
    assert "The whole order comes back" in helps("order", "return_goods")
    assert "Ask the gateway again" in helps("order", "retry_refund")
    order_help = helps("order")
    assert "mark_ready" not in order_help and "return_goods" not in order_help  # not listed twice
    unknown = docket("order", "mark_shipped")
    assert unknown.exit_code == 2 and "No such command 'mark_shipped'" in unknown.output


def test_a_number_that_is_not_one_or_out_of_range_is_refused_saying_what_is_taken() -> None:
    for args, said in (
        (
            ("order", "pack", "D-1", "abc"),
            "Invalid value for 'DELIVERY_NO': 'abc' is not a whole number: give one of 1 or more",
        ),
        (
            ("order", "pack", "D-1", "0"),
            "Invalid value for 'DELIVERY_NO': 0 is out of range: give one of 1 or more",
        ),
        (
            ("order", "list", "--page-size", "501"),
            "Invalid value for '--page-size': 501 is out of range: give one from 1 to 500",
        ),
        (
            ("stock", "adjust", "hamburg", "ATLAS", "x", "--ref", "r", "--note", "n"),
            "'x' is not a whole number",
        ),
    ):
        result = docket(*args)
        assert result.exit_code == 2, result.output
        assert said in " ".join(result.output.replace("│", " ").split()), result.output
