# `make demo`: set up and train a small DeepKeyGen on the embedded data (recipe DEMO_RECIPE), then make keys.
# `make test`: set up and run the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= train-cpu,analysis,dicom,nifti,hardened,keys,gateway,dev
DEMO_DIR ?= runs/demo
DEMO_RECIPE ?= recommended
DEMO_ARGS ?= --image-size 128 --steps 1000 --checkpoint-every 250

.PHONY: setup servers demo test lint bench clean

$(BIN)/.installed: setup.cfg setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/python tools/demo.py --out $(DEMO_DIR) --recipe $(DEMO_RECIPE) $(DEMO_ARGS)

# Orthanc and DCMTK for the gateway tests (tests/test_gateway*.py): installed with apt when
# missing and running as root (CI); elsewhere those tests skip, saying why.
servers:
	@if command -v storescu >/dev/null && test -x /usr/sbin/Orthanc; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		(apt-get install -y -q orthanc dcmtk >/dev/null 2>&1 \
		 || (apt-get update -q >/dev/null && apt-get install -y -q orthanc dcmtk >/dev/null)) \
		&& (service orthanc stop >/dev/null 2>&1 || true); \
	else echo "make servers: orthanc/dcmtk missing and not root; the gateway tests will skip"; fi

test: setup servers
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: setup
	$(BIN)/ruff check keras_dkg tools tests

bench: setup
	$(BIN)/python tools/bench_train.py

clean:
	rm -rf $(VENV) runs .pytest_cache *.egg-info
