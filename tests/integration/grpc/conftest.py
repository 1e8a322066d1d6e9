"""Fixtures for the gRPC tests: token settings and a self-signed certificate made here."""
from __future__ import annotations

import pytest

from services.core.grpc.settings import GrpcSettings
from services.core.tokens import TokenSettings, TokenSource
from tests.fixtures.tls import make_self_signed

TEST_KEY = b"k" * 48  # the HS256 key of the servers under test (tests repeat it)


@pytest.fixture
def grpc_settings() -> GrpcSettings:
    return GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_KEY": TEST_KEY.decode()})


@pytest.fixture
def token_source(grpc_settings) -> TokenSource:
    return TokenSource(grpc_settings.tokens, sub="extraction")


@pytest.fixture
def self_signed(tmp_path):
    return make_self_signed(tmp_path)

