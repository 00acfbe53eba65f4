"""Flows whose parameters are plain values, stored by Prefect without importing FastAPI.

Prefect records a flow run's parameters through FastAPI's ``jsonable_encoder``
(``Flow.serialize_parameters``); importing FastAPI for that costs an interactive one-study ``run``
about 0.1 s. The QC flows take strings, numbers, flags and a datetime: those are written as
``jsonable_encoder`` writes them (the datetime in ISO 8601), anything else still goes through it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Flow

P = ParamSpec("P")
R = TypeVar("R")


class PlainParametersFlow(Flow[P, R]):
    """A Prefect flow that serialises plain parameter values itself."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        serialized: dict[str, Any] = {}
        for key, value in parameters.items():
            if value is None or isinstance(value, (str, bool, int, float)):
                serialized[key] = value
            elif isinstance(value, (dt.datetime, dt.date, dt.time)):
                serialized[key] = value.isoformat()
            else:
                serialized.update(super().serialize_parameters({key: value}))
        return serialized


def plain_flow(**options: Any) -> Callable[[Callable[P, R]], PlainParametersFlow[P, R]]:
    """``@plain_flow(name=..., ...)``: as ``@prefect.flow(...)``, with :class:`PlainParametersFlow`."""

    def wrap(fn: Callable[P, R]) -> PlainParametersFlow[P, R]:
        return PlainParametersFlow(fn=fn, **options)

    return wrap
