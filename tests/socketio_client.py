"""One socket.io client (python-socketio, a real client library) driven over stdin/stdout
by the integration tests (tests/integration/socketio.rs).

    python socketio_client.py URL TRANSPORT AUTH_JSON

TRANSPORT is `websocket`, `polling` (long-polling only) or `any` (polling, then the
upgrade to websocket, as browsers do). AUTH_JSON is the connection's `auth`, e.g.
`{"access_token": "<ticket>"}`, or `null` for none.

Prints one JSON object per line: {"type": "connected"} or {"type": "connect_error",
"data": ...} first, then {"type": "event", "event": NAME, "data": DATA} for every event
received, and {"type": "disconnected", "reason": ...}. Reads one JSON command per line:
{"emit": NAME, "data": DATA}, {"burst": N, "emit": NAME, "data": DATA} (N emits at once,
`message_tracking_id` set to "burst-<i>"), {"close": true}.
"""

import json
import sys
import threading

import socketio

url, transport, auth = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = threading.Lock()


def say(**fields):
    with out:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


sio = socketio.Client(reconnection=False)


@sio.on("*")
def any_event(event, *args):
    say(type="event", event=event, data=args[0] if len(args) == 1 else list(args))


@sio.event
def disconnect(reason=None):
    say(type="disconnected", reason=str(reason))


transports = {"websocket": ["websocket"], "polling": ["polling"], "any": None}[transport]
try:
    sio.connect(
        url,
        socketio_path="/ws/socket.io",
        auth=auth,
        transports=transports,
        wait_timeout=10,
    )
except socketio.exceptions.ConnectionError as e:
    say(type="connect_error", data=str(e))
    sys.exit(0)
say(type="connected", transport=sio.transport())

for line in sys.stdin:
    command = json.loads(line)
    if command.get("close"):
        break
    if "burst" in command:
        for i in range(command["burst"]):
            data = dict(command["data"], message_tracking_id=f"burst-{i}")
            sio.emit(command["emit"], data)
    else:
        sio.emit(command["emit"], command["data"])
sio.disconnect()
