"""Reading the arguments a client sends with a command (``workspace/executeCommand`` has
no schema, so each is checked here and refused with JSON-RPC's invalid-params error), and
writing LSP values into arguments, both through lsprotocol's converter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cattrs import transform_error
from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.exceptions import JsonRpcInvalidParams

_CONVERTER = get_converter()


def object_argument(args: Sequence[Any], *required: str) -> dict[str, Any]:
    """The command's one object argument, with the ``required`` keys."""
    first = args[0] if args else None
    if not isinstance(first, dict) or any(key not in first for key in required):
        raise JsonRpcInvalidParams(
            f"expected one object argument with {', '.join(repr(k) for k in required)}"
        )
    return first


def range_json(area: types.Range) -> dict[str, Any]:
    return _CONVERTER.unstructure(area, types.Range)


def range_of(value: Any) -> types.Range:
    try:
        return _CONVERTER.structure(value, types.Range)
    except Exception as error:  # cattrs' ClassValidationError, or a bare TypeError
        reasons = "; ".join(transform_error(error, path="range"))
        raise JsonRpcInvalidParams(f"'range' is not an LSP range: {reasons}") from None


def shown(value: Any) -> str:
    """A client's value in a message, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
