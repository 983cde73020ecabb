"""How an operator's command reaches a process, shared by the appliance and the simulated exchange.

- ``arguments``      the command line's usage error and checked number arguments (argparse types)
- ``private_socket`` a control socket only this user can reach: a 0700 directory, a 0600 socket,
                     the caller's uid and pid, and a client that checks whose server it reached
- ``json_lines``     the control protocol, one JSON object per line each way, and its one client

A leaf package like ``wire/``: it imports nothing else of the appliance, so the exchange may use it.
"""
