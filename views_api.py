"""REST API under /satmachineadmin/api/v1/dca."""

from fastapi import APIRouter, Depends
from lnbits.core.models import User
from lnbits.decorators import check_user_exists

from .crud import get_super_config
from .models import SuperConfig

satmachineadmin_api_router = APIRouter(prefix="/api/v1/dca")


@satmachineadmin_api_router.get("/super-config")
async def api_get_super_config(
    user: User = Depends(check_user_exists),
) -> SuperConfig:
    return await get_super_config()
