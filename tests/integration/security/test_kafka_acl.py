"""Kafka, broker side: SCRAM users with prefixed ACLs on Apache Kafka, one per tenant.

The embedded broker (Tansu) cannot hold users, so this runs only where Docker is available:
an Apache Kafka container (KRaft) with a PLAINTEXT listener for the platform (a super user)
and a SASL_PLAINTEXT/SCRAM-SHA-512 listener for tenants, StandardAuthorizer and ACLs that
mirror the Strimzi KafkaUser manifests: each tenant may use topics and groups prefixed
``vigil.<tenant>.`` and nothing else.
"""
from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

KAFKA_IMAGE = "apache/kafka:3.8.0"
TENANT_PORT = 9093  # SASL listener inside the container
ADMIN_PORT = 19092  # PLAINTEXT listener, used from inside the container only


def _docker_reason() -> str | None:
    try:
        import docker

        docker.from_env().ping()
        return None
    except Exception:
        return "Docker engine not available"


pytestmark = pytest.mark.skipif(_docker_reason() is not None, reason="Docker engine not available")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def acl_kafka():
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    host_port = _free_port()
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:29093",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENERS": f"CONTROLLER://:29093,ADMIN://:{ADMIN_PORT},TENANT://:{TENANT_PORT}",
        "KAFKA_ADVERTISED_LISTENERS": f"ADMIN://localhost:{ADMIN_PORT},TENANT://127.0.0.1:{host_port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,ADMIN:PLAINTEXT,TENANT:SASL_PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "ADMIN",
        "KAFKA_SASL_ENABLED_MECHANISMS": "SCRAM-SHA-512",
        "KAFKA_AUTHORIZER_CLASS_NAME": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "KAFKA_SUPER_USERS": "User:ANONYMOUS",
        "KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND": "false",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_LISTENER_NAME_TENANT_SCRAM-SHA-512_SASL_JAAS_CONFIG":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(TENANT_PORT, host_port)
    for k, v in env.items():
        container = container.with_env(k, v)
    container.start()
    try:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield container, f"127.0.0.1:{host_port}"
    finally:
        container.stop()


def _kafka_cli(container, tool: str, *args: str) -> str:
    code, out = container.exec([f"/opt/kafka/bin/{tool}", "--bootstrap-server", f"localhost:{ADMIN_PORT}", *args])
    assert code == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def _provision(container, tenant: str, password: str) -> None:
    """What the Strimzi KafkaUser of a tenant declares: SCRAM credentials and prefixed ACLs."""
    user = f"vigil-{tenant}"
    _kafka_cli(container, "kafka-configs.sh", "--alter", "--entity-type", "users", "--entity-name", user,
               "--add-config", f"SCRAM-SHA-512=[iterations=4096,password={password}]")
    for resource in (("--topic", f"vigil.{tenant}."), ("--group", f"vigil.{tenant}.")):
        _kafka_cli(container, "kafka-acls.sh", "--add", "--allow-principal", f"User:{user}", "--operation", "All",
                   *resource, "--resource-pattern-type", "prefixed")
    _kafka_cli(container, "kafka-topics.sh", "--create", "--topic", f"vigil.{tenant}.findings", "--partitions", "1",
               "--replication-factor", "1")


def _client_kwargs(bootstrap: str, tenant: str, password: str) -> dict:
    return {"bootstrap_servers": bootstrap, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": f"vigil-{tenant}", "sasl_plain_password": password}


async def test_broker_refuses_cross_tenant_topics_and_groups(acl_kafka, adversary):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

    container, bootstrap = acl_kafka
    a, b = "ta" + uuid.uuid4().hex[:8], "tb" + uuid.uuid4().hex[:8]
    passwords = {a: uuid.uuid4().hex, b: uuid.uuid4().hex}
    for t in (a, b):
        _provision(container, t, passwords[t])

    producer = AIOKafkaProducer(acks="all", **_client_kwargs(bootstrap, a, passwords[a]))
    await producer.start()
    try:
        await producer.send_and_wait(f"vigil.{a}.findings", b"own")  # allowed by the prefixed ACL
        with adversary.attempt("kafka-acl: produce to another tenant's topic", TopicAuthorizationFailedError):
            await producer.send_and_wait(f"vigil.{b}.findings", b"forged")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(f"vigil.{b}.findings", group_id=f"vigil.{a}.attacker",
                                auto_offset_reset="earliest", **_client_kwargs(bootstrap, a, passwords[a]))
    await consumer.start()
    try:
        with adversary.attempt("kafka-acl: consume another tenant's topic", TopicAuthorizationFailedError):
            await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()

    consumer = AIOKafkaConsumer(f"vigil.{a}.findings", group_id=f"vigil.{b}.borrowed",
                                auto_offset_reset="earliest", **_client_kwargs(bootstrap, a, passwords[a]))
    with adversary.attempt("kafka-acl: join another tenant's consumer group", GroupAuthorizationFailedError):
        await consumer.start()
        try:
            await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
