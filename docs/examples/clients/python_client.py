import asyncio

from gatewayasgi.client import GatewayClient


async def main(url: str = "ws://127.0.0.1:8000/chat") -> None:
    async with GatewayClient(url, headers={"x-token": "secret"}) as client:

        @client.on("confirm")  # a server -> client call: the return
        async def confirm(data: dict) -> bool:  # value answers it ($ack)
            return True

        reply = await client.call("send_message", {"text": "hi"}, timeout=5)
        print(reply)  # {'text': 'hi', 'status': 'delivered'}
        await client.emit("send_message", {"text": "no id, no ack"})
        print(await client.receive(timeout=5))  # Message(event='message_ack', data={...})


if __name__ == "__main__":
    asyncio.run(main())
