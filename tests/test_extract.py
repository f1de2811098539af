"""Markdown extraction: what it keeps, and that hostile input costs linear time (a document is
extracted on the API's event loop, so a quadratic pattern would stall every tenant)."""

from __future__ import annotations

import time

import pytest

from app.services.extract import markdown_to_text


def test_markdown_keeps_the_words() -> None:
    text = "# Title\n\nSome **bold**, __strong__, *it* and _it_ with a [link](http://x.y/a) ![pic](p.png) `code`.\n- item\n> quote\n---"
    assert markdown_to_text(text) == "Title\n\nSome bold, strong, it and it with a link pic code.\nitem\nquote\n"


@pytest.mark.parametrize("unit", ["_a ", "[a](", "![a", "**a ", "`a", "*a ", "__a ", "[a](b"])
def test_hostile_markdown_is_linear(unit: str) -> None:
    """Ten times the input must not cost anywhere near a hundred times the time."""
    def cost(n: int) -> float:
        started = time.perf_counter()
        markdown_to_text(unit * n)
        return time.perf_counter() - started

    small, large = cost(4_000), cost(40_000)
    assert large < max(small, 0.005) * 40, (unit, small, large)
