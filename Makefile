# Two entry points for a fresh clone: `make demo` (the main job on the built-in data) and
# `make test`. Both create .venv and install musadv into it; PyTorch is pinned to the local
# CPU build (torch==2.13.0) so no multi-GB CUDA build is downloaded.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser codecs demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,ray,hf]'
	# musicnn's weights (the musicnn extra): its declared numpy<1.17 and tensorflow pins would break
	# this environment and musadv never imports its code, so it comes without its dependencies.
	$(BIN)/pip install --quiet --no-deps musicnn==0.1.0
	touch $(STAMP)

install: $(STAMP)

# The report test drives Debian's Chromium headless; install it where we may (root), else it is skipped.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && { apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }; } || \
	  echo "chromium not installed: the browser test of the report will be skipped"; }

# MP3 and Ogg files made by real encoders (lame, oggenc) test decoding; without them those tests are skipped.
codecs:
	@command -v lame >/dev/null && command -v oggenc >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && { apt-get install -y -q lame vorbis-tools >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q lame vorbis-tools >/dev/null 2>&1; }; } || \
	  echo "lame/oggenc not installed: the tests of encoder-made MP3 and Ogg files will be skipped"; }

demo: $(STAMP)
	$(BIN)/musadv demo --out demo-out

test: $(STAMP) browser codecs
	$(BIN)/python -m pytest -q --durations=25

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_prepare.py

clean:
	rm -rf $(VENV) demo-out
