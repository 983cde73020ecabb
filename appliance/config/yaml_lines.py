"""YAML that remembers where things are: every config file of the appliance and the exchange is read
through this (``read_yaml_file`` / ``parse_yaml``).

``LineLoader`` is a SafeLoader (no Python objects) that refuses duplicate keys (plain YAML keeps
the last one silently) and records the line of every mapping key and list item, so that a
validation error can say ``file:line: key.path: reason``.

A config file is untrusted input, so whatever the text, the loader raises only ``DuplicateKey``,
a ``yaml.YAMLError`` with the line (or ``RecursionError`` for absurd nesting), never another
exception: a scalar its tag cannot read (``!!float abc``, the timestamp ``2001-02-30``) is a
``ConstructorError``; so is an integer of more than ``MAX_INT_DIGITS`` digits (no setting needs
one, and Python refuses to print one of over 4300 in an error message); aliases may add at
most ``MAX_ALIAS_NODES`` nodes to the document (a "billion laughs" file would otherwise take
hours and gigabytes to expand, print or copy); and nesting deeper than ``MAX_DEPTH`` is refused
where it starts (PyYAML's scanner is quadratic in the depth of ``[[[[...``: seconds, then a
RecursionError).
"""
from __future__ import annotations

import yaml

from .errors import ErrorFactory, join, line_of  # noqa: F401  (line_of: the lines this loader records)


class MarkedDict(dict):
    """A mapping with ``lines[key]``: the line (1-based) of each key."""
    lines: dict


class MarkedList(list):
    """A list with ``lines[i]``: the line of each item."""
    lines: list


class DuplicateKey(Exception):
    """``key_path`` appears twice in one mapping: at ``line``, first at ``first_line``."""

    def __init__(self, key_path: str, line: int, first_line: int):
        super().__init__(f"duplicate key {key_path!r} at line {line} (first at line {first_line})")
        self.key_path, self.line, self.first_line = key_path, line, first_line


MAX_INT_DIGITS = 100
MAX_ALIAS_NODES = 100_000
MAX_DEPTH = 64


class LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and remembers the line of every key and item."""

    def __init__(self, stream):
        super().__init__(stream)
        self._alias_nodes = 0            # nodes the aliases so far add to the document
        self._sizes: dict[int, int] = {}  # id(node) -> its size with every alias in it expanded
        self._depth = 0

    def fetch_flow_collection_start(self, TokenClass):
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested more than {MAX_DEPTH} levels deep", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent, index):
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                              self.peek_event().start_mark)
        self._depth += 1
        try:
            return self._compose_node(parent, index)
        finally:
            self._depth -= 1

    def _compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:
                self._alias_nodes += self._expanded_size(node)
                if self._alias_nodes > MAX_ALIAS_NODES:
                    raise yaml.composer.ComposerError(
                        None, None, f"aliases expand the document by more than {MAX_ALIAS_NODES} nodes "
                                    "(a 'billion laughs' document?)", event.start_mark)
        return super().compose_node(parent, index)

    def _expanded_size(self, node) -> int:
        """1 + the expanded sizes of its children, memoized: linear in the document, however it aliases."""
        sizes = self._sizes
        stack = [(node, False)]
        while stack:
            current, children_done = stack.pop()
            if id(current) in sizes:
                continue
            if isinstance(current, yaml.MappingNode):
                children = [child for pair in current.value for child in pair]
            elif isinstance(current, yaml.SequenceNode):
                children = current.value
            else:
                sizes[id(current)] = 1
                continue
            if children_done:
                sizes[id(current)] = 1 + sum(sizes.get(id(child), 1) for child in children)
            else:
                stack.append((current, True))     # a recursive alias: the child is counted once (the
                stack.extend((child, False) for child in children   # constructor refuses it anyway)
                             if id(child) not in sizes and child is not current)
        return sizes[id(node)]

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, AttributeError, OverflowError, LookupError) as exc:   # !!int "" : IndexError
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            text = f" {node.value[:60]!r}" if isinstance(node, yaml.ScalarNode) else ""
            raise yaml.constructor.ConstructorError(None, None, f"cannot read{text} as {tag}: {exc}",
                                                    node.start_mark) from None

    def construct_yaml_int(self, node):
        value = super().construct_yaml_int(node)
        if abs(value) >= 10 ** MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(None, None, f"an integer of more than {MAX_INT_DIGITS} digits",
                                                    node.start_mark)
        return value

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
            if key in result:            # parse_yaml finds them first, with the key path
                raise DuplicateKey(str(key), key_node.start_mark.line + 1, result.lines[key])
            result[key] = self.construct_object(value_node, deep=True)
            result.lines[key] = key_node.start_mark.line + 1     # where a person looks for the key
        return result

    def construct_sequence(self, node, deep=False):
        result = MarkedList(self.construct_object(child, deep=True) for child in node.value)
        result.lines = [child.start_mark.line + 1 for child in node.value]
        return result


LineLoader.add_constructor("tag:yaml.org,2002:map", LineLoader.construct_mapping)
LineLoader.add_constructor("tag:yaml.org,2002:seq", LineLoader.construct_sequence)
LineLoader.add_constructor("tag:yaml.org,2002:int", LineLoader.construct_yaml_int)


def plain(value):
    """Strip the line-tracking subclasses (ordinary dicts and lists, e.g. for params)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def read_yaml_file(path: str, error: ErrorFactory, *, with_line: bool = False):
    """The document in file ``path`` (see ``parse_yaml``); an unreadable file is ``error`` too."""
    try:
        with open(path, "rb") as fh:
            text = fh.read()
    except (OSError, ValueError) as exc:          # ValueError: a NUL in the path
        raise error("", f"cannot read: {getattr(exc, 'strerror', None) or exc}", None) from None
    return parse_yaml(text, error, with_line=with_line)


def parse_yaml(text: bytes | str, error: ErrorFactory, *, with_line: bool = False):
    """The document in ``text`` with lines recorded (None when empty); any problem is ``error(...)``:
    not UTF-8, not valid YAML (with its line), nested too deeply, or a duplicate key (its full key
    path, and the line of the first). ``with_line``: (document, the line where it starts)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error("", f"not UTF-8 text (byte {exc.start})", None) from None
    loader = None
    try:
        loader = LineLoader(text)            # reads the first characters: a control character fails here
        node = loader.get_single_node()
        if node is None:
            return (None, None) if with_line else None
        _refuse_duplicate_keys(loader, node)
        document = loader.construct_document(node)
        return (document, node.start_mark.line + 1) if with_line else document
    except DuplicateKey as exc:
        raise error(exc.key_path, f"duplicate key (first at line {exc.first_line})", exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise error("", f"not valid YAML: {problem}", mark.line + 1 if mark else None) from None
    except RecursionError:
        raise error("", "not valid YAML: nested too deeply", None) from None
    finally:
        if loader is not None:
            loader.dispose()


def _refuse_duplicate_keys(loader: LineLoader, root) -> None:
    """Walk the composed document (iteratively: aliases may nest it deep) so that a duplicate key
    is reported with its full key path; the composer has already bounded what aliases add."""
    stack = [(root, "", False)]
    active: set[int] = set()                 # the nodes on the current path: a recursive alias stops here
    while stack:
        node, path, leaving = stack.pop()
        if leaving:
            active.discard(id(node))
            continue
        if id(node) in active:
            continue                         # the constructor refuses the recursion
        active.add(id(node))
        stack.append((node, path, True))
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, value_node in node.value:
                key = None
                if isinstance(key_node, yaml.ScalarNode):
                    key = loader.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    if key in seen:
                        raise DuplicateKey(join(path, key), line, seen[key])
                    seen[key] = line
                stack.append((value_node, join(path, key), False))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, f"{path}[{i}]", False) for i, child in enumerate(node.value))
