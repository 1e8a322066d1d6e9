"""`vigil demo`: the whole pipeline on the embedded stack (see ``runner``).

Modules: ``plan`` (folder, ports, service environment), ``supervisor`` (service processes),
``tenants`` (EHR clients, registry, onboarding, seed, modes, subscriptions), ``pipeline`` (up
and down of all of it), ``notes`` (the synthetic clinic day), ``driver`` (writes into the EHR,
findings watcher, inbox decisions), ``summary`` (numbers from the ledger, EHR and DLQ),
``runner`` (the command).
"""
from services.commands.demo.runner import run

__all__ = ["run"]
