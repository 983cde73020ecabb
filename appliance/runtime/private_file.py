"""Reading a secret from a file only its owner may read: the venue credentials, the exporter's
basic-auth password and TLS key. Refused, as ssh refuses a private key, when it is not a regular
file (a symbolic link, a FIFO, a directory), when group or others may read or write it
(``mode & 0o077``), or when it belongs to another user than the one reading it (or root). Every
refusal names the file and says what to do; none quotes the contents."""
from __future__ import annotations

import errno
import os
import stat


class PrivateFileError(ValueError):
    """The file cannot be trusted or read: the message names it and says why."""


def read_private_file(path: str, what: str, *, max_bytes: int = 4096, check_mode: bool = True,
                      missing_hint: str = "") -> bytes:
    """The file's bytes. ``check_mode=False`` for a copy systemd made (``$CREDENTIALS_DIRECTORY``
    is a private read-only mount; its files may carry an ACL that shows as group bits)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PrivateFileError(f"{what} {path} does not exist{f' ({missing_hint})' if missing_hint else ''}") \
            from None
    except OSError as exc:
        why = "is a symbolic link (refused)" if exc.errno == errno.ELOOP else f"cannot be opened: {exc.strerror}"
        raise PrivateFileError(f"{what} {path} {why}") from None
    try:
        info = os.fstat(fd)                 # the file opened, not whatever the name points at now
        if not stat.S_ISREG(info.st_mode):
            raise PrivateFileError(f"{what} {path} is not a regular file")
        if check_mode:
            if info.st_mode & 0o077:
                raise PrivateFileError(f"{what} {path} is accessible by group or others (mode "
                                       f"{stat.S_IMODE(info.st_mode):04o}); it must be private: chmod 600 {path}")
            if info.st_uid not in (os.geteuid(), 0):
                raise PrivateFileError(f"{what} {path} belongs to uid {info.st_uid}, not to this user "
                                       f"(uid {os.geteuid()}): chown it or use systemd's LoadCredential=")
        if info.st_size > max_bytes:
            raise PrivateFileError(f"{what} {path} is {info.st_size} bytes; at most {max_bytes}")
        try:
            return os.read(fd, max_bytes + 1)
        except OSError as exc:
            raise PrivateFileError(f"{what} {path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
