"""Check every process's configuration before anything starts, so a bad file stops ``up`` at once
with its file, key and reason instead of a process dying later."""
from __future__ import annotations

from appliance.runtime.agent import load_agent_class
from appliance.runtime.layout import Layout, LayoutError


def check_process_configs(layout: Layout) -> set[str]:
    """Raises LayoutError for the first process whose agent cannot load or whose params are bad;
    returns the processes whose own settings say they are off (not started).

    An agent class may define ``check_params(layout, process) -> None`` (raising LayoutError);
    the feed's params are checked here directly. One may define ``wanted(layout, process) -> bool``:
    False leaves it out (the drop copy without a NATS URL).
    """
    off = set()
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
        wanted = getattr(cls, "wanted", None)
        if wanted is not None and not wanted(layout, process):
            off.add(name)
    return off
