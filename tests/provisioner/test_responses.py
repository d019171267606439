"""Responses checked against their models: every JSON route of the API declares its response model, and an answer
that does not fit it is a logged 500 (naming the fields at fault, never their values), not a wrong answer."""

import logging

import pytest

from ingot_provisioner import registry

IMAGE = {"name": "deb12", "url": "deb12.tar", "sha256": "ab" * 32, "format": "tar", "size": 1024}
MARKER = "value-that-must-not-be-logged"


def test_every_json_answer_of_the_api_has_its_model_in_the_openapi_document(app):
    """A route without response_model is described with an empty schema (and its answers go unchecked)."""
    checked = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if status.startswith("2") and schema is not None:
                    assert schema.get("$ref") or schema.get("properties"), f"{method.upper()} {path} {status}: {schema}"
                    checked.append(f"{method.upper()} {path} {status}")
    assert len(checked) >= 20, checked


def drop_sha256(out):
    out.pop("sha256")
    out["url"] = MARKER


def first_item_without_sha256(out):
    drop_sha256(out["items"][0])


def state_is_no_state(out):
    out["state"] = MARKER


def first_item_macs_not_a_list(out):
    out["items"][0]["macs"] = MARKER


def broken(real, mutate):
    def call(*args, **kwargs):
        out = real(*args, **kwargs)
        mutate(out)
        return out
    return call


@pytest.mark.parametrize("target, mutate, path, fault", [
    ("image_dict", drop_sha256, "/api/v1/images/deb12", "response.sha256: Field required"),
    ("list_images", first_item_without_sha256, "/api/v1/images", "response.items.0.sha256: Field required"),
    ("node_dict", state_is_no_state, "/api/v1/nodes/n1", "response.state: Input should be"),
    ("list_nodes", first_item_macs_not_a_list, "/api/v1/nodes", "response.items.0.macs: Input should be a valid list"),
], ids=["image", "image-list", "node", "node-list"])
def test_an_answer_that_does_not_fit_its_model_is_a_logged_500(app, client, admin, monkeypatch, caplog,
                                                               target, mutate, path, fault):
    assert client.post("/api/v1/images", json=IMAGE, headers=admin).status_code == 201
    assert client.post("/api/v1/nodes", json={"name": "n1", "macs": ["02:00:00:00:00:01"]},
                       headers=admin).status_code == 201
    monkeypatch.setattr(registry, target, broken(getattr(registry, target), mutate))
    with caplog.at_level(logging.ERROR, logger="ingot_provisioner"):
        resp = client.get(path, headers=admin)
    assert resp.status_code == 500, resp.text
    assert resp.json()["code"] == "internal_error" and MARKER not in resp.text
    logged = [r.getMessage() for r in caplog.records if "does not fit its model" in r.getMessage()]
    assert len(logged) == 1 and f"GET {path}" in logged[0] and fault in logged[0], logged
    assert MARKER not in caplog.text
    assert app.state.internal_errors == 1
    app.state.internal_errors = 0  # expected here; the fixture checks the other tests
