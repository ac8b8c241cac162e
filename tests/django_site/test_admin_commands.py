"""Admin pages and actions, and the management commands."""

from __future__ import annotations

import io
import re

from django.core.management import call_command
from django.test import Client

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site.models import ApiKey, Invocation, Status


def _invoke_with_cookie(admin_client: Client) -> Invocation:
    _, raw = ApiKey.generate("admin-test")
    response = Client(HTTP_X_API_KEY=raw).post("/fn/fe_private", headers={"Cookie": "secret=hunter2"})
    assert response.status_code == 202
    return Invocation.objects.get(id=response.json()["id"])


def test_changelist_filters_and_masked_detail(broker: PygigoBroker, admin_client: Client) -> None:
    invocation = _invoke_with_cookie(admin_client)
    listing = admin_client.get("/admin/pygigo/invocation/?status__exact=queued&function=fe_private")
    assert listing.status_code == 200 and str(invocation.id) in listing.content.decode()
    detail = admin_client.get(f"/admin/pygigo/invocation/{invocation.id}/change/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "X-Api-Key" not in page or "hunter2" not in page
    assert "hunter2" not in page  # the cookie was stripped or masked, never shown


def test_cancel_and_rerun_actions(broker: PygigoBroker, admin_client: Client) -> None:
    invocation = _invoke_with_cookie(admin_client)
    url = "/admin/pygigo/invocation/"
    response = admin_client.post(url, {"action": "cancel", "_selected_action": [str(invocation.id)]})
    assert response.status_code == 302
    invocation.refresh_from_db()
    assert invocation.status == Status.CANCELLED
    before = Invocation.objects.filter(function="fe_private").count()
    admin_client.post(url, {"action": "rerun", "_selected_action": [str(invocation.id)]})
    rerun = Invocation.objects.filter(function="fe_private").exclude(id=invocation.id).first()
    assert Invocation.objects.filter(function="fe_private").count() == before + 1
    assert rerun is not None and rerun.status == Status.QUEUED and rerun.principal == invocation.principal


def test_apikey_admin_creates_a_hashed_key(admin_client: Client) -> None:
    response = admin_client.post("/admin/pygigo/apikey/add/", {"name": "from-admin"}, follow=True)
    assert response.status_code == 200
    key = ApiKey.objects.get(name="from-admin")
    found = re.search(r"pgk_[0-9a-f]{8}_[A-Za-z0-9_-]+", response.content.decode())
    assert found is not None, "the raw key is shown once after creation"
    raw = found.group(0)
    assert ApiKey.lookup(raw) == key and raw not in key.hashed


def test_apikey_command_create_list_revoke() -> None:
    out = io.StringIO()
    call_command("pygigo_apikey", "create", "cli-key", stdout=out, stderr=io.StringIO())
    raw = out.getvalue().strip()
    key = ApiKey.lookup(raw)
    assert key is not None and key.name == "cli-key"
    listing = io.StringIO()
    call_command("pygigo_apikey", "list", stdout=listing)
    assert key.prefix in listing.getvalue() and raw not in listing.getvalue()
    call_command("pygigo_apikey", "revoke", f"pgk_{key.prefix}", stdout=io.StringIO())
    assert ApiKey.lookup(raw) is None


def test_relay_command_once(broker: PygigoBroker) -> None:
    out = io.StringIO()
    call_command("pygigo_relay", "--once", "--min-age", "0", stdout=out)
    assert "still waiting" in out.getvalue()
