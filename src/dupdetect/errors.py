"""The two kinds of error: ``DupdetectError``, which a caller can act on (the API answers it
with its status and code), and ``OperatorError``, which an operator must fix (the CLI shows it
as one line). Light on purpose: the CLI imports it before anything heavy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dupdetect.error_codes import Code


class OperatorError(RuntimeError):
    """Something the operator must fix; the message says what and how."""


class DupdetectError(Exception):
    """A failure the caller can act on: a stable ``code`` for programs, a ``message`` for people,
    and the HTTP ``status`` it is answered with. Raised by domain code (decoding, fetching,
    reading bodies) and handlers alike; the API turns every one into the same JSON shape at one
    boundary (``api/errors.py``)."""

    status = 400

    def __init__(
        self,
        code: Code,
        message: str,
        *,
        status: int | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.details = details
        self.headers = dict(headers or {})

    def __reduce__(self) -> tuple[Any, ...]:
        """Crosses the process boundary from the decode workers intact."""
        return type(self), (self.code, self.message), self.__dict__


class NotFound(DupdetectError):
    """Nothing with that id in the caller's collection (another collection's ids included):
    ``request_not_found``, ``image_not_found``…"""

    status = 404

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(code, message)
