"""An async agent whose 'backend' fails now and then: shows retries, spans and seeded
randomness. ctx.random is seeded per slot, so a rerun with the same seed fails the same way."""

from __future__ import annotations

import asyncio


async def answer(input_text: str, ctx) -> dict:
    with ctx.span("backend", attempt_of=ctx.trace_id):
        await asyncio.sleep(ctx.random.uniform(0.001, 0.02))
        if ctx.random.random() < 0.3:
            raise ConnectionError("backend unavailable")
    ctx.log("answered", level="info", words=len(input_text.split()))
    return {"answer": f"(stub) {input_text}", "confidence": round(ctx.random.random(), 2)}
