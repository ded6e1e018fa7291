"""The mail workflow: delivers the mails of an order whose own workflow has closed."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from docket.models.messages import DeliverMail, MailDelivered, MailDue
    from docket.workflows.order import MAIL_OPTIONS


def mail_workflow_id(order_id: str, prefix: str = "") -> str:
    return f"{prefix}mail-{order_id}"


@workflow.defn
class MailWorkflow:
    """Mails of a closed order put back to pending by an operator (`docket mail retry`).

    Started with the `mail_due` signal (signal-with-start, one per order at a time): runs
    `deliver_mail` until no signal came in meanwhile. No updates, queries or timers."""

    def __init__(self) -> None:
        self._due = True

    @workflow.run
    async def run(self, request: DeliverMail) -> MailDelivered:
        delivered = MailDelivered()
        while self._due:
            self._due = False
            delivered = await workflow.execute_activity(
                "deliver_mail", request, result_type=MailDelivered, **MAIL_OPTIONS
            )
        return delivered

    @workflow.signal
    def mail_due(self, fact: MailDue) -> None:
        self._due = True
