"""The one configuration checker and the strict YAML loader, tested directly (appliance/config/).

Every input here stands for an untrusted file or params mapping: the only exception that may
come out is the caller's own error, saying where (file:line: key.path) and why, one way per kind.
"""
from __future__ import annotations

import re

import pytest

from appliance.config.checker import Checker, shown, type_name
from appliance.config.errors import ConfigFileError, ParamsError
from appliance.config.yaml_lines import MAX_DEPTH, parse_yaml, read_yaml_file


class MyFileError(ConfigFileError):
    pass


class MyParamsError(ParamsError):
    pass


def fail_of(call) -> Exception:
    with pytest.raises((ConfigFileError, ParamsError)) as info:
        call()
    return info.value


def load(text: str, file: str = "f.yaml"):
    return parse_yaml(text, lambda path, reason, line: MyFileError(file, path, reason, line))


PARAMS = Checker.for_params(MyParamsError)


# ------------------------------------------------------------------ the loader

def test_the_loader_records_lines_and_refuses_duplicate_keys_with_their_path():
    doc = load("a: 1\nb:\n  c: [x, y]\n")
    assert doc == {"a": 1, "b": {"c": ["x", "y"]}} and doc.lines == {"a": 1, "b": 2}
    error = fail_of(lambda: load("a: 1\nb:\n  c: 1\n  c: 2\n"))
    assert isinstance(error, MyFileError)
    assert str(error) == "f.yaml:4: b.c: duplicate key (first at line 3)"
    error = fail_of(lambda: load("l:\n  - {k: 1, k: 2}\n"))
    assert error.key_path == "l[0].k" and error.line == 2


@pytest.mark.parametrize("text,reason", [
    (b"\xff\xfe", "not UTF-8 text (byte 0)"),
    ("a: [1\n", "not valid YAML"),
    ("a: *nowhere\n", "not valid YAML"),
    ("a: !!float abc\n", "cannot read 'abc' as !!float"),
    ("a: !!int ''\n", "cannot read '' as !!int"),          # PyYAML: IndexError (found by the fuzz soak)
    ("a: !!int _\n", "cannot read '_' as !!int"),
    ("a: " + "9" * 200 + "\n", "an integer of more than 100 digits"),
    ("[" * 10_000 + "]" * 10_000, f"nested more than {MAX_DEPTH} levels deep"),
    ("a: !!python/object:os.system {}\n", "not valid YAML"),
])
def test_the_loader_turns_every_bad_document_into_the_callers_error(text, reason):
    assert reason in fail_of(lambda: load(text)).reason


def test_the_loader_refuses_a_billion_laughs():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    assert "aliases expand the document" in fail_of(lambda: load("\n".join(lines) + "\n")).reason


def test_an_empty_document_is_none_and_an_unreadable_file_is_the_callers_error(tmp_path):
    assert load("") is None and load("# nothing\n") is None
    error = fail_of(lambda: read_yaml_file(str(tmp_path / "missing.yaml"),
                                           lambda p, r, line: MyFileError("m.yaml", p, r, line)))
    assert error.reason.startswith("cannot read: ")


# ------------------------------------------------------------------ the checker: one way to say each thing

@pytest.mark.parametrize("check,reason", [
    (lambda c: c.integer(True, "k"), "expected an integer, got a boolean"),
    (lambda c: c.integer("7", "k"), "expected an integer, got a string"),
    (lambda c: c.integer(2.0, "k"), "expected an integer, got a number"),
    (lambda c: c.integer(70000, "k", None, 1, 65535), "must be 1..65535, got 70000"),
    (lambda c: c.integer(-1, "k", None, 0, 65535), "must not be negative, got -1"),
    (lambda c: c.integer(0, "k", None, 1), "must be >= 1, got 0"),
    (lambda c: c.integer(10, "k", None, None, 5), "must be <= 5, got 10"),
    (lambda c: c.integer(10 ** 5000, "k", None, 0, 10), "must be 0..10, got an integer of 16610 bits"),
    (lambda c: c.number(False, "k"), "expected a number, got a boolean"),
    (lambda c: c.number(float("nan"), "k", None, 0, 1), "nan is not a finite number"),
    (lambda c: c.number(float("inf"), "k"), "inf is not a finite number"),
    (lambda c: c.number(1.5, "k", None, 0, 1), "must be 0..1, got 1.5"),
    (lambda c: c.number(0, "k", None, above=0), "must be greater than 0, got 0"),
    (lambda c: c.boolean(1, "k"), "expected true or false, got an integer"),
    (lambda c: c.boolean(None, "k"), "expected true or false, got null"),
    (lambda c: c.string(7, "k"), "expected a string, got an integer (quote it)"),
    (lambda c: c.string(True, "k"), "expected a string, got a boolean (quote it)"),
    (lambda c: c.string([], "k"), "expected a string, got a list"),
    (lambda c: c.string("", "k"), "must not be empty"),
    (lambda c: c.string("aapl", "k", pattern=re.compile("[A-Z]{1,8}"), rule="1..8 capitals"),
     "'aapl' must be 1..8 capitals"),
    (lambda c: c.string("a" * 5000, "k", pattern=re.compile("b"), rule="b"), "'" + "a" * 60 + "...' must be b"),
    (lambda c: c.choice("fast", "k", None, ("a", "b")), "must be one of a, b, got 'fast'"),
    (lambda c: c.choice(1, "k", None, (True, False)), "must be one of True, False, got 1"),
    (lambda c: c.listing({"a": 1}, "k"), "expected a list, got a mapping"),
    (lambda c: c.typed(True, (int, None), "k"), "expected an integer or null, got a boolean"),
    (lambda c: c.typed("x", (str, list), "k"), None),
    (lambda c: c.typed(3, float, "k"), None),
    (lambda c: c.mapping([1], "k", None, ("a",)), "expected a mapping, got a list"),
])
def test_each_problem_is_said_one_way(check, reason):
    if reason is None:
        check(PARAMS)
        return
    error = fail_of(lambda: check(PARAMS))
    assert isinstance(error, MyParamsError) and error.key_path == "k" and error.reason == reason
    assert str(error) == f"k: {reason}"


