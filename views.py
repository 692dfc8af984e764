"""The extension's page inside LNbits."""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from lnbits.core.models import User
from lnbits.decorators import check_user_exists
from lnbits.helpers import template_renderer

satmachineadmin_generic_router = APIRouter()


def renderer():
    return template_renderer(["satmachineadmin/templates"])


@satmachineadmin_generic_router.get("/", response_class=HTMLResponse)
async def index(request: Request, user: User = Depends(check_user_exists)):
    return renderer().TemplateResponse(
        request, "satmachineadmin/index.html", {"user": user.json()}
    )
