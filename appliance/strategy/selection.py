"""A strategy chosen on the command line (``appliance up --strategy``, ``appliance strategy check``)
instead of the one the layout names.

The layout's strategy process keeps its own settings (strategy id, timer, symbols, queue bound);
SPEC replaces its ``strategy`` and the parameters FILE its parameters, inline or file alike (the
reference market maker's parameters mean nothing to another strategy; without FILE the strategy
gets its ``Parameters`` defaults). Relative paths on a command line are the caller's: they are
resolved against the working directory, then the layout's directory, and handed on absolute.
Everything is then checked the way the strategy process checks it, so a bad SPEC or FILE stops
before anything starts.
"""
from __future__ import annotations

import os

from .config import StrategyConfigError, parse_strategy_params
from .loader import LoadedStrategy, load_strategy, names_a_file, resolve_path

STRATEGY_PROCESS = "strategy"           # the layout's process that runs the strategy (the supervisor's name too)
REPLACED_KEYS = ("strategy", "parameters", "parameters_file")


def select_strategy(layout, spec: str, parameters_file: str | None = None, *, cwd: str | None = None,
                    options: tuple[str, str] = ("--strategy", "--strategy-params")) -> tuple[dict, LoadedStrategy]:
    """(the strategy process's params with SPEC and FILE, the loaded class and parameters); raises
    StrategyConfigError naming ``options`` (the command line's words for SPEC and FILE) or the
    parameters file's line."""
    spec_option, file_option = options
    process = layout.processes.get(STRATEGY_PROCESS)
    if process is None:
        raise StrategyConfigError(spec_option, f"the layout {layout.path} has no process named "
                                               f"{STRATEGY_PROCESS!r} to run it in")
    base_dirs = list(dict.fromkeys([cwd or os.getcwd(), os.path.dirname(os.path.abspath(layout.path))]))
    target, sep, class_name = spec.rpartition(":")
    if sep and target.strip() and names_a_file(target):
        path = resolve_path(target, base_dirs)
        if path is None:
            raise StrategyConfigError(spec_option, f"no such file: {target} (looked in {', '.join(base_dirs)})")
        spec = f"{os.path.abspath(path)}:{class_name}"
    params = {key: value for key, value in (process.params or {}).items() if key not in REPLACED_KEYS}
    params["strategy"] = spec
    if parameters_file is not None:
        path = resolve_path(parameters_file, base_dirs) if parameters_file.strip() else None
        if path is None:
            raise StrategyConfigError(file_option, f"no such file: {parameters_file!r} "
                                                   f"(looked in {', '.join(base_dirs)})")
        params["parameters_file"] = os.path.abspath(path)
    key = f"processes.{STRATEGY_PROCESS}.params"
    words = {f"{key}.strategy": spec_option, f"{key}.parameters_file": file_option}
    try:
        config = parse_strategy_params(params, key, layout.symbols)
        loaded = load_strategy(config, key_path=key, layout_path=layout.path, layout_symbols=layout.symbols,
                               instruments=layout.instruments)     # as the strategy process loads it
    except StrategyConfigError as exc:
        inline = f"{key}.parameters"
        if exc.key_path == inline or exc.key_path.startswith(inline + "."):       # none given: the defaults
            where = exc.key_path[len(inline) + 1:]
            raise StrategyConfigError(file_option, f"{where + ': ' if where else ''}{exc.reason} (no parameters "
                                                   f"file given: only the strategy's Parameters defaults)") from None
        raise StrategyConfigError(words.get(exc.key_path, exc.key_path), exc.reason, exc.file, exc.line) from None
    return params, loaded
