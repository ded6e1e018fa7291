"""The base of every model that takes input from outside: CLI, API, catalogue files, gateways."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ModelWrapValidatorHandler, model_validator

NUL = "\x00"


class Input(BaseModel):
    """Unknown fields are refused (a misspelt field would otherwise be dropped without a word),
    and so is the NUL character anywhere in the text: PostgreSQL cannot store it, and a move
    carrying one would fail in its activity, again and again, after it was accepted."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="wrap")
    @classmethod
    def _no_nul(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        if isinstance(data, cls):  # checked when it was made: a command inside a workflow's move
            return data
        model = handler(data)
        if any(_holds_nul(value) for value in model.__dict__.values()):
            raise ValueError("text may not contain the NUL character (\\u0000)")
        return model


def _holds_nul(value: Any) -> bool:
    """In this model's own text; a model inside it has checked its own."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_nul(v) for v in value)
    return False


def problems(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic's errors as one line, each named by its place: `lines.0.quantity: ...; email: ...`;
    docket's own checks say what they say, without pydantic's `Value error, ` before it."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {_said(e)}" for e in errors)


def _said(error: Mapping[str, Any]) -> str:
    raised = (error.get("ctx") or {}).get("error")
    return str(raised) if error.get("type") == "value_error" and raised is not None else str(error["msg"])
