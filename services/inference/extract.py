"""The Extract operation: tenant from the credential, route to an engine, check every quote.

The last check before findings leave the service is structural and applies to every engine:
``text[start:end] == quote``; a finding that fails it is dropped, counted
(``vigil_inference_findings_dropped_total``) and the note is flagged for human review.
"""
from __future__ import annotations

from services.core.errors import ValidationError
from services.core.grpc.auth import current_caller
from services.core.logging import get_logger
from services.core.tenantdir import TenantDirectory
from services.inference import metrics
from services.inference.findings import Finding
from services.inference.routing import Router
from vigil.v1 import inference_pb2

log = get_logger("vigil.inference.extract")

#: Longest note accepted (characters; at most 4 MB of UTF-8, within the gRPC message limit).
#: Longer is a broken upstream, not a note; it is refused with INVALID_ARGUMENT, never truncated.
MAX_NOTE_CHARS = 1_000_000
MAX_ID_CHARS = 128


def verified(findings: list[Finding], text: str) -> tuple[list[Finding], int]:
    good = [f for f in findings if f.matches(text)]
    return good, len(findings) - len(good)


def _check(request: inference_pb2.ExtractRequest) -> None:
    if not request.document_id or len(request.document_id) > MAX_ID_CHARS:
        raise ValidationError("document_id is required (at most 128 characters)", code="bad_document_id")
    if not request.version or len(request.version) > MAX_ID_CHARS:
        raise ValidationError("version is required (at most 128 characters)", code="bad_version")
    if len(request.text) > MAX_NOTE_CHARS:
        raise ValidationError(f"text longer than {MAX_NOTE_CHARS} characters", code="note_too_long")


def to_message(f: Finding) -> inference_pb2.Finding:
    message = inference_pb2.Finding(category=f.category, start=f.start, end=f.end, quote=f.quote,
                                    attribution=f.attribution, confidence=f.confidence)
    if f.grade is not None:
        message.grade = f.grade
    return message


class Extract:
    def __init__(self, tenants: TenantDirectory, router: Router):
        self.tenants = tenants
        self.router = router

    async def __call__(self, request: inference_pb2.ExtractRequest, context) -> inference_pb2.ExtractResponse:
        tenant = self.tenants.get(current_caller().tenant)
        _check(request)
        engine = self.router.engine_for(tenant, request.engine)
        output = await self.router.run(engine, tenant, request.document_id, request.text)
        findings, failed = verified(output.findings, request.text)
        dropped = output.dropped + failed
        review = output.review_required or dropped > 0
        metrics.EXTRACTIONS.labels(tenant.id, output.engine).inc()
        if dropped:
            metrics.FINDINGS_DROPPED.labels(tenant.id, output.engine).inc(dropped)
        if review:
            metrics.REVIEW_REQUIRED.labels(tenant.id, output.engine).inc()
        log.info("inference.extracted", tenant=tenant.id, document_id=request.document_id, engine=output.engine,
                 findings=len(findings), dropped=dropped, review_required=review, notes=list(output.notes))
        return inference_pb2.ExtractResponse(
            document_id=request.document_id, version=request.version, findings=[to_message(f) for f in findings],
            engine=output.engine, engine_version=output.engine_version, prompt_hash=output.prompt_hash,
            review_required=review, dropped_findings=dropped)
