"""The reference normaliser: numbers, abbreviations, casing, punctuation, idempotence."""

import pytest

from unique_asr.data.text_norm import normalize_text, number_to_words, ordinal_to_words


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (99, "ninety nine"),
    (100, "one hundred"), (1205, "one thousand two hundred five"),
    (2_000_017, "two million seventeen"),
])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


@pytest.mark.parametrize("n, words", [(1, "first"), (2, "second"), (3, "third"), (12, "twelfth"),
                                      (20, "twentieth"), (21, "twenty first"), (100, "one hundredth")])
def test_ordinals(n, words):
    assert ordinal_to_words(n) == words


@pytest.mark.parametrize("raw, norm", [
    ("Mr. Smith paid $1,250 on the 3rd of May, 1984!",
     ("mister smith paid one thousand two hundred fifty dollars on the third of may nineteen "
      "eighty four")),
    ("In the 1960s, 50% said \u201cno.\u201d", "in the nineteen sixties fifty percent said no"),
    ("Pi is 3.14; it's 2005 & No. 7 -- caf\u00e9",
     "pi is three point one four it's two thousand five and number seven cafe"),
    ("rock 'n' roll, well-known e.g. here", "rock n roll well known for example here"),
    ("  Don't   STOP  ", "don't stop"),
    # TED-LIUM / Kaldi non-speech markers are dropped, not read as words
    ("[NOISE] so <unk> we {BREATH} went", "so we went"),
    # money as it is said (egs/earnings21/README.md)
    ("$5.2 billion in Q4, up 3.5%", "five point two billion dollars in q four up three point five percent"),
    ("$1 or $0.25 or $3.01 or $2.5", "one dollar or twenty five cents or three dollars one cent or two point five dollars"),
    ("$120 Million", "one hundred twenty million dollars"),
])
def test_normalize_text(raw, norm):
    assert normalize_text(raw) == norm


def test_idempotent_and_alphabet():
    from unique_asr.data.text_source import load_sentences

    for s in load_sentences()[:300] + ["It's 4:30 p.m. -- 'quoted' (x) [y] {z} 1st/2nd"]:
        once = normalize_text(s)
        assert normalize_text(once) == once
        assert set(once) <= set("abcdefghijklmnopqrstuvwxyz' ")
