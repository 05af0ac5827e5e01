"""XDP implementation of the media relay: the kernel program's ABI, loader and map access.

The kernel half lives in ``dataplane/bpf`` and ``dataplane/include/sbc_dataplane.h``;
this package talks to it through the ``bpf()`` syscall (no BCC, no libbpf binding).
"""
