"""The Chat operation: one tool-calling turn of an agent's conversation with the tenant's model.

The scheduling agent calls the model through here rather than directly, so that the platform
has one LLM endpoint setting (``services.inference.llm.config``, prefix per purpose), one daily
budget per tenant and one cost ledger (``inference_llm_usage``, written by this service only).
The tenant is the caller's credential's; the conversation id is the ledger row's document id.
Message texts are never logged. A spent budget is not retried (an agent talking to a patient
hands over to staff rather than waiting for the next UTC day): FAILED_PRECONDITION, code
``budget_exhausted``; so is a tenant without the purpose's settings (``llm_not_configured``).
"""
from __future__ import annotations

import json

from services.core.config import ConfigError
from services.core.errors import ConflictError, ValidationError
from services.core.grpc.auth import current_caller
from services.core.logging import get_logger
from services.core.tenantdir import TenantDirectory
from services.inference.llm.engine import LlmEngine
from services.inference.result import BudgetExhausted
from vigil.v1 import inference_pb2

log = get_logger("vigil.inference.chat")

#: Purposes an agent may ask for (the engine ``llm`` of extraction goes through Extract).
AGENT_PURPOSES = ("scheduling",)
ROLES = ("system", "user", "assistant", "tool")
MAX_MESSAGES = 200
MAX_CHARS = 400_000          # every message's text together (about 100k tokens)
MAX_TOOLS = 32
MAX_ID_CHARS = 128


def _messages(request: inference_pb2.ChatRequest) -> list[dict]:
    if not 0 < len(request.messages) <= MAX_MESSAGES:
        raise ValidationError(f"messages: 1 to {MAX_MESSAGES} are required", code="bad_messages")
    if sum(len(m.content) for m in request.messages) > MAX_CHARS:
        raise ValidationError(f"messages longer than {MAX_CHARS} characters together", code="chat_too_long")
    out = []
    for m in request.messages:
        if m.role not in ROLES:
            raise ValidationError(f"message role must be one of {', '.join(ROLES)}", code="bad_role")
        message: dict = {"role": m.role, "content": m.content}
        if m.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
        if m.role == "tool":
            message["tool_call_id"] = m.tool_call_id
        out.append(message)
    return out


def _tools(request: inference_pb2.ChatRequest) -> list[dict]:
    if len(request.tools) > MAX_TOOLS:
        raise ValidationError(f"at most {MAX_TOOLS} tools", code="bad_tools")
    tools = []
    for t in request.tools:
        try:
            parameters = json.loads(t.parameters_json or "{}")
        except ValueError:
            raise ValidationError("tools: parameters_json is not JSON", code="bad_tools") from None
        if not t.name or not isinstance(parameters, dict):
            raise ValidationError("tools: a name and a JSON Schema object are required", code="bad_tools")
        tools.append({"type": "function", "function": {"name": t.name, "description": t.description,
                                                       "parameters": parameters}})
    return tools


class Chat:
    def __init__(self, tenants: TenantDirectory, llm: LlmEngine):
        self.tenants, self.llm = tenants, llm

    async def __call__(self, request: inference_pb2.ChatRequest, context) -> inference_pb2.ChatResponse:
        tenant = self.tenants.get(current_caller().tenant)
        if request.purpose not in AGENT_PURPOSES:
            raise ValidationError(f"purpose must be one of {', '.join(AGENT_PURPOSES)}", code="bad_purpose")
        if not request.conversation_id or len(request.conversation_id) > MAX_ID_CHARS:
            raise ValidationError("conversation_id is required (at most 128 characters)", code="bad_conversation_id")
        messages, tools = _messages(request), _tools(request)
        try:
            config, turn = await self.llm.chat(tenant, request.purpose, request.conversation_id, messages, tools)
        except BudgetExhausted:
            raise ConflictError("the tenant's daily LLM budget is spent", code="budget_exhausted") from None
        except ConfigError as exc:   # names the tenant and setting, never a key
            raise ConflictError(str(exc), code="llm_not_configured") from None
        log.info("inference.chat", tenant=tenant.id, purpose=request.purpose, model=config.model,
                 tool_calls=len(turn.tool_calls), prompt_tokens=turn.prompt_tokens,
                 completion_tokens=turn.completion_tokens)
        return inference_pb2.ChatResponse(
            message=inference_pb2.ChatMessage(role="assistant", content=turn.content, tool_calls=[
                inference_pb2.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in turn.tool_calls]),
            model=config.model, prompt_tokens=turn.prompt_tokens, completion_tokens=turn.completion_tokens)
