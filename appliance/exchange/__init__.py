"""The simulated exchange: a NASDAQ-like venue (ITCH 5.0 over MoldUDP64, OUCH 4.2 over SoupBinTCP 3.0).

A product of its own for rehearsing strategies and failures on one machine. It shares the wire
codecs (``appliance.wire``) with the appliance and nothing else; the appliance's components never
import it.
"""
