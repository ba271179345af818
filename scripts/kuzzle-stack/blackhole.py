#!/usr/bin/env python3
"""Fault upstreams for the stack's TLS proxy (scripts/kuzzle-stack.sh).

    blackhole.py LISTEN_SOCKET REFUSED_SOCKET

LISTEN_SOCKET: a Unix socket that accepts every connection, reads and drops
whatever comes, and never answers: nginx forwards the request, then gives up
after its proxy_read_timeout and answers 504 (the request may have been
processed: "in doubt").

REFUSED_SOCKET: a socket file bound then closed at once, so that connecting to
it is refused (ECONNREFUSED, as a port where nothing listens): nginx answers
502 without forwarding anything.
"""

import asyncio
import os
import signal
import socket
import sys


def remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def swallow(reader, writer):
    # Read until the proxy gives up and closes; never write a byte.
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(listen, refused):
    for path in (listen, refused):
        remove(path)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(refused)
    dead.close()  # the file stays; nobody listens behind it
    server = await asyncio.start_unix_server(swallow, path=listen, backlog=512)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"blackhole: accepting on {listen}, refusing on {refused}", flush=True)
    async with server:
        await stop.wait()
    remove(listen)
    print("blackhole: stopped", flush=True)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    asyncio.run(serve(sys.argv[1], sys.argv[2]))


if __name__ == "__main__":
    main()
