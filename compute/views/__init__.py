"""Server-rendered pages of the compute app: the query forms of each kind and the training form on the
dataset page (with their live estimates), the PATE job form on an ensemble's page, the form that tries a query on fake data, the buyer's job
list, a job's page with its result (or model), receipt and downloads, and the model catalogue with a
model's page and the trainer's models.

Views stay thin: forms turn what the browser sends into the API's job body, services validate,
estimate, submit and cancel, and selectors read. The URL map is compute/urls.py.
"""

from compute.views.dp_query import estimate_fragment, job_submit, query_context, query_form_fragment
from compute.views.dummy import dummy_context, dummy_form_fragment, dummy_query
from compute.views.he_query import he_estimate_fragment, he_job_submit, he_query_context
from compute.views.jobs import job_body, job_cancel, job_detail, my_jobs, my_jobs_table
from compute.views.models import job_publish, model_catalogue, model_detail, my_models
from compute.views.pate import pate_context, pate_estimate_fragment, pate_submit
from compute.views.train import train_context, train_estimate_fragment, train_form_fragment, train_submit

__all__ = [
    "dummy_context",
    "dummy_form_fragment",
    "dummy_query",
    "estimate_fragment",
    "he_estimate_fragment",
    "he_job_submit",
    "he_query_context",
    "job_body",
    "job_cancel",
    "job_detail",
    "job_publish",
    "model_catalogue",
    "model_detail",
    "my_models",
    "job_submit",
    "my_jobs",
    "my_jobs_table",
    "pate_context",
    "pate_estimate_fragment",
    "pate_submit",
    "query_context",
    "query_form_fragment",
    "train_context",
    "train_estimate_fragment",
    "train_form_fragment",
    "train_submit",
]
