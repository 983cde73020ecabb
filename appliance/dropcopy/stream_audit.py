"""The firm's record read back: the drop copies' events in the stream, as the audit trail's rows.

What ``appliance audit --nats URL`` exports: every event of ``appliance.<name>.events`` (one
appliance) or ``appliance.*.events`` (all), in stream order, each the journal audit's columns
(``oms/audit.py`` ``COLUMNS``) plus ``appliance`` and ``trading_day``. An ephemeral pull consumer
reads exactly the messages the stream held when it was made (its pending count), so the export
ends without waiting for a timeout. A message that is not one of the drop copy's events is
reported and skipped.
"""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from appliance.dropcopy.event_json import decode as decode_event
from appliance.oms.audit import COLUMNS

STREAM_COLUMNS = ("appliance", "trading_day", *COLUMNS)
FETCH = 1024


class StreamAuditError(RuntimeError):
    """The stream could not be read (NATS unreachable, no such stream)."""


def read_stream(url: str, stream: str, appliance: str | None = None, warn=None) -> list[dict]:
    """The stream's events of ``appliance`` (None: every appliance) as rows; ``warn(text)`` is
    told of each message skipped."""
    try:
        return asyncio.run(_read(url, stream, appliance, warn or (lambda _text: None)))
    except StreamAuditError:
        raise
    except Exception as exc:      # nats-py's errors, OSError, timeouts
        raise StreamAuditError(f"{url}: {type(exc).__name__}: {exc}") from None


async def _read(url: str, stream: str, appliance: str | None, warn) -> list[dict]:
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    from .publisher import connect_nats
    nc = await connect_nats(SimpleNamespace(url=url, credentials="", tls_ca="", tls_cert="", tls_key=""),
                            "appliance-audit")
    try:
        js = nc.jetstream(timeout=10)
        subject = f"appliance.{appliance}.events" if appliance else "appliance.*.events"
        try:
            await js.stream_info(stream)
        except NotFoundError:
            raise StreamAuditError(f"{url}: no stream {stream}") from None
        sub = await js.pull_subscribe(subject, stream=stream, config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=60.0))
        try:
            left = (await sub.consumer_info()).num_pending
            rows = []
            while left > 0:
                for message in await sub.fetch(min(FETCH, left), timeout=10):
                    left -= 1
                    row = _row(message.data)
                    if row is None:
                        warn(f"stream sequence {message.metadata.sequence.stream} on {message.subject[:80]} is not "
                             "a drop copy event: skipped")
                    else:
                        rows.append(row)
            return rows
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()


def _row(data: bytes) -> dict | None:
    try:
        event = decode_event(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("time_ns"), int) or \
            any(column not in event for column in STREAM_COLUMNS):
        return None
    return {column: event[column] for column in STREAM_COLUMNS}
