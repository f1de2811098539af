"""Plain text out of text/plain, text/markdown and text/html; normalisation, hashing, chunking."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from html.parser import HTMLParser

CONTENT_TYPES = ("text/plain", "text/markdown", "text/x-markdown", "text/html", "application/xhtml+xml", "text/csv")
CHUNK_SIZE = 1200
CHUNK_OVERLAP = 200

_SKIP = {"script", "style", "head", "noscript", "template", "svg", "iframe", "object"}
_BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section", "article",
    "header", "footer", "blockquote", "pre", "hr", "dd", "dt", "nav", "aside", "main", "figure", "figcaption",
}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCK:
            self.out.append("\n")
        elif tag in ("td", "th"):
            self.out.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    return "".join(parser.out)


# Each span excludes the character that would end it (and stops at a line end), so a rule scans
# only to the next delimiter and stays linear in the text's length: unbounded lazy spans (`.+?`,
# `[^)]*`) over an input like "_a " * 20000 cost quadratic time (a 60 KB document took 15 s).
_MD_RULES = [
    (re.compile(r"^```.*$", re.M), ""),
    (re.compile(r"!\[([^\[\]\n]{0,500})\]\([^()\[\]\s]{0,2000}\)"), r"\1"),
    (re.compile(r"\[([^\[\]\n]{1,500})\]\([^()\[\]\s]{0,2000}\)"), r"\1"),
    (re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""),
    (re.compile(r"^\s{0,3}>\s?", re.M), ""),
    (re.compile(r"^\s*[-*+]\s+", re.M), ""),
    (re.compile(r"\*\*([^*\n]{1,500})\*\*"), r"\1"),
    (re.compile(r"__([^_\n]{1,500})__"), r"\1"),
    (re.compile(r"(?<![\w*])\*(?!\s)([^*\n]{1,500})(?<!\s)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?!\s)([^_\n]{1,500})(?<!\s)_(?![\w_])"), r"\1"),
    (re.compile(r"`([^`\n]{0,1000})`"), r"\1"),
    (re.compile(r"^[ \t]*([-*_][ \t]*){3,}$", re.M), ""),
]


def markdown_to_text(text: str) -> str:
    for pattern, replacement in _MD_RULES:
        text = pattern.sub(replacement, text)
    return text


def extract(text: str, content_type: str) -> str:
    """The normalised plain text of `text` in `content_type` (one of CONTENT_TYPES)."""
    if content_type in ("text/html", "application/xhtml+xml"):
        text = html_to_text(text)
    elif content_type in ("text/markdown", "text/x-markdown"):
        text = markdown_to_text(text)
    return normalise(text)


def normalise(text: str) -> str:
    """NFC, \\n line ends, no trailing blanks, at most one empty line in a row, trimmed."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [re.sub(r"[ \t\f\v\u00a0]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def chunks(text: str, size: int = CHUNK_SIZE, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """Windows of at most `size` characters overlapping by about `overlap`, cut at whitespace
    where one is near the end."""
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            cut = max(cut, text.rfind("\n", start + size // 2, end))
            end = cut if cut > start else end
        out.append(text[start:end].strip())
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
        space = text.find(" ", start, end)
        start = space + 1 if 0 <= space < end else start
    return [c for c in out if c]
