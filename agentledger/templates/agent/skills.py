"""Python skills of the agents: plain functions, offered to the model as tools."""

DOCS = {
    "export": "Run `notes export --all --format md` to write every notebook as Markdown.",
    "sync": "Notes sync in the background; check Settings > Sync and pull to refresh.",
    "notebook": "Open the sidebar and choose New notebook.",
}


def lookup_docs(question: str) -> str:
    """Find the help-centre article that answers a question."""
    topic = next((key for key in DOCS if key in question.lower()), None)
    return DOCS.get(topic, "No article found; ask the user for more detail.")
