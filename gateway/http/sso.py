"""`POST /sso/v1/token` (RFC 8693 token exchange, PROTOCOL.md §6): a thin handler."""

from __future__ import annotations

from aiohttp import web

from gateway import appkeys as K
from gateway.sso.exchange import ACCESS_TOKEN_TYPE, OAuthError

routes = web.RouteTableDef()
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(exc: OAuthError) -> web.Response:
    """RFC 6749 §5.2: JSON with `error` and `error_description`, never a problem document."""
    return web.json_response({"error": exc.error, "error_description": exc.description},
                             status=exc.status, headers=NO_STORE)


@routes.post("/sso/v1/token")
async def token(request: web.Request) -> web.Response:
    if request.content_type != "application/x-www-form-urlencoded":
        return oauth_error(OAuthError("invalid_request",
                                      "use application/x-www-form-urlencoded (RFC 8693)"))
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        result = await request.app[K.SSO_EXCHANGE].exchange_form(fields)
    except OAuthError as exc:
        return oauth_error(exc)
    return web.json_response({"access_token": result.access_token,
                              "issued_token_type": ACCESS_TOKEN_TYPE,
                              "token_type": "Bearer", "expires_in": result.expires_in},
                             headers=NO_STORE)
