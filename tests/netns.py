"""Hosts of their own on this machine, for the on-premises cluster test (tests/test_onprem.py): each
"host" is a network namespace with its own address on a bridge, its own sshd (Debian's
openssh-server) and its own PID namespace, so that ``ray stop`` on one host (the launcher runs it on
every node) sees that host's processes only, as on separate machines.

    with hosts(["head", "w1", "w2"], root) as net:   # root: a folder of this test's own
        net.ip["head"]                               # 10.213.N.2
        net.bridge_ip                                # the root namespace's address on the bridge
        net.cut("w1")                                # its link down, then every process on it killed
        net.restore("w1")                            # started again (its files kept), its link up

The hosts share this machine's filesystem (the venv, the repository, the test's folders): Ray's
launcher reaches them over SSH only, as it would real machines. Each host's sshd runs as PID 1 of
its PID namespace, so killing it ends every process on that host (the kernel's rule for a PID
namespace's init). Every name carries this process's id; everything is removed by name or PID at the
end, whatever happened. Needs root, ``ip``, ``unshare`` and ``/usr/sbin/sshd``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def missing() -> str | None:
    """Why these hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, sshd)"
    for tool in ("ip", "unshare", "ssh", "ssh-keygen", "rsync"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} not found (apt-get install openssh-server)"
    return None


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@dataclass
class Hosts:
    tag: str
    bridge: str
    bridge_ip: str
    root: Path
    key: Path                                       # the SSH private key that logs in as root everywhere
    ip: dict[str, str] = field(default_factory=dict)
    netns: dict[str, str] = field(default_factory=dict)
    home: dict[str, Path] = field(default_factory=dict)
    init_pid: dict[str, int] = field(default_factory=dict)   # sshd, PID 1 of the host's PID namespace
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def veth(self, name: str) -> str:
        return f"{self.tag}{name}"[:15]

    def cut(self, name: str) -> None:
        """As a machine that drops off the network and then dies: its link down (inside the host, so
        no packet leaves or arrives), then every process on it killed."""
        sh("ip", "-n", self.netns[name], "link", "set", "eth0", "down")
        self.kill(name)

    def boot(self, name: str) -> None:
        """Start the host: its sshd as PID 1 of a new PID namespace, in a mount namespace where /root
        is the host's own home. Also how a cut host comes back (:meth:`restore`)."""
        # Each host its own /root (its ~/.ray/auth_token, ~/ray_bootstrap_key.pem, ...), as if it
        # were another machine: a bind mount in the host's own mount namespace (private: this
        # machine's /root is untouched); ssh finds ~ from the user database, not from $HOME.
        # Python itself may live under /root (pyenv): bound into the new /root first.
        home = self.home[name]
        keep = [Path(p).relative_to("/root") for p in {sys.base_prefix, sys.prefix}
                if Path(p).is_relative_to("/root")]
        binds = "".join(f'mkdir -p "{home / k}" && mount --bind "/root/{k}" "{home / k}" && ' for k in keep)
        cfg = self.root / f"sshd-{name}.conf"
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns[name], "unshare", "--pid", "--fork",
                                 "--mount-proc", "--propagation", "private", "--kill-child", "sh", "-c",
                                 f'{binds}mount --rbind "{home}" /root && exec {SSHD} -D -e -f "{cfg}"'],
                                stdout=subprocess.DEVNULL, stderr=open(self.root / f"sshd-{name}.log", "a"))
        self.procs[name] = proc
        self.init_pid[name] = _init_pid(proc.pid)

    def restore(self, name: str) -> None:
        """A cut host back: started again (its files kept, as a rebooted machine's disk) and its link
        up; returns once its sshd answers."""
        self.boot(name)
        sh("ip", "-n", self.netns[name], "link", "set", "eth0", "up")
        sh("ip", "-n", self.netns[name], "route", "replace", "default", "dev", "eth0")
        _wait_for_port(self.ip[name], 22, self.procs[name])

    def kill(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            os.kill(self.init_pid[name], signal.SIGKILL)  # the PID namespace's init: the kernel kills the rest
            proc.wait(timeout=30)

    def processes(self, name: str) -> list[str]:
        """Command lines of the processes on that host, sshd and its sessions left out."""
        try:
            ns = os.readlink(f"/proc/{self.init_pid[name]}/ns/pid")
        except OSError:
            return []
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                if os.readlink(d / "ns" / "pid") != ns:
                    continue
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if cmd and not cmd.startswith("sshd"):
                out.append(cmd)
        return out

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None


def _wait_for_port(host: str, port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd for {host} exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no sshd on {host}:{port} after {timeout} s")


def _init_pid(unshare_pid: int) -> int:
    """The pid (in this namespace) of unshare's forked child, the host's PID 1."""
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
    for _ in range(100):
        kids = children.read_text().split() if children.exists() else []
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise RuntimeError("unshare started no child")


@contextlib.contextmanager
def hosts(names: list[str], root: Path, subnet: int | None = None):
    """Make one host per name (addresses .2, .3, ... of 10.213.<subnet>.0/24, the bridge .1), yield
    :class:`Hosts`; remove them all at the end."""
    pid = os.getpid()
    tag = f"ts{pid}"
    subnet = subnet if subnet is not None else 16 + pid % 224
    prefix = f"10.213.{subnet}"
    root.mkdir(parents=True, exist_ok=True)
    key = root / "id_ed25519"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", tag, "-f", str(key))
    host_key = root / "host_ed25519"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{tag}-host", "-f", str(host_key))
    (root / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    net = Hosts(tag=tag, bridge=f"{tag}br"[:15], bridge_ip=f"{prefix}.1", root=root, key=key)
    try:
        sh("ip", "link", "add", net.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{prefix}.1/24", "dev", net.bridge)
        sh("ip", "link", "set", net.bridge, "up")
        for i, name in enumerate(names):
            ns, veth, ip = f"{tag}-{name}", net.veth(name), f"{prefix}.{i + 2}"
            sh("ip", "netns", "add", ns)
            net.netns[name], net.ip[name] = ns, ip
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", veth, "master", net.bridge, "up")
            for args in (["addr", "add", f"{ip}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                         ["link", "set", "lo", "up"],
                         # A default route on the link itself, without a gateway: Ray finds a node's
                         # own address by the route to 8.8.8.8 (a UDP connect, which sends nothing),
                         # and with no router on the bridge nothing can leave it either.
                         ["route", "add", "default", "dev", "eth0"]):
                sh("ip", "-n", ns, *args)
            home = root / f"home-{name}"
            home.mkdir()
            net.home[name] = home
            cfg = root / f"sshd-{name}.conf"
            cfg.write_text(
                f"ListenAddress {ip}\nPort 22\nHostKey {host_key}\nPidFile none\n"
                f"AuthorizedKeysFile {root / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                "PrintMotd no\nPrintLastLog no\nMaxSessions 50\nMaxStartups 50\n"
                "Subsystem sftp internal-sftp\n")
            net.boot(name)
        for name in names:
            _wait_for_port(net.ip[name], 22, net.procs[name])
        yield net
    finally:
        for name in list(net.procs):
            with contextlib.suppress(Exception):
                net.kill(name)
        for name, ns in net.netns.items():
            sh("ip", "link", "del", net.veth(name), check=False)
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", net.bridge, check=False)
