"""The nameko transport: entrypoints, dependency providers and the process runner.

Only service.py modules import from here; domains and applications never do.
"""
