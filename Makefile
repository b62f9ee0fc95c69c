# `make demo`: set up and train a small DeepKeyGen on the embedded data (recipe DEMO_RECIPE), then make keys.
# `make test`: set up and run the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= train-cpu,analysis,dicom,nifti,hardened,keys,dev
DEMO_DIR ?= runs/demo
DEMO_RECIPE ?= recommended
DEMO_ARGS ?= --image-size 128 --steps 1000 --checkpoint-every 250

.PHONY: setup demo test lint bench clean

$(BIN)/.installed: setup.cfg setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/python tools/demo.py --out $(DEMO_DIR) --recipe $(DEMO_RECIPE) $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: setup
	$(BIN)/ruff check keras_dkg tools tests

bench: setup
	$(BIN)/python tools/bench_train.py

clean:
	rm -rf $(VENV) runs .pytest_cache *.egg-info
