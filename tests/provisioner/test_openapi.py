"""``/openapi.json`` tells the truth: content types, the error body, the statuses each route
answers, the MAC and facts rules; and schemathesis, an OpenAPI-driven fuzzer, finds no 500 and no answer that
disagrees with the description when it runs against the real service (uvicorn on loopback)."""

import os
import subprocess
import sys

from ingot_provtest import ADMIN_TOKEN

FUZZ_SECONDS = int(os.environ.get("INGOT_FUZZ_SECONDS", "75"))
FUZZ_SEED = os.environ.get("INGOT_FUZZ_SEED", "20261204")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def content(op, status):
    return sorted(op["responses"][status].get("content", {}))


def error_ref(op, status):
    return op["responses"][status]["content"]["application/json"]["schema"]["$ref"]


def test_openapi_describes_what_the_service_answers(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    # the error body of every route is {"detail", "code"}, never FastAPI's own validation error shape
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, ops in paths.items():
        for method, op in ops.items():
            for status, resp in op["responses"].items():
                if status.startswith("4"):
                    assert error_ref(op, status) == "#/components/schemas/ErrorOut", (method, path, status)
            if path.startswith(("/boot", "/discovery", "/agent", "/images/{", "/ramdisk")):
                assert "403" in op["responses"], (method, path)
    ipxe = paths["/boot/ipxe"]["get"]
    assert content(ipxe, "200") == ["text/plain"] and {"403", "409", "422"} <= set(ipxe["responses"])
    assert content(paths["/agent/agent.sh"]["get"], "200") == ["text/x-shellscript"]
    assert content(paths["/agent/manifest"]["get"], "200") == ["application/json", "text/plain"]
    assert content(paths["/agent/seed/{name}"]["get"], "200") == ["text/plain"]
    for path in ("/images/{path}", "/ramdisk/{path}"):
        op = paths[path]["get"]
        assert content(op, "200") == ["application/octet-stream"] and "404" in op["responses"]
    assert {"400", "409", "413", "422", "429"} <= set(paths["/discovery"]["post"]["responses"])
    assert "201" in paths["/api/v1/images/{name}"]["put"]["responses"]
    # the MAC and facts rules
    schemas = spec["components"]["schemas"]
    mac = schemas["Discovery"]["properties"]["macs"]["items"]
    assert mac["pattern"] and mac["minLength"] == mac["maxLength"] == 17
    facts = schemas["Discovery"]["properties"]["facts"]
    assert facts["type"] == "object" and "NaN" in facts["description"]
    assert facts["properties"]["cpus"] == {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}


def test_schemathesis_finds_no_500_and_no_answer_outside_the_description(server_factory, tmp_path):
    srv = server_factory(discovery_rate_limit=100000, access_log="false")
    # something to find: an image, a node that is deploying it, an image file
    image = {"name": "deb12", "url": "deb12.tar", "sha256": "ab" * 32, "format": "tar", "size": 10}
    assert srv.api("POST", "/api/v1/images", image)[0] == 201
    (tmp_path / "images" / "deb12.tar").write_bytes(b"0123456789")
    assert srv.api("POST", "/api/v1/nodes", {"name": "n1", "macs": ["02:00:00:00:00:01"]})[0] == 201
    assert srv.api("POST", "/api/v1/allocations", {"owner": "o", "name": "a"})[0] == 201
    assert srv.api("POST", "/api/v1/nodes/n1/deploy", {"image": "deb12"})[0] == 200
    cmd = [os.path.join(os.path.dirname(sys.executable), "st"), "run", srv.url + "/openapi.json",
           "-H", f"Authorization: Bearer {ADMIN_TOKEN}", "--checks", CHECKS, "--max-examples", "10",
           "--phases", "coverage,fuzzing", "--max-time", str(FUZZ_SECONDS), "--workers", "1",
           "--seed", FUZZ_SEED, "--request-timeout", "30", "--no-color", "--generation-database", "none"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FUZZ_SECONDS + 120, check=False,
                          cwd=str(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"schemathesis (seed {FUZZ_SEED}) failed:\n{out[-6000:]}\n{srv.log()[-3000:]}"
    assert "internal error" not in srv.log()
    assert " passed" in out and "generated" in out, out[-2000:]
