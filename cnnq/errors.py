"""Errors a user can fix. The CLI prints their message as one line and exits with code 2 for a refused
input, 1 for a service (the broker, the database) that does not answer."""

from __future__ import annotations

from pydantic import ValidationError


class UserError(Exception):
    """A refused input: the message names the problem and what to do about it."""


class ServiceUnavailable(Exception):
    """The broker or the database does not answer: the message names it (password masked)."""


def validation_message(error: ValidationError) -> str:
    """The first problem of a pydantic error as one line that names the option."""
    first = error.errors()[0]
    # Not the wrappers pydantic adds to a location: `spec`, validators, a union's member (`literal[...]`).
    loc = [str(p) for p in first["loc"] if p != "spec" and not any(c in str(p) for c in "-[")]
    option = f"--{loc[-1].replace('_', '-')}" if loc else "the job spec"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{option}: {message}"
