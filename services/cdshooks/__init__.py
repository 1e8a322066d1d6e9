"""CDS Hooks 2.0 service: a second way an EHR shows Vigil's findings (``patient-view`` cards)
and collects clinicians' feedback into the same label store. See ``app`` for the routes."""
