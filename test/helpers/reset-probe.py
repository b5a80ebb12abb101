#!/usr/bin/env python3
# A TCP client that tells a reset from a clean end, for tests of truncation. libuv cannot: after
# a short read it takes a hang-up (POLLHUP) for EOF without reading again, and a pending write
# consumes the socket's ECONNRESET first, so a Node client may see 'end' for a reset.
#
# Usage: reset-probe.py PORT LINE KILL_AFTER UPLOAD
#   Connects to 127.0.0.1:PORT, sends LINE + "\n", then reads (and, with UPLOAD=1, keeps
#   sending zeros) in one select() loop. Prints "KILL" once KILL_AFTER bytes arrived, then one
#   final line: "END <bytes>" (recv returned b'' first: a FIN) or "RESET <bytes>" (recv or send
#   failed with ECONNRESET first). One thread, so the first of the two is the one the kernel
#   reported first.
import errno
import select
import socket
import sys

port, line, kill_after, upload = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'
sock = socket.create_connection(('127.0.0.1', port))
sock.sendall(line.encode() + b'\n')
sock.setblocking(False)
chunk = bytes(65536)
received = 0
told = False
outcome = None
while outcome is None:
    readable, writable, _ = select.select([sock], [sock] if upload else [], [], 30)
    if not readable and not writable:
        outcome = 'TIMEOUT'
        break
    try:
        if readable:
            data = sock.recv(1 << 20)
            if not data:
                outcome = 'END'
                break
            received += len(data)
            if not told and received >= kill_after:
                told = True
                print('KILL', flush=True)
        if writable and upload:
            sock.send(chunk)
    except BlockingIOError:
        pass
    except OSError as err:
        outcome = 'RESET' if err.errno == errno.ECONNRESET else 'ERROR-' + errno.errorcode.get(err.errno, str(err.errno))
print(outcome, received, flush=True)
