"""The clean room's reading of ``make demo``'s output (lab/cleanroom_check_demo.py): it passes the
demo the README shows, and names what is wrong when the VIP did not answer."""

from __future__ import annotations

from lab import cleanroom_check_demo as check_demo

GOOD = """\
  ✓ 10.244.N.0/24 via each worker; 10.96.0.0/12 via kl-node1

$ kubectl get pods -o wide
NAME                    READY   STATUS    RESTARTS   AGE   IP           NODE       NOMINATED NODE   READINESS GATES
hello-5d4b6f5db-6brdn   1/1     Running   0          1s    10.244.2.2   kl-node2   <none>           <none>
hello-5d4b6f5db-pnbh4   1/1     Running   0          1s    10.244.2.3   kl-node2   <none>           <none>
hello-5d4b6f5db-rx6zq   1/1     Running   0          1s    10.244.1.2   kl-node1   <none>           <none>

$ for i in $(seq 10); do curl -s http://10.96.0.2/; done | sort | uniq -c
      4 Hello from hello-5d4b6f5db-6brdn on kl-node2
      3 Hello from hello-5d4b6f5db-pnbh4 on kl-node2
      3 Hello from hello-5d4b6f5db-rx6zq on kl-node1

$ kubectl exec hello-5d4b6f5db-6brdn -- wget -qO- http://10.96.0.2/
Hello from hello-5d4b6f5db-rx6zq on kl-node1

$ curl http://192.168.56.11:30080/
Hello from hello-5d4b6f5db-rx6zq on kl-node1

$ curl http://192.168.56.12:30080/
Hello from hello-5d4b6f5db-pnbh4 on kl-node2

Where to look (as root):
"""


def _stamped(text: str) -> list[str]:
    return [f"1796533724 {line}\n" for line in text.splitlines()]


def test_the_readme_demo_passes_with_and_without_time_stamps() -> None:
    assert check_demo.check(GOOD.splitlines(keepends=True)) == []
    assert check_demo.check(_stamped(GOOD)) == []


def test_vip_errors_from_the_root_namespace_fail() -> None:
    bad = GOOD.replace(
        "      3 Hello from hello-5d4b6f5db-rx6zq on kl-node1\n",
        "      3 error: <urlopen error [Errno 113] No route to host>\n",
    )
    problems = check_demo.check(_stamped(bad))
    assert any("No route to host" in p for p in problems)
    assert any("7 of 10" in p for p in problems)


def test_no_answer_from_the_pod_fails() -> None:
    cmd = "$ kubectl exec hello-5d4b6f5db-6brdn -- wget -qO- http://10.96.0.2/\n"
    answer = "Hello from hello-5d4b6f5db-rx6zq on kl-node1\n"
    bad = GOOD.replace(cmd + answer, cmd + "wget: can't connect to remote host\n")
    assert any("VIP from pod hello-5d4b6f5db-6brdn" in p for p in check_demo.check(_stamped(bad)))


def test_pods_on_one_node_and_a_missing_nodeport_fail() -> None:
    bad = GOOD.replace("kl-node1   <none>", "kl-node2   <none>").replace(
        "$ curl http://192.168.56.12:30080/\nHello from hello-5d4b6f5db-pnbh4 on kl-node2\n", ""
    ).replace("$ curl http://192.168.56.11:30080/\nHello from hello-5d4b6f5db-rx6zq on kl-node1\n", "")
    problems = check_demo.check(_stamped(bad))
    assert any("not spread over two nodes" in p for p in problems)
    assert "no NodePort request in the output" in problems


def test_an_empty_log_fails_naming_each_missing_part() -> None:
    problems = check_demo.check([])
    assert "no curl loop of the VIP from the root namespace in the output" in problems
    assert any("kubectl exec" in p for p in problems)


def test_the_pod_must_be_on_the_other_node_than_the_hosts_vip_route() -> None:
    bad = GOOD.replace("10.96.0.0/12 via kl-node1", "10.96.0.0/12 via kl-node2")
    problems = check_demo.check(bad.splitlines())
    assert any("is on kl-node2, the node the root namespace goes through" in p for p in problems)
