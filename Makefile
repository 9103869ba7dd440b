PYTHON ?= .venv/bin/python
# `make soak SEEDS=20000..29999` sweeps another range, `MODELS=evs` one model; JOBS defaults to
# every core. TOOLS are the toolkit workloads swept too, over TOOL_SEEDS, in every model; VS_TOOLS
# (the group structures that exist in vs only: clients, diffusion groups, news, the recovery
# manager, hierarchical groups) in vs.
SEEDS ?= 0..9999
MODELS ?= vs evs
TOOLS ?= dict lock token watch cohort split
VS_TOOLS ?= client diffusion news recovery hierarchy
TOOL_SEEDS ?= 0..1999
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: test soak check

# the whole suite, including the CI sample of simulated seeds (800 vs, 400 evs)
test:
	$(PYTHON) -m pytest -q

# 10,000 simulated seeds per model with every fault kind, then 2,000 seeds per model of each tool's
# workload (and of the vs-only ones, VS_TOOLS, in vs); prints the failing seeds and how to replay each
soak:
	status=0; for model in $(MODELS); do \
		$(PYTHON) -m vsgroups.sim --model $$model --seeds $(SEEDS) --jobs $(JOBS) || status=1; \
		for tool in $(TOOLS); do \
			$(PYTHON) -m vsgroups.sim --workload $$tool --model $$model --seeds $(TOOL_SEEDS) --jobs $(JOBS) \
				|| status=1; done; done; \
	for tool in $(VS_TOOLS); do \
		$(PYTHON) -m vsgroups.sim --workload $$tool --model vs --seeds $(TOOL_SEEDS) --jobs $(JOBS) || status=1; \
	done; exit $$status

# the API reference, from the docstrings, into docs/api/ (open docs/api/index.html)
.PHONY: api-docs
api-docs:
	$(PYTHON) -m pdoc vsgroups -o docs/api

# lint and type-check
check:
	$(PYTHON) -m ruff check src tests examples
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy --strict examples

# vsgroups bench and the anchor peers (Corosync, JGroups, pysyncobj, etcd) in one run; writes docs/benchmarks.md;
# ANCHORS is the folder of the peers' drivers (not part of this repository)
.PHONY: bench-compare
bench-compare:
	@test -n "$(ANCHORS)" || { echo "give the folder of the peers' drivers: make bench-compare ANCHORS=DIR"; exit 2; }
	$(PYTHON) scripts/bench_compare.py --anchors $(ANCHORS)
