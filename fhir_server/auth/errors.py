"""OAuth 2.0 error responses (RFC 6749 section 5.2): ``{"error", "error_description"}``."""

from __future__ import annotations


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}
