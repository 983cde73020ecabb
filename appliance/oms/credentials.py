"""The venue login, kept out of ``shm_layout.yaml``: a small file only the appliance user can read.

The layout names the file (``processes.oms.params.credentials``, default ``run/venue.credentials``,
relative to the layout's directory); the password is never in the layout, a log line, status,
the journal or a metric. The format, one ``key = value`` a line, ``#`` starts a comment::

    # the OMS's SoupBinTCP login at the venue
    username = ALGO1
    password = secret1

Where it is read from: ``$CREDENTIALS_DIRECTORY/<the file's name>`` when systemd's
``LoadCredential=`` provides it (systemd copies the file into a private read-only directory that
only the unit's user can read), else the path itself. A file on disk is refused, as ssh refuses a
private key, when it is not a regular file, when group or others may read or write it
(``mode & 0o077``), or when it belongs to another user than the one reading it (or root).
Every refusal names the file and never quotes the password.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass

USERNAME_RE = re.compile(r"[A-Za-z0-9]{1,6}")      # SoupBinTCP Alpha 6
PASSWORD_RE = re.compile(r"[!-~]{1,10}")           # SoupBinTCP Alpha 10, printable, no spaces
MAX_BYTES = 4096
KEYS = ("username", "password")


class CredentialsError(ValueError):
    """The credentials cannot be used: the message names the file and says what is wrong."""


@dataclass(frozen=True)
class VenueCredentials:
    username: str
    password: str
    source: str                        # the file read (for log lines: never the password)

    def __repr__(self) -> str:         # a traceback or a debug print must not show the password
        return f"VenueCredentials(username={self.username!r}, password=<hidden>, source={self.source!r})"

    __str__ = __repr__


def credentials_location(path: str) -> tuple[str, bool]:
    """(the file to read, whether systemd provided it): systemd's copy wins when it exists."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        provided = os.path.join(directory, os.path.basename(path))
        if os.path.lexists(provided):
            return provided, True
    return path, False


def load_venue_credentials(path: str) -> VenueCredentials:
    """The username and password from ``path`` (or systemd's copy of it); CredentialsError otherwise."""
    source, from_systemd = credentials_location(path)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CredentialsError(f"venue credentials file {source} does not exist (create it with mode 0600: "
                               f"'username = NAME' and 'password = SECRET' lines; see appliance/oms/credentials.py)"
                               ) from None
    except OSError as exc:
        why = "is a symbolic link (refused)" if exc.errno == errno.ELOOP else f"cannot be opened: {exc.strerror}"
        raise CredentialsError(f"venue credentials file {source} {why}") from None
    try:
        info = os.fstat(fd)                 # the file opened, not whatever the name points at now
        if not stat.S_ISREG(info.st_mode):
            raise CredentialsError(f"venue credentials file {source} is not a regular file")
        if not from_systemd:
            if info.st_mode & 0o077:
                raise CredentialsError(
                    f"venue credentials file {source} is accessible by group or others (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}); it must be private: chmod 600 {source}")
            if info.st_uid not in (os.geteuid(), 0):
                raise CredentialsError(f"venue credentials file {source} belongs to uid {info.st_uid}, not to "
                                       f"this user (uid {os.geteuid()}): chown it or use systemd's LoadCredential=")
        if info.st_size > MAX_BYTES:
            raise CredentialsError(f"venue credentials file {source} is {info.st_size} bytes; at most {MAX_BYTES}")
        try:
            data = os.read(fd, MAX_BYTES + 1)
        except OSError as exc:
            raise CredentialsError(f"venue credentials file {source} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    return parse_venue_credentials(data, source)


def parse_venue_credentials(data: bytes, source: str) -> VenueCredentials:
    """The two keys from the file's bytes; an error gives the line and never the password's value."""
    if len(data) > MAX_BYTES:
        raise CredentialsError(f"venue credentials file {source} is longer than {MAX_BYTES} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise CredentialsError(f"venue credentials file {source} is not ASCII text") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        where = f"venue credentials file {source} line {number}"
        if not sep or key not in KEYS:
            raise CredentialsError(f"{where}: expected 'username = NAME' or 'password = SECRET'")
        if key in values:
            raise CredentialsError(f"{where}: {key} given twice")
        if key == "username" and not USERNAME_RE.fullmatch(value):
            raise CredentialsError(f"{where}: username must be 1..6 letters or digits (SoupBinTCP Alpha 6)")
        if key == "password" and not PASSWORD_RE.fullmatch(value):
            raise CredentialsError(f"{where}: password must be 1..10 printable characters without spaces")
        values[key] = value
    missing = [key for key in KEYS if key not in values]
    if missing:
        raise CredentialsError(f"venue credentials file {source} has no {' and no '.join(missing)}")
    return VenueCredentials(values["username"], values["password"], source)


def write_venue_credentials(path: str, username: str, password: str) -> None:
    """Create ``path`` (mode 0600 from its creation; never replaces an existing file): what
    ``appliance up --sim`` and the test sandbox write for the simulated venue's firm."""
    if not USERNAME_RE.fullmatch(username) or not PASSWORD_RE.fullmatch(password):
        raise CredentialsError("the simulated venue's username or password does not fit SoupBinTCP's login")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"# the OMS's login at the venue (mode 0600; see appliance/oms/credentials.py)\n"
                  f"username = {username}\npassword = {password}\n")
