"""A small support agent: a tool-calling loop through the recorded model client.

agentledger binds parameters by name: the input text, the persona, and ``ctx`` (the
RunContext). ``ctx.openai`` is a real ``openai.OpenAI`` client for the model named in
configs/simulation.yaml (``mock:echo`` here, so it runs offline): every request and
response is recorded in the trace, and so are the spans and observations below.
"""

from __future__ import annotations

import json

DOCS = {
    "notebook": "Open the sidebar and choose New notebook.",
    "notes": "Notes sync in the background; check Settings > Sync and pull to refresh.",
    "export": "Run `notes export --all --format md` to write every notebook as Markdown.",
    "api": "Use the /tags endpoint; it allows 10 requests per second, so batch your updates.",
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_docs",
            "description": "Find the help-centre answer for a question.",
            "parameters": {
                "type": "object",
                "properties": {"question": {"type": "string"}},
                "required": ["question"],
            },
        },
    }
]


def lookup_docs(question: str) -> str:
    topic = next((key for key in DOCS if key in question.lower()), None)
    return DOCS.get(topic, "No article found; ask the user for more detail.")


def run(input_text: str, persona: str | None, ctx) -> str:
    messages = [
        {"role": "system", "content": f"You are the support bot. The user is a {persona}."},
        {"role": "user", "content": input_text},
    ]
    reply = ctx.openai.chat.completions.create(model=ctx.model, messages=messages, tools=TOOLS)
    message = reply.choices[0].message
    if not message.tool_calls:
        return message.content or ""
    messages.append(message.model_dump(exclude_none=True))
    for call in message.tool_calls:
        arguments = json.loads(call.function.arguments)
        with ctx.span("lookup_docs", **arguments):
            result = lookup_docs(**arguments)
            ctx.observe("article", found=not result.startswith("No article"))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    final = ctx.openai.chat.completions.create(model=ctx.model, messages=messages)
    return final.choices[0].message.content or ""
