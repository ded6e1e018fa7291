"""The `docket` command as an operator uses it, against a running worker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session
from temporalio.service import RPCError

from docket.store import queries
from docket.store.engine import make_engine
from docket.store.migrate import HEAD, REVISIONS, alembic_config, upgrade
from docket.store.tables import Stock
from docket.workflows.order import workflow_id
from tests.conftest import Shop, eventually, process_env, run_cli
from tests.orders import place

ADA = "Ada|1 Main St|Berlin|10115|DE"


async def docket(
    shop: Shop, engine: Engine, *args: str, operator: str | None = "alice"
) -> tuple[int, str, str]:
    env = process_env(shop, engine)
    if operator:
        env["DOCKET_OPERATOR"] = operator
    return await run_cli(env, *args)


async def test_an_operator_places_confirms_and_reads_an_order_from_the_command_line(
    shop: Shop, sqlite_engine: Engine
) -> None:
    code, out, err = await docket(
        shop,
        sqlite_engine,
        "order",
        "place",
        "--order-id",
        "cli-1",
        "--shop",
        "alpha",
        "--customer",
        "c1",
        "--line",
        "WIDGET:2:19.90",
        "--line",
        "GADGET:3:5.00",
        "--ship-to",
        ADA,
    )
    assert code == 0, err
    assert "waiting_confirmation" in out and "D3" in out
    assert "alpha · customer c1 · 54.80 EUR · waiting_confirmation" in out

    code, out, err = await docket(shop, sqlite_engine, "order", "confirm", "cli-1", "--as", "conny")
    assert code == 0, err
    assert "in_progress" in out

    code, out, _ = await docket(shop, sqlite_engine, "order", "show", "cli-1")
    assert "conny" in out and "reserve: new → reserved" in out
    assert "confirm_payment: waiting_confirmation → in_progress" in out  # a move reads as one phrase

    # the warehouse's work list: delivery 1 to pack, delivery 2 (a back order) waiting for stock
    code, out, _ = await docket(shop, sqlite_engine, "order", "deliveries", "--warehouse", "north")
    assert code == 0 and "(page 1, 2 of 2)" in out
    rows = [line.replace("│", " ").split()[:2] for line in out.splitlines() if "cli-1" in line]
    assert rows == [["cli-1", "1"], ["cli-1", "2"]]
    assert "allocated" in out and "wait_inventory" in out
    code, out, _ = await docket(shop, sqlite_engine, "order", "deliveries", "--state", "packing")
    assert code == 0 and "no delivery found" in out

    narrow = process_env(shop, sqlite_engine) | {"DOCKET_OPERATOR": "alice", "COLUMNS": "80"}
    for args in (
        ("order", "show", "cli-1"),
        ("order", "list"),
        ("order", "deliveries"),
    ):  # a narrow terminal cuts nothing short
        code, out, _ = await run_cli(narrow, *args)
        assert code == 0 and "…" not in out and "cli-1" in out
    too_many = ("--shop", "alpha", "--customer", "c1", "--line", "WIDGET:900:1.00", "--ship-to", ADA)
    code, _, err = await run_cli(narrow, "order", "place", "--order-id", "cli-refused", *too_many)
    assert code == 5 and "WIDGET: 900 ordered, 8 available" in err
    code, out, _ = await run_cli(narrow, "order", "show", "cli-refused")  # the order's line: terminal-wide
    assert code == 0 and "alpha · customer c1 · 900.00 EUR · rejected · WIDGET: 900 ordered, 8" in out

    code, out, _ = await docket(
        shop, sqlite_engine, "stock", "receive", "north", "GADGET", "1", "--ref", "dn-1"
    )
    assert code == 0 and "woke order cli-1 delivery 2" in out

    code, out, _ = await docket(shop, sqlite_engine, "stock", "verify")
    assert code == 0 and "ledger OK" in out


@pytest.mark.parametrize("shop", [{"return_days": 30}], indirect=True)
async def test_an_order_is_shipped_returned_and_shelved_and_another_cancelled_and_refunded_by_hand(
    shop: Shop, sqlite_engine: Engine
) -> None:
    async def cli(*args: str, operator: str = "alice") -> str:
        code, out, err = await docket(shop, sqlite_engine, *args, operator=operator)
        assert code == 0, err
        return out

    one = ("--shop", "alpha", "--customer", "c1", "--line", "WIDGET:1:19.90", "--ship-to", ADA)
    await cli("order", "place", "--order-id", "cli-r", *one)
    await cli("order", "confirm", "cli-r", operator="conny")
    for step, state in (
        ("pack", "packing"),
        ("ready", "ready"),
        ("ship", "shipping"),
        ("deliver", "shipped"),
    ):
        assert f"│ {state} " in await cli("order", step, "cli-r", "1")
    assert "· completed" in await cli("order", "show", "cli-r")
    returned = await cli("order", "return", "cli-r", "--note", "did not fit", operator="conny")
    assert "· returned_waiting_payment" in returned  # the offline payment is owed back, by hand
    shelved = await cli(
        "stock", "return", "north", "WIDGET", "1", "--ref", "rma-1", "--order", "cli-r", "--note", "unopened"
    )
    assert "north/WIDGET: on hand 10, reserved 0" in shelved  # the one sold is back on the shelf
    shown = await cli("order", "show", "cli-r")
    assert "return_goods: shipped → returned" in shown and "returned_waiting_payment" in shown
    assert (
        "did not fit; gateway: refund by hand, then record it" in shown
    )  # the clerk's note, then the gateway's
    shelved_row = r"│ returns +│.*\n│ [0-9: -]+ │ north/WIDGET +│ return +│ +\+1 +│ +\+0 +│ unopened"
    assert re.search(shelved_row, shown)  # the shelving under returns, with its note

    await cli("order", "place", "--order-id", "cli-c", *one)
    await cli("order", "confirm", "cli-c", operator="conny")
    cancelled = await cli("order", "cancel", "cli-c", "--reason", "customer changed her mind")
    assert "· cancelled_waiting_payment" in cancelled  # the transfer is owed back, by hand
    code, _, err = await docket(shop, sqlite_engine, "order", "refund-retry", "cli-c")
    assert code == 5 and "waits for a refund made by hand" in err and "record the refund" in err, err
    assert "refund retried" not in await cli("order", "show", "cli-c")  # nothing asked, nothing written
    refunded = await cli("order", "refund", "cli-c", "--note", "sent back by transfer", operator="conny")
    assert "· cancelled" in refunded and "waiting_payment" not in refunded
    code, out, _ = await docket(shop, sqlite_engine, "stock", "verify")
    assert code == 0 and "ledger OK" in out


async def test_an_order_placed_without_an_id_says_the_id_that_repeats_it_safely(
    shop: Shop, sqlite_engine: Engine
) -> None:
    args = ("order", "place", "--shop", "alpha", "--customer", "c1", "--line", "WIDGET:1:19.90")
    args += ("--ship-to", ADA)
    code, out, err = await docket(shop, sqlite_engine, *args)
    assert code == 0, err
    said = re.search(r"order id (o-[0-9a-f]{12}) \(to repeat this command safely: --order-id \1\)", err)
    assert said is not None, err

    code, again, err = await docket(shop, sqlite_engine, *args, "--order-id", said[1])
    assert code == 0 and again == out, err  # the same order, not a second one
    code, listed, _ = await docket(shop, sqlite_engine, "order", "list", "--customer", "c1")
    assert listed.count(said[1]) == 1 and "(page 1, 1 of 1)" in listed


async def test_orders_are_listed_by_the_dates_they_were_placed_and_a_date_is_explained(
    shop: Shop, sqlite_engine: Engine
) -> None:
    args = ("order", "place", "--order-id", "cli-d", "--shop", "alpha", "--customer", "c1")
    code, _, err = await docket(shop, sqlite_engine, *args, "--line", "WIDGET:1:19.90", "--ship-to", ADA)
    assert code == 0, err

    code, _, err = await docket(shop, sqlite_engine, "order", "list", "--since", "yesterday")
    assert code == 2 and "'yesterday' is not a date or time: give an ISO date or time, such as" in err
    code, listed, _ = await docket(
        shop, sqlite_engine, "order", "list", "--since", "2000-01-01", "--until", "2000-01-02"
    )
    assert code == 0 and "cli-d" not in listed
    code, listed, _ = await docket(shop, sqlite_engine, "order", "list", "--since", "2000-01-01T00:00+01:00")
    assert code == 0 and "cli-d" in listed


async def test_a_refused_command_prints_one_red_line_and_exits_non_zero(
    shop: Shop, sqlite_engine: Engine
) -> None:
    code, _, err = await docket(shop, sqlite_engine, "order", "pack", "nope", "1")
    assert (code, err.strip()) == (3, "error: unknown order nope")

    code, _, err = await docket(shop, sqlite_engine, "order", "list", operator=None)
    assert code == 2 and "say who is acting: --as OPERATOR or DOCKET_OPERATOR" in err

    # a filter naming what docket does not know is refused, not answered with an empty list
    for args, said in (
        (("order", "list", "--customer", "nobody"), "error: unknown customer nobody"),
        (("mail", "list", "--order", "nope"), "error: unknown order nope"),
        (("stock", "show", "--sku", "NOPE"), "error: unknown SKU NOPE"),
    ):
        code, _, err = await docket(shop, sqlite_engine, *args)
        assert (code, err.strip()) == (3, said)
    code, out, _ = await docket(shop, sqlite_engine, "order", "list", "--customer", "c1")
    assert (code, out.strip()) == (0, "no order found")  # a customer known, with no order yet

    code, _, err = await docket(
        shop,
        sqlite_engine,
        "order",
        "place",
        "--shop",
        "alpha",
        "--customer",
        "c1",
        "--line",
        "WIDGET:two:1",
        "--ship-to",
        ADA,
    )
    assert code == 2 and "write SKU:QUANTITY:UNIT_PRICE" in err
    code, _, err = await docket(shop, sqlite_engine, "order", "list", "--state", "shipped")
    assert code == 2 and "'shipped' is not an order state: give one of pending, waiting_confirmation" in err

    code, _, err = await docket(
        shop,
        sqlite_engine,
        "stock",
        "adjust",
        "north",
        "WIDGET",
        "5",
        "--ref",
        "c1",
        "--note",
        "found",
        operator="carol",
    )
    assert code == 4 and "may not receive and adjust stock" in err


async def test_stock_is_taken_off_with_a_negative_count_written_as_it_is_said(
    shop: Shop, sqlite_engine: Engine
) -> None:
    args = ("stock", "adjust", "north", "WIDGET", "-3", "--ref", "count-1", "--note", "three broken")
    code, out, err = await docket(shop, sqlite_engine, *args)
    assert code == 0, err
    assert "north/WIDGET: on hand 7, reserved 0" in out

    code, _, err = await docket(
        shop, sqlite_engine, "stock", "receive", "north", "WIDGET", "-3", "--ref", "r"
    )
    assert code == 2 and "quantity: Input should be greater than 0" in err

    # an option the command does not take is refused by name, not read as the warehouse
    mistaken = ("--warehouse", "north", "--sku", "WIDGET", "-3", "--ref", "count-2", "--note", "-3 torn")
    code, _, err = await docket(shop, sqlite_engine, "stock", "adjust", *mistaken)
    assert code == 2 and "No such option: --warehouse" in err and "--note, --ref" in err
    meant = ("north", "WIDGET", "-1", "--ref", "count-3", "--note", "-1 torn")
    code, out, err = await docket(shop, sqlite_engine, "stock", "adjust", *meant)
    assert code == 0 and "north/WIDGET: on hand 6, reserved 0" in out, err


async def test_the_example_catalogue_loads_and_prints_each_operators_token_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    example = Path(__file__).parents[2] / "docs" / "catalogue.example.json"
    env = {**os.environ, "DOCKET_DATABASE_URL": f"sqlite:///{tmp_path / 'docket.db'}"}
    for args in (("db", "upgrade"), ("catalogue", "load", str(example))):
        code, out, err = await run_cli(env, *args)
        assert code == 0, err
    tokens = json.loads(out)["api_tokens"]
    assert set(tokens) == {"root", "hanna", "otto", "cleo", "paul", "conrad", "web"}
    assert all(len(token) >= 32 for token in tokens.values())


async def test_a_catalogue_is_loaded_again_with_changes_and_a_lost_token_is_replaced(tmp_path) -> None:  # type: ignore[no-untyped-def]
    example = json.loads((Path(__file__).parents[2] / "docs" / "catalogue.example.json").read_text())
    file = tmp_path / "catalogue.json"
    file.write_text(json.dumps(example))
    env = {**os.environ, "DOCKET_DATABASE_URL": f"sqlite:///{tmp_path / 'docket.db'}"}
    for args in (("db", "upgrade"), ("catalogue", "load", str(file))):
        assert (await run_cli(env, *args))[0] == 0

    code, out, err = await run_cli(env, "catalogue", "load", str(file))
    assert code == 0, err
    assert "nothing to change: the store already holds this catalogue" in err
    assert json.loads(out) == {"created": {}, "changed": {}, "api_tokens": {}}

    example["products"].append({"sku": "POSTER", "name": "Harbour poster"})
    example["customers"][0]["email"] = "grace@hopper.test"
    example["operators"].append(
        {"operator_id": "nina", "name": "Nina", "roles": ["call_centre"], "shops": ["harbour"]}
    )
    file.write_text(json.dumps(example))
    code, out, err = await run_cli(env, "catalogue", "load", str(file))
    assert code == 0, err
    loaded = json.loads(out)
    assert loaded["created"] == {"products": ["POSTER"], "operators": ["nina"]}
    assert loaded["changed"] == {"customers": ["grace"]}
    assert list(loaded["api_tokens"]) == ["nina"]  # the others keep the tokens they have
    assert "created products: 1, operators: 1; changed customers: 1" in err

    code, out, err = await run_cli(env, "catalogue", "token", "hanna")
    assert code == 0, err
    token = json.loads(out)["api_tokens"]["hanna"]
    engine = make_engine(env["DOCKET_DATABASE_URL"])
    with Session(engine) as session:
        hanna = queries.operator_by_token(session, token)
    engine.dispose()
    assert hanna is not None and hanna.operator_id == "hanna"

    code, _, err = await run_cli(env, "catalogue", "token", "hana")
    assert code == 3 and "unknown operator hana; operators: cleo, conrad, hanna, nina" in err


async def test_a_customer_is_registered_and_read_from_the_command_line(
    shop: Shop, sqlite_engine: Engine
) -> None:
    args = ("customer", "save", "new-1", "--name", "Grace Buyer", "--email", "grace@example.test")
    code, out, err = await docket(shop, sqlite_engine, *args, operator="carol")
    assert code == 0, err
    assert "new-1: Grace Buyer <grace@example.test> (created)" in out
    code, out, _ = await docket(shop, sqlite_engine, *args, operator="carol")
    assert "(unchanged)" in out

    cmd = place("o-new", ("WIDGET", 1)).model_copy(update={"customer_id": "new-1"})
    await shop.docket.place_order(await shop.op("carol"), cmd)
    code, out, err = await docket(shop, sqlite_engine, "customer", "show", "new-1", operator="pat")
    assert code == 0 and "new-1: Grace Buyer <grace@example.test>" in out, err
    assert re.search(r"o-new +│ alpha +│ new-1 +│ .* waiting_confirmation", out)  # their latest orders
    assert re.search(r"│ carol +│ created +│ Grace Buyer +│ grace@example.test", out)  # who registered them
    code, out, err = await docket(shop, sqlite_engine, "customer", "find", "grace", operator="pat")
    assert code == 0, err
    assert "customers (page 1, 1 of 1)" in out and re.search(
        r"new-1 +│ Grace Buyer +│ grace@example.test", out
    )

    # what people typed is printed as typed: no markup or emoji codes read in it
    odd = "Eve [/x] :x: [bold]Bracket"
    code, out, err = await docket(
        shop,
        sqlite_engine,
        "customer",
        "save",
        "new-3",
        "--name",
        odd,
        "--email",
        "eve@example.test",
        operator="carol",
    )
    assert code == 0 and f"new-3: {odd} <eve@example.test> (created)" in out, err
    code, out, err = await docket(shop, sqlite_engine, "customer", "show", "new-3", operator="pat")
    assert code == 0 and f"│ {odd} │" in out, err
    code, _, err = await docket(shop, sqlite_engine, "customer", "show", "new-[/x]", operator="pat")
    assert code == 3 and "unknown customer new-[/x]" in err  # an error repeats the input as given

    bad = ("customer", "save", "new-2", "--name", "X", "--email", "grace at example")
    code, _, err = await docket(shop, sqlite_engine, *bad, operator="carol")
    assert code == 2 and "email: not an e-mail address: write it as name@example.com" in err
    code, _, err = await docket(shop, sqlite_engine, *args, operator="pat")
    assert code == 4 and "may not register and change customers" in err


async def test_a_catalogue_naming_an_unknown_time_zone_or_gateway_is_refused_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    example = json.loads((Path(__file__).parents[2] / "docs" / "catalogue.example.json").read_text())
    example["shops"][0]["timezone"] = "Europe/Atlantis"
    example["shops"][1]["gateway"] = "stripe"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(example))
    env = {**os.environ, "DOCKET_DATABASE_URL": f"sqlite:///{tmp_path / 'docket.db'}"}
    assert (await run_cli(env, "db", "upgrade"))[0] == 0

    code, out, err = await run_cli(env, "catalogue", "load", str(bad))

    assert code == 2, out
    said = " ".join(err.split())  # the terminal may wrap it
    assert "shops.0.timezone: unknown time zone 'Europe/Atlantis'; use an IANA name" in said
    assert "shops.1.gateway: unknown gateway 'stripe'; docket's gateways: offline, sandbox" in said
    assert "api_tokens" not in out  # nothing was loaded


async def test_a_file_that_cannot_be_read_is_named_with_the_reason(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DOCKET_DATABASE_URL": f"sqlite:///{tmp_path / 'docket.db'}", "DOCKET_OPERATOR": "x"}
    utf16 = tmp_path / "order.json"
    utf16.write_text('{"order_id": "o-1"}', encoding="utf-16")
    for args, said in (
        (
            ("catalogue", "load", str(tmp_path / "nope.json")),
            f"cannot read {tmp_path / 'nope.json'}: No such file",
        ),
        (("catalogue", "load", str(tmp_path)), f"cannot read {tmp_path}: Is a directory"),
        (("order", "place", "--json", str(utf16)), f"{utf16} is not UTF-8 text"),
        (
            ("order", "place", "--json", str(utf16), "--shop", "alpha"),
            "--json gives the whole order: leave out --shop",
        ),
    ):
        code, _, err = await run_cli(env, *args)
        assert code == 2 and said in " ".join(err.split()), (args, err)
        assert "Traceback" not in err
    # a misspelt setting is told of, and the command goes on
    code, _, err = await run_cli(env | {"DOCKET_DATABSE_URL": "postgresql://elsewhere/db"}, "db", "upgrade")
    assert code == 0 and (
        "warning: DOCKET_DATABSE_URL is not a docket setting; did you mean DOCKET_DATABASE_URL?"
        in " ".join(err.split())
    )


async def test_a_store_that_is_missing_or_not_migrated_is_named_with_the_command_that_fixes_it(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    example = Path(__file__).parents[2] / "docs" / "catalogue.example.json"
    store = tmp_path / "var" / "docket.db"
    env = {**os.environ, "DOCKET_DATABASE_URL": f"sqlite:///{store}", "DOCKET_OPERATOR": "hanna"}

    for args in (("catalogue", "load", str(example)), ("order", "list"), ("worker",)):
        code, _, err = await run_cli(env, *args)
        assert code == 1, (args, err)
        assert f"no docket store at {store}: create it with `docket db upgrade`" in " ".join(err.split())
        assert "Traceback" not in err
    assert not store.exists()  # asking did not leave an empty file behind

    store.parent.mkdir()
    engine = make_engine(f"sqlite:///{store}")
    upgrade(engine, REVISIONS[-2])  # a store the previous docket release left
    engine.dispose()
    code, out, err = await run_cli(env, "catalogue", "load", str(example))
    assert code == 1 and "api_tokens" not in out
    said = " ".join(err.split())
    assert f"is at schema revision {REVISIONS[-2]}, this docket needs {HEAD}" in said
    assert "apply the migrations with `docket db upgrade`" in said

    assert (await run_cli(env, "db", "upgrade"))[0] == 0
    code, out, err = await run_cli(env, "catalogue", "load", str(example))
    assert code == 0 and "api_tokens" in out, err


async def test_a_database_that_cannot_be_reached_is_named_without_its_password() -> None:
    env = {
        **os.environ,
        "DOCKET_DATABASE_URL": "postgresql://clerk:s3cret@127.0.0.1:1/docket",
        "DOCKET_OPERATOR": "hanna",
    }
    for args in (("order", "list"), ("db", "upgrade"), ("worker",)):
        code, _, err = await run_cli(env, *args)
        said = " ".join(err.split())
        assert code == 1, (args, err)
        assert "cannot reach the database postgresql+psycopg://clerk:***@127.0.0.1:1/docket" in said
        assert "Connection refused" in said and "s3cret" not in said and "Traceback" not in err


async def test_a_bad_setting_is_named_as_it_is_set_with_what_is_allowed() -> None:
    env = {
        **os.environ,
        "DOCKET_WORKFLOW_CACHE": "0",
        "DOCKET_API_PORT": "eighty",
        "DOCKET_OPERATOR": "hanna",
    }
    for args in (("order", "list"), ("worker",)):
        code, _, err = await run_cli(env, *args)
        said = " ".join(err.split())
        assert code == 2, (args, err)
        assert "bad settings: DOCKET_WORKFLOW_CACHE: Input should be greater than or equal to 1" in said
        assert "DOCKET_API_PORT: Input should be a valid integer" in said


def test_the_schema_revision_docket_needs_is_alembics_head() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert [HEAD] == scripts.get_heads()
    assert list(REVISIONS) == sorted(s.revision for s in scripts.walk_revisions())


async def test_verify_exits_6_and_names_the_counter_that_disagrees_with_the_ledger(
    shop: Shop, sqlite_engine: Engine
) -> None:

    with shop.sessions.begin() as session:  # someone edits a counter behind the ledger's back
        session.execute(update(Stock).where(Stock.sku == "GADGET").values(on_hand=7))

    code, out, _ = await docket(shop, sqlite_engine, "stock", "verify")

    assert code == 6
    assert "ledger BROKEN" in out and "north/GADGET" in out and "on hand 7" in out


async def test_an_operator_lists_and_reads_the_mail_of_an_order(shop: Shop, sqlite_engine: Engine) -> None:
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("cli-m", ("WIDGET", 1)))

    async def sent() -> bool:
        page = await shop.docket.list_mail(alice, order_id="cli-m")
        return page.total == 3 and all(m.state == "sent" for m in page.mails)

    await eventually(sent)
    code, out, err = await docket(shop, sqlite_engine, "mail", "list", "--order", "cli-m")
    assert code == 0, err
    assert "(customer)" in out and "order_received" in out and "new_order" in out and "sent, 1 try" in out
    narrow = process_env(shop, sqlite_engine) | {"DOCKET_OPERATOR": "alice", "COLUMNS": "80"}
    code, out, _ = await run_cli(narrow, "mail", "list", "--order", "cli-m")
    header = out.splitlines()[2]
    assert code == 0 and "state" in header and "error" not in header  # no error: no empty column
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) <= 3 * 3  # three mails, at most three lines each on 80 columns (a cc wraps)
    assert "order_awaiting_confirmation" in out and "sent, 1 try" in out  # whole, never folded

    page = await shop.docket.list_mail(alice, order_id="cli-m", recipient="ada@example.test")
    code, out, err = await docket(shop, sqlite_engine, "mail", "show", str(page.mails[0].outbox_id))
    assert code == 0, err
    assert "Your order cli-m at Alpha" in out and "1 x Widget" in out

    code, out, err = await docket(shop, sqlite_engine, "mail", "show", "424242")
    assert code == 3 and "unknown mail 424242" in err
    code, out, err = await docket(shop, sqlite_engine, "mail", "retry")
    assert code == 2 and "their ids (docket mail list), or --order ID" in " ".join(err.split())


async def test_reading_orders_stock_and_mail_needs_no_temporal_and_a_move_says_it_cannot_reach_it(
    shop: Shop, sqlite_engine: Engine
) -> None:
    await shop.docket.place_order(await shop.op("alice"), place("o-1", ("WIDGET", 1)))
    env = process_env(shop, sqlite_engine) | {
        "DOCKET_OPERATOR": "alice",
        "DOCKET_TEMPORAL_ADDRESS": "127.0.0.1:1",
    }

    for args in (("order", "show", "o-1"), ("order", "list"), ("stock", "show"), ("mail", "list")):
        code, _, err = await run_cli(env, *args)
        assert code == 0, (args, err)
    assert "o-1" in (await run_cli(env, "order", "list"))[1]

    code, _, err = await run_cli(env, "order", "confirm", "o-1")
    assert code == 1
    assert "cannot reach Temporal at 127.0.0.1:1" in err


async def test_ctrl_c_while_waiting_for_an_answer_says_what_may_still_happen(
    shop: Shop, sqlite_engine: Engine
) -> None:
    """No worker takes the order's queue; the operator gives up with Ctrl-C and is told that what
    was sent may still be carried out (exit 130), not shown a traceback."""
    env = {
        "COLUMNS": "200",
        **process_env(shop, sqlite_engine),
        "DOCKET_OPERATOR": "alice",
        "DOCKET_TASK_QUEUE": f"{shop.task_queue}-nobody",
    }
    args = ("order", "place", "--order-id", "cli-wait", "--shop", "alpha", "--customer", "c1")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "docket.cli",
        *args,
        "--line",
        "WIDGET:1:19.90",
        "--ship-to",
        ADA,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal gives it
    )
    handle = shop.client.get_workflow_handle(workflow_id("cli-wait", shop.docket.workflow_id_prefix))

    async def sent() -> bool:  # the order's workflow exists: the command waits for its answer
        try:
            await handle.describe()
        except RPCError:
            return False
        return True

    await eventually(sent)
    process.send_signal(signal.SIGINT)
    _, err = await process.communicate()
    assert process.returncode == 130, err
    assert (
        "interrupted before the answer came: what was already sent may still be carried out" in err.decode()
    )
    assert "Traceback" not in err.decode()
