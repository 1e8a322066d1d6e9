"""The control service with the monitor's promotion gates wired into SetMode.

    python -m services.commands.control_service     # what the manifests and the demo run
    vigil serve control                              # the same, from the CLI

The wiring lives in the command layer so the control package imports no other service. Like
every `vigil serve` service it exposes Prometheus metrics on VIGIL_METRICS_PORT when that is set
(``services.commands.serve.run``).
"""
from __future__ import annotations

from services.monitor import gates


def serve_kwargs() -> dict:
    """What ``services.control.app.serve`` is given: SetMode promotions pass the measured gates."""
    return {"promotion_checks": gates.promotion_checks()}


if __name__ == "__main__":
    from services.commands.serve import run

    run("control")
