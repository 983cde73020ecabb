"""A control socket only the appliance's own user can reach, and who is calling.

Both control sockets (the supervisor's and the simulated exchange's) take commands that stop or
change trading, so only the appliance's own user may reach them: the socket lives in a
directory only that user can enter (created 0700; an existing one that group or others may use,
or that another user owns, is refused), it is bound under a 0177 umask so it is 0600 from its
first instant, and every state-changing command is logged with the caller's uid and pid from
``SO_PEERCRED``. A client checks the other way round that the server it reached runs as its own
user (or root) before it sends anything, so a socket planted by someone else gets no command.
"""
from __future__ import annotations

import os
import socket
import stat
import struct
import threading
from dataclasses import dataclass

MAX_PATH = 107                    # sun_path holds 108 bytes with the terminating NUL
_UCRED = struct.Struct("3i")      # pid, uid, gid
_UMASK_LOCK = threading.Lock()    # the umask is per process: bind under it one socket at a time


class ControlSocketError(OSError):
    """The socket cannot be used safely: the message says why and what to do."""


@dataclass(frozen=True)
class Caller:
    pid: int
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"uid {self.uid} pid {self.pid}"


UNKNOWN_CALLER = Caller(0, -1, -1)


def peer_of(sock: socket.socket) -> Caller:
    """The process at the other end of a connected UNIX socket (the kernel's word, not the client's)."""
    try:
        pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return UNKNOWN_CALLER
    return Caller(pid, uid, gid)


def private_directory(directory: str) -> None:
    """Create ``directory`` 0700 (with its parents), or check an existing one is this user's and
    closed to group and others; ControlSocketError otherwise."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise ControlSocketError(f"control socket directory {directory} is not a directory")
    if info.st_uid != os.geteuid():
        raise ControlSocketError(f"control socket directory {directory} belongs to uid {info.st_uid}, not to this "
                                 f"user (uid {os.geteuid()}); choose a directory of this user's")
    if info.st_mode & 0o077:
        raise ControlSocketError(f"control socket directory {directory} is open to group or others (mode "
                                 f"{stat.S_IMODE(info.st_mode):04o}); it must be private: chmod 700 {directory}")


def bind_private(path: str, backlog: int = 64) -> socket.socket:
    """A listening, non-blocking UNIX socket at ``path``, mode 0600 in a private directory. A stale
    socket (nobody answers) is replaced; a live one is an error (another server owns it)."""
    path = os.path.abspath(path)
    if len(os.fsencode(path)) > MAX_PATH:
        raise ControlSocketError(f"control socket path {path} is longer than {MAX_PATH} bytes; configure a shorter one")
    private_directory(os.path.dirname(path))
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ControlSocketError(f"{path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)                # stale: its owner is gone
        else:
            raise ControlSocketError(f"another server is listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _UMASK_LOCK:
            old = os.umask(0o177)
            try:
                sock.bind(path)
            finally:
                os.umask(old)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def connect_checked(path: str, timeout: float) -> socket.socket:
    """A connection to the server at ``path``, refused when that server runs as another user than
    this one (or root): a command must not go to a socket someone else planted."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        server = peer_of(sock)
        if server.uid not in (os.geteuid(), 0):
            raise ControlSocketError(f"the server on {path} runs as uid {server.uid}, not as this user "
                                     f"(uid {os.geteuid()}); not sending it anything")
    except BaseException:
        sock.close()
        raise
    return sock
