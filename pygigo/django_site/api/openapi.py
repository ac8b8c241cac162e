"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponseBase, JsonResponse

from .errors import api_view, method_not_allowed
from .views import IDEMPOTENCY_KEY_PATTERN


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if headers:
        response["headers"] = headers
    return response


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_ACCEPTED = _json(
    "Accepted: the invocation is queued. Follow Location.",
    "Invocation",
    {"Location": {"schema": {"type": "string"}, "description": "/invocations/<id>"}},
)
_COMMON = {"401": _error("Bad or missing credentials."), "429": _error("Rate limited; see Retry-After.")}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Pygigo",
        "version": "1",
        "description": "Invoke functions on Dramatiq workers over HTTP. Errors are JSON with a "
        "stable `code` and a `detail` saying what to fix.",
    },
    "security": [{"bearer": []}, {"apiKey": []}, {"session": []}, {}],
    "paths": {
        "/fn": {
            "get": {
                "summary": "The functions this caller may invoke",
                "responses": {"200": _json("Function list", "FunctionList"), **_COMMON},
            }
        },
        "/fn/{name}": {
            "post": {
                "summary": "Invoke a function (by the methods it declares, default POST; the request is forwarded as is)",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 255,
                            "pattern": IDEMPOTENCY_KEY_PATTERN,
                        },
                        "description": "Same key + same authenticated caller = same invocation, never "
                        "a second run (refused for anonymous callers).",
                    },
                    {
                        "name": "Prefer",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "example": "wait=5"},
                        "description": "`wait=N` (RFC 7240): answer with the function's response if it "
                        "finishes within N seconds.",
                    },
                ],
                "requestBody": {"required": False, "content": {"*/*": {"schema": {}}}},
                "responses": {
                    "200": {"description": "The function's own response (with Prefer: wait)."},
                    "202": _ACCEPTED,
                    "400": _error("Malformed JSON body or header."),
                    "403": _error("CSRF check failed (session authentication)."),
                    "404": _error("Unknown function."),
                    "405": _error("The function is not invoked by this method; see Allow."),
                    "411": _error("Chunked body: send a Content-Length."),
                    "413": _error("Body too large."),
                    "422": _error("Idempotency-Key reused for another function."),
                    "502": _error("With Prefer: wait, the function failed (the status document)."),
                    **_COMMON,
                },
            }
        },
        "/invocations/{id}": {
            "get": {
                "summary": "Status of an invocation",
                "parameters": [_ID],
                "responses": {"200": _json("Status", "Invocation"), "404": _error("Not found."), **_COMMON},
            },
            "delete": {
                "summary": "Cancel an invocation that has not started",
                "parameters": [_ID],
                "responses": {
                    "200": _json("Cancelled", "Invocation"),
                    "404": _error("Not found."),
                    "409": _error("Already running or finished."),
                    **_COMMON,
                },
            },
        },
        "/invocations/{id}/result": {
            "get": {
                "summary": "The function's response",
                "parameters": [_ID],
                "responses": {
                    "200": {"description": "The function's own response."},
                    "202": _ACCEPTED,
                    "404": _error("Not found."),
                    "409": _error("Cancelled: no result."),
                    "502": _error("The function failed."),
                    **_COMMON,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["code", "detail"],
                "properties": {"code": {"type": "string"}, "detail": {"type": "string"}},
            },
            "Invocation": {
                "type": "object",
                "required": ["id", "function", "status", "attempts"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "function": {"type": "string"},
                    "status": {
                        "enum": ["queued", "running", "succeeded", "failed", "retrying", "dead", "cancelled"]
                    },
                    "attempts": {"type": "integer", "minimum": 0},
                    "created_at": {"type": ["string", "null"], "format": "date-time"},
                    "started_at": {"type": ["string", "null"], "format": "date-time"},
                    "heartbeat_at": {"type": ["string", "null"], "format": "date-time"},
                    "finished_at": {"type": ["string", "null"], "format": "date-time"},
                    "error": {"type": ["string", "null"]},
                    "links": {"type": "object"},
                },
            },
            "FunctionList": {
                "type": "object",
                "required": ["functions"],
                "properties": {
                    "functions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "url"],
                            "properties": {
                                "name": {"type": "string"},
                                "queue": {"type": "string"},
                                "public": {"type": "boolean"},
                                "url": {"type": "string"},
                            },
                        },
                    }
                },
            },
        },
    },
}


@api_view
def openapi(request: HttpRequest) -> HttpResponseBase:
    if request.method not in ("GET", "HEAD"):
        raise method_not_allowed(request.method or "?", ("GET", "HEAD"))
    return JsonResponse(DOCUMENT)
