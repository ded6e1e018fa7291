"""Builds the Temporal worker: wiring only."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from importlib.util import spec_from_file_location
from types import CodeType
from typing import Any, ClassVar

from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import Client
from temporalio.converter import SerializationContext, StorageDriverStoreContext
from temporalio.worker import (
    Worker,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.workflow import Info

from docket.activities.inline import on_loop_where_local
from docket.activities.mail import MailActivities, Mailer
from docket.activities.orders import OrderActivities
from docket.adapters.mail import MaildirTransport, MailTransport
from docket.adapters.payments import PaymentGateway
from docket.rendering import Renderer
from docket.store.engine import SessionFactory
from docket.workflows.mail import MailWorkflow
from docket.workflows.order import ACTIVITY_OPTIONS, OrderWorkflow
from docket.workflows.stock import StockWorkflow

WORKFLOWS = [OrderWorkflow, StockWorkflow, MailWorkflow]
# A worker asked to stop lets the activities it holds finish and report for as long as a move's
# activity may take anyway, before it cancels them.
SHUTDOWN_GRACE = ACTIVITY_OPTIONS["start_to_close_timeout"]
# Activities the worker takes at once: more than the threads that run them. The server hands a
# workflow's next activity to the worker with the workflow task's answer (eager execution) only if
# a slot is free at that moment, and the pollers hold slots while they wait; otherwise the activity
# takes a round trip through the server's task queue. With one slot per thread almost every move
# took that trip (17 of 606 activities went eagerly in bench.orders); with 32, all of them go
# eagerly and wait their few milliseconds for a thread here instead, whether the threads are two
# or eight (docs/performance.md). More threads get four slots each.
MIN_SLOTS = 32
SLOTS_PER_THREAD = 4


class CodecFreeRunner(WorkflowRunner):
    """The SDK's sandboxed runner, for a data converter with no payload codec and no external
    storage (docket's), without one cost that only those two need.

    For every payload sequence of every activation and completion, six passes in all, the SDK
    asks the workflow which serialization context and storage context the payload belongs to, so
    that a codec or a storage driver can be told. A sandboxed workflow answers by compiling and
    running a snippet of source inside its sandbox each time: about a sixth of the worker's CPU
    under gateway callbacks (docs/performance.md). Without a codec or storage the answers are
    never used, so here they are given without asking: no context. The workflow itself still
    runs in the sandbox, and its payloads are converted inside it as before."""

    def __init__(self, restrictions: SandboxRestrictions = SandboxRestrictions.default) -> None:
        self._sandboxed = SandboxedWorkflowRunner(restrictions=restrictions)

    def prepare_workflow(self, defn: Any) -> None:
        self._sandboxed.prepare_workflow(defn)

    def set_worker_level_failure_exception_types(self, types: Sequence[type[BaseException]]) -> None:
        self._sandboxed.set_worker_level_failure_exception_types(types)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _ContextFree(self._sandboxed.create_instance(det))


class _ContextFree(WorkflowInstance):
    def __init__(self, sandboxed: WorkflowInstance) -> None:
        self._sandboxed = sandboxed

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        return self._sandboxed.activate(act)

    def get_serialization_context(self, command_info: object) -> SerializationContext | None:
        return None

    def get_external_store_context(self, command_info: object) -> StorageDriverStoreContext:
        return StorageDriverStoreContext(target=None)

    def get_info(self) -> Info:
        return self._sandboxed.get_info()

    def get_thread_id(self) -> int | None:
        return self._sandboxed.get_thread_id()


WORKFLOW_PACKAGE = "docket.workflows"
MODELS_PACKAGE = "docket.models"


class _SharedCodeLoader(SourceFileLoader):
    """Reads a workflow module's code once per process. In a checked sandbox (`restrictions_for`)
    every workflow imports its module afresh, and each import unmarshalled its own copy of every
    function's code: 42 KB of the 86 KB a sandboxed order workflow holds, for each workflow in the
    worker's cache. Code objects are immutable; the module, its classes and functions, and the
    restrictions the sandbox applies to them, are still each workflow's own."""

    _code: ClassVar[dict[str, CodeType | None]] = {}

    def get_code(self, fullname: str) -> CodeType | None:
        if self.path not in self._code:
            self._code[self.path] = super().get_code(fullname)
        return self._code[self.path]


class _WorkflowCodeFinder(MetaPathFinder):
    """Finds the modules of `packages` (each a package or a module, as the sandbox's pass-through
    names are) where Python would, to load them with `_SharedCodeLoader`."""

    def __init__(self) -> None:
        self.packages: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: object = None
    ) -> ModuleSpec | None:
        if not any(fullname == p or fullname.startswith(f"{p}.") for p in self.packages):
            return None
        found = PathFinder.find_spec(fullname, path)
        if found is None or not isinstance(found.loader, SourceFileLoader) or found.origin is None:
            return found
        return spec_from_file_location(
            fullname,
            found.origin,
            loader=_SharedCodeLoader(fullname, found.origin),
            submodule_search_locations=found.submodule_search_locations,  # a package stays one
        )


