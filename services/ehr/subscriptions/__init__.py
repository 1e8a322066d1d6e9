"""Topic-based FHIR Subscriptions for R4 (the Subscriptions R5 Backport IG) in the EHR sandbox.

- ``topics``: the catalogue of SubscriptionTopic canonicals and what triggers each one.
- ``spec``: reading and validating a Subscription resource (backport profile).
- ``store``: the durable per-subscription state and event queue (PostgreSQL).
- ``events``: the write hooks that number and queue events inside the writing transaction.
- ``bundles``: notification Bundles (R4: ``type=history``, ``Parameters`` SubscriptionStatus first).
- ``delivery``: the worker that handshakes, delivers in order with retries, and sends heartbeats.
- ``operations``: ``Subscription/$status`` and ``Subscription/$events``.
- ``runtime``: start/stop wiring used by the app.
"""
