"""The simulated setup: the one place that joins the appliance and the simulated exchange.

The appliance (feed, strategy, risk, OMS, supervisor, ops) never imports ``appliance.exchange``,
and the exchange imports nothing of the appliance but the wire codecs and the runtime's socket
helpers. What runs one against the other lives here: the exchange as a child process
(``exchange_process``, the only launcher: ``appliance up --sim``, the sandbox, the benchmarks
and the tests all start it through it), free loopback ports (``ports``), ``appliance up --sim``
(``up``) and the whole appliance against the exchange in a scratch directory (``sandbox``).
"""
