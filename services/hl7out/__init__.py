"""hl7out: the HL7 v2 outbound results channel. Triage decisions of tenants whose integration
profile delivers ``hl7v2`` go to the tenant's interface engine as ORU^R01 or MDM^T02 over MLLP
(optionally TLS), delivered when the engine answers AA. See ``handler`` (the stage), ``message``
(the segments), ``link`` (connections and ACKs), ``patients`` (PID-3)."""
