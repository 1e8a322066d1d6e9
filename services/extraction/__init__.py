"""The extraction stage: note events -> irAE findings (tools + inference over gRPC)."""
