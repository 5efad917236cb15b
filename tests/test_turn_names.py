"""A turn search's query, embedded without the speakers it names (pure)."""

from barkeeper.turns._names import without_speakers


def test_the_named_speakers_go_with_their_possessive() -> None:
    speakers = ["Melanie", "Caroline"]
    assert without_speakers("What does Melanie do to destress?", speakers) == (
        "What does do to destress?"
    )
    assert without_speakers("What are Melanie's pets' names?", speakers) == (
        "What are pets' names?"
    )
    assert without_speakers("Did melanie’s kids meet CAROLINE?", speakers) == ("Did kids meet ?")


def test_a_speaker_is_named_only_by_every_word_of_their_name() -> None:
    assert without_speakers("What did Ana Lima say?", ["Ana Lima"]) == "What did say?"
    # "Ana" alone does not name "Ana Lima" (the speaker bonus's rule too)
    assert without_speakers("What did Ana say?", ["Ana Lima"]) == "What did Ana say?"
    # a name inside a longer word is not a name
    assert without_speakers("Is Anastasia coming?", ["Ana"]) == "Is Anastasia coming?"


def test_nothing_to_take_or_nothing_left_keeps_the_query() -> None:
    assert without_speakers("where is the cake", ["Bo", "Cy"]) == "where is the cake"
    assert without_speakers("Melanie?", ["Melanie"]) == "Melanie?"
    assert without_speakers("anything", []) == "anything"
    # one-letter words stay: a speaker called "a" does not take the article
    assert without_speakers("a cat named Bo", ["a", "Bo"]) == "a cat named"


def test_names_with_regex_characters_and_unicode() -> None:
    # the name's words go, whatever is between them ("1" is one letter: it stays)
    assert without_speakers("what did zoë+1 say about (tea)?", ["zoë+1"]) == (
        "what did +1 say about (tea)?"
    )
    assert without_speakers("Was hat Jürgen gesagt?", ["Jürgen"]) == "Was hat gesagt?"
