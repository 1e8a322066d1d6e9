"""The one shape of an HTTP service's route table.

    ROUTES = [
        Route("/healthz", ("GET",), healthz),
        Route("/{tenant}/cds-services/{service_id}", ("POST",), hook),
    ]
    for path, methods, handler in ROUTES:
        app.add_api_route(path, handler, methods=list(methods))

Every HTTP service (cdshooks, the control console, ingest's receiver, the EHR sandbox) keeps one
table of these; their OpenAPI documents are built from the same rows.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence


class Route(NamedTuple):
    path: str
    methods: Sequence[str]
    handler: Callable[..., Any] | None
