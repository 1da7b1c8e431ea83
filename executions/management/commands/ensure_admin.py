"""Create the first admin account, once, with a random password."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "If no user exists yet, create a superuser 'admin' with a random "
        "password and print it once. Never a fixed default password."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        users = get_user_model().objects
        if users.exists():
            self.stdout.write("Users exist already; no account was created.")
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the admin account.\n  username: {username}\n"
                f"  password: {password}\n"
                "This password is shown once; change it in the admin."
            )
        )
