"""The extension loads in a real LNbits: installed, migrated, page served."""

from conftest import Actor


async def test_extension_page_is_served_to_a_logged_in_user(http, operator: Actor):
    response = await http.get("/satmachineadmin/", headers=operator.headers)
    assert response.status_code == 200
    # The page's words come from its messages (English and Spanish), which
    # the page loads beside its components.
    assert "satmachineadmin/static/i18n/en.js" in response.text
    assert "satmachineadmin/static/i18n/es.js" in response.text
    assert "index_satoshi_machine_admin" in response.text or (
        "satmachineadmin/static/js/index.js" in response.text
    )


async def test_page_refuses_anonymous_caller(http):
    response = await http.get("/satmachineadmin/", follow_redirects=False)
    assert response.status_code in (401, 307)


async def test_schema_is_migrated(app):
    from satmachineadmin.crud import get_super_config

    config = await get_super_config()
    assert config.super_fee_pct == 0
