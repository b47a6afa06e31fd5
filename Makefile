# Two entry points, both idempotent: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= runs/demo
STAMP := $(VENV)/.selfprm-installed

.PHONY: demo demo-quick test test-fast install browser clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/selfprm demo --out $(OUT)

demo-quick: $(STAMP)
	$(VENV)/bin/selfprm demo --quick --out $(OUT)

# the study page's browser test needs chromium and chromedriver (Debian packages)
browser:
	bash tools/ensure_browser.sh

test: $(STAMP) browser
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs
