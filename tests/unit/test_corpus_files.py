"""JSONL corpus helpers: bad lines named by number, a torn last line cut off so it is redone."""

from __future__ import annotations

import pytest

from runtime.jobs.corpus import done_ids, id_key, read_corpus


def test_read_corpus_names_the_bad_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "ok"}\n\n{"id": "b", "text": "two"}\n{"id": 3}\n')
    rows = read_corpus(src)
    assert next(rows) == (1, "ok") and next(rows) == ("b", "two")  # ids keep their JSON type
    with pytest.raises(ValueError, match=r"in\.jsonl:4: expected a JSON object"):
        next(rows)
    src.write_text('{"id": 1, "text": 5}\n')
    with pytest.raises(ValueError, match=r"in\.jsonl:1: 'text' must be a string"):
        list(read_corpus(src))


def test_done_ids_cuts_a_torn_line(tmp_path):
    out = tmp_path / "out.jsonl"
    assert done_ids(out) == set()
    good = '{"id": "a", "indices": [], "values": []}\n{"id": 2, "indices": [], "values": []}\n'
    done = {id_key("a"), id_key(2)}
    out.write_text(good + '{"id": "c", "indi')
    assert done_ids(out) == done and out.read_text() == good
    out.write_text(good + '{"id": "c", "indices": [], "values": []}')  # no newline: the write did not finish
    assert done_ids(out) == done and out.read_text() == good
