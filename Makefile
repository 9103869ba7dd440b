PYTHON ?= .venv/bin/python
# `make soak SEEDS=20000..29999` sweeps another range; JOBS defaults to every core.
SEEDS ?= 0..9999
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: test soak check

# the whole suite, including the CI sample of 300 simulated seeds
test:
	$(PYTHON) -m pytest -q

# 10,000 simulated seeds with every fault kind; prints the failing seeds and how to replay each
soak:
	$(PYTHON) -m vsgroups.sim --seeds $(SEEDS) --jobs $(JOBS)

# lint and type-check
check:
	$(PYTHON) -m ruff check src tests
	$(PYTHON) -m mypy

# vsgroups bench and the anchor peers (Corosync, JGroups, pysyncobj, etcd) in one run; writes docs/benchmarks.md
.PHONY: bench-compare
bench-compare:
	$(PYTHON) scripts/bench_compare.py
