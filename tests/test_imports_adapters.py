"""The adapters' parsing on its own: HTML to markdown, CSV streaming across chunk boundaries."""

from __future__ import annotations

from app.services.adapters import BadItem, content_hub_document, csv_entries, csv_rows, html_to_markdown


def test_html_becomes_markdown_with_entities_decoded() -> None:
    markdown, heading = html_to_markdown(
        "<h2>Caf&eacute;</h2><p>A <a href='https://x.test'>link</a> &amp; <em>more</em></p>"
        "<ol><li>one</li></ol><script>alert(1)</script>"
    )
    assert heading == "Café"
    assert markdown == "## Café\n\nA [link](https://x.test) & *more*\n\n1. one"


def test_content_hub_entry_without_identifier_fails_alone() -> None:
    assert isinstance(content_hub_document({"content": {}}), BadItem)


def test_csv_rows_are_read_across_chunk_boundaries() -> None:
    data = 'id,note\n1,"a\nmulti-line, quoted"\n2,plain\n'.encode()
    chunks = [data[i:i + 3] for i in range(0, len(data), 3)]
    entries = list(csv_entries(csv_rows(chunks), {"id": "remoteId:int", "note": "note"}))
    assert entries == [{"remoteId": 1, "note": "a\nmulti-line, quoted"}, {"remoteId": 2, "note": "plain"}]
