#!/usr/bin/env python3
"""uplink_proxy: a throttling TCP proxy on loopback that emulates a gateway's
uplink (kernel netem is not available here).

    uplink_proxy.py LISTEN_PORT TARGET_PORT [--rtt-ms 50] [--mbit 10]
                    [--max-seconds 3600] [--no-stdin-watch]
                    [--timeline FILE]

Listens on 127.0.0.1:LISTEN_PORT and forwards every connection to
127.0.0.1:TARGET_PORT through an emulated link:

- latency: half the round trip each way (25 ms for --rtt-ms 50), added to
  every byte;
- bandwidth: --mbit per direction, ONE link per direction shared by all
  connections (not a budget per connection): bytes of all connections are
  serialised on it, first come first served, in chunks of at most 16 KiB, and
  each connection may have at most 64 KiB waiting for the link (about one
  bandwidth-delay product), so parallel connections share it roughly as TCP
  flows would;
- connection setup: one round trip is charged before the first byte of each
  new connection moves (the TCP handshake; Kuzzle closes every HTTP connection
  after one response, so each request pays it), then the first bytes still
  take their one-way delay: the answer to a one-packet request arrives two
  round trips after connect(), as on a real link.

Not emulated: TCP slow start, packet loss, header overhead (payload bytes are
counted, not IP/TCP headers), and the listen socket accepts at once (the
client's connect() returns immediately; the handshake cost shows as the delay
before the first byte instead).

Prints "ready" on stdout once listening. Bounded and self-terminating: exits
when its standard input closes (unless --no-stdin-watch) or after
--max-seconds. Standard library only.
"""

import argparse
import asyncio
import os
import socket
import sys

CHUNK = 16 * 1024          # largest piece put on the link at once
WINDOW = 64 * 1024         # bytes one connection may have waiting for the link
TIMELINE_SLOT = 0.1        # seconds per line of --timeline


class Link:
    """One direction of the uplink: a serialising wire of fixed rate followed
    by a fixed delay. Only time is accounted; the bytes stay with their
    connection."""

    def __init__(self, bits_per_s, delay_s, name):
        self.rate = bits_per_s / 8.0  # bytes per second
        self.delay = delay_s
        self.name = name
        self.busy_until = 0.0
        self.bytes = 0
        self.slots = {}  # --timeline: bytes on the wire per TIMELINE_SLOT

    def schedule(self, now, nbytes):
        """Puts nbytes on the wire behind whatever is already there; returns
        (time the last byte leaves, time it arrives on the far side)."""
        start = max(now, self.busy_until)
        self.busy_until = start + nbytes / self.rate
        self.bytes += nbytes
        if nbytes:
            slot = int(start / TIMELINE_SLOT)
            self.slots[slot] = self.slots.get(slot, 0) + nbytes
        return self.busy_until, self.busy_until + self.delay


class Pipe:
    """One direction of one proxied connection."""

    def __init__(self, link, reader, writer, not_before):
        self.link = link
        self.reader = reader
        self.writer = writer
        self.not_before = not_before  # monotonic time the first byte may leave
        self.queue = asyncio.Queue()  # (arrival time, bytes or None for EOF)
        self.waiting = 0              # bytes of this pipe not yet off the wire
        self.window_open = asyncio.Event()
        self.window_open.set()

    async def pump(self):
        """Reads from the source and schedules each chunk on the link."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self.reader.read(CHUNK)
                now = loop.time()
                if now < self.not_before:
                    await asyncio.sleep(self.not_before - now)
                    now = loop.time()
                if not data:
                    # EOF travels behind the data, with the link's delay
                    _, arrive = self.link.schedule(now, 0)
                    self.queue.put_nowait((arrive, None))
                    return
                while self.waiting >= WINDOW:
                    self.window_open.clear()
                    await self.window_open.wait()
                now = loop.time()
                sent, arrive = self.link.schedule(now, len(data))
                self.waiting += len(data)
                loop.call_at(sent, self._sent, len(data))
                self.queue.put_nowait((arrive, data))
        except (ConnectionError, OSError):
            self.queue.put_nowait((loop.time(), None))

    def _sent(self, nbytes):
        self.waiting -= nbytes
        if self.waiting < WINDOW:
            self.window_open.set()

    async def deliver(self):
        """Writes each chunk to the destination at its arrival time, in order."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                arrive, data = await self.queue.get()
                delay = arrive - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if data is None:
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    return
                self.writer.write(data)
                await self.writer.drain()
        except (ConnectionError, OSError):
            return


