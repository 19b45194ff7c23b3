"""The lab's address plan is DESIGN.md §3's, for any number of workers."""

from __future__ import annotations

import pytest

from lab import topology


def test_two_workers_follow_the_design_addresses() -> None:
    lab = topology.plan_lab(2)
    assert [(n.name, n.ip, n.host_veth) for n in lab.nodes] == [
        ("kl-cp", "192.168.56.10", "klv-cp"),
        ("kl-node1", "192.168.56.11", "klv-node1"),
        ("kl-node2", "192.168.56.12", "klv-node2"),
    ]
    assert [n.expected_pod_cidr for n in lab.workers] == ["10.244.1.0/24", "10.244.2.0/24"]
    assert lab.control_plane.expected_pod_cidr is None


def test_names_fit_linux_interface_names_and_are_recognised_as_ours() -> None:
    lab = topology.plan_lab(topology.MAX_WORKERS)
    for n in lab.nodes:
        assert len(n.host_veth) <= 15
        assert topology.is_lab_netns(n.name)
    assert not topology.is_lab_netns("kltest-1-2-host")
    assert not topology.is_lab_netns("kl-nodeX")


@pytest.mark.parametrize("workers", [0, -1, topology.MAX_WORKERS + 1])
def test_worker_count_out_of_range_is_refused_with_the_limits(workers: int) -> None:
    with pytest.raises(topology.TopologyError, match="between 1 and"):
        topology.plan_lab(workers)


def test_unknown_node_name_lists_the_real_ones() -> None:
    with pytest.raises(topology.TopologyError, match="kl-node1, kl-node2"):
        topology.plan_lab(2).node("kl-node9")
