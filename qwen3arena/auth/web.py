"""The HTTP side of auth: the login page, the session cookie, and what Gradio is told.

Gradio 6.31's own `auth=` is all-or-nothing (no anonymous visitors beside logged-in ones), so
the app uses `auth_dependency` instead: for every page load and every API call Gradio asks
`gradio_user(request)`, which reads the signed cookie set by /auth/login. A refused caller
(None) gets 401 from Gradio itself; "" admits an anonymous visitor (public mode), whose
handlers then see role "anonymous" through AccessControl.user_for.
"""

from __future__ import annotations

import html
from typing import Any, Callable

from gradio.utils import get_space
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from qwen3arena.auth.access import COOKIE, AccessControl, LoginFailed, LoginThrottled, User

LOGIN_PATH = "/auth/login"
LOGOUT_PATH = "/auth/logout"

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title} — log in</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f6f6f7; display: flex;
       justify-content: center; padding-top: 10vh; }}
form {{ background: white; padding: 2em; border-radius: 10px; box-shadow: 0 1px 6px #0002;
        min-width: 280px; }}
label {{ display: block; margin-top: 1em; }}
input {{ width: 100%; padding: .5em; margin-top: .3em; box-sizing: border-box; }}
button {{ margin-top: 1.5em; width: 100%; padding: .6em; background: #f97316; color: white;
          border: 0; border-radius: 6px; font-size: 1em; }}
.error {{ color: #b91c1c; margin-top: 1em; }}
</style></head>
<body><form method="post" action="{action}">
<h2>{title}</h2>
<label>Username <input name="username" id="username" autocomplete="username" value="{username}" required></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
<button type="submit" id="login">Log in</button>
{error}{extra}
</form></body></html>"""


def gradio_user(access: AccessControl) -> Callable[[Any], str | None]:
    """Gradio's auth_dependency: who the request is, or None to refuse it (401)."""

    def dependency(request: Any) -> str | None:
        user = access.identify(request.cookies, _session(request))
        if not access.admits(user):
            return None
        return gradio_name(user)

    return dependency


def gradio_name(user: User) -> str:
    """What handlers see as request.username: the account, hf:<name>, or "" (anonymous)."""
    if user.role == "anonymous" or not user.name:
        return ""
    return f"hf:{user.name}" if user.via == "huggingface" else user.name


def _session(request: Any) -> Any:
    return request.session if "session" in request.scope else None


def auth_routes(access: AccessControl, title: str) -> list[Route]:
    """/auth/login (form and POST) and /auth/logout, for Gradio's app_kwargs["routes"]."""

    def page(error: str = "", username: str = "", status: int = 200) -> HTMLResponse:
        extra = ""
        if access.settings.public:
            extra = '<p><a href="/">Continue without an account (arena only)</a></p>'
        if access.settings.hf_oauth and get_space():
            extra += '<p><a href="/login/huggingface">Sign in with Hugging Face</a></p>'
        body = _PAGE.format(title=html.escape(title), action=LOGIN_PATH, username=html.escape(username),
                            error=f'<p class="error" id="login-error">{html.escape(error)}</p>' if error else "",
                            extra=extra)
        return HTMLResponse(body, status_code=status)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return page()
        form = await request.form()
        username = str(form.get("username", ""))
        try:
            user = access.login(username, str(form.get("password", "")))
        except LoginThrottled as exc:
            response = page(str(exc), username, status=429)
            response.headers["Retry-After"] = str(max(1, int(exc.retry_after_s + 0.999)))
            return response
        except LoginFailed as exc:
            return page(str(exc), username, status=401)
        response = RedirectResponse("/", status_code=303)
        set_session_cookie(response, request, access.session_token(user),
                           int(access.settings.session_hours * 3600))
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/" if access.settings.public else LOGIN_PATH, status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    return [Route(LOGIN_PATH, login, methods=["GET", "POST"]), Route(LOGOUT_PATH, logout, methods=["GET"])]


def set_session_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    """HttpOnly always; over HTTPS SameSite=None+Secure so it also works inside the Space's
    iframe on huggingface.co, over plain HTTP (localhost) SameSite=Lax."""
    https = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(COOKIE, token, max_age=max_age, path="/", httponly=True,
                        secure=https, samesite="none" if https else "lax")


class LoginRedirect:
    """ASGI middleware: a visitor the app does not admit who opens the page is sent to the
    login form instead of Gradio's bare 401."""

    def __init__(self, app: Any, access: AccessControl):
        self.app = app
        self.access = access

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET" and scope.get("path") in ("/", ""):
            request = Request(scope)
            if not self.access.admits(self.access.identify(request.cookies, _session(request))):
                await RedirectResponse(LOGIN_PATH, status_code=302)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def launch_options(access: AccessControl, title: str) -> dict[str, Any]:
    """Keyword arguments for Blocks.launch(): nothing when auth is off (the app as before)."""
    if not access.enabled:
        return {}
    from starlette.middleware import Middleware

    return {
        "auth_dependency": gradio_user(access),
        "app_kwargs": {"routes": auth_routes(access, title),
                       "middleware": [Middleware(LoginRedirect, access=access)]},
    }
