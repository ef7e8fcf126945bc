#!/usr/bin/env python3
"""A TCP relay that adds a fixed delay to each direction, for the e2e tests.

The netns test `the_near_peer_serves_most_of_a_large_artifact` needs one peer that is far away
(50 ms each way). The kernels of the test machines and CI have no `sch_netem`, so `tc netem`
cannot add the delay; this relay does it in userspace instead:

    python3 delay-relay.py LISTEN_ADDR:PORT TARGET_ADDR:PORT DELAY_SECONDS

It accepts TCP connections on LISTEN and forwards each one to TARGET. Every chunk read from
either side is stamped with the time it was read, and that direction's writer sleeps until
`stamp + DELAY` before writing it on, so each direction is delayed by DELAY and keeps its order
(a round trip through the relay takes 2 * DELAY more). The queues between reader and writer are
bounded, so a fast sender is slowed down (as by a full TCP window) instead of filling memory.
A half-close is passed on after the same delay.

It prints `relay listening on ADDR:PORT` once it accepts connections, and exits on SIGTERM,
SIGINT, or when the process that started it goes away (Linux parent-death signal), so it never
outlives its test. Python 3 standard library only.
"""

import argparse
import asyncio
import ctypes
import os
import signal
import sys

CHUNK = 64 * 1024
# Chunks in flight per direction: at most 16 MiB, far more than 50 ms of the tests' traffic.
QUEUE = 256


def address(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDR:PORT")
    return host.strip("[]"), int(port)


async def pipe(reader, writer, delay, loop):
    """Copy reader to writer, each chunk `delay` seconds after it was read."""
    queue = asyncio.Queue(QUEUE)

    async def read():
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time(), data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time(), None))

    async def write():
        while True:
            stamp, data = await queue.get()
            wait = stamp + delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:  # the reading side broke: abort this direction
                writer.transport.abort()
                return
            if not data:  # EOF: pass the half-close on
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    reading = asyncio.ensure_future(read())
    try:
        await write()
    finally:
        reading.cancel()


async def relay(client_reader, client_writer, target, delay, loop):
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
    except OSError as error:
        print(f"relay: cannot connect to {target[0]}:{target[1]}: {error}", file=sys.stderr)
        client_writer.transport.abort()
        return
    directions = [
        asyncio.ensure_future(pipe(client_reader, upstream_writer, delay, loop)),
        asyncio.ensure_future(pipe(upstream_reader, client_writer, delay, loop)),
    ]
    try:
        # Both directions done (half-closes passed on), or one broke: close the pair.
        done, _ = await asyncio.wait(directions, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()
    except (ConnectionError, OSError):
        pass
    finally:
        for task in directions:
            task.cancel()
        for writer in (client_writer, upstream_writer):
            writer.transport.abort()


def die_with_parent():
    """SIGTERM this process when its parent exits (Linux; a no-op elsewhere)."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it is already gone
        os.kill(os.getpid(), signal.SIGTERM)


async def main():
    parser = argparse.ArgumentParser(description="TCP relay delaying each direction.")
    parser.add_argument("listen", type=address, help="ADDR:PORT to accept connections on")
    parser.add_argument("target", type=address, help="ADDR:PORT to forward them to")
    parser.add_argument("delay", type=float, help="seconds added to each direction")
    args = parser.parse_args()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    die_with_parent()

    server = await asyncio.start_server(
        lambda r, w: relay(r, w, args.target, args.delay, loop),
        args.listen[0],
        args.listen[1],
        reuse_address=True,
    )
    host, port = server.sockets[0].getsockname()[:2]
    print(f"relay listening on {host}:{port}", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
