# FastAPI's own websockets: the loop, the parsing, the rooms and the errors are yours.
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field, ValidationError


class Say(BaseModel):
    text: str = Field(min_length=1)


app = FastAPI()
rooms: dict[str, set[WebSocket]] = {}


@app.websocket("/chat/{room}")
async def chat(websocket: WebSocket, room: str) -> None:
    await websocket.accept()
    members = rooms.setdefault(room, set())
    members.add(websocket)
    try:
        while True:
            frame = await websocket.receive_json()
            try:
                say = Say.model_validate(frame.get("data"))
            except ValidationError as exc:
                await websocket.send_json({"event": "error", "data": exc.errors()})
                continue
            for member in list(members):
                await member.send_json({"event": "message", "data": {"text": say.text}})
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(websocket)
