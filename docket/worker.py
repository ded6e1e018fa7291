"""Builds the Temporal worker: wiring only."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from docket.activities.mail import MailActivities, Mailer
from docket.activities.orders import OrderActivities
from docket.adapters.mail import MailTransport
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
# Activity slots per thread. The server hands a workflow's next activity to the worker with the
# workflow task's answer (eager execution) only if a slot is free at that moment, and the pollers
# hold slots while they wait; otherwise the activity takes a round trip through the server's task
# queue. With one slot per thread almost every move took that trip (17 of 606 activities went
# eagerly in bench.orders); with four, all of them go eagerly and wait their few milliseconds
# for a thread here instead (docs/performance.md).
SLOTS_PER_THREAD = 4


def build_worker(
    client: Client,
    sessions: SessionFactory,
    task_queue: str,
    *,
    transport: MailTransport,
    renderer: Renderer,
    gateways: dict[str, PaymentGateway],
    activity_threads: int = 8,
    **options: object,
) -> Worker:
    """Order activities are synchronous and run in `activity_threads` threads, one transaction
    each, then send the move's mail; the background mail delivery (what SMTP could not take at
    once) is asynchronous and runs on the event loop."""
    mailer = Mailer(sessions, renderer, transport)
    orders = OrderActivities(sessions, mailer, gateways)
    mail = MailActivities(mailer)
    with warnings.catch_warnings():  # more slots than threads is the point (SLOTS_PER_THREAD)
        warnings.filterwarnings("ignore", "Worker max_concurrent_activities", UserWarning)
        return Worker(
            client,
            task_queue=task_queue,
            workflows=WORKFLOWS,
            activities=[
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
                mail.deliver_mail,
            ],
            activity_executor=ThreadPoolExecutor(activity_threads, thread_name_prefix="docket-activity"),
            max_concurrent_activities=activity_threads * SLOTS_PER_THREAD,
            **{"graceful_shutdown_timeout": SHUTDOWN_GRACE, **options},  # type: ignore[arg-type]
        )
