#!/usr/bin/env python3
# A TCP backend that accepts and never reads, with a receive buffer the test chooses: Node has no
# API for SO_RCVBUF on a net.Socket. See stuck-backend.mjs.
#
# Usage: stuck-backend.py RCVBUF
#   Prints "LISTENING <port>" (127.0.0.1), then accepts connections and holds them unread until
#   its stdin ends, printing "ACCEPTED <peer port>" for each. SO_RCVBUF is set on the listening socket before listen(), so every accepted
#   socket has it from its SYN on (the TCP window it advertises is sized from it).
import select
import socket
import sys

rcvbuf = int(sys.argv[1])
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
server.bind(('127.0.0.1', 0))
server.listen(16)
print(f'LISTENING {server.getsockname()[1]}', flush=True)
held = []
while True:
    readable, _, _ = select.select([server, sys.stdin], [], [])
    if sys.stdin in readable and not sys.stdin.buffer.read1(4096):
        break
    if server in readable:
        conn, peer = server.accept()
        held.append(conn)
        print(f'ACCEPTED {peer[1]}', flush=True)
