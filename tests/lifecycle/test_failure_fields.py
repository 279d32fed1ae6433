"""A failed job's error columns: a headline that says something, and a traceback that starts whole."""

from __future__ import annotations

from cnnq.lifecycle.claim import TRACEBACK_LINES, failure_fields


def _deep(depth: int) -> None:
    if depth:
        _deeper(depth - 1)
    # As a bare `assert` raises it (pytest rewrites the asserts of test modules).
    raise AssertionError


def _deeper(depth: int) -> None:
    _deep(depth)  # two functions in turn: Python folds a frame that repeats itself


def test_a_bare_assert_says_where_it_failed_and_the_traceback_has_no_orphan_lines() -> None:
    try:
        _deep(30)  # more frames than the kept lines: the cut falls inside a frame
    except AssertionError as error:
        fields = failure_fields(error)
    assert fields["error_type"] == "AssertionError"
    assert fields["error_message"] != "AssertionError"
    assert fields["error_message"] == (
        "raised without a message at test_failure_fields.py, line 12 (`raise AssertionError`)"
    )
    lines = fields["error_traceback"].splitlines()
    assert len(lines) <= TRACEBACK_LINES + 1
    assert lines[0] == "Traceback (most recent call last), its last frames:"
    assert lines[1].lstrip().startswith("File ") and lines[-1] == "AssertionError"
