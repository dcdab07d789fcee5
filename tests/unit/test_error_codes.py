"""The error catalogue and the README agree: every code a client can meet is documented."""

from __future__ import annotations

import re
from pathlib import Path

from dupdetect.error_codes import Code

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_every_error_code() -> None:
    documented = set(re.findall(r"`([a-z0-9_]+)`", README.read_text(encoding="utf-8")))
    assert sorted(code.value for code in Code if code.value not in documented) == []


def test_codes_are_unique_and_snake_case() -> None:
    values = [code.value for code in Code]
    assert len(values) == len(set(values))
    assert all(re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", value) for value in values)
