"""The stock workflow: goods received or counted, then the waiting orders told, durably."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from docket.models.messages import StockChange, StockReserved
    from docket.models.schemas import StockReceived
    from docket.workflows.order import ACTIVITY_OPTIONS, OrderWorkflow, workflow_id


def stock_workflow_id(reference: str, prefix: str = "") -> str:
    return f"{prefix}stock-{reference}"


@workflow.defn
class StockWorkflow:
    """One stock receipt, return to stock or count correction, named by its reference.

    Runs one activity (ledger, counters, and reservation for the oldest waiting deliveries first),
    then signals `stock_reserved` to each order whose delivery became whole. No updates, queries or
    timers; the workflow id (the reference) makes a repeated receipt a no-op."""

    @workflow.run
    async def run(self, change: StockChange) -> StockReceived:
        change = change.model_copy(update={"at": workflow.now()})
        received = await workflow.execute_activity(
            "change_stock", change, result_type=StockReceived, **ACTIVITY_OPTIONS
        )
        for woken in received.woken:
            order = workflow.get_external_workflow_handle(
                workflow_id(woken.order_id, change.workflow_id_prefix)
            )
            try:
                await order.signal(
                    OrderWorkflow.stock_reserved,
                    StockReserved(delivery_no=woken.delivery_no, reference=received.reference),
                )
            except ApplicationError:
                workflow.logger.warning("order %s closed before stock reached it", woken.order_id)
        return received
