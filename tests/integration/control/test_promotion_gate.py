"""SetMode promotions over gRPC are held to the measured gates in the control process as the
manifests and the demo start it (``python -m services.commands.control_service``), and a control
process started without the gates refuses promotions instead of granting them unchecked."""
from __future__ import annotations

import pytest

from services.control.client import ControlClient
from services.control.modes import NO_GATE
from services.core.errors import ConflictError
from services.core.grpc.settings import GrpcSettings
from services.monitor.gates import CHECK_NAME
from tests.fixtures.control import TOKEN_KEY, control_process, operator_token


async def _promote(target: str, tenant: str):
    from vigil.v1 import control_pb2 as pb

    grpc_settings = GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_KEY": TOKEN_KEY})
    async with ControlClient(grpc_settings, operator_token(tenant), target=target) as cc:
        with pytest.raises(ConflictError) as refused:
            await cc.call("SetMode", pb.SetModeRequest(mode="active", reason="go-live"))
        demoted = await cc.call("SetMode", pb.SetModeRequest(mode="silent", reason="never gated"))
        assert demoted.mode == "silent"
        forced = await cc.call("SetMode", pb.SetModeRequest(mode="pilot", force=True, reason="CMO sign-off"))
        assert forced.mode == "pilot"
    return str(refused.value)


@pytest.mark.parametrize("module, refusal", [
    ("services.commands.control_service", f"{CHECK_NAME}: no gate decision for silent -> active"),
    ("services.control.app", NO_GATE),
])
async def test_set_mode_promotions_pass_the_gates_or_are_refused(stack, provision, tmp_path, module, refusal):
    tenant = await provision()
    async with control_process({"VIGIL_TENANTS_FILE": str(tmp_path / "tenants.toml")}, module) as control:
        message = await _promote(control.target, tenant)
    assert refusal in message
    assert control.exit_code == 0
