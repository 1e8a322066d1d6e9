import pytest



@pytest.fixture(autouse=True)
async def _drop_subscriptions(ehr_tenant):
    """Delete the test's Subscriptions so the shared sandbox stops delivering to dead endpoints."""
    yield
    for sub in await ehr_tenant.client.search("Subscription"):
        await ehr_tenant.client.delete("Subscription", sub["id"])
