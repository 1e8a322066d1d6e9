"""The control service: dead-letter index, browse and replay, tenant modes and kill switches.

gRPC (``protos/vigil/v1/control.proto``, ``servicer.py``), the `vigil dlq` / `vigil token` CLI
(``cli.py``) and the web console (``console/``) on port 8090. Wiring: ``app.py``.
"""
