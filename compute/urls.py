"""Pages for query, training and PATE jobs, for trying queries on fake data, and for published models. None of these routes serves a stored file."""

from django.urls import path

from compute import views

urlpatterns = [
    path("datasets/<int:dataset_id>/query/", views.job_submit, name="job-submit"),
    path("datasets/<int:dataset_id>/query/form/", views.query_form_fragment, name="job-query-form"),
    path("datasets/<int:dataset_id>/query/estimate/", views.estimate_fragment, name="job-estimate"),
    path("datasets/<int:dataset_id>/dummy-query/", views.dummy_query, name="dummy-query"),
    path("datasets/<int:dataset_id>/dummy-query/form/", views.dummy_form_fragment, name="dummy-query-form"),
    path("datasets/<int:dataset_id>/he-query/", views.he_job_submit, name="he-job-submit"),
    path("datasets/<int:dataset_id>/he-query/estimate/", views.he_estimate_fragment, name="he-job-estimate"),
    path("datasets/<int:dataset_id>/train/", views.train_submit, name="train-submit"),
    path("datasets/<int:dataset_id>/train/form/", views.train_form_fragment, name="train-form"),
    path("datasets/<int:dataset_id>/train/estimate/", views.train_estimate_fragment, name="train-estimate"),
    path("ensembles/<int:ensemble_id>/label/", views.pate_submit, name="pate-submit"),
    path("ensembles/<int:ensemble_id>/label/estimate/", views.pate_estimate_fragment, name="pate-estimate"),
    path("jobs/", views.my_jobs, name="my-jobs"),
    path("jobs/table/", views.my_jobs_table, name="my-jobs-table"),
    path("jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<int:job_id>/body/", views.job_body, name="job-body"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<int:job_id>/publish/", views.job_publish, name="job-publish"),
    path("models/", views.model_catalogue, name="model-catalogue"),
    path("models/mine/", views.my_models, name="my-models"),
    path("models/<int:listing_id>/", views.model_detail, name="model-detail"),
]
