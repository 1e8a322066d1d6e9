"""gRPC plumbing shared by every Vigil gRPC service and client, one module per concern.

- ``settings``: ``GrpcSettings`` (addresses, TLS, token settings from the environment) and the
  message size limits both sides use.
- ``status``: the one mapping between ``services.core.errors`` and gRPC status codes, both
  directions (``status_of`` and ``abort`` on the server, ``error_from_rpc`` on the client).
- ``auth``: the server's ``AuthInterceptor``: every call (except health and reflection) must carry
  ``authorization: Bearer <jwt>`` (see ``services.core.tokens``); the caller's tenant comes from the
  credential (``current_caller()``) and a request naming another tenant is PERMISSION_DENIED.
- ``server``: ``start_server`` (health and reflection always on) and ``serve``, the one serve loop
  of a gRPC service process (signals, readiness, graceful shutdown).
- ``client``: ``connect`` and ``Channels``: channels whose every call carries a tenant's credential.

Settings (``GrpcSettings.from_env``):
  VIGIL_GRPC_<SERVICE>_ADDR     host:port of a service (defaults in ``DEFAULT_ADDRESSES``)
  VIGIL_GRPC_TLS                off | tls | mtls  (off is refused when VIGIL_ENV=prod)
  VIGIL_GRPC_TLS_CERT_FILE      this process's certificate chain (PEM): server cert, or client cert for mtls
  VIGIL_GRPC_TLS_KEY_FILE       its private key (PEM)
  VIGIL_GRPC_TLS_CA_FILE        CA bundle used to verify peers (clients verify servers; mtls servers verify clients)
  VIGIL_GRPC_TLS_SERVER_NAME    optional name to verify the server certificate against
  VIGIL_GRPC_HEALTH_PORT        optional: also serve grpc.health.v1 (only) in plaintext on this port, for
                                kubelet gRPC probes, which cannot present a client certificate
  plus the token settings of ``services.core.tokens``.
"""
