"""HL7 v2 over MLLP: the message pipeline and the asyncio server."""
