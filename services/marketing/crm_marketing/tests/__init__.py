"""Tests of the marketing domain, application and published events."""
