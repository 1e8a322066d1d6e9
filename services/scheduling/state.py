"""Conversation threads: one per tenant and patient, in Redis through the tenant's ACL client,
encrypted with the tenant's data key (purpose ``conversation``; the state holds message history,
which is PHI), with a TTL. Turns of one patient are serialized by a Redis lock, so two processes
never run the same conversation at once; a restarted process picks the thread up where it was."""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import asdict, dataclass, field

from services.core import kv
from services.core.config import Settings
from services.core.crypto import Keyring
from services.core.errors import RetryableError
from services.core.secrets import SecretSettings

PURPOSE = "conversation"
#: A conversation idles out after a week without a turn.
CONVERSATION_TTL_S = 7 * 24 * 3600
#: A turn holds the patient's lock at most this long (it is released at the end of the turn).
TURN_LOCK_S = 60
#: Waiting for another process's turn on the same patient: 100 polls x 0.1 s = 10 s, then retry later.
LOCK_POLLS, LOCK_POLL_S = 100, 0.1
#: Message ids remembered per conversation (duplicates older than this many turns are not expected).
SEEN_MAX = 200
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


@dataclass
class Conversation:
    id: str
    patient: str
    status: str = "open"                  # open | escalated | closed
    stage: str = "idle"                   # idle | offering | confirming | confirm-cancel
    offers: list[dict] = field(default_factory=list)        # [{slot_id, start, end}]
    selected: dict | None = None          # the held slot awaiting "yes"
    appointment: dict | None = None       # {id, start, end, slot_id}, as last verified
    reschedule: bool = False
    failed: int = 0
    turn: int = 0
    seen: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)        # Communication ids, both directions
    context: dict = field(default_factory=dict)              # from the follow-up request
    history: list[dict] = field(default_factory=list)        # LLM engine: [{role, content}]
    language: str = ""                    # the patient's language (a declared code), once known
    notified: list[str] = field(default_factory=list)        # staff-side changes already told
    last_sent: str = ""                   # Communication id of our latest message (what a yes answers)

    @classmethod
    def new(cls, patient: str, context: dict | None = None) -> "Conversation":
        return cls(id=uuid.uuid4().hex, patient=patient, context=dict(context or {}))

    def remember(self, message_key: str) -> None:
        self.seen = (self.seen + [message_key])[-SEEN_MAX:]


class ConversationStore:
    def __init__(self, settings: Settings, keyring: Keyring, secrets: SecretSettings | None = None,
                 ttl_s: int = CONVERSATION_TTL_S):
        self.settings, self.keyring, self.secrets, self.ttl_s = settings, keyring, secrets, ttl_s
        self.client = kv.TenantClients(settings, secrets)

    @staticmethod
    def _key(tenant: str, patient: str) -> str:
        return kv.key(tenant, "conversation", patient)

    async def load(self, tenant: str, patient: str) -> Conversation | None:
        blob = await self.client(tenant).get(self._key(tenant, patient))
        if blob is None:
            return None
        data = json.loads(await self.keyring.decrypt(tenant, blob, PURPOSE))
        return Conversation(**data)

    async def save(self, tenant: str, conversation: Conversation) -> None:
        blob = await self.keyring.encrypt(tenant, json.dumps(asdict(conversation)).encode(), PURPOSE)
        await self.client(tenant).set(self._key(tenant, conversation.patient), blob, ex=self.ttl_s)

    async def raw(self, tenant: str, patient: str) -> bytes | None:
        """The stored bytes (tests check they are ciphertext)."""
        return await self.client(tenant).get(self._key(tenant, patient))

    async def lock(self, tenant: str, patient: str) -> str:
        token = uuid.uuid4().hex
        name = kv.key(tenant, "conversation-lock", patient)
        for _ in range(LOCK_POLLS):
            if await self.client(tenant).set(name, token, nx=True, ex=TURN_LOCK_S):
                return token
            await asyncio.sleep(LOCK_POLL_S)
        raise RetryableError("another turn of this conversation is running", code="conversation_busy", retry_after=1.0)

    async def unlock(self, tenant: str, patient: str, token: str) -> None:
        await self.client(tenant).eval(_RELEASE, 1, kv.key(tenant, "conversation-lock", patient), token)

    async def close(self) -> None:
        await self.client.close()
