"""Control service tests: the security fixtures (provisioned tenants, adversary collector) and the
control plugin (service on loopback, tokens, real dead letters)."""
from tests.fixtures.security import (  # noqa: F401  (pytest finds fixtures and hooks by name)
    adversary, admin_pool, pools, provision, pytest_terminal_summary, secrets, two_tenants,
)

