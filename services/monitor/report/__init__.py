"""`vigil report`: the evidence for a clinical safety review, as one HTML page with PNG plots.

``data.collect`` reads the tenant's monitor tables (and the inference cost ledger) into plain
series; ``plots`` draws them with matplotlib (Agg); ``render.write_report`` fills the Jinja2
template and writes ``index.html`` and the PNGs into the output directory.
"""
