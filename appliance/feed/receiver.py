"""Non-blocking UDP sockets of the feed: the MoldUDP64 receiver and the re-request channel.

Both receive into one preallocated buffer with ``recvmsg_into`` and take the
kernel's receive timestamp (SO_TIMESTAMPNS: epoch nanoseconds, CLOCK_REALTIME)
from the ancillary data, so the feed measures from the moment the packet reached
the host, not from when the duty cycle got to it. ``receive()`` never blocks and
never raises: -1 means nothing is waiting (or a transient error, counted).

``receive`` is the compiled ``_book_fast.Receiver``'s when built (an empty poll costs one syscall,
not a Python exception nor an argument parse: the feed polls its socket every duty cycle), else
``_receive_python``, its reference; both keep their state in one ``array('q')`` (``STAT_NAMES``).
``c_receiver`` (the C object, or None) is what the feed's compiled in-order path receives through.
"""
from __future__ import annotations

import socket
import struct
import time
from array import array

SO_TIMESTAMPNS = 35            # not exported by Python 3.11 (Linux, x86-64)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SO_RCVBUFFORCE = 33            # exceeds net.core.rmem_max; needs CAP_NET_ADMIN
IP_ADD_SOURCE_MEMBERSHIP = getattr(socket, "IP_ADD_SOURCE_MEMBERSHIP", 39)   # Linux; absent in Python 3.11

_TIMESPEC = struct.Struct("@qq")   # struct timespec: seconds, nanoseconds
_unpack_timespec = _TIMESPEC.unpack_from
_ANCBUFSIZE = socket.CMSG_SPACE(_TIMESPEC.size)
_SOL_SOCKET = socket.SOL_SOCKET
_MSG_TRUNC = socket.MSG_TRUNC
_MAX_FOREIGN_PER_RECEIVE = 64      # foreign datagrams skipped in one receive() before giving the loop back
# A receiver's state, one int64 each, in this order (the C receive writes the same slots).
STAT_NAMES = ("rx_ns", "source_host", "source_port", "packets", "bytes", "truncated", "errors", "missing_timestamps",
              "foreign", "foreign_host", "foreign_port")
(_RX_NS, _SOURCE_HOST, _SOURCE_PORT, _PACKETS, _BYTES, _TRUNCATED, _ERRORS, _MISSING, _FOREIGN, _FOREIGN_HOST,
 _FOREIGN_PORT) = range(len(STAT_NAMES))

try:  # built by setup.py
    from appliance.feed._book_fast import Receiver as _Receiver  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised when the extension is not built
    _Receiver = None


def _host_int(host: str) -> int:
    return int.from_bytes(socket.inet_aton(host), "big")