class Proxy:
    def __init__(self, target_port, rtt_s, mbit):
        self.target_port = target_port
        self.rtt = rtt_s
        self.up = Link(mbit * 1e6, rtt_s / 2, "up")      # client -> server
        self.down = Link(mbit * 1e6, rtt_s / 2, "down")  # server -> client
        self.connections = 0

    async def handle(self, c_reader, c_writer):
        loop = asyncio.get_running_loop()
        self.connections += 1
        # The handshake: nothing moves during the first round trip.
        not_before = loop.time() + self.rtt
        try:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            c_writer.close()
            return
        for w in (c_writer, s_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
        up = Pipe(self.up, c_reader, s_writer, not_before)
        down = Pipe(self.down, s_reader, c_writer, not_before)
        tasks = [asyncio.ensure_future(t) for t in (up.pump(), up.deliver(), down.pump(), down.deliver())]
        try:
            # The answer fully delivered (or the server gone) ends the exchange.
            await tasks[3]
            await asyncio.wait(tasks[:3], timeout=self.rtt * 2 + 1)
        finally:
            for t in tasks:
                t.cancel()
            for w in (c_writer, s_writer):
                try:
                    w.close()
                except Exception:
                    pass


def write_timeline(path, proxy):
    """One line per slot from the first byte on: time (s), then the share of
    each direction's capacity used (the bytes a chunk put on the wire all
    count in the slot where it started)."""
    slots = list(proxy.up.slots) + list(proxy.down.slots)
    if not slots:
        return
    cap = proxy.up.rate * TIMELINE_SLOT
    with open(path, "w") as out:
        for k in range(min(slots), max(slots) + 1):
            out.write("%.1f %.2f %.2f\n" % ((k - min(slots)) * TIMELINE_SLOT, proxy.up.slots.get(k, 0) / cap,
                                            proxy.down.slots.get(k, 0) / cap))


async def watch_stdin():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (ValueError, OSError):
        # stdin is a regular file or similar: read it to the end
        await asyncio.sleep(0)
        while sys.stdin.read(65536):
            pass
        return
    while await reader.read(65536):
        pass


async def main():
    ap = argparse.ArgumentParser(description="throttling TCP proxy emulating an uplink")
    ap.add_argument("listen_port", type=int)
    ap.add_argument("target_port", type=int)
    ap.add_argument("--rtt-ms", type=float, default=50.0)
    ap.add_argument("--mbit", type=float, default=10.0, help="Mbit/s per direction, shared")
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="exit after this long")
    ap.add_argument("--no-stdin-watch", action="store_true", help="do not exit when stdin closes")
    ap.add_argument("--timeline", help="at exit, write each direction's use of the link per %g s there"
                    % TIMELINE_SLOT)
    a = ap.parse_args()

    proxy = Proxy(a.target_port, a.rtt_ms / 1000.0, a.mbit)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", a.listen_port, backlog=512)
    print("ready", flush=True)
    stops = [asyncio.ensure_future(asyncio.sleep(a.max_seconds))]
    if not a.no_stdin_watch:
        stops.append(asyncio.ensure_future(watch_stdin()))
    await asyncio.wait(stops, return_when=asyncio.FIRST_COMPLETED)
    server.close()
    print(f"uplink_proxy: {proxy.connections} connections, "
          f"{proxy.up.bytes} bytes up, {proxy.down.bytes} bytes down", file=sys.stderr, flush=True)
    if a.timeline:
        write_timeline(a.timeline, proxy)
    os._exit(0)  # do not wait for connections still open


if __name__ == "__main__":
    asyncio.run(main())
