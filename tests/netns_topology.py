"""A throw-away multi-host network for tests: Linux network namespaces on one bridge.

Used by ``test_netns.py``. Layout (all names carry ``PREFIX``, so a leftover of a
crashed run is recognised and removed by `Topology.cleanup`)::

    root namespace (the test driver, the dask Client)
      bridge asipntbr0 10.231.77.1/24
        ├── veth asipnt-vs ── netns asipnt-sched: eth0 10.231.77.10  (dask scheduler)
        ├── veth asipnt-v0 ── netns asipnt-w0:    eth0 10.231.77.11  (dask worker)
        ├── veth asipnt-v1 ── netns asipnt-w1:    eth0 10.231.77.12  (dask worker)
        └── veth asipnt-v2 ── netns asipnt-w2:    eth0 10.231.77.13  (dask worker)

Traffic stays on that /24: the namespaces have no route but the bridge's subnet
(no default route, no NAT, no forwarding out of the bridge), and the root
namespace reaches them only through the bridge. Every command is bounded in time;
`cleanup` is idempotent and safe to call at any point.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "asipnt"
SUBNET = ipaddress.ip_network("10.231.77.0/24")
BRIDGE = f"{PREFIX}br0"
BRIDGE_IP = "10.231.77.1"
CMD_TIMEOUT = 10.0  # seconds for any single ip/tc command


class TopologyError(RuntimeError):
    """An ``ip``/``tc`` command failed; the message has the command and its stderr."""


class SubnetInUse(TopologyError):
    """Something outside this topology already has an address or route in ``SUBNET``."""


class NetemUnavailable(TopologyError):
    """The kernel has no ``netem`` qdisc (CONFIG_NET_SCH_NETEM unset or module missing)."""


def sh(*argv: str, check: bool = True, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess:
    """Run one command (no shell), bounded in time; raise `TopologyError` on failure if ``check``."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TopologyError(f"{' '.join(argv)!r} did not finish within {timeout:g} s") from exc
    if check and out.returncode != 0:
        raise TopologyError(f"{' '.join(argv)!r} failed ({out.returncode}): {out.stderr.strip()}")
    return out


@dataclass
class Host:
    """One network namespace with one veth into the bridge."""

    role: str  # "sched", "w0", ...
    ip: str

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.role}"

    @property
    def veth(self) -> str:
        """The root-namespace end of the host's link (a bridge port); the other end is ``eth0``."""
        return f"{PREFIX}-v{'s' if self.role == 'sched' else self.role[1:]}"


