"""Queues and schedules: a thumbnail service.

    python examples/thumbnails.py            # on SQLite (thumbnails.sqlite here)
    DBOS_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/thumbs python examples/thumbnails.py

Ten images are enqueued on a queue that renders at most three at a time, and the same
image twice is refused by its deduplication ID. A scheduled workflow reports progress
every second. Start several copies of this program with different DBOS__VMID values on
one Postgres database and the queue's limit holds across all of them.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

from dbos_async import DBOS, DBOSQueueDeduplicatedError, Queue, SetEnqueueOptions, run

renders = Queue("renders", concurrency=3, polling_interval_sec=0.2)
rendering = 0
most_at_once = 0


@DBOS.step()
async def render(image: str, size: int) -> str:
    global rendering, most_at_once
    rendering += 1
    most_at_once = max(most_at_once, rendering)
    try:
        await asyncio.sleep(0.2)  # the real work would go here
        return f"{image}@{size}px"
    finally:
        rendering -= 1


@DBOS.workflow()
async def make_thumbnails(image: str) -> list[str]:
    return [await render(image, size) for size in (64, 256)]


@DBOS.scheduled("* * * * * *")  # every second (6 fields: seconds first)
@DBOS.workflow()
async def report(scheduled_time: datetime, actual_time: datetime) -> None:
    queued = await DBOS.list_queued_workflows("renders", load_input=False)
    print(f"{scheduled_time:%H:%M:%S} {len(queued)} image(s) waiting or rendering")


async def main() -> None:
    config = {"name": "thumbnails", "database_url": os.environ.get("DBOS_DATABASE_URL")}
    async with DBOS({k: v for k, v in config.items() if v is not None}):
        handles = []
        for n in range(10):
            with SetEnqueueOptions(deduplication_id=f"image-{n}"):
                handles.append(await renders.enqueue(make_thumbnails, f"image-{n}.png"))
        try:
            with SetEnqueueOptions(deduplication_id="image-0"):
                await renders.enqueue(make_thumbnails, "image-0.png")
        except DBOSQueueDeduplicatedError as exc:
            print(f"refused: {exc}")
        for thumbnails in await asyncio.gather(*handles):
            print(", ".join(thumbnails))
        print(f"at most {most_at_once} rendering at once (the queue's limit is 3)")


if __name__ == "__main__":
    run(main())
