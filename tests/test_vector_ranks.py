"""Ranking by cosine without pgvector: scores and ranks of ``bytea`` vectors."""

from __future__ import annotations

from barkeeper.retrieval._vectors import cosine_ranks, cosine_scores, normalise, to_bytes


def test_rows_rank_by_similarity_and_ties_go_to_the_larger_id() -> None:
    query = normalise([1.0, 0.0, 0.0])
    stored = [
        to_bytes(normalise([0.0, 1.0, 0.0])),  # 0: orthogonal
        to_bytes(normalise([1.0, 0.0, 0.0])),  # 1: the same direction
        None,  # 2: no vector
        to_bytes(normalise([1.0, 1.0, 0.0])),  # 3: 45 degrees
        to_bytes([1.0, 0.0]),  # 4: another dimension
        to_bytes(normalise([0.0, 0.0, 1.0])),  # 5: orthogonal, as 0
    ]
    ids = [10, 20, 30, 40, 50, 60]
    scores, ranks = cosine_ranks(query, stored, ids)
    assert scores[2] is None and scores[4] is None
    assert scores[1] is not None and abs(scores[1] - 1.0) < 1e-6
    assert ranks == [4, 1, None, 2, None, 3]  # 0 and 5 tie: id 60 before id 10


def test_nothing_to_rank() -> None:
    assert cosine_ranks([1.0], [], []) == ([], [])
    assert cosine_ranks([1.0], [None], [1]) == ([None], [None])


def test_pieces_lift_a_row_to_the_mean_of_its_cosine_and_its_best_piece() -> None:
    query = normalise([1.0, 0.0, 0.0])
    whole = to_bytes(normalise([1.0, 1.0, 0.0]))  # cosine 0.7071
    near = to_bytes(normalise([1.0, 0.1, 0.0]))  # cosine 0.9950
    far = to_bytes(normalise([0.0, 1.0, 0.0]))  # cosine 0
    stored = [whole, whole, whole, whole, None]
    pieces = [near + far, far + far, None, to_bytes([1.0, 0.0]), near]
    scores = cosine_scores(query, stored, pieces)
    w = 2**-0.5
    assert scores[0] is not None and abs(scores[0] - (w + 0.99503719) / 2) < 1e-6
    assert scores[1] is not None and abs(scores[1] - w) < 1e-6  # pieces worse: the whole
    assert scores[2] == scores[3] == cosine_scores(query, [whole])[0]  # none, another length
    assert scores[4] is None  # pieces without a vector of its own count for nothing
    _, ranks = cosine_ranks(query, stored, [1, 2, 3, 4, 5], pieces)
    assert ranks == [1, 4, 3, 2, None]