@dataclass
class Topology:
    """Scheduler namespace + ``n_workers`` worker namespaces on one bridge in the root namespace."""

    n_workers: int = 3
    scheduler: Host = field(init=False)
    workers: list[Host] = field(init=False)
    procs: list[subprocess.Popen] = field(default_factory=list, init=False)
    shaped: str | None = field(default=None, init=False)  # the netem spec applied, if any

    def __post_init__(self) -> None:
        self.scheduler = Host("sched", "10.231.77.10")
        self.workers = [Host(f"w{i}", f"10.231.77.{11 + i}") for i in range(self.n_workers)]

    @property
    def hosts(self) -> list[Host]:
        return [self.scheduler, *self.workers]

    # ------------------------------------------------------------------ set-up
    def check_subnet_free(self) -> None:
        """Refuse to run if anything outside this topology already uses the /24."""
        ours = {BRIDGE} | {h.veth for h in self.hosts}
        for line in sh("ip", "-4", "-o", "addr", "show").stdout.splitlines():
            parts = line.split()
            dev, cidr = parts[1], parts[3]
            if dev not in ours and ipaddress.ip_interface(cidr).network.overlaps(SUBNET):
                raise SubnetInUse(f"{SUBNET} is already in use here ({dev} has {cidr})")
        for line in sh("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
            dst = line.split()[0]
            if dst in ("default", "broadcast", "local", "multicast", "unreachable"):
                continue
            try:
                net = ipaddress.ip_network(dst, strict=False)
            except ValueError:
                continue
            if net.overlaps(SUBNET) and f" dev {BRIDGE}" not in line:
                raise SubnetInUse(f"{SUBNET} overlaps an existing route: {line.strip()}")

    def create(self) -> None:
        """Build the namespaces, veths and the bridge (after removing any leftovers)."""
        self.cleanup()
        self.check_subnet_free()
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        _no_ipv6(BRIDGE)
        sh("ip", "addr", "add", f"{BRIDGE_IP}/{SUBNET.prefixlen}", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for host in self.hosts:
            sh("ip", "netns", "add", host.netns)
            sh("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
               "netns", host.netns)
            _no_ipv6(host.veth)
            _no_ipv6("all", host.netns)
            sh("ip", "link", "set", host.veth, "master", BRIDGE)
            sh("ip", "link", "set", host.veth, "up")
            sh("ip", "-n", host.netns, "link", "set", "lo", "up")
            sh("ip", "-n", host.netns, "addr", "add", f"{host.ip}/{SUBNET.prefixlen}",
               "dev", "eth0")
            sh("ip", "-n", host.netns, "link", "set", "eth0", "up")

    def shape(self, delay_ms: float, loss_pct: float) -> str | None:
        """Delay and loss on every worker link, both directions; None, or what is missing.

        ``tc netem`` where the kernel has it. Without netem (e.g. a kernel built without
        CONFIG_NET_SCH_NETEM) random loss is still emulated -- htb, a classic-BPF
        classifier drawing a random number per packet, and a ``pfifo limit 0`` class
        that drops what it is given -- but there is no in-kernel way to add a fixed
        delay; the returned string says so (for a warning). ``self.shaped`` describes
        what was applied.
        """
        try:
            self._each_link(lambda dev: ["qdisc", "replace", "dev", dev, "root", "netem",
                                         "delay", f"{delay_ms}ms", "loss", f"{loss_pct}%"])
            self.shaped = f"netem delay {delay_ms}ms loss {loss_pct}%"
            return None
        except NetemUnavailable as exc:
            netem_error = str(exc)
        self.unshape()
        try:
            self._bpf_loss(loss_pct)
        except TopologyError as exc:
            self.unshape()
            return (f"tc netem is unavailable ({netem_error}) and so is the htb/cls_bpf loss "
                    f"fallback ({exc}): the worker links run without delay and loss")
        self.shaped = f"loss {loss_pct}% (htb + cls_bpf random drop), no delay"
        return (f"tc netem is unavailable ({netem_error}): the worker links get {loss_pct}% "
                f"random loss from an htb/cls_bpf fallback, but not the {delay_ms} ms delay")

    def _each_link(self, tc_args) -> None:
        """Run ``tc *tc_args(dev)`` on both ends of every worker link."""
        for host in self.workers:
            for prefix, dev in (((), host.veth),  # egress of the bridge port: towards the worker
                                (("ip", "netns", "exec", host.netns), "eth0")):  # from it
                out = sh(*prefix, "tc", *tc_args(dev), check=False)
                if out.returncode != 0:
                    err = out.stderr.strip()
                    if "netem" in tc_args(dev) and "unknown" in err.lower():
                        raise NetemUnavailable(err)
                    raise TopologyError(f"tc {' '.join(tc_args(dev))} failed: {err}")

    def _bpf_loss(self, loss_pct: float) -> None:
        threshold = int(loss_pct / 100.0 * 2**32)
        # A = random u32; if A >= threshold: no match (default class 1:10, delivered),
        # else classid 1:20 (0x10020), whose pfifo of limit 0 drops every packet.
        program = f"4,32 0 0 {2**32 - 0x1000 + 56},53 0 1 {threshold},6 0 0 0,6 0 0 {0x10020}"
        for args in (
            lambda d: ["qdisc", "add", "dev", d, "root", "handle", "1:", "htb", "default", "10"],
            lambda d: ["class", "add", "dev", d, "parent", "1:", "classid", "1:10", "htb",
                       "rate", "10gbit", "quantum", "60000"],
            lambda d: ["class", "add", "dev", d, "parent", "1:", "classid", "1:20", "htb",
                       "rate", "10gbit", "quantum", "60000"],
            lambda d: ["qdisc", "add", "dev", d, "parent", "1:20", "handle", "20:", "pfifo",
                       "limit", "0"],
            lambda d: ["filter", "add", "dev", d, "parent", "1:", "protocol", "all", "prio", "1",
                       "bpf", "bytecode", program],
        ):
            self._each_link(args)

    def unshape(self) -> None:
        for host in self.workers:
            sh("tc", "qdisc", "del", "dev", host.veth, "root", check=False)
            sh("ip", "netns", "exec", host.netns, "tc", "qdisc", "del", "dev", "eth0", "root",
               check=False)
        self.shaped = None

    def dropped(self) -> int:
        """Packets the shaping dropped so far, over all worker links (both directions)."""
        total = 0
        for host in self.workers:
            for prefix, dev in (((), host.veth), (("ip", "netns", "exec", host.netns), "eth0")):
                out = sh(*prefix, "tc", "-s", "qdisc", "show", "dev", dev, check=False).stdout
                lines = out.splitlines()
                for head, stats in zip(lines, lines[1:]):
                    # count the root qdisc only (htb's counter includes its leaves' drops)
                    if " root " in head and (m := re.search(r"dropped (\d+)", stats)):
                        total += int(m.group(1))
        return total

    def cut(self, host: Host) -> None:
        """Pull the host's cable: its bridge port goes down (the namespace's eth0 loses carrier)."""
        sh("ip", "link", "set", host.veth, "down")

    # ------------------------------------------------------------------ processes
    def spawn(self, host: Host, argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
        """Start ``argv`` inside the host's namespace, in its own process group, logging to ``log``."""
        with open(log, "wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", host.netns, *argv], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_processes(self, grace: float = 5.0) -> None:
        """SIGTERM each started process group, SIGKILL what is left after ``grace`` s."""
        for proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.05))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs:
            _signal_group(proc, signal.SIGKILL)  # also reaps the nanny's worker child
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()

    # ------------------------------------------------------------------ tear-down
    def cleanup(self) -> None:
        """Remove everything this topology (or a crashed earlier run of it) created. Idempotent."""
        self.stop_processes()
        names = sh("ip", "netns", "list", check=False).stdout.split()
        for ns in [n for n in names if n.startswith(f"{PREFIX}-")]:
            # processes still inside one of our namespaces were started by an earlier run
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
        links = sh("ip", "-o", "link", "show", check=False).stdout.splitlines()
        for line in links:
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if name.startswith(PREFIX):
                sh("ip", "link", "del", name, check=False)
        # deleting a namespace frees its veth asynchronously: wait until they are gone
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and PREFIX in sh("ip", "-o", "link", "show",
                                                            check=False).stdout:
            time.sleep(0.1)


def _no_ipv6(dev: str, netns: str | None = None) -> None:
    """No IPv6 (link-local chatter) on our links: the test speaks IPv4 on its /24 only."""
    path = f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"
    prefix = ("ip", "netns", "exec", netns) if netns else ()
    sh(*prefix, "sh", "-c", f"[ ! -e {path} ] || echo 1 > {path}", check=False)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is not None and sig != signal.SIGKILL:
        return
    try:
        os.killpg(proc.pid, sig)  # the group we started with start_new_session=True
    except (ProcessLookupError, PermissionError):
        pass


def probe_netns() -> str | None:
    """None if namespaces can be made here, else why not (for a pytest skip)."""
    if os.geteuid() != 0:
        return "needs root (ip netns, veth, tc)"
    for tool in ("ip", "tc"):
        if sh("sh", "-c", f"command -v {tool}", check=False).returncode != 0:
            return f"the {tool!r} command (iproute2) is not installed"
    name = f"{PREFIX}-probe"
    sh("ip", "netns", "del", name, check=False)
    out = sh("ip", "netns", "add", name, check=False)
    if out.returncode != 0:
        return f"'ip netns add' is not permitted here: {out.stderr.strip()}"
    sh("ip", "netns", "del", name, check=False)
    return None
