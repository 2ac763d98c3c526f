"""Independent NATS client for the broker tests (nats-py, not segstream's async-nats).

    python nats_client.py sub SERVER SUBJECT SECONDS  -> every message received within SECONDS
                                                         (reconnecting while the server is
                                                         away), one "SUBJECT PAYLOAD" a line;
                                                         prints "ready" to stderr once subscribed
    python nats_client.py consumer SERVER STREAM NAME -> the consumer's info as JSON
                                                         (num_redelivered, num_ack_pending, ...)
    python nats_client.py capture SERVER STREAM SUBJECT -> creates a JetStream stream that
                                                         stores every message on SUBJECT (the
                                                         broker's own record of what it took)
    python nats_client.py dump SERVER STREAM          -> every message the stream holds, one
                                                         "SUBJECT PAYLOAD" a line
"""

import asyncio
import json
import sys

import nats


async def sub(server: str, subject: str, seconds: float) -> None:
    nc = await nats.connect(
        f"nats://{server}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        allow_reconnect=True,
    )
    got = []

    async def on_message(msg):
        got.append(f"{msg.subject} {msg.data.decode()}")

    await nc.subscribe(subject, cb=on_message)
    await nc.flush()
    print("ready", file=sys.stderr, flush=True)
    await asyncio.sleep(seconds)
    for line in got:
        print(line)
    sys.stdout.flush()
    try:
        await nc.close()
    except Exception:
        pass


async def consumer(server: str, stream: str, name: str) -> None:
    nc = await nats.connect(f"nats://{server}")
    js = nc.jetstream()
    info = await js.consumer_info(stream, name)
    stream_info = await js.stream_info(stream)
    print(json.dumps({
        "num_redelivered": info.num_redelivered,
        "num_ack_pending": info.num_ack_pending,
        "num_pending": info.num_pending,
        "delivered": info.delivered.consumer_seq,
        "stream_messages": stream_info.state.messages,
    }))
    await nc.close()


async def capture(server: str, stream: str, subject: str) -> None:
    nc = await nats.connect(f"nats://{server}")
    await nc.jetstream().add_stream(name=stream, subjects=[subject])
    await nc.close()


async def dump(server: str, stream: str) -> None:
    nc = await nats.connect(f"nats://{server}")
    js = nc.jetstream()
    info = await js.stream_info(stream)
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        print(f"{msg.subject} {msg.data.decode()}")
    await nc.close()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "sub":
        asyncio.run(sub(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    elif cmd == "capture":
        asyncio.run(capture(sys.argv[2], sys.argv[3], sys.argv[4]))
    elif cmd == "dump":
        asyncio.run(dump(sys.argv[2], sys.argv[3]))
    elif cmd == "consumer":
        asyncio.run(consumer(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        sys.exit(f"unknown command {cmd}")
