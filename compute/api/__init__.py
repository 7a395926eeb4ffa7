"""API v1 of the compute app: jobs (jobs.py, their serializers and the query language's schema), budgets
(ledger.py), the key holder's side of HE jobs (key_holder.py) and queries on fake data (dummy.py), published models and encrypted predictions (listings.py). The URL map is config/api_urls.py."""

from compute.api.dummy import DummyQueryApi, DummyTableApi
from compute.api.jobs import (
    JobCancelApi,
    JobDetailApi,
    JobDownloadApi,
    JobEstimateApi,
    JobListCreateApi,
    JobModelApi,
)
from compute.api.key_holder import AwaitingJobsApi, HeJobAggregateApi, HeJobPlanApi, HeJobReleaseApi
from compute.api.ledger import DatasetBudgetApi, PurchaseLedgerApi
from compute.api.listings import (
    ListingDetailApi,
    ListingListCreateApi,
    PredictionCreateApi,
    PredictionDetailApi,
    PredictionScoresApi,
)
from compute.api.pate import EnsembleJobsApi

__all__ = [
    "AwaitingJobsApi",
    "DatasetBudgetApi",
    "DummyQueryApi",
    "DummyTableApi",
    "EnsembleJobsApi",
    "HeJobAggregateApi",
    "HeJobPlanApi",
    "HeJobReleaseApi",
    "JobCancelApi",
    "JobDetailApi",
    "JobDownloadApi",
    "JobEstimateApi",
    "JobListCreateApi",
    "JobModelApi",
    "ListingDetailApi",
    "ListingListCreateApi",
    "PredictionCreateApi",
    "PredictionDetailApi",
    "PredictionScoresApi",
    "PurchaseLedgerApi",
]
