"""Independent RTSP clients for the rtsp sink: FFmpeg's (through PyAV) and a raw one that
stops reading.

    python rtsp_client.py count URL N   -> {"frames": N, "seconds": S} (S from first frame to N-th)
    python rtsp_client.py stall URL     -> sets up RTP over TCP, plays, then never reads again
"""

import json
import socket
import sys
import time
from urllib.parse import urlparse

import av


def count(url: str, n: int) -> None:
    container = av.open(url, options={"rtsp_transport": "tcp"}, timeout=20)
    got, first = 0, None
    for _ in container.decode(video=0):
        got += 1
        if first is None:
            first = time.monotonic()
        if got >= n:
            break
    print(json.dumps({"frames": got, "seconds": time.monotonic() - (first or time.monotonic())}))


def stall(url: str) -> None:
    u = urlparse(url)
    s = socket.create_connection((u.hostname, u.port or 554))
    # A small receive buffer fills at once once we stop reading.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    seq = 0

    def request(method: str, target: str, extra: str = "") -> str:
        nonlocal seq
        seq += 1
        s.sendall(f"{method} {target} RTSP/1.0\r\nCSeq: {seq}\r\n{extra}\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":")[1])
        while len(body) < length:
            body += s.recv(4096)
        return head.decode()

    request("OPTIONS", url)
    request("DESCRIBE", url, "Accept: application/sdp\r\n")
    head = request("SETUP", url + "/stream=0", "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
    session = [l.split(":", 1)[1].split(";")[0].strip() for l in head.split("\r\n")
               if l.lower().startswith("session:")][0]
    s.sendall(f"PLAY {url} RTSP/1.0\r\nCSeq: 9\r\nSession: {session}\r\n\r\n".encode())
    print("stalled", flush=True)
    time.sleep(3600)


def main() -> None:
    if sys.argv[1] == "count":
        count(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "stall":
        stall(sys.argv[2])
    else:
        raise SystemExit(f"unknown command {sys.argv[1]}")


if __name__ == "__main__":
    main()
