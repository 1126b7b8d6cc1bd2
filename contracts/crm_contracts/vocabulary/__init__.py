"""Closed sets of values that are part of the public language, one module per service.

Pure constants, no marshmallow: domain modules import them too, so a value accepted at the edge is
exactly a value the domain knows.
"""
