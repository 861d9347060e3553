"""config/yaml_doc.py: the same values as PyYAML's safe loader, a fraction of its memory,
and the refusals a config file needs, each with its line and column."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.yaml_doc import MAX_DEPTH, load_document

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "example.yaml"

SAME_AS_SAFE_LOAD = [
    "a: 1\nb: [1, 2.5, true, null, '3', 0x10, 2026-01-01, ~]\nc: {d: e}\n",
    "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nlist: &l [1, 2]\nagain: *l\n",
    "m1: &m1 {a: 1, b: 1}\nm2: &m2 {b: 2, c: 2}\nboth: {<<: [*m1, *m2], c: 3}\n",
    "",
    "# only a comment\n",
    "plain\n",
    "- a\n- b\n",
    "k: !!str 123\nn: !!int '7'\nf: !!float '1.5'\nb: !!binary aGVsbG8=\n",
    "'<<': a quoted key is a key\n",
    "t: 2026-11-28T10:00:00Z\n",
    "x: 1_000\ny: +12\nz: .inf\nw: yes\nv: off\n",
    "title: 110 接处警平台对接\nbody: |\n  <Envelope>\n    <x/>\n  </Envelope>\n",
]


@pytest.mark.parametrize("document", [*SAME_AS_SAFE_LOAD, EXAMPLE.read_text()])
def test_values_are_the_safe_loaders(document: str) -> None:
    assert load_document(document) == yaml.load(document, Loader=yaml.SafeLoader)


def test_merge_keys_own_keys_win_then_the_first_source() -> None:
    document = "m1: &m1 {a: 1, b: 1}\nm2: &m2 {b: 2, c: 2}\nboth: {<<: [*m1, *m2], c: 3}\n"
    assert load_document(document)["both"] == {"a": 1, "b": 1, "c": 3}


def test_merged_keys_come_in_the_safe_loaders_order() -> None:
    """Header order is request order: a merge gives the keys in PyYAML's order too."""
    document = "h: &h {b: 1, a: 1}\nm: {z: 1, <<: *h, a: 2}\n"
    ours, theirs = load_document(document)["m"], yaml.safe_load(document)["m"]
    assert list(ours.items()) == list(theirs.items()) == [("b", 1), ("a", 2), ("z", 1)]


def test_an_alias_is_the_same_value() -> None:
    value = load_document("defaults: &d {timeout: 5s}\na: *d\nb: *d\n")
    assert value["a"] is value["b"] is value["defaults"]


@pytest.mark.parametrize(
    ("document", "words", "line"),
    [
        ("checks: []\nlisten: off\nchecks: [x]\n", "duplicate key 'checks' (first on line 1)", 3),
        ("a: [1\n", "did not find expected ',' or ']'", 2),
        ("--- 1\n--- 2\n", "but found another document", 2),
        ("a: 1\nb: *nowhere\n", "found undefined alias 'nowhere'", 2),
        ("a: !!set {x}\n", "tag tag:yaml.org,2002:set is not supported here", 1),
        ("a: 1\nb: !custom 1\n", "could not determine a constructor for the tag '!custom'", 2),
        ("{[1]: 2}\n", "found unhashable key", 1),
        ("a:\n  <<: 1\n", "a merge key (<<) takes a mapping or a list of mappings", 2),
        ("a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n", "levels deep", 1),
        ("a: 1\nb: !!int nope\n", "this value cannot be read as tag:yaml.org,2002:int", 2),
        ("a: !!seq x\n", "could not determine a constructor for the tag", 1),
        ("a: &x 1\nb: &x 2\n", "found duplicate anchor 'x'", 2),
    ],
    ids=[
        "duplicate",
        "syntax",
        "two-docs",
        "alias",
        "set",
        "tag",
        "unhashable",
        "merge",
        "deep",
        "bad-int",
        "seq-on-scalar",
        "anchor-twice",
    ],
)
def test_refusals_name_the_line(document: str, words: str, line: int) -> None:
    with pytest.raises(yaml.MarkedYAMLError) as raised:
        load_document(document)
    assert words in str(raised.value)
    assert raised.value.problem_mark is not None
    assert raised.value.problem_mark.line + 1 == line


def test_memory_peak_is_a_fraction_of_the_node_tree() -> None:
    """1,000 checks: the peak while loading is well under half of what composing PyYAML's
    node tree first takes (about 60 MB at 10,000 checks, kept by the daemon as holes)."""
    document = "checks:\n" + "".join(
        f'  - {{name: c{i}, kind: http, nodes: [{{name: n, url: "http://127.0.0.1:9/c{i}"}}], '
        f"expect: {{status: [200]}}, retries: {{attempts: 1}}}}\n"
        for i in range(1000)
    )

    def peak(load: Callable[[str], Any]) -> int:
        tracemalloc.start()
        try:
            value = load(document)
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(value["checks"]) == 1000
        return top

    ours = peak(load_document)
    theirs = peak(lambda text: yaml.load(text, Loader=yaml.CSafeLoader))
    assert ours < theirs / 2, (ours, theirs)
