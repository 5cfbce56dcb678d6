"""What every route shares: failures answered in OpenAI's error shape with their status, the API
key, and the request body's size limit."""

from __future__ import annotations

import hmac
import json

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ExitCode, QwenlocalError
from .openai import ApiError


def api_error(error: BaseException) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, QwenlocalError):
        hint = f" ({error.hint})" if error.hint else ""
        if error.code == ExitCode.CONTEXT_OVERFLOW:
            return ApiError(400, error.message + hint, "messages", "context_length_exceeded")
        if error.code in (ExitCode.BAD_INPUT, ExitCode.USAGE):  # a bad image, or none can be seen
            return ApiError(400, error.message + hint, "messages")
        return ApiError(500, error.message + hint)
    return ApiError(500, f"internal error: {type(error).__name__}: {error}")


def error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": "1"} if error.status in (429, 503) else None
    return JSONResponse(error.body(), error.status, headers=headers)


def endpoint(handler):
    """A route whose errors, expected or not, are answered in OpenAI's shape."""

    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as error:
            return error_response(api_error(error))

    return route


async def http_error(request: Request, error: HTTPException) -> Response:
    """Starlette's own (404, 405) in OpenAI's shape."""
    return error_response(ApiError(error.status_code, f"{request.method} {request.url.path}: {error.detail}"))


def authorize(api_key: str | None, request: Request) -> None:
    """The key as OpenAI's clients send it (`Authorization: Bearer KEY`) or Anthropic's
    (`x-api-key: KEY`)."""
    if api_key is None:
        return
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    given = [request.headers.get("x-api-key", "")] + ([bearer] if scheme.lower() == "bearer" else [])
    if not any(key.strip() and hmac.compare_digest(key.strip().encode(), api_key.encode()) for key in given):
        message = "a valid API key is needed: Authorization: Bearer KEY (or x-api-key: KEY)"
        raise ApiError(401, message, code="invalid_api_key")


async def read_json(request: Request, limit: int) -> object:
    length = request.headers.get("content-length", "")
    too_big = ApiError(413, f"the request is over the server's limit of {limit >> 20} MiB", code="too_large")
    if length.isdigit() and int(length) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    try:
        return json.loads(body)
    except ValueError:
        raise ApiError(400, "the request body is not valid JSON") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise ApiError(400, "the request body is JSON nested too deeply") from None
