"""The live one-line status ``appliance up --sim`` prints every second."""
from __future__ import annotations

import sys

from .status import build_status, one_line


class StatusLine:
    def __init__(self, layout, memory, stream=sys.stdout):
        self.layout = layout
        self.memory = memory
        self.stream = stream

    def print(self) -> None:
        try:
            line = one_line(build_status(self.layout, self.memory))
        except Exception as exc:              # display only: never take the supervisor down
            line = f"status unavailable: {exc}"
        print(line, file=self.stream, flush=True)
