"""An independent WebSocket client (Python `websockets`) for the chat service's live socket.

usage: live_client.py URL TOKEN COUNT
Connects with `Authorization: Bearer TOKEN`, prints `connected`, then prints each of the next
COUNT text frames (one JSON document per line) and exits 0; exits 2 on a refused handshake
(printing `refused STATUS BODY`) and 3 when no frame came within 20 s.
"""
import asyncio
import sys

import websockets


async def main(url: str, token: str, count: int) -> int:
    try:
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10
        ) as ws:
            print("connected", flush=True)
            for _ in range(count):
                try:
                    frame = await asyncio.wait_for(ws.recv(), timeout=20)
                except asyncio.TimeoutError:
                    print("timeout", flush=True)
                    return 3
                print(frame, flush=True)
            return 0
    except websockets.exceptions.InvalidStatus as e:
        body = e.response.body.decode(errors="replace") if e.response.body else ""
        print(f"refused {e.response.status_code} {body}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
