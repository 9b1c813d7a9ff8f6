"""A small support agent: deterministic, offline, and instrumented with the RunContext.

agentledger binds parameters by name: the input text, the persona, and ``ctx`` (the
RunContext) whose spans and observations land in the trace.
"""

from __future__ import annotations

ANSWERS = {
    "notebook": "Open the sidebar and choose New notebook.",
    "notes": "Notes sync in the background; check Settings > Sync and pull to refresh.",
    "export": "Run `notes export --all --format md` to write every notebook as Markdown.",
    "api": "Use the /tags endpoint; it allows 10 requests per second, so batch your updates.",
}


def run(input_text: str, persona: str | None, ctx) -> str:
    with ctx.span("lookup", persona=persona):
        topic = next((key for key in ANSWERS if key in input_text.lower()), None)
        ctx.observe("topic", topic=topic)
    answer = ANSWERS.get(topic, "Could you tell me a bit more about what you are trying to do?")
    if persona == "novice_user":
        answer += " Let me know if any step is unclear."
    return answer
