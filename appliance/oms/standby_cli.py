"""``appliance oms-standby``: the hot standby OMS of a layout's ``oms`` process (``standby.py``).

    appliance oms-standby [--layout shm_layout.yaml] [--process oms] [--status-every S]
                          [--journal PATH [--fresh]] [--takeover off|auto|signal|now|remote] [--fence-timeout S]
                          [--primary HOST:PORT]

Connects to the primary's ``params.replication.primary`` address, keeps the standby journal
(``params.replication.standby_journal``, or ``--journal``: after a takeover the new standby writes
where the dead primary's journal was, ``--fresh``: archiving what is there first; a relative ``--journal``
is beside the layout file, as the layout's own paths are, whatever the working directory)
byte-identical to the primary's and the order state it makes; logs the state a takeover would log in with every ``--status-every`` seconds and on exit.

``--takeover`` (``takeover.py``): ``off`` (default) only copies; ``auto`` becomes the primary when the
stream from a primary that answered it stops and the process table's primary is gone; ``signal`` becomes it on
SIGUSR1 (the supervisor's, once it reaped the primary); ``now`` at once from its journal (the
supervisor's restart of a former standby that had become the primary). Always only after the old primary's
pid is seen gone (``--fence-timeout``, default 2 s; still alive: exit status 3, no login).
``remote``: the primary is on another box and this standby is the ``oms`` of this box's layout; it
becomes the primary when nothing came on the stream for ``replication.peer_timeout_ms``, fenced by the
venue (its login is refused while the old primary's session is live there, and retried).
``auto``, ``signal`` and ``now`` run over either transport (``tcp``, or ``shm``: this box's rings);
``remote`` over ``tcp`` only (``shm`` is this box's, refused: exit status 2).
``--primary HOST:PORT`` replicates from that primary instead of the layout's ``replication.primary``: after a
takeover from another box, the old primary's box attaches as the standby of the new primary (its address),
``--journal`` its old journal ``--fresh`` (archived first).
Runs until SIGINT or SIGTERM. Exit status 2 for a bad command line or layout.
"""
from __future__ import annotations

import argparse

TAKEOVER_MODES = ("off", "auto", "signal", "now", "remote")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", default="shm_layout.yaml", help="the layout (default shm_layout.yaml)")
    parser.add_argument("--process", default="oms", help="the OMS's process name in the layout (default oms)")
    parser.add_argument("--status-every", type=float, default=5.0, metavar="S",
                        help="log the standby's state this often (seconds, default 5)")
    parser.add_argument("--journal", metavar="PATH",
                        help="the standby's journal instead of params.replication.standby_journal "
                             "(relative: to the layout file's directory, as the layout's paths)")
    parser.add_argument("--fresh", action="store_true",
                        help="archive a journal already at the standby's path and copy the primary's from record 1")
    parser.add_argument("--takeover", choices=TAKEOVER_MODES, default="off",
                        help="become the primary: off, auto (stream stopped and primary gone), signal (SIGUSR1), "
                             "now, remote (the primary on another box: its stream unheard for peer_timeout_ms; "
                             "fenced by the venue)")
    parser.add_argument("--fence-timeout", type=float, default=2.0, metavar="S",
                        help="how long a takeover waits for the old primary's pid to be gone (default 2)")
    parser.add_argument("--primary", metavar="HOST:PORT",
                        help="replicate from this primary (an IPv4 address and port) instead of the layout's "
                             "replication.primary: the new primary on another box after a takeover")


def primary_address(text: str) -> tuple[str, int]:
    """``--primary HOST:PORT`` checked: an IPv4 address one can connect to and a port 1..65535 (UsageError)."""
    import ipaddress

    from appliance.command_io.arguments import UsageError
    host, _, port = text.rpartition(":")
    try:
        if ipaddress.IPv4Address(host).is_unspecified:
            raise ValueError
        number = int(port)
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise UsageError(f"--primary must be HOST:PORT, an IPv4 address to connect to and a port 1..65535, "
                         f"got {text[:60]!r}")
    return host, number


def standby_config(config, journal: str | None, layout_path: str):
    """(config with the standby's journal, the other journal: the primary's) for ``--journal``, a relative
    one resolved as the layout's own paths are (``layout_path``'s directory): the same name in the layout
    and on the command line is the same file, and it is the primary's journal when it names that."""
    import dataclasses
    import os

    from appliance.config.instruments import resolve_beside
    replication = config.replication
    mine = os.path.normpath(resolve_beside(journal, layout_path)) if journal else replication.standby_journal_path
    other = replication.standby_journal_path if mine == config.journal_path else config.journal_path
    return dataclasses.replace(config, replication=dataclasses.replace(replication, standby_journal_path=mine)), other


