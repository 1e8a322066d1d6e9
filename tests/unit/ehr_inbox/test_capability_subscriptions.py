"""The CapabilityStatement tells the truth about subscriptions: every topic the server fires
and the $status / $events operations it serves."""
from services.ehr.capability import (SUBSCRIPTION_EVENTS_OP, SUBSCRIPTION_STATUS_OP, TOPIC_CANONICAL_EXT,
                                     statement)
from services.ehr.subscriptions.topics import TOPICS


def test_subscription_topics_and_operations_are_declared():
    cap = statement("http://ehr.test/fhir/t1")
    by_type = {r["type"]: r for r in cap["rest"][0]["resource"]}
    sub = by_type["Subscription"]
    declared = {e["valueCanonical"] for e in sub["extension"] if e["url"] == TOPIC_CANONICAL_EXT}
    assert declared == set(TOPICS) and len(declared) >= 4
    assert {op["name"]: op["definition"] for op in sub["operation"]} == {
        "status": SUBSCRIPTION_STATUS_OP, "events": SUBSCRIPTION_EVENTS_OP}
    assert [op["name"] for op in by_type["Appointment"]["operation"]] == ["find", "book"]
