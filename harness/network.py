"""A network between the app and PostgreSQL that the harness can make slow and lossy.

A :class:`Link` makes a network namespace of its own and a point-to-point link
between it and the root namespace, each end with an address of a private /30.
PostgreSQL is started inside the namespace (``ip netns exec``) and listens on
the far address, so every packet between the app and the database crosses the
link, and nothing else does. :meth:`Link.degrade` delays or drops the packets
that travel toward PostgreSQL; :meth:`Link.restore` makes the link clean again.

Two mechanisms shape the link, probed once when it is made:

- where the kernel has the netem queueing discipline, the link is a veth pair
  and ``tc qdisc ... netem`` on its root-namespace end does the shaping;
- where it has not (no ``sch_netem`` module), the link is two TUN devices, one
  in each namespace, joined by a small relay process of the harness (this
  module's ``__main__``) that copies each packet read from one device to the
  other, holding back or dropping those bound for PostgreSQL. Both ends keep
  their real addresses, so no packet needs rewriting.

Either way the faults are real: the kernels' TCP stacks see delay and loss and
retransmit. Closing the link stops the relay, deletes the namespace and with it
every device that was made, also after a failure half way.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import ipaddress
import itertools
import os
import random
import secrets
import selectors
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

NAMESPACE_PREFIX = "resilience-"
NETEM = "tc netem on a veth pair"
RELAY = "a relay of the harness between two TUN devices (the kernel has no netem)"

#: The private range whose /30 subnets the links take, one free subnet each.
LINK_RANGE = ipaddress.ip_network("10.213.0.0/16")

TUN_DEVICE = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536
IP_TIMEOUT = 10.0


def unavailable_reason() -> str | None:
    """Why no network namespace can be made here, or None when one can."""
    if sys.platform != "linux":
        return "network namespaces exist on Linux only"
    if os.geteuid() != 0:
        return "making a network namespace needs root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    probe = f"{NAMESPACE_PREFIX}{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    try:
        if made.returncode != 0:
            return f"`ip netns add` failed: {made.stderr.strip()}"
        if not os.path.exists(TUN_DEVICE) and not _netem_works_in(probe):
            return f"the kernel has neither netem (sch_netem) nor TUN devices ({TUN_DEVICE})"
    finally:
        _ip("netns", "delete", probe, check=False)
    return None


def _netem_works_in(namespace: str) -> bool:
    veth = ("link", "add", "a", "type", "veth", "peer", "name", "b")
    made = _ip("-n", namespace, *veth, check=False)
    return made.returncode == 0 and NetemShaper.works("a", namespace)


def remove_stale_namespaces() -> None:
    """Delete the namespaces of harnesses that were killed before they could, and are
    empty: their process is gone, and nothing runs in them any more."""
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        owner = name.removeprefix(NAMESPACE_PREFIX).split("-")[0]
        if not name.startswith(NAMESPACE_PREFIX) or not owner.isdigit():
            continue
        if not _process_exists(int(owner)) and not _ip("netns", "pids", name).stdout.strip():
            _ip("netns", "delete", name, check=False)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Shaper(Protocol):
    """What delays and drops the packets bound for PostgreSQL."""

    def shape(self, delay: float, loss: float) -> None: ...

    def dropped(self) -> int:
        """Packets dropped since the link was made."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Addresses:
    """The two ends of a point-to-point link: the app's and PostgreSQL's."""

    app: str
    server: str

    @classmethod
    def free(cls) -> Addresses:
        """The first /30 of :data:`LINK_RANGE` that no address of this machine is in."""
        words = _ip("-4", "-o", "addr").stdout.split()
        # "inet 10.0.0.5/24 ..." or, point to point, "inet 10.213.0.1 peer 10.213.0.2/32".
        taken = [
            ipaddress.ip_interface(address).ip
            for before, address in itertools.pairwise(words)
            if before in ("inet", "peer")
        ]
        for subnet in LINK_RANGE.subnets(new_prefix=30):
            if not any(address in subnet for address in taken):
                app, server = list(subnet.hosts())
                return cls(str(app), str(server))
        raise RuntimeError(f"no free /30 left in {LINK_RANGE}")


