"""Saved histories of finished orders replay against today's workflow code: a change that would
break orders in flight fails here first. Re-record with DOCKET_RECORD_HISTORIES=1 (see docs/testing.md)."""

from __future__ import annotations
import __future__

import copy
import sys
from pathlib import Path
from types import ModuleType

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from docket.worker import WORKFLOWS, CodecFreeRunner, restrictions_for

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_the_three_kinds_of_finished_order_are_kept_with_and_without_mail_delivery() -> None:
    kinds = {"completed_order", "cancelled_order", "back_ordered_order"}
    # *_before_mail: orders placed before the mail loop existed (workflow.patched keeps them replaying)
    assert {h.stem for h in HISTORIES} >= kinds | {f"{kind}_before_mail" for kind in kinds}


def test_an_order_settled_by_gateway_callbacks_is_kept_with_and_without_the_local_activity() -> None:
    # *_before_local_callback: its callbacks were applied by ordinary activities (workflow.patched)
    kind = "refused_after_review_order"
    assert {h.stem for h in HISTORIES} >= {kind, f"{kind}_before_local_callback"}


# A module imported into a sandbox after its start is executed there afresh, for each workflow.
@pytest.mark.filterwarnings("error:Module .* was imported after initial workflow load")
@pytest.mark.parametrize("checked", [True, False], ids=["checked", "shared"])
@pytest.mark.parametrize("path", HISTORIES, ids=[h.stem for h in HISTORIES])
async def test_a_saved_history_replays_without_nondeterminism(path: Path, checked: bool) -> None:
    """Checked: the workflow modules imported into the sandbox, which refuses the clock, randomness
    and I/O in them. Shared: passed through, as `docket worker` runs them."""
    await replayer(checked).replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))


def replayer(checked: bool) -> Replayer:
    runner = CodecFreeRunner(restrictions_for(checked=checked))
    return Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=runner)


async def test_replaying_every_saved_history_shared_writes_nothing_into_the_shared_modules() -> None:
    """Shared, every workflow a worker keeps runs on one copy of `docket.workflows.*` and
    `docket.models.*`: a module-level value or class attribute one workflow wrote, the others
    would read. Replayed in this process, every saved history runs on the modules of this process."""
    modules = [name for name in sys.modules if name.startswith(SHARED)]  # one imported later is new
    before = shared_state(modules)
    shared = replayer(checked=False)
    for path in HISTORIES:
        await shared.replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))
    after = shared_state(modules)
    assert len(before) > 20  # what is compared: not nothing
    changed = {name for name in before.keys() | after.keys() if before.get(name, ()) != after.get(name, ())}
    assert changed == set()


def shared_state(modules: list[str]) -> dict[str, object]:
    """What every value these modules and their classes hold is, down to plain values."""
    state: dict[str, object] = {}
    seen: set[int] = set()
    for name in modules:
        for key, value in vars(sys.modules[name]).items():
            if isinstance(value, type) and value.__module__ == name:
                for attribute, member in vars(value).items():
                    if _plain(attribute, member):
                        state[f"{name}.{key}.{attribute}"] = _snapshot(member, seen)
            elif _plain(key, value):
                state[f"{name}.{key}"] = _snapshot(value, seen)
    return state


SHARED = ("docket.workflows", "docket.models")


def _plain(name: str, value: object) -> bool:
    """A value, not code: no function, class, module, descriptor, future feature or ABC cache."""
    code = callable(value) or isinstance(value, property | classmethod | staticmethod | ModuleType)
    return not (
        name.startswith("__") or name == "_abc_impl" or code or isinstance(value, __future__._Feature)
    )


def _snapshot(value: object, seen: set[int]) -> object:
    """A copy to compare later: containers and objects without an equality of their own (a
    lifecycle, its `transitions` machine) by their contents, each object once."""
    if id(value) in seen:
        return ("seen", id(value))
    if isinstance(value, dict):
        seen.add(id(value))
        return {key: _snapshot(item, seen) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        seen.add(id(value))
        return (type(value), [_snapshot(item, seen) for item in value])
    if callable(value) or isinstance(value, ModuleType):
        return value  # compared as itself
    if type(value).__eq__ is object.__eq__ and hasattr(value, "__dict__"):
        seen.add(id(value))
        return (type(value), _snapshot(vars(value), seen))
    return copy.deepcopy(value)
