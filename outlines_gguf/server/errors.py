"""Errors the server answers with, in OpenAI's shape.

OpenAI clients (the ``openai`` SDK, instructor, LangChain) read
``{"error": {"message", "type", "param", "code"}}`` and raise a typed
exception from the status code, so every failure is turned into that body:
bad input is a 400 that names the field, never a bare 422 or a stack trace.
"""

from __future__ import annotations

from typing import Any

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
SERVER_ERROR = "server_error"


class APIError(Exception):
    """An error answered as ``{"error": {...}}`` with an HTTP status.

    ``param`` names the request field at fault (dotted, as OpenAI does:
    ``response_format.json_schema.schema``); ``code`` is a short machine
    name (``context_length_exceeded``, ``invalid_api_key``) or None.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI clients parse."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def __repr__(self) -> str:
        return f"APIError({self.status}, {self.message!r}, param={self.param!r}, code={self.code!r})"


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400 naming the field at fault."""
    return APIError(400, message, param=param, code=code)


def server_error(message: str, code: str | None = None) -> APIError:
    """A 500: the server, not the request, failed (a processor failure, a bug)."""
    return APIError(500, message, type=SERVER_ERROR, code=code)


def one_line(exc: BaseException) -> str:
    """An exception as one line (schema and grammar errors span several)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
