"""Backtest (issue 17): a recorded ITCH day through the same strategy, risk and book code as live."""
