# main.py -- the server asks each new client to confirm an order: hypercorn main:app
import asyncio
from typing import Any

from gatewayasgi import (
    CallClosedError,
    CallRejectedError,
    CallTimeoutError,
    GatewayMiddleware,
    OnGatewayConnection,
    WebSocketGateway,
)

outcomes: list[Any] = []  # what each call ended with


# --8<-- [start:confirm]
async def confirm(client: Any) -> None:
    try:
        answer = await client.call("confirm", {"order": 42}, timeout=5)  # the answer's data
    except CallRejectedError as exc:  # the client answered with an error: exc.message
        answer = {"rejected": exc.message}
    except CallTimeoutError:  # a TimeoutError: no answer within 5 s
        answer = "no answer"
    except CallClosedError:  # the connection closed first (raised at once)
        answer = "closed"
    outcomes.append(answer)
    # --8<-- [end:confirm]


@WebSocketGateway("/shop")
class ShopGateway(OnGatewayConnection):
    def __init__(self) -> None:
        self.calls: set[asyncio.Task[None]] = set()

    async def on_connection(self, client: Any) -> None:
        # Not awaited here: this client's answer is read only after on_connection returns.
        task = asyncio.create_task(confirm(client))
        self.calls.add(task)
        task.add_done_callback(self.calls.discard)


app = GatewayMiddleware(gateways=[ShopGateway])
