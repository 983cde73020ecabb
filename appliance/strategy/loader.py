"""Loading a user's strategy: its class from a module path or a file, its parameters from YAML, validated.

``strategy: package.module:ClassName`` imports a module from the Python path;
``strategy: path/to/file.py:ClassName`` loads a file that lives anywhere (outside this package),
whose directory is then appended to ``sys.path`` so it may import its own helper modules.

A strategy declares its parameters as a dataclass named ``Parameters`` (types and defaults);
the loader builds it from the inline ``parameters`` mapping or the ``parameters_file`` YAML and
refuses, with the key path (and file:line) and the reason: an unknown key, a missing required
key, a wrong type, a value ``__post_init__`` rejects (raise ValueError there), and whatever the
class's ``validate_parameters(parameters, layout_symbols)`` rejects. Supported field types:
int, float, bool, str, ``X | None``, ``Literal[...]``, enums (by name), ``list[T]``,
``tuple[T, ...]``, ``dict[str, T]`` and nested dataclasses. A strategy without ``Parameters``
gets the raw mapping, read-only.

All of this runs before the agent starts; nothing here is on the hot path.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import importlib
import importlib.util
import os
import re
import sys
import traceback
import types
import typing
from dataclasses import dataclass
from typing import Any

from appliance.config.checker import Checker, type_name
from appliance.config.errors import join, line_of
from appliance.config.yaml_lines import MarkedDict, read_yaml_file

from .api import Strategy
from .config import StrategyConfig, StrategyConfigError
from .fees import NO_FEES, FeeSchedule, parse_fee_schedule


@dataclass(frozen=True)
class LoadedStrategy:
    strategy_class: type[Strategy]
    parameters: Any
    source: str                  # where the class came from (for the log)
    parameters_source: str       # "inline", or the parameters file's path
    fees: FeeSchedule = NO_FEES  # from ``fees_file`` (none: every fill costs 0)


# ---------------------------------------------------------------------------------------------
# The parameters file (appliance/config/yaml_lines.py)
# ---------------------------------------------------------------------------------------------

def load_parameters_file(path: str) -> dict:
    """The mapping in a YAML parameters file (empty file: {}); errors name the file and line."""
    data = read_yaml_file(path, lambda key_path, reason, line: StrategyConfigError(key_path, reason, file=path,
                                                                                  line=line))
    if data is None:
        return MarkedDict()
    if not isinstance(data, dict):
        raise StrategyConfigError("", f"expected a mapping of parameters, got {type_name(data)}", file=path, line=1)
    return data


def load_fee_schedule(path: str, symbols: tuple[str, ...] = ()) -> FeeSchedule:
    """The fee schedule in a YAML file (``fees.py`` says the format); errors name the file, key and line.
    ``symbols``: when given, the only symbols it may name (the layout's). The backtest reads it here too."""
    def error(key_path, reason, line):
        return StrategyConfigError(key_path, reason, file=path, line=line)
    document = read_yaml_file(path, error)
    if document is None:
        raise StrategyConfigError("", "empty: a fee schedule needs default: {A, R, other}", file=path, line=1)
    return parse_fee_schedule(document, Checker(error), tuple(symbols), source=path)


# ---------------------------------------------------------------------------------------------
# Building a Parameters dataclass
# ---------------------------------------------------------------------------------------------

class _Builder:
    """Converts parsed YAML into typed values through the one checker, failing with the key path, file
    and line."""

    def __init__(self, base_path: str, file: str | None):
        self.base_path = base_path
        self.file = file
        self.check = Checker(lambda path, reason, line: StrategyConfigError(path or base_path or "<top>", reason,
                                                                            file=file, line=line))

    def fail(self, path: str, reason: str, line: int | None):
        self.check.fail(path, reason, line)

    def dataclass(self, cls: type, raw, path: str, line: int | None):
        try:
            hints = typing.get_type_hints(cls)
        except Exception as exc:    # a forward reference the module cannot resolve
            self.fail(path, f"cannot resolve the field types of {cls.__qualname__}: {exc}", line)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        required = [name for name, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        raw = self.check.mapping({} if raw is None else raw, path, line, tuple(fields), required)
        values = {name: self.value(raw[name], hints.get(name, Any), join(path, name), line_of(raw, name) or line)
                  for name in fields if name in raw}
        try:
            return cls(**values)
        except (ValueError, TypeError) as exc:
            self.fail(path, str(exc), line)

    def value(self, value, tp, path: str, line: int | None):
        check = self.check
        if tp is Any:
            return value
        if tp is type(None) or tp is None:
            return check.typed(value, None, path, line)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Union or origin is types.UnionType:
            if value is None and type(None) in args:
                return None
            options = [a for a in args if a is not type(None)]
            if len(options) == 1:
                return self.value(value, options[0], path, line)
            for option in options:
                try:
                    return self.value(value, option, path, line)
                except StrategyConfigError:
                    continue
            check.fail(path, f"expected {' or '.join(_describe(a) for a in args)}, got {type_name(value)}", line)
        if origin is typing.Literal:
            return check.choice(value, path, line, args)
        if tp is bool:
            return check.boolean(value, path, line)
        if tp is int:
            return check.integer(value, path, line)
        if tp is float:
            return float(check.number(value, path, line))
        if tp is str:
            return check.string(value, path, line, empty=True)
        if origin in (list, tuple) or tp in (list, tuple):
            check.listing(value, path, line)
            if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
                if len(args) != len(value):
                    check.fail(path, f"expected {len(args)} items, got {len(value)}", line)
                return tuple(self.value(v, a, item_path, item_line)
                             for (_, v, item_path, item_line), a in zip(check.items(value, path, line), args))
            item_type = args[0] if args else Any
            items = [self.value(v, item_type, item_path, item_line)
                     for _, v, item_path, item_line in check.items(value, path, line)]
            return tuple(items) if (origin is tuple or tp is tuple) else items
        if origin is dict or tp is dict:
            check.typed(value, dict, path, line)
            key_type, value_type = args if args else (Any, Any)
            result = {}
            for key, item in value.items():
                item_line = line_of(value, key) or line
                if key_type is str and not isinstance(key, str):
                    check.fail(join(path, key), f"keys must be strings, got {type_name(key)}", item_line)
                result[key] = self.value(item, value_type, join(path, key), item_line)
            return result
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.dataclass(tp, value, path, line)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return tp[check.choice(value, path, line, tp.__members__)]
        if isinstance(tp, type):
            if not isinstance(value, tp):
                check.expected(tp.__name__, value, path, line)
            return value
        check.fail(path, f"the strategy declares an unsupported parameter type {tp!r}", line)


def _describe(tp) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    if tp in names:
        return names[tp]
    return getattr(tp, "__name__", repr(tp))


def build_parameters(strategy_class: type[Strategy], raw, *, key_path: str = "", file: str | None = None):
    """The strategy's parameters object from parsed YAML (``raw``: a mapping or None)."""
    declared = getattr(strategy_class, "Parameters", None)
    builder = _Builder(key_path, file)
    if declared is None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            builder.fail("" if file else key_path, f"expected a mapping, got {type_name(raw)}", None)
        return types.MappingProxyType(dict(raw))
    if not (isinstance(declared, type) and dataclasses.is_dataclass(declared)):
        raise StrategyConfigError(key_path or "parameters", f"{strategy_class.__qualname__}.Parameters must be a "
                                                            f"dataclass, got {declared!r}")
    return builder.dataclass(declared, raw, "" if file else key_path, 1 if file else None)


# ---------------------------------------------------------------------------------------------
# The class
# ---------------------------------------------------------------------------------------------

def resolve_path(path: str, base_dirs: list[str]) -> str | None:
    """An existing file: absolute as is, relative against each base directory in turn."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path if os.path.isfile(path) else None
    for base in base_dirs:
        candidate = os.path.normpath(os.path.join(base, path))
        if os.path.isfile(candidate):
            return candidate
    return None


def _where_raised(exc: BaseException, file: str | None = None) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if file is not None:
        frames = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(file)] or frames
    if not frames:
        return ""
    frame = frames[-1]
    return f" at {frame.filename}:{frame.lineno}"


def _import_file(path: str, key_path: str):
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]
    name = f"appliance_user_strategy_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise StrategyConfigError(key_path, f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.append(directory)            # its own helper modules; appended, so it shadows nothing
    sys.modules[name] = module                # dataclasses and typing look the module up by name
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise StrategyConfigError(key_path, f"{exc.filename or path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        sys.modules.pop(name, None)
        raise StrategyConfigError(key_path, f"loading {path} raised {type(exc).__name__}: {exc}"
                                            f"{_where_raised(exc, path)}") from None
    return module


def names_a_file(target: str) -> bool:
    """Whether a spec's part before the ':' is a file (``path/to/file.py``) rather than a module path."""
    return target.endswith(".py") or "/" in target or os.sep in target


def load_strategy_class(spec: str, *, key_path: str = "strategy", base_dirs: list[str] | None = None) \
        -> tuple[type[Strategy], str]:
    """(class, description) from ``module.path:ClassName`` or ``path/to/file.py:ClassName``."""
    target, sep, class_name = spec.rpartition(":")
    if not sep or not target.strip() or not class_name.strip():
        raise StrategyConfigError(key_path, f"{spec!r} is not 'module.path:ClassName' or 'path/to/file.py:ClassName'")
    base_dirs = base_dirs if base_dirs is not None else [os.getcwd()]
    if names_a_file(target):
        path = resolve_path(target, base_dirs)
        if path is None:
            tried = target if os.path.isabs(target) else ", ".join(os.path.join(b, target) for b in base_dirs)
            raise StrategyConfigError(key_path, f"no such file: {target} (looked at {tried})")
        module = _import_file(path, key_path)
        origin = path
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise StrategyConfigError(key_path, f"cannot import {target!r}: {exc}") from None
        except SyntaxError as exc:
            raise StrategyConfigError(key_path, f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from None
        except Exception as exc:
            raise StrategyConfigError(key_path, f"importing {target!r} raised {type(exc).__name__}: {exc}"
                                                f"{_where_raised(exc)}") from None
        origin = target
    cls: Any = module
    for part in class_name.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            found = sorted(n for n, v in vars(module).items()
                           if isinstance(v, type) and issubclass(v, Strategy) and v is not Strategy)
            hint = f" (Strategy subclasses there: {', '.join(found)})" if found else ""
            raise StrategyConfigError(key_path, f"{origin} has no {class_name!r}{hint}")
    if not isinstance(cls, type) or not issubclass(cls, Strategy):
        raise StrategyConfigError(key_path, f"{class_name} in {origin} is not a subclass of "
                                            f"appliance.strategy.Strategy")
    if cls is Strategy:
        raise StrategyConfigError(key_path, "names the Strategy base class itself; name your subclass")
    return cls, f"{class_name} from {origin}"


def load_strategy(config: StrategyConfig, *, key_path: str = "processes.strategy.params",
                  layout_path: str | None = None, layout_symbols: tuple[str, ...] = (),
                  instruments=None) -> LoadedStrategy:
    """Class and validated parameters for a strategy process (raises StrategyConfigError). With the
    layout's ``instruments``, the class's ``validate_instruments`` sees every one (symbol -> Instrument)."""
    base_dirs = []
    if layout_path:
        base_dirs.append(os.path.dirname(os.path.abspath(layout_path)))
    if os.getcwd() not in base_dirs:
        base_dirs.append(os.getcwd())
    cls, source = load_strategy_class(config.strategy, key_path=f"{key_path}.strategy", base_dirs=base_dirs)
    if config.parameters_file is not None:
        path = resolve_path(config.parameters_file, base_dirs)
        if path is None:
            raise StrategyConfigError(f"{key_path}.parameters_file", f"no such file: {config.parameters_file} "
                                      f"(looked in {', '.join(base_dirs)})")
        parameters = build_parameters(cls, load_parameters_file(path), file=path)
        parameters_source, error_file, error_path = path, path, ""
    else:
        parameters = build_parameters(cls, config.parameters, key_path=f"{key_path}.parameters")
        parameters_source, error_file, error_path = "inline", None, f"{key_path}.parameters"
    try:
        cls.validate_parameters(parameters, tuple(layout_symbols))
        if instruments is not None:
            cls.validate_instruments(parameters, {i.symbol: i for i in instruments})
    except (ValueError, TypeError) as exc:
        raise StrategyConfigError(error_path or "<top>", str(exc), file=error_file) from None
    fees = NO_FEES
    if config.fees_file is not None:
        path = resolve_path(config.fees_file, base_dirs)
        if path is None:
            raise StrategyConfigError(f"{key_path}.fees_file", f"no such file: {config.fees_file} "
                                      f"(looked in {', '.join(base_dirs)})")
        fees = load_fee_schedule(path, tuple(layout_symbols))
    return LoadedStrategy(cls, parameters, source, parameters_source, fees)
