# Two commands a reader needs:
#   make book   install (first time), run every chapter on the default profile, build _build/html
#   make test   install (first time), run the test suite
# Everything else here serves those two.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= default
# Test workers (pytest-xdist), one test file each at a time, files in collection order so that the
# two longest (the quick book, tests/test_book.py, and the corpus book beside it) start first.
# The machines this runs on have two cores. A worker that crashes (a segfault) ends the run, red,
# with the test it was running: xdist's replacement worker otherwise waited for tests that never came.
# The fifteen slowest tests are listed at the end, so a CI log says where the suite's time goes.
TEST_WORKERS ?= 2
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
export PYTHONHASHSEED = 0

# Debian packages the project needs at run time, with a file that proves each
# is there: FluidSynth renders the synthetic set, fluid-soundfont-gm is its
# SoundFont, opl3-soundfont and musescore-general-soundfont-small are the
# tonal writing's FM and held-out SoundFonts (mer/data/synth.py; TimGM6mb
# comes with pretty_midi), ffmpeg decodes what libsndfile cannot (AAC/M4A,
# through audioread), chromium runs the browser test.
DEB_CHECKS := /usr/share/sounds/sf2/FluidR3_GM.sf2:fluid-soundfont-gm \
              /usr/share/sounds/sf2/OPL-3_FM_128M.sf2:opl3-soundfont \
              /usr/share/sounds/sf3/MuseScore_General_Lite.sf3:musescore-general-soundfont-small \
              /usr/bin/ffmpeg:ffmpeg \
              /usr/bin/chromium:chromium

.PHONY: book test bench system-deps venv clean distclean strip-notebooks

book: system-deps $(STAMP)
	$(PY) -m mer run --profile $(PROFILE)

test: system-deps $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --max-worker-restart 0 --durations 15

bench: system-deps $(STAMP)
	$(PY) -m mer bench

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (torch 2.13.0 CPU wheel); set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mer)" >/dev/null
	touch $(STAMP)

# Install the Debian packages that are missing (root only, as in CI); say what
# is missing otherwise. libfluidsynth3 is checked through the dynamic linker.
# apt waits up to ten minutes for the package lock instead of failing at once:
# on a freshly booted machine another apt (unattended upgrades, a second make)
# often holds it.
system-deps:
	@missing=""; \
	ldconfig -p | grep -q 'libfluidsynth.so.3' || missing="$$missing libfluidsynth3"; \
	for pair in $(DEB_CHECKS); do \
	  file=$${pair%%:*}; pkg=$${pair##*:}; \
	  test -e $$file || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get -o DPkg::Lock::Timeout=600 update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

strip-notebooks: $(STAMP)
	$(PY) -m nbstripout notebooks/*.ipynb

clean:
	rm -rf _build book/chapters _static/audio

distclean: clean
	rm -rf $(VENV) data/synth data/derived .cache
