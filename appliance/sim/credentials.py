"""The simulated venue's login for the OMS: the one place that picks the firm and writes it down.

``up --sim``, the test sandbox and the OMS benchmark all give the OMS the login of the simulated
exchange's firm whose MPID is the OMS's ``firm``, in a 0600 credentials file."""
from __future__ import annotations


def write_sim_login(path: str, exchange, mpid: str):
    """Write ``path`` (0600, never replacing a file) with the login of ``exchange``'s firm whose MPID
    is ``mpid``; that firm, or None (nothing written) when the exchange has no such firm."""
    from appliance.oms.credentials import write_venue_credentials
    firm = next((f for f in exchange.firms if f.mpid == mpid), None)
    if firm is not None:
        write_venue_credentials(path, firm.username, firm.password)
    return firm
