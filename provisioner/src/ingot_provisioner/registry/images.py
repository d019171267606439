"""The image catalog: what a deploy writes (name, URL, SHA-256, format, size); an image a running deploy reads is
neither replaced nor deleted."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import schemas
from ..config import Settings
from ..errors import Conflict, Invalid, NotFound
from ..models import Image, Node, utcnow
from ..states import State
from .events import iso


def image_dict(image: Image) -> dict:
    return {"name": image.name, "url": image.url, "sha256": image.sha256, "format": image.format,
            "size": image.size, "created_at": iso(image.created_at)}


def list_images(s: Session) -> dict:
    """The whole catalog, by name."""
    return {"items": [image_dict(i) for i in s.scalars(select(Image).order_by(Image.name)).all()]}


def create_image(s: Session, req: schemas.ImageCreate) -> Image:
    if s.get(Image, req.name) is not None:
        raise Conflict(f"image '{req.name}' exists")
    image = Image(name=req.name, url=req.url, sha256=req.sha256, format=req.format, size=req.size,
                  created_at=utcnow())
    s.add(image)
    s.flush()
    return image


def _image_users(s: Session, name: str) -> list[str]:
    """Nodes whose running deploy reads image ``name`` (their agents fetch it by this catalog entry)."""
    return list(s.scalars(select(Node.name).where(Node.image == name, Node.state == State.DEPLOYING.value)
                          .order_by(Node.name).limit(21)).all())


def _refuse_in_use(s: Session, name: str, what: str) -> None:
    users = _image_users(s, name)
    if users:
        more = " and more" if len(users) > 20 else ""
        raise Conflict(f"image '{name}' is in use: node(s) {', '.join(users[:20])}{more} are deploying it; {what} "
                       f"refused (wait for the deploy to end, or release the node)", code="image_in_use")


def delete_image(s: Session, name: str) -> None:
    image = get_image(s, name)
    _refuse_in_use(s, name, "delete")
    s.delete(image)


def put_image(s: Session, name: str, req: schemas.ImageCreate) -> tuple[Image, int]:
    """Create or replace image ``name`` in one transaction. Returns (image, 201 created | 200 replaced/same)."""
    if req.name != name:
        raise Invalid(f"body.name '{req.name}' differs from the image '{name}' of the URL")
    image = s.get(Image, name)
    if image is None:
        return create_image(s, req), 201
    fields = {"url": req.url, "sha256": req.sha256, "format": req.format, "size": req.size}
    if any(getattr(image, k) != v for k, v in fields.items()):
        _refuse_in_use(s, name, "replacing it")
        for key, value in fields.items():
            setattr(image, key, value)
        image.created_at = utcnow()
        s.flush()
    return image, 200


def get_image(s: Session, name: str) -> Image:
    image = s.get(Image, name)
    if image is None:
        raise NotFound(f"image '{name}' not found")
    return image


def image_url(image: Image, settings: Settings) -> str:
    if image.url.startswith(("http://", "https://")):
        return image.url
    return f"{settings.base_url}/images/{image.url.lstrip('/')}"
