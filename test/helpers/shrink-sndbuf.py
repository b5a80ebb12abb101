#!/usr/bin/env python3
# Sets SO_SNDBUF on a TCP socket of another process (a tls-splice command under test): the socket
# connected to 127.0.0.1:PEER_PORT. An explicit SO_SNDBUF also turns the kernel's send-buffer
# autotuning off for that socket, which otherwise grows its buffer (up to net.ipv4.tcp_wmem's
# maximum) while a peer that never reads keeps its window closed; a test that needs "the splice
# holds bytes it cannot deliver" then depends on the machine. Linux 5.6+ (pidfd_getfd), as root
# or with ptrace rights over PID.
#
# Usage: shrink-sndbuf.py PID PEER_PORT BYTES   prints "SNDBUF <fd> <value now>" and exits 0,
# or exits 1 saying why.
import ctypes
import os
import socket
import sys

SYS_PIDFD_GETFD = 438  # the same number on x86_64 and arm64

pid, peer_port, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(pid)
try:
    for name in os.listdir(f'/proc/{pid}/fd'):
        try:
            if not os.readlink(f'/proc/{pid}/fd/{name}').startswith('socket:'):
                continue
        except OSError:
            continue
        fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
        if fd < 0:
            sys.exit(f'pidfd_getfd({pid}, {name}): {os.strerror(ctypes.get_errno())}')
        sock = socket.socket(fileno=fd)
        try:
            if sock.family != socket.AF_INET or sock.type != socket.SOCK_STREAM:
                continue
            try:
                peer = sock.getpeername()
            except OSError:
                continue
            if peer == ('127.0.0.1', peer_port):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
                now = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
                print(f'SNDBUF {name} {now}', flush=True)
                sys.exit(0)
        finally:
            sock.close()  # our duplicate only: the process keeps its own descriptor
finally:
    os.close(pidfd)
sys.exit(f'no TCP socket of process {pid} is connected to 127.0.0.1:{peer_port}')
