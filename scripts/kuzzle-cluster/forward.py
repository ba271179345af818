#!/usr/bin/env python3
"""TCP forwarder from this machine's loopback into one cluster node's network
namespace (scripts/kuzzle-cluster.sh starts one per node).

    forward.py LISTEN_PORT NETNS_PATH TARGET_HOST TARGET_PORT

The listening socket is made first, in the namespace the forwarder starts in
(the machine's own); then the process enters the node's namespace, so that
every connection it opens to the node is made there. A dead node looks like a
dead host: when the node refuses, the client's connection is reset without
its request being read, and the listener is closed, so that further connects
are refused, until a probe every 0.2 s finds the node accepting again.
"""
import asyncio
import ctypes
import os
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
PROBE_EVERY = 0.2
CHUNK = 256 * 1024
LIBC = ctypes.CDLL(None, use_errno=True)


def enter(fd):
    if LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def listener(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    s.setblocking(False)
    return s


def reset(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass


class Forwarder:
    """Listens in the machine's namespace, connects in the node's."""

    def __init__(self, port, target, root_ns, node_ns):
        self.port = port
        self.target = target
        self.root_ns = root_ns
        self.node_ns = node_ns
        self.server = None

    async def open(self):
        # A socket stays in the namespace it was made in: the listener is
        # made back in the machine's (setns is per thread, and this one
        # runs everything).
        enter(self.root_ns)
        try:
            sock = listener(self.port)
        finally:
            enter(self.node_ns)
        self.server = await asyncio.start_server(self.handle, sock=sock, backlog=1024)

    async def handle(self, client_reader, client_writer):
        try:
            node_reader, node_writer = await asyncio.open_connection(*self.target)
        except OSError:
            reset(client_writer)
            await self.close_listener()
            return
        for w in (client_writer, node_writer):
            s = w.get_extra_info("socket")
            if s is not None:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pipe(client_reader, node_writer), pipe(node_reader, client_writer))
        for w in (client_writer, node_writer):
            try:
                w.close()
            except OSError:
                pass

    async def close_listener(self):
        if self.server is not None:
            server, self.server = self.server, None
            server.close()
            asyncio.get_running_loop().create_task(self.watch())

    async def watch(self):
        while True:
            await asyncio.sleep(PROBE_EVERY)
            try:
                _, w = await asyncio.open_connection(*self.target)
                w.close()
            except OSError:
                continue
            await self.open()
            return


async def main():
    port, netns, host, target_port = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    root_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    node_ns = os.open(netns, os.O_RDONLY)
    enter(node_ns)
    f = Forwarder(port, (host, target_port), root_ns, node_ns)
    await f.open()
    print(f"forwarding 127.0.0.1:{port} to {host}:{target_port} in {netns}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
