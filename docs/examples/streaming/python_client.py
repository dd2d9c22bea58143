import asyncio

from gatewayasgi.client import GatewayClient


async def main(url: str = "ws://127.0.0.1:8000/ai") -> None:
    async with GatewayClient(url) as client:
        answer = client.stream("prompt", {"text": "hello there"}, timeout=10)
        async for item in answer:  # each item's data, in order
            print(item["delta"], end="", flush=True)
        print()  # You said: hello there
        print(answer.result)  # {'tokens': 4}: the end frame's data (the StreamEnd value)

        async for n in client.stream("ticker", 0.05):
            if n == 3:
                break  # leaving the loop cancels the stream: the server closes the generator
        print([n async for n in client.stream("countdown", 3)])  # [3, 2, 1]


if __name__ == "__main__":
    asyncio.run(main())
