from __future__ import annotations

import argparse
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from pygigo.django_site.models import ApiKey


class Command(BaseCommand):
    help = "Manage API keys: create NAME [--user USERNAME] | revoke PREFIX | list"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key and print it (shown once)")
        create.add_argument("name")
        create.add_argument("--user", help="username the key acts for (default: a service key)")
        revoke = sub.add_parser("revoke", help="revoke a key by its prefix (pgk_<prefix>_…)")
        revoke.add_argument("prefix")
        sub.add_parser("list", help="list keys (never their secrets)")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            user = None
            if options["user"]:
                user = get_user_model().objects.filter(username=options["user"]).first()
                if user is None:
                    raise CommandError(f"No user {options['user']!r}; create it first (createsuperuser).")
            key, raw = ApiKey.generate(options["name"], user)
            self.stdout.write(raw)
            self.stderr.write(f"Created key {key.prefix} ({key.name}); store it now, it is not shown again.")
        elif action == "revoke":
            prefix = options["prefix"].removeprefix("pgk_").split("_", 1)[0]
            found = ApiKey.objects.filter(prefix=prefix).first()
            if found is None:
                raise CommandError(f"No key with prefix {prefix!r}; `pygigo_apikey list` shows them.")
            found.revoke()
            self.stdout.write(f"revoked {found.prefix}")
        else:
            for key in ApiKey.objects.order_by("created_at"):
                state = "active" if key.active else f"revoked {key.revoked_at:%Y-%m-%d}"
                owner = key.user.get_username() if key.user else "-"
                self.stdout.write(f"{key.prefix}\t{key.name}\t{owner}\t{state}")
