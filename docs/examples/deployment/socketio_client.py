# client.py -- python client.py (pip install "python-socketio[asyncio_client]")
import asyncio
import sys

# --8<-- [start:client]
import socketio  # python-socketio; its asyncio client needs aiohttp

sio = socketio.AsyncClient()


@sio.on("message", namespace="/chat")
def message(data):  # one argument: no offset with connection_state_recovery off
    print(data["name"], data["text"])


# --8<-- [end:client]


async def main(url: str = "http://127.0.0.1:8000") -> None:
    await sio.connect(url, namespaces=["/chat"], transports=["websocket"], wait_timeout=5)
    try:  # the gateway emits the message before it answers the call
        await sio.call("say", {"name": "ann", "text": "hi"}, namespace="/chat", timeout=5)
    finally:
        await sio.disconnect()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
