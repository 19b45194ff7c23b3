"""The Vagrantfile is valid for both providers and defines the same nodes as the one-machine lab (DESIGN.md §3).

``vagrant validate`` checks the active provider's configuration block and first asks the provider
whether it is usable. VirtualBox cannot be installed here, and without its ``VBoxManage`` Vagrant
stops at "Vagrant could not detect VirtualBox!" before validating anything (``--ignore-provider``
would skip exactly the block we want checked). So when VirtualBox is absent the test puts a stand-in
``VBoxManage`` on PATH that only answers ``--version`` (7.0): Vagrant then loads its real VirtualBox
provider and validates our ``config.vm.provider :virtualbox`` block and the machines with it. Nothing
of VirtualBox runs. Triggers never fire on ``validate``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import topology

VAGRANT_DIR = Path(__file__).resolve().parents[3] / "vagrant"
pytestmark = pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed (make deps)")


def vagrant(
    tmp_path: Path,
    *args: str,
    workers: int = 2,
    provider: str = "libvirt",
    control_planes: int | None = 1,
    etcd: str | None = "stacked",
    ok: bool = True,
) -> str:
    env = {
        **os.environ,
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),  # leave no .vagrant/ behind in the tree
        "VAGRANT_HOME": str(tmp_path / "home"),
        "KUBELAB_WORKERS": str(workers),
        "VAGRANT_DEFAULT_PROVIDER": provider,
    }
    env.pop("KUBELAB_CONTROL_PLANES", None)
    env.pop("KUBELAB_ETCD", None)
    if control_planes is not None:
        env["KUBELAB_CONTROL_PLANES"] = str(control_planes)
    if etcd is not None:
        env["KUBELAB_ETCD"] = etcd
    if provider == "virtualbox" and shutil.which("VBoxManage") is None:
        fake = tmp_path / "fakevbox"
        fake.mkdir()
        (fake / "VBoxManage").write_text('#!/bin/sh\n[ "$1" = --version ] && echo 7.0.14r161095\nexit 0\n')
        (fake / "VBoxManage").chmod(0o755)
        env["PATH"] = f"{fake}:{env['PATH']}"
    res = subprocess.run(["vagrant", *args], cwd=VAGRANT_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert (res.returncode == 0) == ok, res.stdout + res.stderr
    return res.stdout if ok else res.stdout + res.stderr


# (control planes, etcd): today's lab, and the HA control plane stacked and external (issue 17).
SHAPES = [(1, "stacked"), (3, "stacked"), (3, "external")]


@pytest.mark.parametrize("provider", ["libvirt", "virtualbox"])
@pytest.mark.parametrize(("control_planes", "etcd"), SHAPES)
def test_vagrant_validate_passes(tmp_path: Path, provider: str, control_planes: int, etcd: str) -> None:
    out = vagrant(tmp_path, "validate", provider=provider, control_planes=control_planes, etcd=etcd)
    assert "validated successfully" in out


def test_an_even_number_of_control_planes_is_refused_with_the_reason(tmp_path: Path) -> None:
    from lab import hatopology, vagrantprep

    with pytest.raises(hatopology.HaError) as refused:
        hatopology.check_control_planes(2)
    out = vagrant(tmp_path, "validate", control_planes=2, ok=False)
    # kubelab up's own words (lab/hatopology.py), in the Vagrant lab's terms
    assert vagrantprep.vagrant_terms(str(refused.value)) in out
    assert "KUBELAB_CONTROL_PLANES=2 is refused" in out and "no extra fault tolerance" in out


def test_triggers_run_the_host_side_once_per_up_and_clean_up_after_destroy() -> None:
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    assert "config.trigger.before :up" in text and 'kubelab_host_step("prepare"' in text
    assert "config.trigger.after :destroy" in text and 'kubelab_host_step("cleanup")' in text
    # the cleanup follows every machine's destroy (it acts after the last lab VM, whichever it is)
    destroy = text.split("config.trigger.after :destroy", 1)[1].split("end", 1)[0]
    assert "only_on" not in destroy
    assert "$kubelab_prepared" in text  # once per `vagrant up`, not once per machine
    lab_sh = (VAGRANT_DIR / "lab.sh").read_text()
    for sub in ("prepare)", "finish)", "cleanup)", "up)", "down)"):
        assert f"\n{sub}" in lab_sh


def test_the_lab_nic_is_found_by_its_address_not_its_name() -> None:
    # eth1 on libvirt, enp0s8 on VirtualBox: provisioning must not name it.
    node_sh = (VAGRANT_DIR / "provision" / "node.sh").read_text()
    assert "eth1" not in node_sh and "enp0s8" not in node_sh
    assert "ip -o -4 addr show" in node_sh


@pytest.mark.parametrize(("workers", "control_planes", "etcd"), [(1, 1, "stacked"), (3, 1, "stacked"),
                                                                (2, 3, "stacked"), (2, 3, "external")])  # fmt: skip
def test_vms_are_the_one_machine_labs_nodes(tmp_path: Path, workers: int, control_planes: int, etcd: str) -> None:
    out = vagrant(tmp_path, "status", "--machine-readable", workers=workers, control_planes=control_planes, etcd=etcd)
    machines = re.findall(r"^\d+,([^,]+),state,", out, flags=re.M)
    assert machines == [n.name for n in topology.plan_lab(workers, control_planes, etcd).nodes]


def test_every_vm_address_is_the_designs() -> None:
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    assert f'ip: "{topology.CONTROL_PLANE_IP}"' in text
    # workers: 192.168.56.(10 + i), as topology.plan_lab computes
    assert 'ip: "192.168.56.#{10 + i}"' in text
    # HA: kl-lb holds the endpoint, kl-cpN at .20+N, kl-etcdN at .30+N (topology.HA_CONTROL_PLANE_BASE, ETCD_BASE)
    assert f'{{ name: "{topology.LB_NAME}", ip: "{topology.CONTROL_PLANE_IP}"' in text
    assert f'ip: "192.168.56.#{{{topology.HA_CONTROL_PLANE_BASE} + i}}"' in text
    assert f'ip: "192.168.56.#{{{topology.ETCD_BASE} + i}}"' in text
    assert 'libvirt__forward_mode: "none"' in text and 'management_network_mode = "none"' in text


def test_a_made_ha_lab_keeps_its_shape_without_the_variables(tmp_path: Path) -> None:
    # `vagrant destroy` (or `make vagrant-down`) run without KUBELAB_CONTROL_PLANES must still see
    # the HA lab's VMs: the Vagrantfile reads the machines Vagrant recorded. (VirtualBox's stand-in
    # answers every query, so no hypervisor is needed to ask for their state.)
    for name in ("kl-lb", "kl-cp1", "kl-cp2", "kl-cp3", "kl-etcd1"):
        (tmp_path / "dot" / "machines" / name / "virtualbox").mkdir(parents=True)
        (tmp_path / "dot" / "machines" / name / "virtualbox" / "id").write_text("0b7e-uuid")
    out = vagrant(tmp_path, "status", "--machine-readable", provider="virtualbox", control_planes=None, etcd=None)
    machines = re.findall(r"^\d+,([^,]+),state,", out, flags=re.M)
    assert machines == [n.name for n in topology.plan_lab(2, 3, "external").nodes]
