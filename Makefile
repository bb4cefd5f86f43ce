# Two commands for a fresh machine: `make demo` and `make test`.
# `make test` is the fast tier; `make test-slow` drives the CLI end to end (tests/e2e, the
# browser, the wheel install); `make test-all` runs both. CI runs both tiers as separate steps, then
# `make demo` (.ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all install dashboard clean check-bwrap

# bubblewrap sandboxes submitted code (docs/security.md); without it torch/torchscript/command
# submissions are refused (the demo runs its own examples unsandboxed and says so). A warning, not a failure.
check-bwrap:
	@command -v bwrap >/dev/null 2>&1 && bwrap --ro-bind / / true >/dev/null 2>&1 || \
	  echo "warning: bubblewrap (bwrap) is missing or does not work here; install it: sudo apt-get install bubblewrap" >&2

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) check-bwrap

demo: $(STAMP) check-bwrap
	$(BIN)/heptathlon demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

dashboard: $(STAMP)
	$(BIN)/heptathlon dashboard

clean:
	rm -rf $(VENV) .heptathlon
