# notify.py -- from a background worker, a cron job, another service: no websocket server
import os

from gatewayasgi.emitter import RedisEmitter

url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


# --8<-- [start:emit]
async def export_done(client_id: str) -> None:
    async with RedisEmitter(url, namespace="/chat") as emitter:
        await emitter.to("room-1").emit("message", {"text": "build finished"})
        await emitter.to(client_id).emit("notice", "your export is ready")
        await emitter.except_(client_id).emit("presence", {"left": client_id})
        await emitter.emit("announcement", "maintenance at 22:00")  # every client
        # --8<-- [end:emit]


# --8<-- [start:orders]
async def ban(client_id: str) -> None:
    async with RedisEmitter(url, namespace="/chat") as emitter:
        await emitter.to("lobby").join("announcements")
        await emitter.to("lobby").leave("announcements")
        await emitter.to(client_id).disconnect(4000, "banned")
        # --8<-- [end:orders]
