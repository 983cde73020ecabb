"""Configuration: the strict line-tracking YAML loader, the two error shapes and the one checker.

A leaf package like ``wire/``: it imports nothing else of the appliance, so the simulated exchange
may use it too. Only modules that read configuration before an agent starts import it.
"""