def test_unknown_and_missing_keys_name_their_path_and_line():
    doc = load("top:\n  a: 1\n  zz: 2\n")
    c = Checker.for_file(MyFileError, "f.yaml")
    error = fail_of(lambda: c.mapping(doc["top"], "top", 1, ("b", "a")))
    assert str(error) == "f.yaml:3: top.zz: unknown key (allowed: a, b)"
    error = fail_of(lambda: c.mapping(doc["top"], "top", 1, ("a", "b", "zz"), required=("b",), hints={"b": "a b"}))
    assert str(error) == "f.yaml:1: top.b: missing required key (a b)"
    error = fail_of(lambda: c.mapping({1: 2}, "", None, ()))
    assert str(error) == "f.yaml: 1: unknown key (allowed: none)"
    error = fail_of(lambda: c.mapping({"a": True}, "p", None, {"a": int}))
    assert error.key_path == "p.a" and error.reason == "expected an integer, got a boolean"


def test_a_section_reads_typed_values_with_defaults_paths_and_lines():
    doc = load("version: 1\nnet:\n  port: 70000\n  host: 127.0.0.1\nlist: [a, 7]\n")
    c = Checker.for_file(MyFileError, "f.yaml")
    top = c.section(doc, "", 1, ("version", "net", "list", "opt"), required=("version",))
    assert top.integer("version", 1, 1) == 1
    net = top.section("net", ("host", "port"))
    assert net.string("host") == "127.0.0.1" and net.integer("missing", 0, 9, 5) == 5
    assert str(fail_of(lambda: net.integer("port", 1, 65535))) == "f.yaml:3: net.port: must be 1..65535, got 70000"
    assert top.section("opt", ("x",)).boolean("x", False) is False            # an absent section: its defaults
    assert top.number("opt", 0, None, None, nullable=True) is None
    items = list(top.items("list"))
    assert [(i, item, path) for i, item, path, _ in items] == [(0, "a", "list[0]"), (1, 7, "list[1]")]
    assert str(fail_of(lambda: c.string(items[1][1], items[1][2], items[1][3]))) == \
        "f.yaml:5: list[1]: expected a string, got an integer (quote it)"
    assert str(fail_of(lambda: top.get("nothere"))) == "f.yaml:1: nothere: missing required key"


@pytest.mark.parametrize("value", [None, 7, "x", [1, 2], {"deep": {"er": [[[[{}]]]]}}, 10 ** 4000, float("nan"),
                                   b"bytes", object()])
def test_any_value_where_a_mapping_or_a_scalar_is_expected_is_the_callers_error(value):
    for check in (lambda: PARAMS.section(value, "p", None, ("a",), required=("a",)),
                  lambda: PARAMS.integer(value, "p", None, 0, 10),
                  lambda: PARAMS.string(value, "p", pattern=re.compile("[a-z]"), rule="a letter"),
                  lambda: PARAMS.boolean(value, "p"),
                  lambda: list(PARAMS.items(value, "p"))):
        try:
            check()
        except MyParamsError as error:
            assert len(str(error)) < 400
        # no other exception: the test fails on any


def test_deep_nesting_from_a_file_is_refused_where_it_starts():
    text = "a:\n" + "".join("  " * i + f"- k{i}:\n" for i in range(1, 200))
    error = fail_of(lambda: load(text))
    assert "nested" in error.reason and error.line is not None


def test_helpers_name_values_in_words():
    assert [type_name(v) for v in (True, 1, 1.5, "s", [], {}, None)] == \
        ["a boolean", "an integer", "a number", "a string", "a list", "a mapping", "null"]
    assert shown(-(10 ** 400)).startswith("an integer of ") and shown(3) == "3"
