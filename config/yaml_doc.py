"""One YAML document to plain Python values, built straight from libyaml's events.

PyYAML's loaders first compose the whole document into a tree of nodes, each with two
position marks, and only then construct values from it. For a config of 10,000 checks
that tree took about 60 MB at its peak, memory the daemon then kept (freed, but in
pieces too scattered to give back), and constructing from it was most of the load's
time. Here each value is built as its event arrives and the event is let go, so the
peak is the values themselves.

What it accepts is the safe loader's: the YAML 1.1 core scalars (resolved by PyYAML's
own resolver and converted by its constructors), anchors and aliases, and merge keys
(``<<: *base``). It refuses, with the line and column, what the safe loader refuses,
plus a key written twice in one mapping (PyYAML keeps the last one, so a second
``checks:`` would silently drop every check above it) and tags on sequences and
mappings, which no config here uses.
"""

from __future__ import annotations

import inspect
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import ScalarNode

try:  # libyaml's parser; the pure-Python one reads the same, five times slower
    from yaml import CSafeLoader as _Base
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _Base  # type: ignore[assignment]

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_PLAIN_COLLECTION_TAGS = (None, "!", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")

MAX_DEPTH = 200
"""Nesting beyond this is refused: no config comes near it, and a hostile file must not
exhaust the interpreter's stack."""


def load_document(text: str) -> Any:
    """The document's value (None for an empty one); yaml.MarkedYAMLError on bad input."""
    return _Builder(text).document()


class _Builder(_Base):
    """The parser and the scalar resolver and constructors of the safe loader; only
    the assembly of values differs."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._anchors: dict[str, Any] = {}
        self._anchor_marks: dict[str, Any] = {}
        self._depth = 0

    def document(self) -> Any:
        try:
            self._expect(StreamStartEvent)
            if self.check_event(StreamEndEvent):
                return None
            start = self._expect(DocumentStartEvent)
            value = self._value(self._next())
            self._expect(DocumentEndEvent)
            if not self.check_event(StreamEndEvent):
                extra = self._next()
                raise yaml.composer.ComposerError(
                    "expected a single document in the stream",
                    start.start_mark,
                    "but found another document",
                    extra.start_mark,
                )
            return value
        finally:
            self.dispose()

    def _next(self) -> Any:
        # Events as Any: PyYAML's stubs give every mark two possible classes (Python's
        # and libyaml's), which its own error classes then refuse.
        return self.get_event()

    def _resolve(self, event: Any) -> str:
        return str(self.resolve(ScalarNode, event.value, event.implicit))  # type: ignore[no-untyped-call]

    def _expect(self, kind: type[Event]) -> Any:
        event = self._next()
        if not isinstance(event, kind):  # the parser itself guarantees the order
            raise yaml.composer.ComposerError(
                None, None, f"unexpected {type(event).__name__}", event.start_mark
            )
        return event

    def _value(self, event: Any) -> Any:
        mark: Any = event.start_mark
        if isinstance(event, AliasEvent):
            if event.anchor not in self._anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", mark
                )
            return self._anchors[event.anchor]
        if isinstance(event, ScalarEvent):
            value = self._scalar(event)
        elif isinstance(event, (SequenceStartEvent, MappingStartEvent)):
            if event.tag not in _PLAIN_COLLECTION_TAGS:
                raise ConstructorError(None, None, f"tag {event.tag} is not supported here", mark)
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise ConstructorError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", mark
                )
            if isinstance(event, SequenceStartEvent):
                value = self._sequence(event)
            else:
                value = self._mapping(event)
            self._depth -= 1
            return value  # anchored inside, so that an alias within sees it
        else:
            raise yaml.composer.ComposerError(
                None, None, f"unexpected {type(event).__name__}", mark
            )
        self._anchor(event, value)
        return value

    def _anchor(self, event: Any, value: Any) -> None:
        anchor = event.anchor
        if anchor is None:
            return
        if anchor in self._anchor_marks:
            raise yaml.composer.ComposerError(
                f"found duplicate anchor {anchor!r}; first occurrence",
                self._anchor_marks[anchor],
                "second occurrence",
                event.start_mark,
            )
        self._anchor_marks[anchor] = event.start_mark
        self._anchors[anchor] = value

    def _scalar(self, event: Any) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._resolve(event)
        if tag == _STR:
            return event.value
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        construct = self.yaml_constructors.get(tag)
        if construct is None or tag == _MERGE or inspect.isgeneratorfunction(construct):
            # Generator constructors build collections (!!seq, !!set, ...), not scalars.
            raise ConstructorError(
                None,
                None,
                f"could not determine a constructor for the tag {tag!r}",
                event.start_mark,
            )
        try:
            return construct(self, node)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            # PyYAML's own constructors crash on "!!int nope"; the text is not repeated
            # (it may be a secret written inline).
            raise ConstructorError(
                None, None, f"this value cannot be read as {tag}", event.start_mark
            ) from None

    def _sequence(self, start: Any) -> list[Any]:
        items: list[Any] = []
        self._anchor(start, items)
        while not self.check_event(SequenceEndEvent):
            items.append(self._value(self._next()))
        self._next()
        return items

    def _mapping(self, start: Any) -> dict[Any, Any]:
        mapping: dict[Any, Any] = {}
        self._anchor(start, mapping)
        own: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        merged: list[dict[Any, Any]] = []
        while not self.check_event(MappingEndEvent):
            key_event = self._next()
            if self._is_merge(key_event):
                merged.extend(self._merge_sources(self._next()))
                continue
            key = self._value(key_event)
            try:
                hash(key)
            except TypeError:
                raise ConstructorError(
                    "while constructing a mapping",
                    start.start_mark,
                    "found unhashable key",
                    key_event.start_mark,
                ) from None
            if key in lines:
                raise ConstructorError(
                    "while constructing a mapping",
                    start.start_mark,
                    f"duplicate key {key!r} (first on line {lines[key]})",
                    key_event.start_mark,
                )
            lines[key] = key_event.start_mark.line + 1
            own[key] = self._value(self._next())
        self._next()
        # As PyYAML: merged keys first, the last source named first, so that the first
        # source wins over later ones and keys written here win over all.
        for source in reversed(merged):
            mapping.update(source)
        mapping.update(own)
        return mapping

    def _is_merge(self, event: Any) -> bool:
        if not isinstance(event, ScalarEvent) or event.value != "<<":
            return False
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._resolve(event)
        return bool(tag == _MERGE)

    def _merge_sources(self, event: Any) -> list[dict[Any, Any]]:
        value = self._value(event)
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(source, dict) for source in sources):
            raise ConstructorError(
                "while constructing a mapping",
                None,
                "a merge key (<<) takes a mapping or a list of mappings",
                event.start_mark,
            )
        return sources
