# FastHMR-ROS: `make demo` and `make test` set everything up on a fresh machine, then run.
#
#   make setup  Python 3.11 venv in .venv with the pinned requirements, fasthmr_msgs (and tf2_msgs,
#               people_msgs, hri_msgs where no ROS install provides them) built into it, and this
#               package installed editable. A stamp in .venv holds a hash of the inputs,
#               so a second run with nothing changed does nothing. ONNX Runtime: the GPU build
#               (requirements-gpu.txt) where `nvidia-smi -L` lists a GPU, else the CPU build
#               (requirements-cpu.txt); FASTHMR_ONNXRUNTIME=gpu or =cpu forces one. Never both: the
#               other is uninstalled first, with the one to install: they share the folder onnxruntime/.
#   make test   the whole pytest suite
#   make demo   the main job on the embedded default
#   make test-node  the node's tests only (what CI runs on every distribution)
#   make clean  build products and the setup stamp (keeps .venv; delete it for a fresh setup)
#
# ROS_DISTRO=kilted (the default) or jazzy chooses the ROS 2 wheels: Kilted in .venv from requirements.txt,
# Jazzy (the LTS) in .venv-jazzy from requirements-jazzy.txt, e.g. `make setup test-node ROS_DISTRO=jazzy`.

ROS_DISTRO ?= kilted
ifeq ($(ROS_DISTRO),kilted)
VENV := $(CURDIR)/.venv
REQUIREMENTS := requirements.txt
else ifeq ($(ROS_DISTRO),jazzy)
VENV := $(CURDIR)/.venv-jazzy
REQUIREMENTS := requirements-jazzy.txt
else
$(error ROS_DISTRO=$(ROS_DISTRO): make setup knows kilted (the default) and jazzy)
endif
PYTHON := $(VENV)/bin/python
PYTHON311 ?= python3.11
SETUP_STAMP := $(VENV)/.fasthmr_setup_stamp
ONNXRUNTIME_BUILD := $(or $(FASTHMR_ONNXRUNTIME),$(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo gpu || echo cpu))
ONNXRUNTIME_OTHER := $(if $(filter gpu,$(ONNXRUNTIME_BUILD)),onnxruntime,onnxruntime-gpu)
# Everything that changes what `make setup` installs. The top-level package markers are in it
# because the editable install maps only the packages that existed when it ran.
SETUP_INPUTS := $(REQUIREMENTS) requirements-base.txt requirements-$(ONNXRUNTIME_BUILD).txt setup.py setup.cfg \
	package.xml $(sort $(wildcard msg/*)) \
	$(sort $(wildcard upstream_msgs/*/package.xml upstream_msgs/*/CMakeLists.txt upstream_msgs/*/msg/*)) \
	scripts/build_msgs.sh $(sort $(wildcard */__init__.py))

# DDS stays on this machine for every ROS process a recipe starts; ament finds packages in the venv.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export AMENT_PREFIX_PATH := $(VENV)

# The tests of the node itself and its configuration (rclpy over loopback DDS), run on every distribution.
NODE_TESTS := test/test_node.py test/test_node_config.py test/test_namespaces.py test/test_transport.py \
	test/test_node_control.py

.PHONY: setup test test-node demo clean onnxruntime-build

onnxruntime-build:
	@echo "$(ONNXRUNTIME_BUILD)"

setup:
	@set -e; \
	case "$(ONNXRUNTIME_BUILD)" in cpu|gpu) ;; *) echo "make setup: FASTHMR_ONNXRUNTIME must be gpu or cpu, got '$(ONNXRUNTIME_BUILD)'" >&2; exit 1;; esac; \
	inputs_hash="$$({ echo "$(ONNXRUNTIME_BUILD)"; sha256sum $(SETUP_INPUTS); } | sha256sum | cut -d' ' -f1)"; \
	if [ -x "$(PYTHON)" ] && [ -f "$(SETUP_STAMP)" ] && [ "$$(cat "$(SETUP_STAMP)")" = "$$inputs_hash" ]; then \
		echo "make setup: .venv is up to date"; exit 0; \
	fi; \
	if [ ! -x "$(PYTHON)" ]; then \
		command -v $(PYTHON311) >/dev/null || { echo "make setup: $(PYTHON311) not found; install Python 3.11 or pass PYTHON311=/path/to/python3.11" >&2; exit 1; }; \
		echo "make setup: creating $(VENV)"; \
		$(PYTHON311) -m venv "$(VENV)"; \
	fi; \
	echo "make setup: ONNX Runtime $(ONNXRUNTIME_BUILD) build (requirements-$(ONNXRUNTIME_BUILD).txt)"; \
	if "$(PYTHON)" -m pip show -q $(ONNXRUNTIME_OTHER) >/dev/null 2>&1; then \
		echo "make setup: removing $(ONNXRUNTIME_OTHER) (and the files it shares with the build to install)"; \
		"$(PYTHON)" -m pip uninstall -y -q onnxruntime onnxruntime-gpu; \
	fi; \
	"$(PYTHON)" -m pip install -r $(REQUIREMENTS) -r requirements-$(ONNXRUNTIME_BUILD).txt; \
	"$(PYTHON)" -c "import importlib.metadata as m, sys; found = [n for n in ('onnxruntime', 'onnxruntime-gpu') if any(True for _ in m.distributions(name=n))]; sys.exit(len(found) != 1 and f'make setup: ONNX Runtime builds installed: {found}; expected one')"; \
	scripts/build_msgs.sh "$(VENV)"; \
	"$(PYTHON)" -m pip install --no-deps -e .; \
	echo "$$inputs_hash" > "$(SETUP_STAMP).tmp"; \
	mv "$(SETUP_STAMP).tmp" "$(SETUP_STAMP)"; \
	echo "make setup: done"

test: setup
	"$(PYTHON)" -m pytest -q test

test-node: setup
	"$(PYTHON)" -m pytest -q $(NODE_TESTS)

demo: setup
	"$(VENV)/bin/fasthmr" demo

clean:
	rm -rf build install log .pytest_cache .hypothesis *.egg-info "$(SETUP_STAMP)"
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
