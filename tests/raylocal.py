"""Ray on this machine only (issue 20): every Ray process a test starts binds to 127.0.0.1.

Ray 2.x binds its servers (GCS, raylets, workers, the runtime-env agent) to the
machine's interface address and to all interfaces; ``_node_ip_address="127.0.0.1"``
alone changes neither (measured with Ray 2.60). ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
in the environment when Ray is imported (conftest.py sets it) makes every node a
loopback-only node: the node reports 127.0.0.1 and every socket listens on it.
:func:`listening_addresses` checks that from the kernel's socket tables (Linux), for
every process this test process started.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Set by conftest.py before anything imports Ray (Ray reads it once, at import)."""


def descendants(root: int) -> set[int]:
    """Process ids of every descendant of ``root`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _address(hex_addr: str) -> str:
    host = hex_addr.split(":")[0]
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


def listening_addresses() -> dict[str, set[str]]:
    """Local address -> names of this process's descendants listening on it (TCP)."""
    if not sys.platform.startswith("linux"):  # pragma: no cover
        return {}
    inodes: dict[str, str] = {}
    for pid in descendants(os.getpid()):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes[link[8:-1]] = name
        except OSError:
            continue
    out: dict[str, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    out.setdefault(_address(fields[1]), set()).add(inodes[fields[9]])
    return out
