"""The CapabilityStatement and SMART configuration, generated from what the server implements."""
from __future__ import annotations

from services.ehr import families, search
from services.ehr.auth import SIGNING_ALGS
from services.ehr.subscriptions.topics import TOPICS
from services.ehr.validation import resource_types

_KIND = {"id": "token", "lastupdated": "date", "code": "token", "concept": "token", "identifier": "token",
         "reference": "reference", "date": "date"}
#: Subscriptions R5 Backport IG: the topics this server fires and its two Subscription operations.
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"
TOPIC_CANONICAL_EXT = f"{BACKPORT}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
SUBSCRIPTION_STATUS_OP = f"{BACKPORT}/OperationDefinition/backport-subscription-status"
SUBSCRIPTION_EVENTS_OP = f"{BACKPORT}/OperationDefinition/backport-subscription-events"
#: FHIR Bulk Data Access IG (v2): system, Patient and Group $export.
BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
INTERACTIONS = ["read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type"]
READ_INTERACTIONS = ["read", "vread", "history-instance", "search-type"]
SUBSCRIPTION_STYLES = ("Two styles of rest-hook Subscription: topic-based (Backport IG: criteria is one of the "
                       "topic canonicals below; handshake, heartbeats, notification Bundles, $status, $events) "
                       "and classic R4 criteria-based (criteria is a search such as DocumentReference?status=current; "
                       "no handshake; each matching create or update is POSTed to channel.endpoint with the "
                       "channel headers: the resource when channel.payload is set, an empty body when it is not).")
EPIC_LIKE_NOTE = (" This EHR plays the epic-like family: no Subscriptions; DocumentReference search requires "
                  "patient or subject; writes of " + ", ".join(families.EPIC_REFUSED_WRITES) + " are refused (403).")


def _interactions(rtype: str, family: str) -> list[str]:
    if families.refuses_write(family, rtype):
        return READ_INTERACTIONS
    if family == families.EPIC_LIKE and rtype == "DocumentReference":
        return [i for i in INTERACTIONS if i != "history-type"]  # a type's history would be a search without a patient
    return INTERACTIONS


def statement(base: str, family: str = families.DEFAULT) -> dict:
    """What the tenant's FHIR API offers, which depends on the EHR family it plays."""
    resources = []
    for rtype in sorted(resource_types()):
        if rtype == "Subscription" and not families.offers_subscriptions(family):
            continue
        writable = not families.refuses_write(family, rtype)
        entry = {
            "type": rtype,
            "interaction": [{"code": code} for code in _interactions(rtype, family)],
            "versioning": "versioned-update", "readHistory": True, "updateCreate": writable,
            "conditionalCreate": writable, "conditionalUpdate": writable, "conditionalRead": "not-supported",
            "conditionalDelete": "not-supported", "referencePolicy": ["literal", "enforced"],
            "searchParam": [{"name": name, "type": _KIND[p.kind]} for name, p in sorted(search.params_for(rtype).items())],
        }
        if rtype == "Appointment":
            entry["operation"] = [{"name": "find", "definition": f"{base}/OperationDefinition/appointment-find"},
                                  {"name": "book", "definition": f"{base}/OperationDefinition/appointment-book"}]
        if rtype in ("Patient", "Group"):
            entry["operation"] = [{"name": "export", "definition": f"{BULK}/{rtype.lower()}-export"}]
        if rtype == "DocumentReference" and family == families.EPIC_LIKE:
            entry["documentation"] = "Search requires the patient (or subject) parameter."
        if rtype == "Subscription":
            entry["documentation"] = SUBSCRIPTION_STYLES
            entry["operation"] = [{"name": "status", "definition": SUBSCRIPTION_STATUS_OP},
                                  {"name": "events", "definition": SUBSCRIPTION_EVENTS_OP}]
            entry["extension"] = [{"url": TOPIC_CANONICAL_EXT, "valueCanonical": url} for url in sorted(TOPICS)]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": "2024-01-01", "kind": "instance",
        "fhirVersion": "4.3.0", "format": ["json"], "patchFormat": [],
        "software": {"name": "Vigil EHR sandbox", "version": "0.1.0"},
        "implementation": {"description": "Vigil EHR sandbox", "url": base},
        "rest": [{
            "mode": "server",
            "documentation": "Search: unknown parameters and modifiers are rejected (400); paging with _count and "
                             "_offset; _sort=_lastUpdated|-_lastUpdated; _summary=count. Conditional references "
                             "with identifier-only criteria that match nothing create a placeholder target. "
                             "Bulk Data $export (system, Patient, Group) with _type, _since "
                             "and _outputFormat, asynchronous (Prefer: respond-async). Not supported: XML, PATCH, "
                             "_include/_revinclude, chained parameters, conditional delete, system-level search and history."
                             + (EPIC_LIKE_NOTE if family == families.EPIC_LIKE else ""),
            "security": {
                "cors": False,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                         "code": "SMART-on-FHIR"}]}],
                "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                               "extension": [{"url": "token", "valueUri": f"{base}/auth/token"}]}],
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "operation": [{"name": "export", "definition": f"{BULK}/export"}],
        }],
    }


def smart_configuration(base: str) -> dict:
    return {
        "issuer": base,
        "token_endpoint": f"{base}/auth/token",
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write", "system/*.*"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }
