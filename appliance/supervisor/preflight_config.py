"""Check every process's configuration before anything starts, so a bad file stops ``up`` at once
with its file, key and reason instead of a process dying later."""
from __future__ import annotations

from appliance.runtime.agent import load_agent_class
from appliance.runtime.layout import Layout, LayoutError


def check_process_configs(layout: Layout) -> None:
    """Raises LayoutError for the first process whose agent cannot load or whose params are bad.

    An agent class may define ``check_params(layout, process) -> None`` (raising LayoutError);
    the feed's params are checked here directly.
    """
    for name, process in layout.processes.items():
        if name == "supervisor":
            continue
        cls = load_agent_class(process)
        check = getattr(cls, "check_params", None)
        if check is not None:
            check(layout, process)
        elif process.agent.startswith("appliance.feed."):
            from appliance.feed.config import FeedConfigError, parse_feed_params
            try:
                parse_feed_params(process.params, f"processes.{name}.params")
            except FeedConfigError as exc:
                raise LayoutError(layout.path, exc.key_path, exc.reason) from None
