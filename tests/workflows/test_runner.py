"""docket's workflow runner skips the SDK's per-payload context questions, and nothing else: its
workflows still run in the sandbox, and a worker whose converter has a payload codec keeps the
SDK's own runner (the codec is then told each payload's context). Checked, the sandbox refuses a
workflow module's own calls to the clock; shared (as `docket worker` runs by default), the module
is passed through and not checked, which is why the tests run checked."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import sys
import uuid
from collections.abc import Sequence
from types import ModuleType

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError
from temporalio.converter import PayloadCodec
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError, SandboxedWorkflowRunner

import docket.workflows
from docket.worker import CodecFreeRunner, runner_for, share_workflow_code
from tests.workflows.reads_the_clock import ReadsTheClock


class Plain(PayloadCodec):
    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


async def run_reads_the_clock(client: Client, checked: bool) -> str:
    queue = f"runner-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ReadsTheClock],
        workflow_runner=runner_for(client, checked=checked, packages=["tests.workflows"]),
        workflow_failure_exception_types=[RestrictedWorkflowAccessError],
    ):
        return await client.execute_workflow(ReadsTheClock.run, id=queue, task_queue=queue)


async def test_a_workflow_reading_the_clock_is_refused_by_the_checked_sandbox(
    temporal_env: WorkflowEnvironment,
) -> None:
    with pytest.raises(WorkflowFailureError) as failed:
        await run_reads_the_clock(temporal_env.client, checked=True)
    assert "datetime.datetime.now" in str(failed.value.cause)


async def test_the_shared_sandbox_leaves_a_workflow_module_s_own_calls_unchecked(
    temporal_env: WorkflowEnvironment,
) -> None:
    read = await run_reads_the_clock(temporal_env.client, checked=False)
    assert dt.datetime.fromisoformat(read).year >= 2024  # the real clock, read where replay would differ


def test_docket_s_converter_gets_the_codec_free_runner_and_one_with_a_codec_does_not(
    temporal_env: WorkflowEnvironment,
) -> None:
    assert isinstance(runner_for(temporal_env.client), CodecFreeRunner)
    config = temporal_env.client.config()
    config["data_converter"] = dataclasses.replace(config["data_converter"], payload_codec=Plain())
    assert type(runner_for(Client(**config))) is SandboxedWorkflowRunner  # the codec is told its context


def load_afresh(name: str, path: Sequence[str]) -> ModuleType:
    """The module as the sandbox imports it for each workflow: found on the import path, executed
    into a module of its own."""
    spec = next(s for f in sys.meta_path if (s := f.find_spec(name, path)) is not None)
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_import_of_a_workflow_module_has_its_own_classes_over_one_copy_of_their_code() -> None:
    share_workflow_code()
    first, second = (load_afresh("docket.workflows.order", docket.workflows.__path__) for _ in range(2))
    assert first.OrderWorkflow is not second.OrderWorkflow  # each workflow's own class and state
    assert first.OrderWorkflow.run.__code__ is second.OrderWorkflow.run.__code__  # one code, read once
