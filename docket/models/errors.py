"""Domain errors. Translated only at the edges: HTTP status in the API, exit code in the CLI,
ApplicationError in workflows."""

from __future__ import annotations


class DocketError(Exception):
    """Base of every error docket means to show a user."""

    kind = "DocketError"


class IllegalTransition(DocketError):
    kind = "IllegalTransition"

    lifecycle = ""
    allowed: tuple[str, ...] = ()

    @classmethod
    def refusing(
        cls, lifecycle: str, state: str, trigger: str, allowed: list[str], final: bool = False
    ) -> IllegalTransition:
        if allowed:
            allowed_text = ", ".join(allowed)
        elif final:
            allowed_text = "nothing (final state)"
        else:
            allowed_text = "nothing by hand (it moves on by itself, with payment, date or stock)"
        error = cls(f"{lifecycle} is {state}: cannot {trigger}; allowed from here: {allowed_text}")
        error.lifecycle, error.allowed = lifecycle, tuple(allowed)
        return error


class Refused(DocketError):
    """A move the lifecycle allows in general but the order's facts do not (e.g. goods on their way)."""

    kind = "Refused"


class NotFound(DocketError):
    kind = "NotFound"


class InvalidInput(DocketError):
    kind = "InvalidInput"


class Forbidden(DocketError):
    kind = "Forbidden"


class Unauthenticated(DocketError):
    kind = "Unauthenticated"


class OrderRejected(DocketError):
    """The order cannot be accepted as placed (stock, offline product); nothing was reserved."""

    kind = "OrderRejected"


class StoreNotReady(DocketError):
    """The store is missing or not at this docket's schema revision; nothing was read or written."""

    kind = "StoreNotReady"


class Unavailable(DocketError):
    """Temporal took the request but no answer came in time: no worker may be running. An order or
    stock change sent is carried out once one runs; a move may be (the message says which)."""

    kind = "Unavailable"


class StaleState(DocketError):
    """A guarded write found the row in another state than the move expected."""

    kind = "StaleState"


def from_kind(kind: str | None, message: str) -> DocketError:
    """Rebuild a domain error that crossed a Temporal boundary as an ApplicationError type."""
    for cls in DocketError.__subclasses__():
        if cls.kind == kind:
            return cls(message)
    return DocketError(message)
