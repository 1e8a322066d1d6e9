"""The monitor: override rate, drift, time-to-alert and cost for every tenant, as streams and reports.

- ``app``: the faust worker (``python -m services.monitor.app``) over each tenant's ``findings``,
  ``actions`` and ``feedback`` streams (``stream.Processor``), Prometheus metrics on port 9000,
  window values in PostgreSQL (``schema``, ``store``).
- ``facts``: what one event counts; ``stats``: PSI, percentiles; ``drift``: PSI and gold-F1
  checks; ``alerts``: alert = row + metric + log event.
- ``gates``: `vigil gate` and the promotion check behind `vigil mode set`.
- ``report``: `vigil report` (Jinja2 HTML with matplotlib PNGs).
- ``cli``: the command groups (``gate``, ``report``, ``monitor``).
"""
