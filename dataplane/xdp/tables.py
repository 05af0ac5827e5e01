"""Typed access to the relay's maps: sessions, blocklist, counters, egress devices."""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterator

from dataplane.xdp import abi, bpfsys
from dataplane.xdp.bpfsys import BpfFd, UpdateFlag
from dataplane.xdp.loader import RelayObjects

_KEY = ctypes.sizeof(abi.SessionKey)
_VALUE = ctypes.sizeof(abi.Session)


def _u32(n: int) -> bytes:
    """A __u32 key or value: host byte order."""
    return struct.pack("=I", n)


def _all_keys(fd: BpfFd, key_size: int, max_entries: int) -> list[bytes]:
    """Every key, collected before the caller changes the map (GET_NEXT_KEY restarts
    from the first key when the current one is deleted)."""
    keys: list[bytes] = []
    key: bytes | None = None
    for _ in range(max_entries + 1):  # bounded by the map size
        key = bpfsys.map_next_key(fd, key, key_size)
        if key is None:
            break
        keys.append(key)
    return keys


class SessionTable:
    """SBC_MAP_SESSIONS: anchor (local address, port) -> how to relay."""

    def __init__(self, fd: BpfFd) -> None:
        self._fd = fd

    def get(self, key: abi.SessionKey) -> abi.Session | None:
        raw = bpfsys.map_lookup(self._fd, bytes(key), _VALUE)
        return None if raw is None else abi.Session.from_buffer_copy(raw)

    def put(self, key: abi.SessionKey, session: abi.Session, flag: UpdateFlag = UpdateFlag.ANY) -> None:
        bpfsys.map_update(self._fd, bytes(key), bytes(session), flag)

    def delete(self, key: abi.SessionKey) -> bool:
        return bpfsys.map_delete(self._fd, bytes(key))

    def items(self) -> Iterator[tuple[abi.SessionKey, abi.Session]]:
        """Every entry, read in batches (a consistent-enough snapshot for statistics)."""
        for k, v in bpfsys.map_lookup_batch(self._fd, _KEY, _VALUE):
            yield abi.SessionKey.from_buffer_copy(k), abi.Session.from_buffer_copy(v)

    def keys(self) -> list[abi.SessionKey]:
        return [abi.SessionKey.from_buffer_copy(k) for k in _all_keys(self._fd, _KEY, abi.MAX_SESSIONS)]

    def clear(self) -> None:
        for key in _all_keys(self._fd, _KEY, abi.MAX_SESSIONS):
            bpfsys.map_delete(self._fd, key)


class Blocklist:
    """SBC_MAP_BLOCKLIST: sources dropped before anything else. SBC_MAP_CONFIG tells the program
    whether the map has entries, so an empty blocklist costs no lookup per packet."""

    def __init__(self, fd: BpfFd, config: BpfFd) -> None:
        self._fd = fd
        self._config = config

    def add(self, address: str | abi.IPAddress, expires_ns: int = 0) -> None:
        bpfsys.map_update(self._fd, bytes(abi.BlockKey.of(address)), bytes(abi.Block(expires_ns=expires_ns)))
        self._set_in_use(True)

    def remove(self, address: str | abi.IPAddress) -> bool:
        removed = bpfsys.map_delete(self._fd, bytes(abi.BlockKey.of(address)))
        self._set_in_use(self.in_use())
        return removed

    def clear(self) -> None:
        for key in _all_keys(self._fd, ctypes.sizeof(abi.BlockKey), abi.MAX_BLOCKED):
            bpfsys.map_delete(self._fd, key)
        self._set_in_use(self.in_use())

    def in_use(self) -> bool:
        """Whether the map holds any entry (one GET_NEXT_KEY)."""
        return bpfsys.map_next_key(self._fd, None, ctypes.sizeof(abi.BlockKey)) is not None

    def flag(self) -> bool:
        """What the program currently believes (SBC_MAP_CONFIG)."""
        return self._read_config().blocklist_in_use != 0

    def get(self, address: str | abi.IPAddress) -> abi.Block | None:
        raw = bpfsys.map_lookup(self._fd, bytes(abi.BlockKey.of(address)), ctypes.sizeof(abi.Block))
        return None if raw is None else abi.Block.from_buffer_copy(raw)

    def items(self) -> list[tuple[abi.BlockKey, abi.Block]]:
        out = []
        for key in _all_keys(self._fd, ctypes.sizeof(abi.BlockKey), abi.MAX_BLOCKED):
            raw = bpfsys.map_lookup(self._fd, key, ctypes.sizeof(abi.Block))
            if raw is not None:
                out.append((abi.BlockKey.from_buffer_copy(key), abi.Block.from_buffer_copy(raw)))
        return out

    def _read_config(self) -> abi.Config:
        raw = bpfsys.map_lookup(self._config, _u32(0), ctypes.sizeof(abi.Config))
        return abi.Config() if raw is None else abi.Config.from_buffer_copy(raw)

    def _set_in_use(self, in_use: bool) -> None:
        config = self._read_config()
        config.blocklist_in_use = int(in_use)
        bpfsys.map_update(self._config, _u32(0), bytes(config))


class Counters:
    """SBC_MAP_COUNTERS: one per-CPU `CounterSet`, summed here over the CPUs."""

    def __init__(self, fd: BpfFd) -> None:
        self._fd = fd
        self._cpus = bpfsys.possible_cpus()
        self._size = ctypes.sizeof(abi.CounterSet)  # a multiple of 8: per-CPU slots need no padding

    def read(self) -> dict[abi.Counter, int]:
        raw = bpfsys.map_lookup(self._fd, _u32(0), self._size * self._cpus)
        totals = [0] * abi.Counter.MAX
        if raw is not None:
            for cpu in range(self._cpus):
                values = abi.CounterSet.from_buffer_copy(raw, cpu * self._size).count
                for i in range(abi.Counter.MAX):
                    totals[i] += values[i]
        return {counter: totals[counter] for counter in abi.Counter if counter is not abi.Counter.MAX}

    def reset(self) -> None:
        bpfsys.map_update(self._fd, _u32(0), bytes(self._size * self._cpus))


class EgressPorts:
    """SBC_MAP_EGRESS: the interfaces XDP_REDIRECT may send to (DEVMAP_HASH by ifindex)."""

    def __init__(self, fd: BpfFd) -> None:
        self._fd = fd

    def add(self, ifindex: int) -> None:
        bpfsys.map_update(self._fd, _u32(ifindex), _u32(ifindex))

    def remove(self, ifindex: int) -> bool:
        return bpfsys.map_delete(self._fd, _u32(ifindex))


class RelayTables:
    """All maps of one loaded relay."""

    def __init__(self, objects: RelayObjects) -> None:
        self.sessions = SessionTable(objects.sessions)
        self.blocklist = Blocklist(objects.blocklist, objects.config)
        self.counters = Counters(objects.counters)
        self.egress = EgressPorts(objects.egress)
