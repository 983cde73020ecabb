"""Pre-trade risk gateway: every new order and replace checked against named limits, fail-closed.

``limits`` reads and validates the limits file, ``state`` keeps positions, open orders and P&L
by symbol id, ``checks`` is the ordered check set (``RiskEngine``), ``agent`` the process around it.
"""
