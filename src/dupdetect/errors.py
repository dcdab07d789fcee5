"""The error every entry point shows the operator as one line: a setting, the database or the
model weights need fixing. Light on purpose: the CLI imports it before anything heavy."""

from __future__ import annotations


class OperatorError(RuntimeError):
    """Something the operator must fix; the message says what and how."""
