"""socket.io figures for docs/loadtest.md, with the Python client library (python-socketio's
asyncio client over aiohttp) against running release-build servers.

    pip install "python-socketio[asyncio_client]==5.18.1" "aiohttp==3.14.5"   # into a venv

    # idle: memory per idle socket.io connection (websocket transport)
    python scripts/socketio_bench.py idle --url http://127.0.0.1:8000 \\
        --users 20 --connections 2000 --hold 30 --server-pid "$SERVER_PID"

    # latency: emit on the first URL's process, receive on the last's
    python scripts/socketio_bench.py latency --url http://127.0.0.1:8001 \\
        --url http://127.0.0.1:8002 --pairs 10 --messages 50 --rate 50

Users are signed up as `sb{run}u{i}` (password Password231): start the servers with
SIGNUPS_PER_HOUR and LOGIN_ATTEMPTS_PER_MINUTE lifted, as for `loadtest`.
"""

import argparse
import asyncio
import random
import string
import time

import aiohttp
import socketio

PASSWORD = "Password231"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_all(pids):
    return [rss_kib(p) for p in pids]


async def sign_up(http, url, name):
    async with http.post(
        f"{url}/api/auth/sign-up?username={name}",
        data={"grant_type": "password", "username": f"{name}@example.com", "password": PASSWORD},
    ) as r:
        assert r.status == 201, (r.status, await r.text())
        return (await r.json())["access_token"]


async def ticket(http, url, name):
    async with http.post(
        f"{url}/api/auth/socket-ticket",
        data={"grant_type": "password", "username": f"{name}@example.com", "password": PASSWORD},
    ) as r:
        assert r.status == 201, (r.status, await r.text())
        return (await r.json())["access_token"]


async def befriend(http, url, a, a_token, b, b_token):
    auth = lambda t: {"Authorization": f"Bearer {t}"}
    async with http.post(f"{url}/api/friends/requests?username={b}", headers=auth(a_token)) as r:
        assert r.status == 201, await r.text()
    async with http.post(
        f"{url}/api/friends/requests/accept?requester_username={a}", headers=auth(b_token)
    ) as r:
        assert r.status == 201, await r.text()


async def users(http, url, n, run):
    names = [f"sb{run}u{i}" for i in range(n)]
    tokens = []
    for chunk in range(0, n, 4):
        tokens += await asyncio.gather(*(sign_up(http, url, x) for x in names[chunk : chunk + 4]))
    return names, tokens


async def connect(url, access_token, on=None):
    client = socketio.AsyncClient(reconnection=False)
    for event, handler in (on or {}).items():
        client.on(event, handler)
    await client.connect(
        url,
        socketio_path="/ws/socket.io",
        auth={"access_token": access_token},
        transports=["websocket"],
        wait_timeout=30,
    )
    return client


async def idle(args, run):
    url = args.url[0]
    async with aiohttp.ClientSession() as http:
        names, _ = await users(http, url, args.users, run)
        tickets = [await ticket(http, url, x) for x in names]
    await asyncio.sleep(2)
    before = rss_all(args.server_pid)
    clients = []
    sem = asyncio.Semaphore(100)

    async def one(i):
        async with sem:
            clients.append(await connect(url, tickets[i % len(tickets)]))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(args.connections)))
    opened = time.perf_counter() - started
    await asyncio.sleep(5)
    after = rss_all(args.server_pid)
    print(f"{len(clients)} connections open in {opened:.1f} s; server RSS before {before} KiB, after {after} KiB")
    for t in range(0, args.hold, 10):
        await asyncio.sleep(10)
        print(f"  +{t + 10} s: RSS {rss_all(args.server_pid)} KiB, connected {sum(c.connected for c in clients)}")
    end = rss_all(args.server_pid)
    for b, a, e in zip(before, after, end):
        print(
            f"per connection: {(a - b) / args.connections:.1f} KiB after opening, "
            f"{(e - b) / args.connections:.1f} KiB at the end ({b} -> {a} -> {e} KiB)"
        )
    await asyncio.gather(*(c.disconnect() for c in clients))


async def latency(args, run):
    send_url, receive_url = args.url[0], args.url[-1]
    samples, sent_at = [], {}
    async with aiohttp.ClientSession() as http:
        names, tokens = await users(http, send_url, 2 * args.pairs, run)
        for k in range(args.pairs):
            a, b = 2 * k, 2 * k + 1
            await befriend(http, send_url, names[a], tokens[a], names[b], tokens[b])
        senders, receivers = [], []
        done = asyncio.Event()
        total = args.pairs * args.messages

        async def received(data):
            if "message" not in data:
                return
            t = sent_at.pop(data.get("message_tracking_id"), None)
            if t is not None:
                samples.append(time.perf_counter() - t)
                if len(samples) == total:
                    done.set()

        for k in range(args.pairs):
            a, b = 2 * k, 2 * k + 1
            senders.append(await connect(send_url, await ticket(http, send_url, names[a])))
            receivers.append(
                await connect(
                    receive_url,
                    await ticket(http, receive_url, names[b]),
                    {"message response": received},
                )
            )
    await asyncio.sleep(1)
    interval = 1 / args.rate
    started = time.perf_counter()
    for n in range(args.messages):
        for k in range(args.pairs):
            i = n * args.pairs + k
            await asyncio.sleep(max(0, started + i * interval - time.perf_counter()))
            tracking = f"{run}-{i:08d}-bench-tracking"
            sent_at[tracking] = time.perf_counter()
            await senders[k].emit(
                "message",
                {
                    "content": f"bench {i}",
                    "group_chat_id": None,
                    "addressee_username": names[2 * k + 1],
                    "message_tracking_id": tracking,
                },
            )
    try:
        await asyncio.wait_for(done.wait(), 10)
    except asyncio.TimeoutError:
        pass
    samples.sort()
    q = lambda p: samples[min(len(samples) - 1, int(p * len(samples)))] * 1000
    print(
        f"{len(samples)}/{total} delivered across processes ({send_url} -> {receive_url}) at "
        f"{args.rate}/s: p50 {q(0.5):.1f} ms, p90 {q(0.9):.1f} ms, p99 {q(0.99):.1f} ms, "
        f"max {samples[-1] * 1000:.1f} ms"
    )
    await asyncio.gather(*(c.disconnect() for c in senders + receivers))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["idle", "latency"])
    p.add_argument("--url", action="append", required=True)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--hold", type=int, default=30)
    p.add_argument("--server-pid", type=int, action="append", default=[])
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--messages", type=int, default=50)
    p.add_argument("--rate", type=float, default=50)
    args = p.parse_args()
    run = "".join(random.choices(string.ascii_lowercase, k=5))
    asyncio.run(idle(args, run) if args.mode == "idle" else latency(args, run))


if __name__ == "__main__":
    main()
