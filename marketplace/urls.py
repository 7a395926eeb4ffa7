"""Marketplace pages. None of these routes serves a stored file.

The owner's dashboard (``/dashboard/``) counts jobs, so it is compute's page, routed from config/urls.py.
"""

from django.urls import path

from marketplace import new_dataset, views
from marketplace.ensembles import views as ensembles

urlpatterns = [
    path("", views.catalogue, name="catalogue"),
    path("datasets/new/", new_dataset.dataset_new, name="dataset-new"),
    path("datasets/new/column/", new_dataset.dataset_new_column, name="dataset-new-column"),
    path("datasets/mine/", views.my_datasets, name="my-datasets"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<int:dataset_id>/buy/", views.dataset_buy, name="dataset-buy"),
    path("datasets/<int:dataset_id>/publish/", views.dataset_publish, name="dataset-publish"),
    path("datasets/<int:dataset_id>/suspend/", views.dataset_suspend, name="dataset-suspend"),
    path("datasets/<int:dataset_id>/ensembles/new/", ensembles.ensemble_create, name="ensemble-create"),
    path("datasets/<int:dataset_id>/ensembles/join/", ensembles.ensemble_join, name="ensemble-join"),
    path(
        "datasets/<int:dataset_id>/ensembles/<int:ensemble_id>/leave/", ensembles.ensemble_leave, name="ensemble-leave"
    ),
    path("ensembles/", ensembles.ensemble_catalogue, name="ensemble-catalogue"),
    path("ensembles/<int:ensemble_id>/", ensembles.ensemble_detail, name="ensemble-detail"),
    path("purchases/", views.my_purchases, name="my-purchases"),
    path("purchases/<int:purchase_id>/", views.purchase_detail, name="purchase-detail"),
]