class Link:
    """A network namespace for PostgreSQL and the degradable link that reaches it."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        # The owner's process id in the name tells a stale namespace (its owner killed)
        # from one in use; the devices' names must fit in 15 characters.
        self.namespace = f"{NAMESPACE_PREFIX}{os.getpid()}-{tag}"
        self.app_device = f"rsl{tag}a"
        self.server_device = f"rsl{tag}b"
        # Chosen now, so that a server can be told its address before the link is up.
        self.addresses = Addresses.free()
        self.mechanism = ""
        self._shaper: Shaper | None = None
        self._made = False

    # -- making and closing -------------------------------------------------------

    def open(self) -> None:
        """Make the namespace and the link, and choose how to shape it."""
        remove_stale_namespaces()
        _ip("netns", "add", self.namespace)
        self._made = True
        self._in_namespace("link", "set", "lo", "up")
        self._shaper = self._veth_with_netem() or self._tun_relay()
        self._address(self.app_device, self.addresses.app, self.addresses.server, namespace=False)
        self._address(self.server_device, self.addresses.server, self.addresses.app, namespace=True)

    def close(self) -> None:
        """Stop the relay and delete the namespace with its devices. Safe to repeat."""
        shaper, self._shaper = self._shaper, None
        try:
            if shaper is not None:
                shaper.close()
        finally:
            if self._made:
                self._made = False
                # The veth's other end, or a TUN device left in the root namespace
                # by a failure before it was moved, goes too.
                _ip("link", "delete", self.app_device, check=False)
                _ip("netns", "delete", self.namespace, check=False)

    def __enter__(self) -> Link:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _veth_with_netem(self) -> Shaper | None:
        veth = ("type", "veth", "peer", "name", self.server_device)
        if _ip("link", "add", self.app_device, *veth, check=False).returncode != 0:
            return None  # no veth module: the relay needs none
        if not NetemShaper.works(self.app_device):
            _ip("link", "delete", self.app_device)
            return None
        _ip("link", "set", self.server_device, "netns", self.namespace)
        self.mechanism = NETEM
        return NetemShaper(self.app_device)

    def _tun_relay(self) -> Shaper:
        relay = RelayShaper(self.app_device, self.server_device)
        try:
            _ip("link", "set", self.server_device, "netns", self.namespace)
        except BaseException:
            relay.close()
            raise
        self.mechanism = RELAY
        return relay

    def _address(self, device: str, local: str, peer: str, *, namespace: bool) -> None:
        run = self._in_namespace if namespace else _ip
        run("addr", "add", local, "peer", peer, "dev", device)
        run("link", "set", device, "up")

    def _in_namespace(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _ip("-n", self.namespace, *args)

    # -- what the harness uses -------------------------------------------------------

    @property
    def run_inside(self) -> list[str]:
        """The command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.namespace]

    def degrade(self, *, delay: float = 0.0, loss: float = 0.0) -> None:
        """Delay each packet bound for PostgreSQL ``delay`` seconds, drop a ``loss`` share."""
        self._shaping().shape(delay, loss)

    def restore(self) -> None:
        """Neither delay nor loss any more."""
        self._shaping().shape(0.0, 0.0)

    def dropped(self) -> int:
        """Packets dropped on the way to PostgreSQL since the link was made."""
        return self._shaping().dropped()

    def _shaping(self) -> Shaper:
        if self._shaper is None:
            raise RuntimeError("the link is not open: call open() first")
        return self._shaper


# -- netem ---------------------------------------------------------------------------


class NetemShaper:
    """netem on the root-namespace end of a veth pair: its egress is toward PostgreSQL."""

    def __init__(self, device: str) -> None:
        self.device = device

    @staticmethod
    def works(device: str, namespace: str | None = None) -> bool:
        """Whether the kernel takes a netem qdisc (a kernel without ``sch_netem`` refuses)."""
        if shutil.which("tc") is None:
            return False
        where = ("-n", namespace) if namespace else ()
        added = _tc(*where, "qdisc", "add", "dev", device, "root", "netem", "delay", "0ms")
        return added.returncode == 0

    def shape(self, delay: float, loss: float) -> None:
        _tc(
            *("qdisc", "replace", "dev", self.device, "root", "netem"),
            *("delay", f"{delay * 1000:g}ms", "loss", f"{loss * 100:g}%"),
            check=True,
        )

    def dropped(self) -> int:
        words = _tc("-s", "qdisc", "show", "dev", self.device, check=True).stdout.split()
        # "Sent 1234 bytes 56 pkt (dropped 7, overlimits 0 requeues 0)"
        return int(words[words.index("(dropped") + 1].rstrip(",")) if "(dropped" in words else 0

    def close(self) -> None:
        """Nothing to stop: the qdisc goes with the device."""


# -- the TUN relay ---------------------------------------------------------------------


