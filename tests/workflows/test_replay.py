"""Saved histories of finished orders replay against today's workflow code: a change that would
break orders in flight fails here first. Re-record with DOCKET_RECORD_HISTORIES=1 (see docs/testing.md)."""

from __future__ import annotations

from pathlib import Path

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
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    runner = CodecFreeRunner(restrictions_for(checked=checked))
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=runner)
    await replayer.replay_workflow(history)
