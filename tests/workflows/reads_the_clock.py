"""A workflow that breaks the rules, in a module of its own: the sandbox re-imports a workflow's
module, and this one imports nothing but temporalio."""

from __future__ import annotations

import datetime as dt

from temporalio import workflow


@workflow.defn(sandboxed=True)
class ReadsTheClock:
    @workflow.run
    async def run(self) -> str:
        return dt.datetime.now().isoformat()  # not allowed in a workflow: the sandbox refuses it
