"""Redis: one ACL user per tenant; Redis itself answers NOPERM to anything outside vigil:<tenant>:*."""
from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from services.core import kv


@pytest.fixture
async def clients(stack, secrets, two_tenants):
    a, b = two_tenants
    ca, cb = kv.tenant_client(stack, a, secrets), kv.tenant_client(stack, b, secrets)
    yield a, b, ca, cb
    await ca.aclose()
    await cb.aclose()


async def test_tenant_client_does_its_own_work(clients):
    a, _b, ca, _cb = clients
    k = kv.key(a, "conv", "p1")
    await ca.set(k, b"state", ex=60)
    assert await ca.get(k) == b"state"
    assert 0 < await ca.ttl(k) <= 60
    await ca.hset(kv.key(a, "h"), mapping={"x": "1"})
    assert await ca.hincrby(kv.key(a, "h"), "x", 2) == 3
    await ca.zadd(kv.key(a, "z"), {"m": 1.0})
    assert await ca.zrangebyscore(kv.key(a, "z"), 0, 2) == [b"m"]
    await ca.rpush(kv.key(a, "l"), b"1", b"2")
    assert await ca.lrange(kv.key(a, "l"), 0, -1) == [b"1", b"2"]
    async with ca.pipeline(transaction=True) as pipe:
        assert await pipe.incr(kv.key(a, "n")).incrby(kv.key(a, "n"), 4).execute() == [1, 5]
    script = ca.register_script("return redis.call('incr', KEYS[1])")
    assert await script(keys=[kv.key(a, "n")]) == 6
    assert await ca.eval("return redis.call('get', KEYS[1])", 1, k) == b"state"


async def test_tenant_user_is_confined_by_redis(stack, secrets, two_tenants):
    a, _b = two_tenants
    admin = kv.admin_client(stack)
    try:
        rules = (await admin.acl_getuser(kv.tenant_user(a)))
    finally:
        await admin.aclose()
    commands = set(rules["commands"])
    assert str(rules["keys"]).strip("[]'\"~") == f"vigil:{a}:*"
    categories = set(rules.get("categories", []))
    assert "-@all" in categories and "+@all" not in categories
    assert {"+eval", "+publish", "+del"} <= commands
    assert not commands & {"+keys", "+scan", "+flushall", "+flushdb", "+config", "+acl", "+select", "+psubscribe"}


async def test_cross_tenant_key_access_is_refused_by_redis(clients, stack, adversary):
    a, b, ca, cb = clients
    theirs = kv.key(b, "conv", "p1")
    await cb.set(theirs, b"b-secret")
    attacks = [
        ("redis: GET other tenant's key", ca.get(theirs)),
        ("redis: SET other tenant's key", ca.set(theirs, b"overwrite")),
        ("redis: DEL other tenant's key", ca.delete(theirs)),
        ("redis: EXISTS other tenant's key", ca.exists(theirs)),
        ("redis: EXPIRE other tenant's key", ca.expire(theirs, 1)),
        ("redis: HGETALL other tenant's hash", ca.hgetall(kv.key(b, "h"))),
        ("redis: MGET own + other key", ca.mget(kv.key(a, "x"), theirs)),
        ("redis: GET an unprefixed key", ca.get("global-config")),
        ("redis: KEYS *", ca.keys("*")),
        ("redis: SCAN 0", ca.scan(0)),
        ("redis: RANDOMKEY", ca.randomkey()),
        ("redis: FLUSHALL", ca.flushall()),
        ("redis: FLUSHDB", ca.flushdb()),
        ("redis: CONFIG GET requirepass", ca.config_get("requirepass")),
        ("redis: ACL SETUSER self ~*", ca.execute_command("ACL", "SETUSER", kv.tenant_user(a), "~*")),
        ("redis: ACL LIST", ca.execute_command("ACL", "LIST")),
        ("redis: SELECT another database", ca.execute_command("SELECT", "1")),
        ("redis: EVAL with the other key declared", ca.eval("return redis.call('get', KEYS[1])", 1, theirs)),
        ("redis: SCRIPT FLUSH", ca.execute_command("SCRIPT", "FLUSH")),
        ("redis: PUBLISH on other tenant's channel", ca.publish(f"vigil:{b}:events", b"x")),
    ]
    for name, coro in attacks:
        with adversary.attempt(name, NoPermissionError):
            await coro
    with adversary.attempt("redis: EVAL touching an undeclared other key", ResponseError) as at:
        await ca.eval(f"return redis.call('get', '{theirs}')", 0)
    assert "access" in str(at.error)
    with adversary.attempt("redis: EVAL writing an undeclared other key", ResponseError):
        await ca.eval(f"return redis.call('set', '{theirs}', 'pwned')", 0)
    assert await cb.get(theirs) == b"b-secret"


async def test_cross_tenant_pubsub_is_refused(clients, adversary):
    a, b, ca, cb = clients
    own = ca.pubsub()
    try:
        await own.subscribe(f"vigil:{a}:events")
        assert (await own.get_message(timeout=2))["type"] == "subscribe"
        await ca.publish(f"vigil:{a}:events", b"hello")
        got = await own.get_message(ignore_subscribe_messages=True, timeout=2)
        assert got and got["data"] == b"hello"
    finally:
        await own.aclose()
    for name, subscribe in (("redis: SUBSCRIBE other tenant's channel", lambda p: p.subscribe(f"vigil:{b}:events")),
                            ("redis: PSUBSCRIBE vigil:*", lambda p: p.psubscribe("vigil:*"))):
        ps = ca.pubsub()
        try:
            with adversary.attempt(name, NoPermissionError):
                await subscribe(ps)
                await ps.get_message(timeout=2)  # errors may arrive as the reply
        finally:
            await ps.aclose()


async def test_credentials_do_not_cross(stack, secrets, two_tenants, adversary):
    a, b = two_tenants
    host, port = stack.redis_host_port
    wrong = aioredis.Redis(host=host, port=port, username=kv.tenant_user(b),
                           password=secrets.tenant_password("redis", a), retry=Retry(NoBackoff(), 0))
    try:
        with adversary.attempt("redis: AUTH as other tenant's user with own password", AuthenticationError):
            await wrong.ping()
    finally:
        await wrong.aclose()
    ca = kv.tenant_client(stack, a, secrets)
    try:
        with adversary.attempt("redis: AUTH switch to other tenant's user inside a connection", AuthenticationError):
            await ca.execute_command("AUTH", kv.tenant_user(b), secrets.tenant_password("redis", a))
    finally:
        await ca.aclose()


async def test_concurrent_tenants_stay_in_their_prefix(stack, secrets, two_tenants):
    a, b = two_tenants
    ca, cb = kv.tenant_client(stack, a, secrets), kv.tenant_client(stack, b, secrets)
    try:
        async def work(client, tenant):
            for i in range(50):
                await client.incr(kv.key(tenant, "counter"))
        await asyncio.gather(work(ca, a), work(cb, b))
        assert await ca.get(kv.key(a, "counter")) == b"50"
        assert await cb.get(kv.key(b, "counter")) == b"50"
    finally:
        await ca.aclose()
        await cb.aclose()
