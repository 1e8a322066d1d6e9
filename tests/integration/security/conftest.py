"""Tenant isolation tests: fixtures, and the "N attempts, N denied" summary at the end of the run.

The fixtures and the summary hook live in ``tests/fixtures/security.py`` so the e2e adversarial
suite can import the same collector.
"""
from tests.fixtures.security import (  # noqa: F401  (pytest finds fixtures and hooks by name)
    adversary, admin_pool, pools, provision, pytest_terminal_summary, secrets, two_tenants,
)
