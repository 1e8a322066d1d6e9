"""The clinician inbox of the EHR sandbox: server-rendered pages where a clinician sees the
Tasks Vigil wrote for them and accepts or overrides them.

Evidence representation (what the writeback stage must put on the Task)
------------------------------------------------------------------------
``Task.input`` entries, each with ``type.coding`` system ``http://vigil.example/fhir/CodeSystem/task-input``
(``INPUT_SYSTEM``) and one of these codes:

=================  ======================  ==================================================
code               value                   meaning
=================  ======================  ==================================================
``source-note``    valueReference          the note: ``DocumentReference/<id>/_history/<version>``
                                           (the exact version the offsets refer to; unversioned
                                           is read as the current version)
``finding``        valueCodeableConcept    the irAE category, coding system
                                           ``http://vigil.example/fhir/CodeSystem/irae-category``
                                           (code from docs/irae-taxonomy.md, e.g. ``colitis``)
``grade``          valueInteger            CTCAE grade 1-5 (absent when the note states none)
``evidence-start`` valueInteger            start offset of a quote, inclusive
``evidence-end``   valueInteger            end offset of the quote, exclusive
``evidence-quote`` valueString             the quote, verbatim
``model-version``  valueString             engine and model or rule-set version (used when no
                                           Provenance -> Device gives it)
=================  ======================  ==================================================

Offsets count Unicode code points (Python ``str`` indices) in the text of the note: the
first ``content[].attachment`` with a ``text/*`` contentType and inline ``data``, base64
decoded as UTF-8. ``text[start:end] == quote`` must hold; the n-th ``evidence-start``,
``evidence-end`` and ``evidence-quote`` form the n-th span (several spans are allowed).
A span that does not match the note is not highlighted and the page says so.

The AI label is shown when ``Task.meta.security`` has system
``http://terminology.hl7.org/CodeSystem/v3-ObservationValue`` code ``AIAST``. The model or
rule-set version comes from the Provenance that targets the Task (``agent.who`` -> Device ->
``Device.version[].value``), else from the ``model-version`` input.

Clinician actions (written through the FHIR storage path, so subscriptions see them):
Accept -> ``status = completed``, ``businessStatus`` ``accepted``; Override -> ``status =
rejected``, ``businessStatus`` ``overridden``, ``statusReason`` coded with
``OVERRIDE_SYSTEM`` (codes in ``actions.OVERRIDE_REASONS``), the free text as a ``Task.note``.
Both set ``lastModified`` and a ``note`` authored by the practitioner.
"""

INPUT_SYSTEM = "http://vigil.example/fhir/CodeSystem/task-input"
CATEGORY_SYSTEM = "http://vigil.example/fhir/CodeSystem/irae-category"
OVERRIDE_SYSTEM = "http://vigil.example/fhir/CodeSystem/override-reason"
BUSINESS_STATUS_SYSTEM = "http://vigil.example/fhir/CodeSystem/inbox-outcome"
AI_SECURITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
AI_SECURITY_CODE = "AIAST"
