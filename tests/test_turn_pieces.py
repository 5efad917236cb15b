"""A turn's pieces: the sentences embedded besides the whole turn (pure)."""

from __future__ import annotations

from barkeeper.turns._pieces import MAX_PIECES, pieces


def test_sentences_become_pieces_with_the_speaker() -> None:
    assert pieces("Ana", "I adopted a cat. She is grey! Do you like cats?") == [
        "Ana: I adopted a cat.",
        "Ana: She is grey!",
        "Ana: Do you like cats?",
    ]
    assert pieces("", "First one here.  Second one\nhere.") == [
        "First one here.",
        "Second one\nhere.",
    ]


def test_a_turn_of_one_sentence_or_none_has_no_pieces() -> None:
    assert pieces("Ana", "I adopted a cat.") == []
    assert pieces("Ana", "I adopted a cat. Oh.") == []  # "Oh." is too short to count
    assert pieces("Ana", "") == []
    assert pieces("Ana", "   ") == []
    assert pieces("Ana", "no end mark at all") == []
    assert pieces("Ana", "a.b.c is one word, 3.5 is one number") == []  # no space after


def test_short_fragments_are_dropped() -> None:
    # three characters or fewer: dropped; four ("Wow!") is a piece
    assert pieces("B", "Ok. Hm! That was a great game. No. I loved the ending. Wow!") == [
        "B: That was a great game.",
        "B: I loved the ending.",
        "B: Wow!",
    ]


def test_more_than_eight_sentences_are_grouped_into_eight_runs_in_order() -> None:
    sentences = [f"Sentence number {i}." for i in range(20)]
    got = pieces("C", " ".join(sentences))
    assert len(got) == MAX_PIECES == 8
    # run i holds sentences [i * 20 // 8, (i + 1) * 20 // 8)
    bounds = [i * 20 // 8 for i in range(9)]
    assert got == [
        "C: " + " ".join(sentences[bounds[i] : bounds[i + 1]]) for i in range(MAX_PIECES)
    ]
    assert " ".join(g.removeprefix("C: ") for g in got) == " ".join(sentences)
    nine = pieces("", " ".join(sentences[:9]))
    assert len(nine) == 8 and nine[-1] == "Sentence number 7. Sentence number 8."
    assert len(pieces("", " ".join(sentences[:8]))) == 8


def test_unicode_text_and_marks() -> None:
    assert pieces("Zoë", "J'ai vu Müller à Zürich. Ça va? ¡Qué bien! 猫が好きです。 Ende.") == [
        "Zoë: J'ai vu Müller à Zürich.",
        "Zoë: Ça va?",
        "Zoë: ¡Qué bien!",
        "Zoë: 猫が好きです。 Ende.",
    ]
