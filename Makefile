# Vigil: `make demo` and `make test` work on a fresh machine. Both are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROTOS := $(shell find protos -name '*.proto' 2>/dev/null | sort)
# Python writes its compiled modules (__pycache__) here even where the shell asks it not to: the
# suite and the demo start hundreds of processes, and without them each one compiles every module
# it imports again (and pytest rewrites every test module's asserts again in each worker).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install gen test test-unit test-integration demo bench bench-runtime bench-isolation bench-extraction bench-ehr bench-ingest bench-hl7 bench-grpc bench-writeback bench-roundtrips bench-scheduling bench-crawl bench-crawl-formats test-conversations test-urgent chaos browser dev-up dev-down clean

install: $(VENV)/.installed gen

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	echo "$(CURDIR)/gen" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/vigil_gen.pth"
	touch $@

# gRPC code is generated from protos/ into gen/ (not committed); gen/ is on sys.path via a .pth file.
gen: $(VENV)/.installed gen/.stamp

gen/.stamp: $(PROTOS) $(VENV)/.installed
	rm -rf gen && mkdir -p gen
	if [ -n "$(PROTOS)" ]; then $(PY) -m grpc_tools.protoc -Iprotos --python_out=gen --grpc_python_out=gen --pyi_out=gen $(PROTOS); fi
	touch $@

# Headless Chromium for the browser tests (Debian's package; installed when we are root and it is missing).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
	  echo "chromium not installed: browser tests will skip"; }

# The suite mostly waits on the broker, the EHR and subprocesses, so it runs in TEST_WORKERS
# parallel workers (pytest-xdist), more than the cores it has; TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 5

# Our modules are compiled once, up front (about a second): otherwise the workers and the servers
# they start at the same moment each compile the same modules.
test: install browser
	$(PY) -m compileall -q -j 0 services bench >/dev/null
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup --durations=20 $(PYTEST_ARGS)

# The scheduling conversation corpus, every conversation, both engines: figures per engine.
# CORPUS=tune2|holdout2|path/to/file.jsonl plays another conversation corpus
test-conversations: install
	VIGIL_CONVERSATIONS=all $(if $(CORPUS),VIGIL_CONVERSATIONS_CORPUS=$(CORPUS)) $(PY) -m pytest -q -s -p no:cacheprovider tests/integration/scheduling/test_corpus.py

# urgent-symptom recall / false-positive rate on the labelled sets, or URGENT=path/to/file.jsonl
test-urgent: install
	$(PY) -m tests.unit.scheduling.urgent_sets --misses $(URGENT)

test-unit: install
	$(PY) -m pytest -q tests/unit

demo: install
	$(PY) -m compileall -q -j 0 services >/dev/null
	$(VENV)/bin/vigil demo $(DEMO_ARGS)

# Benchmarks start the dev servers that are not reachable yet (`make dev-down` stops them).
dev-up: install
	$(VENV)/bin/vigil dev up

dev-down: install
	$(VENV)/bin/vigil dev down

# End-to-end latency (note created in the EHR -> Task readable) at fixed rates; artifacts/bench/e2e.json + plot.
bench: install
	$(PY) -m bench.e2e $(BENCH_ARGS)

# Faults under load (SIGKILLed stages, EHR outage, Redis restart, LLM 429/500, poison events), then DLQ replay.
# Not part of `make test`.
chaos: install
	$(PY) -m bench.chaos $(CHAOS_ARGS)

bench-runtime: dev-up
	$(PY) -m bench.runtime

bench-isolation: dev-up
	$(PY) -m bench.isolation

bench-extraction: install
	$(PY) -m bench.extraction

bench-ehr: dev-up
	$(PY) -m bench.ehr

# A silent crawl of N realistic notes through the batch lane vs bare medspaCy (CRAWL_N, default 2000).
bench-crawl: dev-up
	$(PY) -m bench.crawl $(CRAWL_N)

# The same N realistic notes as an OMOP NOTE CSV and as Bulk NDJSON, one fresh tenant each, through
# `vigil backfill run` (the OMOP run SIGKILLed midway and resumed) and the batch lane: same decisions,
# no duplicate, no gap (exit 1 otherwise); artifacts/bench/crawl_formats.json. N=10000 unless
# BENCH_ARGS="--notes N".
bench-crawl-formats: dev-up
	$(PY) -m bench.crawl_formats $(BENCH_ARGS)

bench-ingest: dev-up
	$(PY) -m bench.ingest

# MLLP on one connection (each message waiting for its AA on durable receipt) vs raw produce acks=all.
bench-hl7: dev-up
	$(PY) -m bench.hl7

bench-grpc: dev-up
	$(PY) -m bench.grpc_auth

bench-writeback: dev-up
	$(PY) -m bench.writeback

# EHR round trips per note (per process, counted where the EHR sees them) and per-process CPU per note,
# whole pipeline, with the raw note + Task baseline in the same run; artifacts/bench/roundtrips.json.
bench-roundtrips: install
	$(PY) -m bench.roundtrips $(RT_ARGS)

# A verified booking (tools gRPC + action ledger + read-back) vs a raw $book on the same sandbox.
bench-scheduling: dev-up
	$(PY) -m bench.scheduling

clean:
	rm -rf gen .pytest_cache
