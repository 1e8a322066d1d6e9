"""The hl7 stage: stored HL7 messages (``hl7-inbound``) become Vigil events, asynchronously."""
