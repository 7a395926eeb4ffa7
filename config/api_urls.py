from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from accounts import api as accounts_api
from compute import api as compute_api
from config.health import HealthApi
from marketplace import api as marketplace_api
from marketplace.ensembles import api as ensembles_api
from marketplace.he import api as he_api

urlpatterns = [
    path("auth/signup/", accounts_api.SignupApi.as_view(), name="api-signup"),
    path("me/", accounts_api.MeApi.as_view(), name="api-me"),
    path("api-keys/", accounts_api.ApiKeyListCreateApi.as_view(), name="api-keys"),
    path("api-keys/<int:key_id>/", accounts_api.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
    path("datasets/", marketplace_api.DatasetListCreateApi.as_view(), name="api-datasets"),
    path("datasets/<int:dataset_id>/", marketplace_api.DatasetDetailApi.as_view(), name="api-dataset"),
    path("datasets/<int:dataset_id>/publish/", marketplace_api.DatasetPublishApi.as_view(), name="api-dataset-publish"),
    path("datasets/<int:dataset_id>/suspend/", marketplace_api.DatasetSuspendApi.as_view(), name="api-dataset-suspend"),
    path("datasets/he/", he_api.HeDatasetCreateApi.as_view(), name="api-he-datasets"),
    path("datasets/<int:dataset_id>/bundle/", he_api.BundleStateApi.as_view(), name="api-he-bundle"),
    path(
        "datasets/<int:dataset_id>/bundle/files/<str:name>", he_api.BundleFileApi.as_view(), name="api-he-bundle-file"
    ),
    path(
        "datasets/<int:dataset_id>/bundle/complete/", he_api.BundleCompleteApi.as_view(), name="api-he-bundle-complete"
    ),
    path("purchases/", marketplace_api.PurchaseListCreateApi.as_view(), name="api-purchases"),
    path("purchases/<int:purchase_id>/", marketplace_api.PurchaseDetailApi.as_view(), name="api-purchase"),
    path("purchases/<int:purchase_id>/ledger/", compute_api.PurchaseLedgerApi.as_view(), name="api-purchase-ledger"),
    path("datasets/<int:dataset_id>/dummy-query/", compute_api.DummyQueryApi.as_view(), name="api-dataset-dummy-query"),
    path("datasets/<int:dataset_id>/dummy.csv", compute_api.DummyTableApi.as_view(), name="api-dataset-dummy-table"),
    path("datasets/<int:dataset_id>/budget/", compute_api.DatasetBudgetApi.as_view(), name="api-dataset-budget"),
    path("jobs/", compute_api.JobListCreateApi.as_view(), name="api-jobs"),
    path("jobs/estimate/", compute_api.JobEstimateApi.as_view(), name="api-job-estimate"),
    path("jobs/<int:job_id>/", compute_api.JobDetailApi.as_view(), name="api-job"),
    path("jobs/<int:job_id>/cancel/", compute_api.JobCancelApi.as_view(), name="api-job-cancel"),
    path("jobs/<int:job_id>/download/", compute_api.JobDownloadApi.as_view(), name="api-job-download"),
    path("jobs/<int:job_id>/model/", compute_api.JobModelApi.as_view(), name="api-job-model"),
    path("ensembles/", ensembles_api.EnsembleListCreateApi.as_view(), name="api-ensembles"),
    path("ensembles/<int:ensemble_id>/", ensembles_api.EnsembleDetailApi.as_view(), name="api-ensemble"),
    path(
        "ensembles/<int:ensemble_id>/members/", ensembles_api.EnsembleMembersApi.as_view(), name="api-ensemble-members"
    ),
    path(
        "ensembles/<int:ensemble_id>/members/<int:dataset_id>/",
        ensembles_api.EnsembleMemberApi.as_view(),
        name="api-ensemble-member",
    ),
    path("ensembles/<int:ensemble_id>/jobs/", compute_api.EnsembleJobsApi.as_view(), name="api-ensemble-jobs"),
    path("models/", compute_api.ListingListCreateApi.as_view(), name="api-models"),
    path("models/<int:listing_id>/", compute_api.ListingDetailApi.as_view(), name="api-model"),
    path(
        "models/<int:listing_id>/predictions/", compute_api.PredictionCreateApi.as_view(), name="api-model-predictions"
    ),
    path("predictions/<int:prediction_id>/", compute_api.PredictionDetailApi.as_view(), name="api-prediction"),
    path(
        "predictions/<int:prediction_id>/scores/",
        compute_api.PredictionScoresApi.as_view(),
        name="api-prediction-scores",
    ),
    path("datasets/<int:dataset_id>/escrow/", he_api.EscrowApi.as_view(), name="api-he-escrow"),
    path("he/escrow-key/", he_api.EscrowKeyApi.as_view(), name="api-he-escrow-key"),
    path("he/jobs/awaiting/", compute_api.AwaitingJobsApi.as_view(), name="api-he-awaiting"),
    path("he/jobs/<int:job_id>/", compute_api.HeJobPlanApi.as_view(), name="api-he-job"),
    path(
        "he/jobs/<int:job_id>/aggregates/<str:name>/",
        compute_api.HeJobAggregateApi.as_view(),
        name="api-he-job-aggregate",
    ),
    path("he/jobs/<int:job_id>/release/", compute_api.HeJobReleaseApi.as_view(), name="api-he-job-release"),
    path("health/", HealthApi.as_view(), name="api-health"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
]
