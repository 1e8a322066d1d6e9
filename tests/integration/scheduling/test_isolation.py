"""Cross-tenant attempts on the scheduling agent's state: another tenant's Redis ACL user cannot
read or overwrite a conversation, its key cannot decrypt one, its PostgreSQL role sees no action
ledger rows, and its tools credential cannot reach the first tenant's ledger or EHR."""
from __future__ import annotations

import pytest
from redis.exceptions import NoPermissionError

from services.core import kv
from services.core.crypto import DecryptionError, Keyring
from services.core.errors import PermissionDeniedError
from services.core.tenantdb import TenantPools
from services.scheduling.state import PURPOSE
from services.scheduling.toolbox import Toolbox
from tests.fixtures.security import pytest_terminal_summary  # noqa: F401  (prints the attempt count)

pytest_plugins = ["tests.fixtures.security"]


@pytest.fixture
async def victim(sched):
    patient = await sched.patient()
    await sched.open(patient)
    await sched.say(patient, "tomorrow at 3")
    result = await sched.say(patient, "yes")
    assert "booked" in result.texts[0]
    return sched, patient


async def test_another_tenant_cannot_touch_the_conversation_or_ledger(victim, provision, stack, secrets, adversary):
    sched, patient = victim
    other = await provision()
    key = kv.key(sched.tenant, "conversation", patient)
    intruder = kv.tenant_client(stack, other, secrets)
    try:
        with adversary.attempt("scheduling: read another tenant's conversation in Redis", NoPermissionError):
            await intruder.get(key)
        with adversary.attempt("scheduling: overwrite another tenant's conversation in Redis", NoPermissionError):
            await intruder.set(key, b"{}")
        with adversary.attempt("scheduling: take another tenant's slot hold", NoPermissionError):
            await intruder.set(kv.key(sched.tenant, "slot-hold", "1"), "x", nx=True)
    finally:
        await intruder.aclose()
    blob = await sched.agents[-1][1].raw(sched.tenant, patient)
    pools = TenantPools(stack, secrets)
    try:
        with adversary.attempt("scheduling: decrypt a conversation with another tenant's key", DecryptionError):
            await Keyring(pools, secrets).decrypt(other, blob, PURPOSE)
        async with pools.tx(other) as conn:
            rows = await conn.fetchval("SELECT count(*) FROM vigil_scheduling_actions WHERE tenant = $1", sched.tenant)
        adversary.check("scheduling: read another tenant's action ledger rows", rows == 0, f"{rows} rows visible")
    finally:
        await pools.close()
    tools = Toolbox(sched.agents[-1][2], other)        # a valid credential of the other tenant
    with adversary.attempt("scheduling: other tenant's credential lists this tenant's appointments",
                           PermissionDeniedError):
        await tools.appointments(patient)              # the other tenant is not in the tools registry


async def test_ledger_rows_are_visible_to_their_own_tenant(victim):
    sched, patient = victim
    async with sched.pools.tx(sched.tenant) as conn:
        kinds = sorted(r["kind"] for r in await conn.fetch(
            "SELECT kind FROM vigil_scheduling_actions WHERE tenant = $1", sched.tenant))
    assert kinds.count("book") == 1 and kinds.count("message") == 3
