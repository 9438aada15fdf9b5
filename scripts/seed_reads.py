#!/usr/bin/env python3
"""Seeds a running server for the read benchmarks and writes wrk's request files.

    scripts/seed_reads.py http://127.0.0.1:8101 OUT_DIR [--users 200] [--messages 60]

The data is the shape the figures in docs/loadtest.md were taken on: USERS users, each
the friend of the 5 before and the 5 after it on a ring (10 friends each), and MESSAGES
messages in each friendship, from both sides. Then, in OUT_DIR, one file per scenario for
scripts/wrk/requests.lua (a path, a tab, a header per line; many users' requests):

    latest.txt   GET /api/messages/?friend_username=F&limit=50   (opening a chat)
    older.txt    the same with the latest page's next_page cursor (scrolling up)
    friends.txt  GET /api/friends/?limit=50
    users.txt    GET /api/users/
    chats.txt    GET /chats, signed in with a session cookie (the chat list page, HTML)
    sends.txt    POST /api/messages/?addressee_username=F, a short message to each friend

Only the standard library: it runs wherever python3 does. The server must allow the
sign-ups and sign-ins (scripts/bench.sh lifts SIGNUPS_PER_HOUR, LOGIN_ATTEMPTS_PER_MINUTE
and SENDS_PER_MINUTE).
"""

import argparse
import concurrent.futures
import http.cookiejar
import json
import os
import re
import urllib.parse
import urllib.request

PASSWORD = "Password231"
FRIENDS_EACH_SIDE = 5


def call(base, method, path, token=None, form=None, body=None):
    data, headers = None, {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as answer:
        text = answer.read()
    return json.loads(text) if text else None


def sign_up(base, name):
    form = {"grant_type": "password", "username": f"{name}@example.com", "password": PASSWORD}
    return call(base, "POST", f"/api/auth/sign-up?username={name}", form=form)["access_token"]


def session_cookie(base, name):
    """Signs in through the web form, as a browser does, and returns the Cookie header."""
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = browser.open(base + "/login", timeout=60).read().decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"login": name, "password": PASSWORD, "csrf_token": csrf})
    browser.open(base + "/login", data=form.encode(), timeout=60).read()
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base")
    parser.add_argument("out")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--web-users", type=int, default=20)
    args = parser.parse_args()
    base, n = args.base.rstrip("/"), args.users
    run_id = os.urandom(3).hex()
    names = [f"r{run_id}u{i}" for i in range(n)]
    pool = concurrent.futures.ThreadPoolExecutor(16)

    tokens = list(pool.map(lambda name: sign_up(base, name), names))
    pairs = [(i, (i + d) % n) for i in range(n) for d in range(1, FRIENDS_EACH_SIDE + 1)]
    list(pool.map(lambda p: call(base, "POST", f"/api/friends/requests?username={names[p[1]]}",
                                 token=tokens[p[0]]), pairs))
    list(pool.map(lambda p: call(base, "POST",
                                 f"/api/friends/requests/accept?requester_username={names[p[0]]}",
                                 token=tokens[p[1]]), pairs))

    def converse(pair):
        a, b = pair
        for k in range(args.messages):
            sender, to = (a, b) if k % 2 == 0 else (b, a)
            call(base, "POST", f"/api/messages/?addressee_username={names[to]}",
                 token=tokens[sender], body={"content": f"message {k} of a benchmark chat",
                                             "group_chat_id": None})

    list(pool.map(converse, pairs))

    friends = {i: [] for i in range(n)}
    for a, b in pairs:
        friends[a].append(b)
        friends[b].append(a)
    bearer = [f"Authorization: Bearer {t}" for t in tokens]
    latest = [(f"/api/messages/?friend_username={names[f]}&limit=50", bearer[i])
              for i in range(n) for f in friends[i]]

    def older(line):
        path, header = line
        page = call(base, "GET", path, token=header.split()[-1])
        return (f"{path}&cursor={page['cursor']['next_page']}", header)

    os.makedirs(args.out, exist_ok=True)
    files = {
        "latest.txt": latest,
        # Only when there is an older page (more than a page of messages per chat).
        "older.txt": list(pool.map(older, latest[::5])) if args.messages > 50 else [],
        "friends.txt": [("/api/friends/?limit=50", h) for h in bearer],
        "users.txt": [("/api/users/", h) for h in bearer],
        # A message to each friend in turn (the body after a second tab).
        "sends.txt": [(f"POST /api/messages/?addressee_username={names[f]}",
                       bearer[i] + '\t{"content": "wrk send", "group_chat_id": null}')
                      for i in range(n) for f in friends[i]],
        "chats.txt": [("/chats", "Cookie: " + c) for c in
                      pool.map(lambda name: session_cookie(base, name), names[:args.web_users])],
    }
    for file, lines in files.items():
        with open(os.path.join(args.out, file), "w") as out:
            out.writelines(f"{path}\t{header}\n" for path, header in lines)
    print(f"seeded {n} users, {len(pairs)} friendships, {len(pairs) * args.messages} messages; "
          f"request files in {args.out}")


if __name__ == "__main__":
    main()