def primary_config(config, primary: str | None, takeover: str):
    """The primary this standby replicates from: ``--primary`` (checked; tcp only) instead of the layout's. A
    former remote standby restarted as the primary (``--takeover now``, the layout's ``takeover: remote``)
    listens for its standby on every address of this box, as its takeover did (``takeover_config``): the
    layout's primary host is the other box's."""
    import dataclasses

    from appliance.command_io.arguments import UsageError
    replication = config.replication
    if primary is not None:
        if replication.transport == "shm":
            raise UsageError("--primary: this layout's replication transport is shm (this box's rings), not tcp")
        host, port = primary_address(primary)
        replication = dataclasses.replace(replication, primary_host=host, primary_port=port)
    if takeover == "now" and replication.takeover == "remote":
        replication = dataclasses.replace(replication, primary_host="0.0.0.0")
    return dataclasses.replace(config, replication=replication)


def run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import time

    from appliance.command_io.arguments import UsageError
    from appliance.oms.config import OmsConfigError, parse_oms_params
    from appliance.oms.replication_shm import StandbyConflict
    from appliance.oms.standby import StandbyReplica
    from appliance.oms.takeover import Takeover, archive_journal, primary_unheard
    from appliance.runtime.layout import LayoutError, load_layout

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")
    try:
        layout = load_layout(args.layout)
    except (OSError, LayoutError) as exc:
        raise UsageError(str(exc)) from None
    if args.process not in layout.processes:
        raise UsageError(f"{args.layout}: no process named {args.process!r}")
    try:
        config = parse_oms_params(layout.processes[args.process].params, layout.path,
                                  f"processes.{args.process}.params")
    except OmsConfigError as exc:
        raise UsageError(f"{layout.path}: {exc.key_path}: {exc.reason}") from None
    if not config.replication.enabled:
        raise UsageError(f"{layout.path}: processes.{args.process}.params.replication.mode is off: no primary streams")
    config, primary_journal = standby_config(config, args.journal, layout.path)
    config = primary_config(config, args.primary, args.takeover)
    if args.takeover == "remote" and config.replication.transport == "shm":
        raise UsageError("--takeover remote: the primary is on another box, and replication transport shm is this "
                         "box's rings: use transport tcp (or --takeover auto|signal on this box)")
    if not 0 < args.fence_timeout <= 3600:
        raise UsageError("--fence-timeout must be more than 0 and at most 3600 seconds")
    stopping = []
    told = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.append(1))
    if args.takeover == "signal":
        signal.signal(signal.SIGUSR1, lambda *_: told.append(1))
    log = logging.getLogger("appliance.oms.standby")
    if args.fresh:
        archived = archive_journal(config.replication.standby_journal_path)
        if archived:
            log.info("--fresh: %s archived as %s", config.replication.standby_journal_path, archived)
    try:
        standby = StandbyReplica(config, list(layout.symbols), layout)
    except (LayoutError, RuntimeError) as exc:      # shm: rings missing from the layout, or a second standby
        raise UsageError(str(exc)) from None
    takeover = Takeover(layout, args.process, standby, primary_journal, remote=args.takeover == "remote") \
        if args.takeover != "off" else None
    if args.takeover == "now":
        if standby.journal is None:
            raise UsageError(f"--takeover now: no journal at {standby.path} to take over from")
        try:
            return takeover.run(args.fence_timeout, lambda: bool(stopping))
        finally:
            takeover.close()
            standby.close()
    log.info("standby of %s, journal %s, takeover %s",
             f"{config.replication.primary_host}:{config.replication.primary_port}"
             if config.replication.transport == "tcp" else "the layout's replication rings (shm)",
             standby.path, args.takeover)
    next_status = 0.0
    try:
        while not stopping:
            try:
                standby.poll(0.05)
            except StandbyConflict as exc:             # shm: another standby attached to the rings
                raise UsageError(str(exc)) from None
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + args.status_every
                log.info("standby state: %s", standby.state())
            # auto: a primary answered once (over shm a connect alone succeeds, primary or not), it
            # answers no more, and the process table's primary is gone
            if takeover is not None and (told or (args.takeover == "auto" and standby.answered_connections
                                                  and not standby.answered and takeover.primary_gone())
                                         or (args.takeover == "remote"
                                             and primary_unheard(standby, time.monotonic_ns()))):
                log.info("standby state at takeover: %s", standby.state())
                return takeover.run(args.fence_timeout, lambda: bool(stopping))
    finally:
        if takeover is not None:
            takeover.close()
        if standby.journal is not None:
            log.info("standby state at exit: %s", standby.state())
        standby.close()
    return 0
