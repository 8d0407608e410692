"""/embed_sparse's fast path takes exactly TEI's well-formed bodies; everything else goes to FastAPI (and its errors)."""

from __future__ import annotations

import pytest

from runtime.serving.fastpath import parse


@pytest.mark.parametrize("body, options", [
    (b'{"inputs": "what is splade"}', {"truncation": "refuse", "prompt_name": None, "truncation_direction": "right"}),
    (b'{"inputs": ["a", ""], "truncate": true}', {"truncation": "cut", "prompt_name": None,
                                                   "truncation_direction": "right"}),
    (b'{"inputs": ["a"], "truncation_direction": "Left", "prompt_name": "query"}',
     {"truncation": "refuse", "prompt_name": "query", "truncation_direction": "left"}),
    (b'{"inputs": ["a"], "prompt_name": null}', {"truncation": "refuse", "prompt_name": None,
                                                 "truncation_direction": "right"}),
])
def test_well_formed_bodies_are_taken(body, options):
    request = parse(body)
    assert request is not None and request.options() == options


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'"inputs"', b'{"inputs": []}', b'{"inputs": ["a", 1]}', b'{"inputs": null}',
    b'{"texts": ["a"]}', b'{"inputs": ["a"], "truncate": 1}', b'{"inputs": ["a"], "truncate": "yes"}',
    b'{"inputs": ["a"], "truncation_direction": "up"}', b'{"inputs": ["a"], "prompt_name": 3}',
    b'{"inputs": ["\\ud800"]}', b'{"inputs": ["a"], "top_k": 3}', b'{"inputs": ["a"]} trailing',
])
def test_everything_else_goes_to_the_framework(body):
    assert parse(body) is None
