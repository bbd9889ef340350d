"""Turning cell values from any reader (csv, openpyxl, pyarrow, json) into JSON-friendly Python values."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import math
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


def to_jsonable(value: Any) -> Any:
    """Return ``value`` as None/bool/int/float/str or lists and dicts of those.

    Dates become ISO strings, NaN and infinities become None (JSON has no spelling for them), numpy and
    pyarrow scalars become their Python value, bytes become text (or base64 when they are not UTF-8).
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return _from_decimal(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return value.as_posix()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # MediaRef, StageError...
        return to_jsonable(dataclasses.asdict(value))
    return _from_foreign(value)


def _from_decimal(value: decimal.Decimal) -> int | float | None:
    if not value.is_finite():
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _from_bytes(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode("ascii")


def _from_foreign(value: Any) -> Any:
    """numpy / pyarrow / pandas-like objects, recognised by duck typing so neither is imported here."""
    as_py = getattr(value, "as_py", None)  # pyarrow.Scalar
    if callable(as_py):
        return to_jsonable(as_py())
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars (tolist of a scalar is the scalar)
    if callable(tolist):
        return to_jsonable(tolist())
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    return str(value)


def is_missing(value: Any) -> bool:
    """True for None, NaN and blank strings: the ways a spreadsheet says 'no value'."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return not value.strip()
    return False


def id_text(value: Any) -> str:
    """An id cell as text: integral floats (Excel, pandas-made Parquet) lose their '.0'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    value = to_jsonable(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")


def typed_text(value: Any) -> Any:
    """A text cell that spells a plain number as that number (``"412"`` -> 412, ``"0.5"`` -> 0.5).

    CSV has no types, but metadata such as likes or prices is used as a number downstream. Text with
    leading zeros (``"007"``, zip codes), signs, spaces or exponents stays text, so nothing is mangled.
    """
    if isinstance(value, str):
        if _INT.fullmatch(value):
            return int(value)
        if _FLOAT.fullmatch(value):
            return float(value)
    return value
