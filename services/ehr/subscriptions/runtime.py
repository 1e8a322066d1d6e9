"""Wiring of subscriptions into the EHR app: schema, hooks, the delivery worker, and the
middleware that tells the hooks which base URL the server is reached at."""
from __future__ import annotations

from services.core.db import ensure_schema
from services.ehr import hooks
from services.ehr.subscriptions import events, store as substore
from services.ehr.subscriptions.delivery import DeliveryWorker


async def start(services) -> DeliveryWorker:
    """Called from the app's lifespan with its ``Services``; returns the started worker."""
    await ensure_schema(services.store.platform, "ehr_subscriptions", substore.STEPS)
    events.configure(services.settings.public_url)
    hooks.register_in_transaction(events.on_write)
    hooks.register_post_commit(events.after_commit)
    worker = DeliveryWorker(services.store, registry=services.registry)
    worker.start()
    return worker


async def stop(worker: DeliveryWorker | None) -> None:
    if worker is not None:
        await worker.stop()


class RequestRootMiddleware:
    """Pure ASGI: records ``scheme://host`` of each HTTP request for the hooks (a contextvar)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), None)
        if host is None and scope.get("server"):
            host = "%s:%s" % tuple(scope["server"])
        token = events.REQUEST_ROOT.set(f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"
                                        if host else None)
        try:
            await self.app(scope, receive, send)
        finally:
            events.REQUEST_ROOT.reset(token)
