import asyncio

from gatewayasgi.client import GatewayClient

png_bytes = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


async def main(url: str = "ws://localhost:8000/chat") -> None:
    async with GatewayClient(url, protocol="msgpack") as client:
        reply = await client.call("upload", {"name": "a.png", "body": png_bytes})
        print(reply)  # {'name': 'a.png', 'size': 264, 'head': b'\x89PNG'}


if __name__ == "__main__":
    asyncio.run(main())
