"""One keyset pager for every paged read of the store.

Each page is fetched in its own short transaction with ``WHERE key > last ORDER BY key
LIMIT n``: memory stays flat, no transaction is held open while the caller works, and a
page costs O(page) whatever its offset (unlike ``OFFSET``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

Key = TypeVar("Key")
Row = Sequence[Any]


def keyset_pages(
    fetch: Callable[[Key, int], Sequence[Row]],
    key: Callable[[Row], Key],
    start: Key,
    page_size: int,
) -> Iterator[Sequence[Row]]:
    """Pages of rows: ``fetch(last_key, page_size)`` from ``start``, each next page after
    the ``key`` of the previous page's last row, until a short page. Empty pages are not
    yielded."""
    last = start
    while True:
        page = fetch(last, page_size)
        if page:
            yield page
        if len(page) < page_size:
            return
        last = key(page[-1])
