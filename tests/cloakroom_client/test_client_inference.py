"""The SDK's side of encrypted inference that needs no server: how a table is split into requests and
how decrypted scores become the table `client.predict` and `cloakroom predict` return."""

from __future__ import annotations

import numpy as np

from cloakroom_client.cli.main import build_parser
from cloakroom_client.inference import rows_per_request, score_frame
from cloakroom_client.protocol import inference


def test_a_request_carries_at_most_256_ciphertexts_and_four_batches():
    assert rows_per_request(5) == 4 * inference.SLOTS
    assert rows_per_request(120) == 2 * inference.SLOTS
    for columns in (1, 30, 64, 65, 120):
        assert inference.ciphertext_count(rows_per_request(columns), columns) <= inference.MAX_CIPHERTEXTS


def test_a_binary_model_gets_its_score_its_probability_and_its_label():
    listing = {"type": "logistic_regression", "classes": [False, True]}
    frame = score_frame(listing, np.array([[-2.0], [0.0], [3.0]]))
    assert list(frame.columns) == ["score_True", "probability_True", "prediction"]
    assert frame["prediction"].tolist() == [False, False, True]
    assert np.allclose(frame["probability_True"], 1 / (1 + np.exp(-np.array([-2.0, 0.0, 3.0]))))


def test_a_multi_class_model_predicts_the_largest_score_and_a_regression_its_score():
    listing = {"type": "logistic_regression", "classes": ["a", "b", "c"]}
    frame = score_frame(listing, np.array([[0.1, 0.7, -1.0], [2.0, 0.0, 0.0]]))
    assert list(frame.columns) == ["score_a", "score_b", "score_c", "prediction"]
    assert frame["prediction"].tolist() == ["b", "a"]
    regression = score_frame({"type": "linear_regression", "classes": None}, np.array([[4.25]]))
    assert regression.to_dict("records") == [{"score": 4.25, "prediction": 4.25}]


def test_the_predict_command_takes_a_model_a_csv_and_an_output_file():
    args = build_parser().parse_args(["predict", "7", "rows.csv", "--out", "scores.csv"])
    assert (args.command, args.model, args.rows, args.out) == ("predict", 7, "rows.csv", "scores.csv")
