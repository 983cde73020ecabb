"""Benchmarks: each runs its peers in the same run and reports ratios."""
