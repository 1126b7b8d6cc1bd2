"""Test support shared by every test level: infrastructure discovery, databases, polling."""