class RelayShaper:
    """The relay process between two TUN devices, told what to do on its stdin."""

    def __init__(self, app_device: str, server_device: str) -> None:
        app_end, server_end = open_tun(app_device), open_tun(server_device)
        try:
            # The devices live while a descriptor of each is open: the relay holds
            # the only ones, so they vanish with it, however it ends.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "harness.network", str(app_end), str(server_end)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                pass_fds=(app_end, server_end),
            )
        finally:
            os.close(app_end)
            os.close(server_end)
        self._ask("count")  # answers once its loop runs

    def shape(self, delay: float, loss: float) -> None:
        self._ask(f"shape {delay} {loss}")

    def dropped(self) -> int:
        return int(self._ask("count").split()[1])

    def _ask(self, command: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the relay stopped (status {self.process.poll()})")
        return answer.strip()

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # the relay ends on end of file
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def open_tun(name: str) -> int:
    """A descriptor of a new TUN device ``name``: raw IP packets, no extra header."""
    descriptor = os.open(TUN_DEVICE, os.O_RDWR)
    try:
        fcntl.ioctl(descriptor, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(descriptor)
        raise
    return descriptor


class Relay:
    """Copies packets between the two devices; those bound for PostgreSQL are shaped.

    Each packet toward PostgreSQL is dropped with the probability ``loss`` or held
    in a queue until ``delay`` seconds after it was read; the answers pass at once,
    as on a veth whose one end has a netem qdisc.
    """

    def __init__(self, app_end: int, server_end: int) -> None:
        self.app_end = app_end
        self.server_end = server_end
        self.delay = 0.0
        self.loss = 0.0
        self.dropped = 0
        self.held: list[tuple[float, int, bytes]] = []
        self._sequence = 0
        self._commands = b""

    def run(self) -> None:
        """Relay until the harness closes stdin."""
        selector = selectors.DefaultSelector()
        for descriptor in (self.app_end, self.server_end, sys.stdin.fileno()):
            os.set_blocking(descriptor, False)
            selector.register(descriptor, selectors.EVENT_READ)
        while True:
            wait = max(0.0, self.held[0][0] - time.monotonic()) if self.held else None
            for key, _ in selector.select(wait):
                if key.fd == self.app_end:
                    self._toward_server()
                elif key.fd == self.server_end:
                    self._pass(self.server_end, self.app_end)
                elif not self._obey():
                    return
            self._release_due()

    def _toward_server(self) -> None:
        for packet in _packets(self.app_end):
            if self.loss and random.random() < self.loss:
                self.dropped += 1
            elif self.delay or self.held:  # behind packets already held: keep the order
                self._sequence += 1
                due = time.monotonic() + self.delay
                heapq.heappush(self.held, (due, self._sequence, packet))
            else:
                _write(self.server_end, packet)

    def _pass(self, source: int, target: int) -> None:
        for packet in _packets(source):
            _write(target, packet)

    def _release_due(self) -> None:
        now = time.monotonic()
        while self.held and self.held[0][0] <= now:
            _write(self.server_end, heapq.heappop(self.held)[2])

    def _obey(self) -> bool:
        """Carry out the commands read on stdin; False at its end."""
        chunk = os.read(sys.stdin.fileno(), 4096)
        if not chunk:
            return False
        self._commands += chunk
        while b"\n" in self._commands:
            line, self._commands = self._commands.split(b"\n", 1)
            words = line.decode().split()
            if words[0] == "shape":
                self.delay, self.loss = float(words[1]), float(words[2])
                if not self.delay:
                    self._release_held()
            sys.stdout.write(f"dropped {self.dropped}\n")
            sys.stdout.flush()
        return True

    def _release_held(self) -> None:
        """A fault lifted: what it still holds goes on at once."""
        while self.held:
            _write(self.server_end, heapq.heappop(self.held)[2])


def _packets(descriptor: int) -> list[bytes]:
    packets = []
    with contextlib.suppress(BlockingIOError):
        while True:
            packets.append(os.read(descriptor, MAX_PACKET))
    return packets


def _write(descriptor: int, packet: bytes) -> None:
    # A full device queue (EAGAIN) or one not up yet (EIO) drops the packet, as a
    # congested or unplugged cable would: TCP resends it.
    with contextlib.suppress(OSError):
        os.write(descriptor, packet)


# -- iproute2 ---------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _command("ip", *args, check=check)


def _tc(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return _command("tc", *args, check=check)


def _command(*args: str, check: bool) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=IP_TIMEOUT, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed: {result.stderr.strip()}")
    return result


if __name__ == "__main__":
    Relay(int(sys.argv[1]), int(sys.argv[2])).run()
