"""The `llm` engine: any OpenAI-compatible endpoint, configured per tenant, behind guardrails."""
