"""The venue login, kept out of ``shm_layout.yaml``: a small file only the appliance user can read.

The layout names the file (``processes.oms.params.credentials``, default ``run/venue.credentials``,
relative to the layout's directory); the password is never in the layout, a log line, status,
the journal or a metric. The format, one ``key = value`` a line, ``#`` starts a comment::

    # the OMS's SoupBinTCP login at the venue
    username = ALGO1
    password = secret1

Where it is read from: ``$CREDENTIALS_DIRECTORY/<the file's name>`` when systemd's
``LoadCredential=`` provides it (systemd copies the file into a private read-only directory that
only the unit's user can read), else the path itself. A file on disk is refused as
``runtime/private_file.py`` says (not a regular file, open to group or others, another user's).
Every refusal names the file and never quotes the password.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from appliance.runtime.private_file import PrivateFileError, read_private_file

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
        data = read_private_file(source, "venue credentials file", max_bytes=MAX_BYTES, check_mode=not from_systemd,
                                 missing_hint="create it with mode 0600: 'username = NAME' and 'password = SECRET' "
                                              "lines; see appliance/oms/credentials.py")
    except PrivateFileError as exc:
        raise CredentialsError(str(exc)) from None
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
