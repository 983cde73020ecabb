"""YAML that remembers where things are: every config file of the appliance is read through this.

``LineLoader`` is a SafeLoader (no Python objects) that refuses duplicate keys (plain YAML keeps
the last one silently) and records the line of every mapping key and list item, so that a
validation error can say ``file:line: key.path: reason``.
"""
from __future__ import annotations

import yaml


class MarkedDict(dict):
    """A mapping with ``lines[key]``: the line (1-based) of each key."""
    lines: dict


class MarkedList(list):
    """A list with ``lines[i]``: the line of each item."""
    lines: list


class DuplicateKey(Exception):
    def __init__(self, key: str, line: int):
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key, self.line = key, line


class LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and remembers the line of every key and item."""

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(None, None, "expected a mapping", node.start_mark)
        result = MarkedDict()
        result.lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "unhashable key", key_node.start_mark)
            if key in result:
                raise DuplicateKey(str(key), key_node.start_mark.line + 1)
            result[key] = self.construct_object(value_node, deep=True)
            result.lines[key] = key_node.start_mark.line + 1     # where a person looks for the key
        return result

    def construct_sequence(self, node, deep=False):
        result = MarkedList(self.construct_object(child, deep=True) for child in node.value)
        result.lines = [child.start_mark.line + 1 for child in node.value]
        return result


LineLoader.add_constructor("tag:yaml.org,2002:map", LineLoader.construct_mapping)
LineLoader.add_constructor("tag:yaml.org,2002:seq", LineLoader.construct_sequence)


def line_of(container, key) -> int | None:
    """The line of ``container[key]`` when the loader recorded it."""
    lines = getattr(container, "lines", None)
    if lines is None:
        return None
    try:
        return lines[key]
    except (KeyError, IndexError, TypeError):
        return None


def plain(value):
    """Strip the line-tracking subclasses (ordinary dicts and lists, e.g. for params)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
