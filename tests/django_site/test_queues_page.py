from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site.queues import queue_rows

from . import functions


def test_queue_page_shows_counts_as_bars_to_staff_only(broker: PygigoBroker) -> None:
    functions.fe_add.send(1, 2)
    functions.fe_add.send(3, 4)
    functions.fe_add.send_with_options(args=(1, 2), delay_s=3600)
    rows, error = queue_rows()
    assert error is None
    row = next(r for r in rows if r["queue"] == functions.QUEUE)
    assert (row["ready"], row["delayed"], row["dead"]) == (2, 1, 0)
    assert (row["ready_pct"], row["delayed_pct"]) == (100.0, 50.0)

    # In the project's own admin site (the app mounts no admin of its own).
    url = reverse("admin:pygigo-queues")
    assert url == "/admin/pygigo/invocation/queues/"
    assert Client().get(url).status_code == 302  # to the admin login
    staff = get_user_model().objects.create_user("queues-staff", password="pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert f"<code>{functions.QUEUE}</code>" in html
    assert 'class="pg-bar pg-ready" style="width: 100.0%"' in html


def test_landing_page_lists_the_functions_and_links_admin_queues_and_openapi(broker: PygigoBroker) -> None:
    page = Client().get("/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<code>POST /fn/fe_add</code>" in html
    for link in ("/admin/", "/admin/pygigo/invocation/queues/", "/openapi.json"):
        assert f'href="{link}"' in html
