"""Import adapters: turn a payload into the items the domain services import.

Each adapter checks the payload as a whole (`PayloadError`: the import is refused, nothing
stored) and yields one entry per item: a dict for the target's import function, or `BadItem`
when that one item cannot be read (it fails alone). GENERIC_JSON passes items through;
CONTENT_HUB turns content-management exports into documents; CSV maps columns to fields,
typed, streaming its input so a large file is never held whole.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from typing import IO, Any

import ijson

ADAPTERS = ("GENERIC_JSON", "CONTENT_HUB", "CSV")
CSV_TYPES = ("string", "int", "float", "bool", "json", "list")


class PayloadError(Exception):
    """The payload as a whole is unusable; `field` is the input field at fault."""

    def __init__(self, message: str, field: tuple[str, ...] = ("input", "data")) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class BadItem:
    error: str
    remote_id: str | None = None


Entry = dict[str, Any] | BadItem


# ---------------------------------------------------------------- JSON adapters

_ITEMS = {"GENERIC_JSON": "records.item", "CONTENT_HUB": "item.item"}
_SHAPES = {
    "GENERIC_JSON": "GENERIC_JSON expects an object {records: [...]}",
    "CONTENT_HUB": "CONTENT_HUB expects [[{content, metadata}, ...], {timeTaken}]",
}


def json_items(adapter: str, stream: IO[bytes]) -> Iterator[Any]:
    """The raw items of a JSON payload, read from `stream` (at its start) one at a time, so a
    payload of any size is never held whole (ijson on yajl: as fast as parsing it whole with
    orjson). The overall shape is checked before the first item; invalid JSON raises
    PayloadError when it is met, so whoever must know the payload is sound reads to the end."""
    prefix = _ITEMS.get(adapter)
    if prefix is None:
        raise PayloadError(f"{adapter} is not a JSON adapter", ("input", "adapter"))
    start = stream.tell()
    try:
        _check_shape(adapter, ijson.parse(stream))
        stream.seek(start)
        yield from ijson.items(stream, prefix, use_float=True)
    except ijson.JSONError as exc:
        raise PayloadError(f"The payload is not valid JSON: {str(exc).splitlines()[0]}") from None


def _check_shape(adapter: str, events: Iterator[tuple[str, str, Any]]) -> None:
    """Reads just far enough to see the item list where the adapter expects it."""
    wrong = PayloadError(_SHAPES[adapter])
    first = next(events, None)
    if adapter == "CONTENT_HUB":
        if first is None or first[1] != "start_array" or next(events, ("", ""))[1] != "start_array":
            raise wrong
        return
    if first is None or first[1] != "start_map":
        raise wrong
    for prefix, event, value in events:
        if prefix == "" and event == "map_key" and value == "records":
            if next(events, ("", ""))[1] == "start_array":
                return
            raise wrong
    raise wrong


def json_entry(adapter: str, raw: Any) -> Entry:
    if not isinstance(raw, dict):
        return BadItem("The item is not a JSON object")
    if adapter == "CONTENT_HUB":
        return content_hub_document(raw)
    return raw


def content_hub_document(raw: dict[str, Any]) -> Entry:
    """One content-hub entry as a document: HTML to markdown, Title (or first heading) to
    title, keywords to tags, the other inline attributes to metadata."""
    content = raw.get("content")
    if not isinstance(content, dict):
        return BadItem("content is missing")
    remote_id = content.get("documentIdentifier")
    if not isinstance(remote_id, str) or not remote_id.strip():
        return BadItem("content.documentIdentifier is missing")
    inline = content.get("inlineContent") or {}
    html = ((inline.get("textContent") or {}).get("data") if isinstance(inline, dict) else None) or ""
    if not isinstance(html, str):
        return BadItem("content.inlineContent.textContent.data must be a string", remote_id)
    markdown, heading = html_to_markdown(html)
    metadata: dict[str, Any] = {}
    title, tags = None, []
    attributes = (raw.get("metadata") or {}).get("inlineAttributes") or []
    if not isinstance(attributes, list):
        return BadItem("metadata.inlineAttributes must be a list", remote_id)
    for attribute in attributes:
        if not isinstance(attribute, dict) or not isinstance(attribute.get("key"), str):
            continue
        value = _attribute_value(attribute.get("value"))
        key = attribute["key"]
        if key.lower() == "title" and isinstance(value, str):
            title = unescape(value).strip()
        elif key.lower() == "keywords" and value:
            tags = [t.strip() for t in str(value).split(",") if t.strip()]
        else:
            metadata[key] = value
    document: dict[str, Any] = {
        "id": remote_id, "title": title or heading or remote_id, "content": markdown, "contentType": "text/markdown",
        "metadata": metadata, "tags": tags, "deleted": bool(content.get("deleted")),
    }
    if remote_id.startswith(("http://", "https://")):
        document["url"] = remote_id
    return document


def _attribute_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    for key in ("stringValue", "numberValue", "longValue", "doubleValue", "booleanValue", "dateValue"):
        if key in value:
            return value[key]
    if "stringListValue" in value:
        return value["stringListValue"]
    return {k: v for k, v in value.items() if k != "type"} or None


class _Markdown(HTMLParser):
    """A small HTML to markdown converter: headings, paragraphs, lists, links, emphasis, code."""

    BLOCKS = {"p", "div", "section", "article", "table", "tr", "blockquote", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.first_heading: str | None = None
        self._heading: list[str] | None = None
        self._links: list[str | None] = []
        self._lists: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
            self._heading = []
        elif tag in self.BLOCKS:
            self.out.append("\n\n")
        elif tag == "br":
            self.out.append("\n")
        elif tag in ("ul", "ol"):
            self._lists.append(tag)
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n" + "  " * max(0, len(self._lists) - 1) + ("1. " if self._lists[-1:] == ["ol"] else "- "))
        elif tag in ("strong", "b"):
            self.out.append("**")
        elif tag in ("em", "i"):
            self.out.append("*")
        elif tag == "code":
            self.out.append("`")
        elif tag == "a":
            self._links.append(dict(attrs).get("href"))
            self.out.append("[")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            if self._heading is not None and self.first_heading is None:
                self.first_heading = " ".join("".join(self._heading).split()) or None
            self._heading = None
            self.out.append("\n\n")
        elif tag in self.BLOCKS:
            self.out.append("\n\n")
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self.out.append("\n")
        elif tag in ("strong", "b"):
            self.out.append("**")
        elif tag in ("em", "i"):
            self.out.append("*")
        elif tag == "code":
            self.out.append("`")
        elif tag == "a":
            href = self._links.pop() if self._links else None
            self.out.append(f"]({href})" if href else "]")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        text = re.sub(r"\s+", " ", data)
        if self._heading is not None:
            self._heading.append(text)
        self.out.append(text)


def html_to_markdown(html: str) -> tuple[str, str | None]:
    """(markdown, text of the first heading); entities decoded."""
    parser = _Markdown()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    lines = [line.rstrip() for line in text.split("\n")]
    markdown = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return markdown, parser.first_heading


# ---------------------------------------------------------------- CSV

@dataclass(frozen=True)
class Column:
    """Where one CSV column goes: a field (dotted for nesting, e.g. metadata.region), typed."""

    field: tuple[str, ...]
    type: str = "string"


def parse_mapping(mapping: Any, header: list[str]) -> dict[int, Column]:
    """fieldMapping {column: "field" | "field:type"} checked against the header row; without a
    mapping every column maps to the field of its name."""
    if mapping is None:
        mapping = {name: name for name in header if name}
    if not isinstance(mapping, dict) or not mapping:
        raise PayloadError("fieldMapping must be an object {column: field}", ("input", "fieldMapping"))
    positions = {name: i for i, name in enumerate(header)}
    out: dict[int, Column] = {}
    for column, target in mapping.items():
        if column not in positions:
            raise PayloadError(f"Column {column!r} is not in the CSV header", ("input", "fieldMapping", column))
        if not isinstance(target, str) or not target.strip():
            raise PayloadError(f"The field for column {column!r} must be a name", ("input", "fieldMapping", column))
        name, _, type_ = target.strip().partition(":")
        type_ = type_ or "string"
        if type_ not in CSV_TYPES:
            raise PayloadError(
                f"Unknown type {type_!r} for column {column!r}; use one of {', '.join(CSV_TYPES)}",
                ("input", "fieldMapping", column),
            )
        out[positions[column]] = Column(tuple(name.split(".")), type_)
    return out


def check_columns(columns: dict[int, Column], header: list[str], mapped: bool, target: str, fields: Sequence[str]
                  ) -> None:
    """Refuses a CSV none of whose columns is one of the target's `fields` (dotted paths; `key.*`
    is an object any key of which is a field, customFields.region of customFields.*): it would
    be queued only to fail every row."""
    exact = {f for f in fields if not f.endswith(".*")}
    open_ = {f.removesuffix(".*") for f in fields if f.endswith(".*")}
    if any(".".join(c.field) in exact or c.field[0] in open_ for c in columns.values()):
        return
    found = f"The CSV's columns ({', '.join(h for h in header if h)})"
    if mapped:
        found += f", mapped to {', '.join('.'.join(c.field) for c in columns.values())},"
    raise PayloadError(f"{found} match no field of {target}; its fields are {', '.join(fields)}",
                       ("input", "fieldMapping") if mapped else ("input", "data"))


def _typed(value: str, type_: str) -> Any:
    if type_ == "string":
        return value
    if type_ == "int":
        return int(value)
    if type_ == "float":
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        return number
    if type_ == "bool":
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "1", "y"):
            return True
        if lowered in ("false", "no", "0", "n"):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    if type_ == "list":
        return [v.strip() for v in re.split(r"[;,]", value) if v.strip()]
    return json.loads(value, parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    """NaN and Infinity, which Python's parser takes and no JSON column can hold."""
    raise ValueError(f"{constant} is not JSON")