def share_workflow_code(*packages: str) -> None:
    """Read the code of the workflow modules in `packages` (docket's by default) once per process;
    installs `_WorkflowCodeFinder` first on the import path, once."""
    finder = next((f for f in sys.meta_path if isinstance(f, _WorkflowCodeFinder)), None)
    if finder is None:
        finder = _WorkflowCodeFinder()
        sys.meta_path.insert(0, finder)
    finder.packages.update(packages or (WORKFLOW_PACKAGE,))


def restrictions_for(*, checked: bool, packages: Sequence[str] = (WORKFLOW_PACKAGE,)) -> SandboxRestrictions:
    """What the sandbox of each workflow does with the workflow modules of `packages`.

    Shared (not `checked`, the default): the modules are loaded once per process and passed
    through, so a workflow's sandbox holds none of their classes and functions of its own: 186
    objects for the collector to scan per kept order workflow instead of 313, full collections a
    third as long, a sandbox built in a tenth of the time (docs/performance.md). The sandbox then
    does not check the modules' own calls; the test suite and the replay of saved histories run
    checked.
    docket's models, which the workflow modules import passed through, are then passed through by
    name too: nothing imports them into the sandbox at its start, and a payload's validator that
    imports one would otherwise execute it (and what it imports) afresh in each sandbox.
    Checked: each workflow imports the modules afresh into its sandbox, which refuses the clock,
    randomness and I/O in them; their code is read once (`share_workflow_code`)."""
    if checked:
        share_workflow_code(*packages)
        return SandboxRestrictions.default
    return SandboxRestrictions.default.with_passthrough_modules(*packages, MODELS_PACKAGE)


def runner_for(
    client: Client, *, checked: bool = False, packages: Sequence[str] = (WORKFLOW_PACKAGE,)
) -> WorkflowRunner:
    """A sandboxed runner for the workflow modules of `packages` (`restrictions_for`):
    `CodecFreeRunner` where it fits (docket's converter), the SDK's own runner otherwise."""
    restrictions = restrictions_for(checked=checked, packages=packages)
    converter = client.data_converter
    if converter.payload_codec is None and converter.external_storage is None:
        return CodecFreeRunner(restrictions)
    return SandboxedWorkflowRunner(restrictions=restrictions)


def build_worker(
    client: Client,
    sessions: SessionFactory,
    task_queue: str,
    *,
    transport: MailTransport,
    renderer: Renderer,
    gateways: dict[str, PaymentGateway],
    activity_threads: int = 8,
    inline: bool | None = None,
    checked: bool = False,
    **options: object,
) -> Worker:
    """Order activities are synchronous and run in `activity_threads` threads, one transaction
    each, then send the move's mail; the background mail delivery (what SMTP could not take at
    once) is asynchronous and runs on the event loop. `inline` (by default: on SQLite with the
    maildir) runs the moves that wait for nothing on the event loop too, and in the threads only
    when they would wait (docket.activities.inline). `checked`: see `restrictions_for`."""
    mailer = Mailer(sessions, renderer, transport)
    orders = OrderActivities(sessions, mailer, gateways)
    mail = MailActivities(mailer)
    threads = ThreadPoolExecutor(activity_threads, thread_name_prefix="docket-activity")
    if inline is None:
        inline = orders.engine.dialect.name == "sqlite" and isinstance(transport, MaildirTransport)
    moves: list[Callable[..., Any]] = [
        orders.place_order,
        orders.confirm_payment,
        orders.move_delivery,
        orders.cancel_order,
        orders.return_order,
        orders.record_refund,
        orders.charge,
        orders.retry_refund,
        orders.apply_payment_callback,
        orders.advance_order,
        orders.change_stock,
    ]
    if inline:
        moves = on_loop_where_local(moves, threads)
    with warnings.catch_warnings():  # more slots than threads is the point (MIN_SLOTS)
        warnings.filterwarnings("ignore", "Worker max_concurrent_activities", UserWarning)
        return Worker(
            client,
            task_queue=task_queue,
            workflows=WORKFLOWS,
            activities=[*moves, mail.deliver_mail],
            activity_executor=threads,
            max_concurrent_activities=max(MIN_SLOTS, activity_threads * SLOTS_PER_THREAD),
            workflow_runner=runner_for(client, checked=checked),
            **{"graceful_shutdown_timeout": SHUTDOWN_GRACE, **options},  # type: ignore[arg-type]
        )
