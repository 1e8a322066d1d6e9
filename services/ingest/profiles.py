"""Start-up checks: ingest refuses to start on a tenant profile it cannot honour.

The errors name the setting at fault (the registry key or the environment variable)."""
from __future__ import annotations

from services.core.config import ConfigError
from services.core.tenancy import Registry
from services.ingest.config import IngestSettings

#: Triggers by which the EHR calls ingest (its Subscriptions' channel.endpoint).
PUSH_TRIGGERS = ("backport-topic", "r4-criteria")
#: Families whose EHR offers no Subscriptions (Epic, Oracle Health: HL7v2 feeds and polling instead).
NO_SUBSCRIPTIONS = ("epic-like", "oracle-like")


def check(registry: Registry, ingest: IngestSettings) -> None:
    for tenant in registry:
        profile = tenant.integration
        if not profile.declared:
            continue
        pushed = [t for t in PUSH_TRIGGERS if profile.has_trigger(t)]
        if pushed and profile.family in NO_SUBSCRIPTIONS:
            raise ConfigError(f"tenant {tenant.id}: integration.triggers has {', '.join(pushed)} but "
                              f"integration.family is {profile.family}, whose EHR offers no Subscriptions: use "
                              "hl7v2-feed or patient-poll")
        if profile.has_trigger("r4-criteria") and not ingest.public_url_set:
            raise ConfigError(f"tenant {tenant.id}: integration.triggers has r4-criteria, so the EHR must reach "
                              "ingest's notify URL: set VIGIL_INGEST_PUBLIC_URL")
