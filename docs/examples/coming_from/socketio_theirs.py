# python-socketio: a server of its own, mounted beside the app.
import socketio
from fastapi import FastAPI

sio = socketio.AsyncServer(async_mode="asgi")


@sio.on("join", namespace="/chat")
async def join(sid, data):
    name = data.get("name") if isinstance(data, dict) else None
    if not name:  # validation is yours to write
        return {"error": "name is required"}
    await sio.enter_room(sid, data.get("room", "lobby"), namespace="/chat")
    await sio.emit("joined", {"name": name}, room=data.get("room", "lobby"), namespace="/chat")
    return {"room": data.get("room", "lobby")}


api = FastAPI()
app = socketio.ASGIApp(sio, other_asgi_app=api)
