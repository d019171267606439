"""The node registry: every operation of the API as a function over a database transaction.

This package is the one interface the HTTP layer (:mod:`..api`) and the web view (:mod:`..view`) call; its
modules own one domain each:

* :mod:`.nodes`: the inventory (register, read, list, update, delete nodes);
* :mod:`.lifecycle`: the state changes (:func:`apply` and the table in :mod:`..states`): enroll, deploy,
  release, and the deadline of deploys and releases (:func:`reap_overdue`, run by :mod:`..periodic`);
* :mod:`.allocation`: claiming a ready node for an (owner, name);
* :mod:`.images`: the image catalog;
* :mod:`.boot`: iPXE scripts and discovery;
* :mod:`.tokens`: the one-time deploy tokens;
* :mod:`.agent`: the deploy agent's manifest, seed and reports;
* :mod:`.events`: the event log of each node.
"""

from ..models import utcnow
from .agent import manifest, report, seed_files
from .allocation import allocate
from .boot import discovery, ipxe_script, node_by_mac
from .events import event_dict, events, iso
from .images import create_image, delete_image, get_image, image_dict, image_url, list_images, put_image
from .lifecycle import apply, deploy, enroll, reap_overdue, release
from .nodes import create_node, create_nodes_bulk, delete_node, get_node, list_nodes, node_dict, update_node
from .tokens import TOKEN_PREFIX, hash_token, mint_token, revoke_tokens, token_node

__all__ = [
    "TOKEN_PREFIX", "allocate", "apply", "create_image", "create_node", "create_nodes_bulk", "delete_image",
    "delete_node", "deploy", "discovery", "enroll", "event_dict", "events", "get_image", "get_node", "hash_token",
    "image_dict", "image_url", "ipxe_script", "iso", "list_images", "list_nodes", "manifest", "mint_token",
    "node_by_mac", "node_dict", "put_image", "reap_overdue", "release", "report", "revoke_tokens", "seed_files",
    "token_node", "update_node", "utcnow",
]
