"""The HTTP ceiling of our stack: a trivial FastAPI route under the same uvicorn."""

from fastapi import FastAPI

app = FastAPI()


@app.post("/ping")
async def ping() -> dict[str, bool]:
    """Answer at once."""
    return {"ok": True}
