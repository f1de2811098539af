"""Small input rules shared by several domains."""

from __future__ import annotations

import re

from app.services.errors import Problem

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MACHINE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def normalise_email(value: str) -> str:
    return value.strip().lower()


def check_email(value: str, field: tuple[str, ...]) -> Problem | None:
    if len(value) > 254 or not EMAIL.match(value):
        return Problem(f"{value!r} is not a valid email address", "INVALID", field)
    return None


def check_text(value: str | None, field: tuple[str, ...], *, max_length: int = 200, required: bool = True) -> Problem | None:
    if value is None or not value.strip():
        return Problem(f"{field[-1]} must not be empty", "REQUIRED", field) if required else None
    if len(value) > max_length:
        return Problem(f"{field[-1]} must be at most {max_length} characters", "INVALID", field)
    return None


def problems(*found: Problem | None) -> list[Problem]:
    return [p for p in found if p is not None]
