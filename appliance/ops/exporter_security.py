"""Remote metrics only on purpose: who may read the exporter, checked before it listens.

On a loopback address (127.0.0.0/8, ::1, ``localhost``) the exporter may serve plain HTTP: only
this host reaches it. Any other address (``0.0.0.0`` included) needs both TLS (``tls: {cert,
key}``) and HTTP basic auth (``basic_auth: {user, password_file}``); without them it refuses to
start and says which is missing. When TLS or basic auth are configured they are used on loopback
too. The key and the password file are secrets: refused when group or others may read them
(``runtime/private_file.py``). The password is compared in constant time; a wrong or missing one
gets 401 with ``WWW-Authenticate``.
"""
from __future__ import annotations

import base64
import hmac
import ipaddress
import ssl
from dataclasses import dataclass

from appliance.runtime.private_file import PrivateFileError, read_private_file

REALM = "appliance"


class ExposureError(ValueError):
    """The exporter must not start this way: the message says what is missing or wrong."""


@dataclass(frozen=True)
class Exposure:
    address: str = "127.0.0.1"
    tls_cert: str = ""
    tls_key: str = ""
    auth_user: str = ""
    auth_password_file: str = ""


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False                       # a host name: it may resolve anywhere


def check_exposure(exposure: Exposure) -> None:
    """ExposureError unless the settings are complete: TLS and basic auth each whole or absent,
    and both present on an address that is not loopback."""
    e = exposure
    if bool(e.tls_cert) != bool(e.tls_key):
        raise ExposureError("tls needs both cert and key (PEM files)")
    if bool(e.auth_user) != bool(e.auth_password_file):
        raise ExposureError("basic_auth needs both user and password_file")
    if e.auth_user and (":" in e.auth_user or not e.auth_user.isprintable()):
        raise ExposureError("basic_auth user must be printable and without ':'")
    if not is_loopback(e.address):
        missing = [what for what, given in (("tls: {cert, key}", e.tls_cert),
                                            ("basic_auth: {user, password_file}", e.auth_user)) if not given]
        if missing:
            raise ExposureError(f"the exporter would listen on {e.address}, which is not loopback: that needs "
                                f"{' and '.join(missing)} (or listen on 127.0.0.1 and let a local proxy expose it)")


def tls_context(exposure: Exposure) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2 at least), or None without TLS; ExposureError on bad files."""
    if not exposure.tls_cert:
        return None
    try:
        read_private_file(exposure.tls_key, "TLS key", max_bytes=1 << 20)
    except PrivateFileError as exc:
        raise ExposureError(str(exc)) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(exposure.tls_cert, exposure.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ExposureError(f"cannot load the TLS certificate {exposure.tls_cert} and key {exposure.tls_key}: "
                            f"{exc}") from None
    return context


def load_password(exposure: Exposure) -> bytes:
    """The basic-auth password: the password file's first line (mode 0600)."""
    try:
        data = read_private_file(exposure.auth_password_file, "basic_auth password file")
    except PrivateFileError as exc:
        raise ExposureError(str(exc)) from None
    password = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not password:
        raise ExposureError(f"basic_auth password file {exposure.auth_password_file} is empty")
    return password


def basic_auth(app, user: str, password: bytes):
    """A WSGI app that answers 401 unless the request carries ``user`` and ``password``."""
    expected = b"Basic " + base64.b64encode(user.encode() + b":" + password)

    def guarded(environ, start_response):
        given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if hmac.compare_digest(given, expected):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", f'Basic realm="{REALM}"'),
                                            ("Content-Type", "text/plain; charset=utf-8")])
        return [b"authentication required\n"]
    return guarded
