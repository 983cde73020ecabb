"""ALGO1's scripted order-entry day for the cancel-on-disconnect tests, importable by the test and by
the client process it SIGKILLs (tests/exchange/test_cancel_on_disconnect.py)."""
from __future__ import annotations

from exchange_process import OrderClient


def enter_hidden(client: OrderClient, token: str, side: str, shares: int, stock: str, price: int) -> None:
    client.send({"type": "O", "order_token": token, "buy_sell_indicator": side, "shares": shares, "stock": stock,
                 "price": price, "time_in_force": 99998, "firm": "", "display": "N", "capacity": "A",
                 "intermarket_sweep_eligibility": "N", "minimum_quantity": 0, "cross_type": "N",
                 "customer_type": "R"})


def place_orders(client: OrderClient) -> dict[str, int]:
    """ALGO1's day so far: K1 displayed (later partly filled), K2 displayed, K3 non-displayed, K4 canceled
    by the firm itself. Returns the order reference numbers."""
    assert client.next_message()["event_code"] == "S"
    client.enter("K1", "B", 300, "AAPL", 1_890_000)
    client.enter("K2", "S", 200, "MSFT", 4_300_000)
    enter_hidden(client, "K3", "B", 100, "SPY", 5_500_000)
    client.enter("K4", "B", 100, "AAPL", 1_800_000)
    client.cancel("K4")
    acks = [client.next_message() for _ in range(5)]
    assert [(m["type"], m["order_token"]) for m in acks] == [("A", "K1"), ("A", "K2"), ("A", "K3"), ("A", "K4"),
                                                             ("C", "K4")]
    return {m["order_token"]: m["order_reference_number"] for m in acks if m["type"] == "A"}
