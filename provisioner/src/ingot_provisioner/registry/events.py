"""The event log of each node (every change the registry makes leaves one), and the time format of every answer."""

from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import schemas
from ..errors import Invalid
from ..models import Event, Node, utcnow


def iso(value: Optional[dt.datetime]) -> Optional[str]:
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def event_dict(ev: Event) -> dict:
    return {"id": ev.id, "time": iso(ev.time), "kind": ev.kind, "message": ev.message, "data": ev.data}


def add_event(s: Session, node: Node, kind: str, message: str, data: Optional[dict] = None) -> None:
    s.add(Event(node_id=node.id, kind=kind, message=message, data=data, time=utcnow()))


def events(s: Session, node: Node, since: Optional[str], limit: int) -> dict:
    q = select(Event).where(Event.node_id == node.id)
    if since:
        if since.isascii() and since.isdigit():
            if int(since) > schemas.MAX_INT32:
                raise Invalid(f"since: event id {since[:20]} is out of range (at most {schemas.MAX_INT32})")
            q = q.where(Event.id > int(since))
        else:
            try:
                when = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise Invalid(f"since must be an event id or an ISO 8601 time, got {since[:40]!r}") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            try:
                when = when.astimezone(dt.timezone.utc)
            except OverflowError:
                raise Invalid(f"since: time {since[:40]!r} is out of range") from None
            q = q.where(Event.time > when)
    rows = s.scalars(q.order_by(Event.id).limit(limit)).all()
    return {"items": [event_dict(e) for e in rows]}
