"""API errors: every refusal is JSON ``{"detail": "...", "code": "..."}`` with a 4xx status."""

from __future__ import annotations


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, status: int | None = None, code: str | None = None, headers=None):
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = headers


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class NoNodeAvailable(ApiError):
    status, code = 409, "no_node_available"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"

    def __init__(self, detail: str):
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class Invalid(ApiError):
    status, code = 422, "validation_error"
