"""The composition root: where the object graph of ``probed`` and ``probe`` is built.

It imports every floor (web, events, engine, probes, config, core), so it is the top
floor: nothing but the entry points (daemon.py, cli.py) imports it. Everything a part
uses is made here, before the part, and handed to it: no part makes another half-way.
"""
