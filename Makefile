# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench dev clean

# compileall: the workflow sandbox re-imports the workflow modules for every workflow it runs and
# compiles them from source each time no .pyc exists (as under PYTHONDONTWRITEBYTECODE).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m compileall -q docket
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/docket demo

dev: $(STAMP)
	$(BIN)/docket dev

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check docket tests bench
	$(BIN)/ruff format --check docket tests bench
	$(BIN)/mypy docket

bench: $(STAMP)
	$(BIN)/python -m bench.orders
	$(BIN)/python -m bench.moves
	$(BIN)/python -m bench.backorder_latency
	$(BIN)/python -m bench.worker_memory
	$(BIN)/python -m bench.mail
	$(BIN)/python -m bench.callbacks

clean:
	rm -rf $(VENV) var