def csv_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Text lines (with their endings) of UTF-8 bytes arriving in chunks (a BOM is dropped)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(chunk)
        lines = pending.splitlines(keepends=True)
        pending = lines.pop() if lines and not lines[-1].endswith(("\n", "\r")) else ""
        yield from lines
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def csv_rows(chunks: Iterable[bytes]) -> Iterator[list[str]]:
    return csv.reader(csv_lines(chunks))


def csv_header(first_chunk: bytes) -> list[str]:
    """The header row, read from the start of the file."""
    try:
        header = next(csv_rows([first_chunk]), None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PayloadError(f"The CSV cannot be read: {exc}", ("input", "file")) from exc
    if not header or not any(h.strip() for h in header):
        raise PayloadError("The CSV has no header row", ("input", "file"))
    return [h.strip() for h in header]


def csv_entries(rows: Iterator[list[str]], mapping: Any) -> Iterator[Entry]:
    """One entry per data row (blank lines skipped), after the header row."""
    header = [h.strip() for h in next(rows, [])]
    columns = parse_mapping(mapping, header)
    id_column = next((i for i, c in columns.items() if c.field == ("id",)), None)
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue
        remote_id = row[id_column].strip() or None if id_column is not None and id_column < len(row) else None
        if len(row) != len(header):
            yield BadItem(f"The row has {len(row)} columns, the header {len(header)}", remote_id)
            continue
        item: dict[str, Any] = {}
        try:
            for position, column in columns.items():
                cell = row[position]
                if cell == "":
                    continue
                target = item
                for part in column.field[:-1]:
                    target = target.setdefault(part, {})
                target[column.field[-1]] = _typed(cell, column.type)
        except ValueError as exc:
            yield BadItem(f"Column {header[position]!r}: {exc}", remote_id)
            continue
        yield item
