# kubelab — the two commands, as root (or with sudo): `make demo` and `make test` (see README.md).
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
PACKAGES := controlplane noded netplugin proxy lab

.PHONY: deps test lint unit bench demo down test-clean-room

# System packages from lab/programs.txt (the manifest of every program the project runs) and .venv.
deps:
	@./lab/deps.sh

lint: deps
	$(VENV)/bin/ruff check $(PACKAGES) tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The whole suite: unit, contract, integration, privileged and end-to-end tests.
# Privileged and e2e tests run when this is run as root (CI runs it as root).
test: deps lint
	$(PYTEST) tests $(PYTEST_ARGS)

unit: deps
	$(PYTEST) tests/unit $(PYTEST_ARGS)

bench: deps
	$(PY) -m tests.bench $(BENCH_ARGS)

# The README's first command: the one-machine lab, the demo app, and where to look. Leaves it running.
demo: deps
	$(PY) -m lab up $(UP_ARGS)
	$(PY) -m lab demo

down: deps
	$(PY) -m lab down

# The README's first command on a minimal Debian 12 that has nothing (lab/cleanroom.sh): debootstrap
# (base cached under /var/cache/kubelab), apt-get install git make, make demo (VIP checked), make down,
# make test — in its own namespaces, reaching only the package registries. Root; leaves nothing.
# CLEANROOM_TESTS=all|tiers|none (tiers: only tests/e2e and tests/privileged inside).
CLEANROOM_TESTS ?= all
test-clean-room:
	@KUBELAB_CLEANROOM=1 ./lab/deps.sh
	KUBELAB_CLEANROOM_TESTS=$(CLEANROOM_TESTS) ./lab/cleanroom.sh

# --- the Vagrant lab (VMs): see vagrant/Vagrantfile and vagrant/README.md ------------------------
VAGRANT_ENV := VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1

.PHONY: vagrant-deps vagrant-up vagrant-down test-vagrant

vagrant-deps:
	@KUBELAB_VAGRANT=1 ./lab/deps.sh

# The same as `cd vagrant && sudo vagrant up`: the Vagrantfile's triggers build the offline box when
# missing, start libvirt and the isolated networks, prepare the host, the registry, then the VMs,
# the host route, and wait until every node is Ready (vagrant/lab.sh prepare/finish).
vagrant-up: vagrant-deps
	$(VAGRANT_ENV) ./vagrant/lab.sh up

vagrant-down:
	$(VAGRANT_ENV) ./vagrant/lab.sh down

# Opt-in, long under software emulation (1 control plane ~18 min; KUBELAB_CONTROL_PLANES=3 ~50 min):
# plain `vagrant up` from nothing (offline box),
# check it from inside and from the host, `vagrant destroy -f`, then everything removed (box included).
# Holds the lab lock (192.168.56.0/24 is shared with the one-machine lab).
test-vagrant: vagrant-deps
	$(VAGRANT_ENV) flock /tmp/kubelab-lab.lock $(PYTEST) tests/vagrant -p no:cacheprovider -v -s $(PYTEST_ARGS)
