"""Reusable test doubles (fake upstream servers)."""
