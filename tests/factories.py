"""factory_boy factories for the domain models."""

from __future__ import annotations

from decimal import Decimal

import factory

from accounts.models import User, Wallet
from marketplace.models import Column, Dataset


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery 42")
    is_owner = False
    is_buyer = False

    @factory.post_generation
    def credits(self, create, extracted, **kwargs):
        if not create:
            return
        self.save()
        Wallet.objects.get_or_create(user=self)
        if extracted:
            from accounts.services import wallet_change

            wallet_change(user=self, amount=Decimal(extracted), kind="adjustment", memo="test credits")


class DatasetFactory(factory.django.DjangoModelFactory):
    """A dataset row with a declared schema but no stored file; use the API to test uploads."""

    class Meta:
        model = Dataset
        skip_postgeneration_save = True

    owner = factory.SubFactory(UserFactory, is_owner=True)
    title = factory.Sequence(lambda n: f"Dataset {n}")
    slug = factory.Sequence(lambda n: f"dataset-{n}")
    description = "Test data."
    mode = Dataset.Mode.DP
    status = Dataset.Status.PUBLISHED
    epsilon_cap = Decimal("10")
    delta_cap = Decimal("0.00001")
    price_per_epsilon = Decimal("10.00")
    row_count = 100

    @factory.post_generation
    def columns(self, create, extracted, **kwargs):
        if not create:
            return
        specs = extracted or [
            {"name": "age", "kind": "numeric", "lower": 0, "upper": 120},
            {"name": "group", "kind": "categorical", "categories": ["a", "b"]},
        ]
        for i, spec in enumerate(specs):
            Column.objects.create(dataset=self, position=i, **spec)
