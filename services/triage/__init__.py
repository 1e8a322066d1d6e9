"""The triage stage: findings -> decisions (urgent / routine Task, follow-up request, nothing)."""
