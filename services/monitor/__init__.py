"""The monitor: override rate, drift, time-to-alert and cost for every tenant, as streams and reports.

- ``app``: the faust worker (``python -m services.monitor.app``) over each tenant's ``findings``,
  ``actions`` and ``feedback`` streams (``stream.Processor``: exactly once per event id),
  Prometheus metrics on port 9000, everything counted in PostgreSQL (``schema``, ``store``);
  ``tenants``: the registry followed while it runs.
- ``figures``: every figure of a period, the ids behind it, invariants, reconciliation with the
  decision ledger (docs/monitor.md); ``units``: durations and periods in words.
- ``facts``: what one event counts; ``stats``: PSI, percentiles; ``drift``: PSI and gold-F1
  checks; ``alerts``: alert = row + metric + log event.
- ``gates``: `vigil gate` and the promotion check behind `vigil mode set`.
- ``report``: `vigil report` (Jinja2 HTML with matplotlib PNGs, a plain-language summary).
- ``cli``: the command groups (``gate``, ``report``, ``monitor``).
"""