def _host_str(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def _stat(index: int):
    return property(lambda self: self._stats[index])


def set_rcvbuf(sock: socket.socket, size: int) -> int:
    """Ask for ``size`` bytes of receive buffer (forced past rmem_max when allowed); the effective size."""
    try:
        sock.setsockopt(_SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        try:
            sock.setsockopt(_SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError:
            pass
    return sock.getsockopt(_SOL_SOCKET, socket.SO_RCVBUF)


class _DatagramReceiver:
    """A non-blocking UDP socket read into a preallocated buffer with kernel receive timestamps.

    ``expected_source``: (host, port), or (host, None) for any port of host: datagrams from any
    other address are dropped unparsed and counted in ``foreign`` (``last_foreign`` says who)."""

    def __init__(self, sock: socket.socket, *, rcvbuf: int, buffer_size: int,
                 expected_source: tuple | None = None, use_c: bool | None = None) -> None:
        if buffer_size <= 0:
            raise ValueError("buffer_size must be > 0")
        self.sock = sock
        sock.setblocking(False)
        self.rcvbuf_effective = set_rcvbuf(sock, rcvbuf)
        sock.setsockopt(_SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.buffer = bytearray(buffer_size)
        self._buffers = [self.buffer]
        self._recvmsg_into = sock.recvmsg_into
        self._expected_host, self._expected_port = expected_source or (None, None)
        self.address: tuple = sock.getsockname()      # the bound (host, port)
        self._stats = array("q", bytes(8 * len(STAT_NAMES)))
        if use_c is None:
            use_c = _Receiver is not None
        if use_c and _Receiver is None:
            raise RuntimeError("the compiled receive appliance.feed._book_fast is not built")
        self.uses_c = bool(use_c)
        self.c_receiver = None
        if self.uses_c:
            host = -1 if self._expected_host is None else _host_int(self._expected_host)
            port = -1 if self._expected_host is None or self._expected_port is None else self._expected_port
            self.c_receiver = _Receiver(sock.fileno(), self.buffer, self._stats, host, port)
            self.receive = self.c_receiver.receive      # one C call, its arguments held (no Python frame per poll)
        else:
            self.receive = self._receive_python

    rx_ns = _stat(_RX_NS)
    packets = _stat(_PACKETS)
    bytes = _stat(_BYTES)
    truncated = _stat(_TRUNCATED)
    errors = _stat(_ERRORS)
    missing_timestamps = _stat(_MISSING)
    foreign = _stat(_FOREIGN)

    @property
    def source(self) -> tuple | None:
        """(host, port) of the last datagram returned."""
        stats = self._stats
        return (_host_str(stats[_SOURCE_HOST]), stats[_SOURCE_PORT]) if stats[_PACKETS] else None

    @property
    def last_foreign(self) -> tuple | None:
        """(host, port) of the last datagram dropped as foreign."""
        stats = self._stats
        return (_host_str(stats[_FOREIGN_HOST]), stats[_FOREIGN_PORT]) if stats[_FOREIGN] else None

    def _receive_python(self) -> int:
        """``receive``'s reference (and the path when the extension is not built)."""
        recvmsg_into = self._recvmsg_into
        expected_host, expected_port = self._expected_host, self._expected_port
        stats = self._stats
        for _ in range(_MAX_FOREIGN_PER_RECEIVE):
            try:
                nbytes, ancdata, flags, source = recvmsg_into(self._buffers, _ANCBUFSIZE)
            except BlockingIOError:
                return -1
            except OSError:                 # ICMP errors (ECONNREFUSED), ENOMEM, closed socket...
                stats[_ERRORS] += 1
                return -1
            if expected_host is not None and (source[0] != expected_host
                                              or expected_port is not None and source[1] != expected_port):
                stats[_FOREIGN] += 1
                stats[_FOREIGN_HOST] = _host_int(source[0])
                stats[_FOREIGN_PORT] = source[1]
                continue
            rx_ns = 0
            for level, kind, data in ancdata:
                if kind == SCM_TIMESTAMPNS and level == _SOL_SOCKET and len(data) >= 16:
                    seconds, nanoseconds = _unpack_timespec(data)
                    rx_ns = seconds * 1_000_000_000 + nanoseconds
            if not rx_ns:
                rx_ns = time.time_ns()
                stats[_MISSING] += 1
            if flags & _MSG_TRUNC:
                stats[_TRUNCATED] += 1
            stats[_RX_NS] = rx_ns
            stats[_SOURCE_HOST] = _host_int(source[0])
            stats[_SOURCE_PORT] = source[1]
            stats[_PACKETS] += 1
            stats[_BYTES] += nbytes
            return nbytes
        return -1

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
        if self.c_receiver is not None:
            self.c_receiver.detach()    # a closed socket's number may be reused: polls now count EBADF

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class UdpReceiver(_DatagramReceiver):
    """The MoldUDP64 feed socket: unicast on (host, port), or a multicast group joined on ``interface``.

    Only the publisher may feed us: ``source`` is its (host, port) or (host, None). Any local process
    can send a datagram to our port, so every datagram's source is checked; a multicast group is
    joined source-specifically (IP_ADD_SOURCE_MEMBERSHIP), so the kernel already drops the others."""

    def __init__(self, host: str, port: int, *, source: tuple[str, int | None], multicast_group: str | None = None,
                 interface: str = "127.0.0.1", rcvbuf: int = 4 << 20, buffer_size: int = 65536,
                 use_c: bool | None = None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if multicast_group is not None:
                sock.setsockopt(_SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((multicast_group, port))       # only this group's datagrams
                # struct ip_mreq_source: group, interface, source (Linux order)
                membership = (socket.inet_aton(multicast_group) + socket.inet_aton(interface)
                              + socket.inet_aton(source[0]))
                sock.setsockopt(socket.IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, membership)
            else:
                sock.bind((host, port))
            super().__init__(sock, rcvbuf=rcvbuf, buffer_size=buffer_size, expected_source=source, use_c=use_c)
        except BaseException:
            sock.close()
            raise
        self.multicast_group = multicast_group
        self.interface = interface


class RerequestChannel(_DatagramReceiver):
    """The socket that sends MoldUDP64 requests to the re-request server ``(host, port)`` and
    receives its answers; datagrams from any other address are dropped (``foreign``)."""

    def __init__(self, host: str, port: int, *, local_host: str = "127.0.0.1", rcvbuf: int = 4 << 20,
                 buffer_size: int = 65536, use_c: bool | None = None) -> None:
        server = (socket.gethostbyname(host), port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((local_host, 0))
            super().__init__(sock, rcvbuf=rcvbuf, buffer_size=buffer_size, expected_source=server, use_c=use_c)
        except BaseException:
            sock.close()
            raise
        self.server = server
        self._sendto = sock.sendto
        self.sent = 0
        self.send_errors = 0

    def send(self, packet: bytes) -> bool:
        """Send one request packet to the server; False (counted in ``send_errors``) on failure."""
        try:
            self._sendto(packet, self.server)
        except OSError:
            self.send_errors += 1
            return False
        self.sent += 1
        return True
