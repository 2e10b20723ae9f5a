"""Every output format: round trip, constraint regex, and malformed / truncated / chatty replies."""

from __future__ import annotations

import re

import pytest

from autotune.fmware import formats as F

FIELDS = ["email", "name", "address"]
V = {"email": "ada@example.org", "name": "Ada Lovelace", "address": "1 Analytical Way, London 12345"}


@pytest.mark.parametrize("name", F.FORMATS)
def test_round_trip_and_regex(name):
    fmt = F.get(name)
    text = fmt.render(V)
    assert fmt.parse(text, FIELDS) == V
    assert re.fullmatch(fmt.regex(FIELDS), text), "a rendered answer must satisfy the format's constraint"
    assert fmt.parse(fmt.render({"name": "Ada Lovelace"}), ["name"]) == {"name": "Ada Lovelace"}


@pytest.mark.parametrize("name", F.FORMATS)
def test_missing_field_is_invalid(name):
    fmt = F.get(name)
    with pytest.raises(F.ParseError):
        fmt.parse(fmt.render({"email": V["email"], "name": V["name"]}), FIELDS)


@pytest.mark.parametrize("name", F.FORMATS)
def test_empty_and_refusal_are_invalid_and_unsalvageable(name):
    fmt = F.get(name)
    for text in ("", "I cannot help with that"):
        with pytest.raises(F.ParseError):
            fmt.parse(text, FIELDS)
    assert fmt.salvage("", FIELDS) == {}


CHATTY = {  # (reply, fields salvage must recover)
    "json": [
        ('Sure! Here it is:\n```json\n{"email": "ada@example.org", "name": "Ada Lovelace", '
         '"address": "1 Analytical Way, London 12345",}\n```', V),
        ('{"email": "ada@example.org", "name": "Ada Lovelace", "address": "1 Analy', {**V, "address": "1 Analy"}),
        ("{'email': 'ada@example.org', 'name': 'Ada Lovelace', 'address': '1 Analytical Way, London 12345'}", V),
    ],
    "yaml": [
        ("Here is the YAML:\nemail: ada@example.org\nname: Ada Lovelace\naddress: 1 Analytical Way, London 12345\n"
         "Hope this helps", V),
        ("```yaml\nemail: ada@example.org\nname: Ada Lovelace\n```", {"email": V["email"], "name": V["name"]}),
    ],
    "xml": [
        ("<answer><email>ada@example.org</email><name>Ada Lovelace</name><address>1 Analytical Way, London 12345"
         "</address>", V),
        ("Answer: <email>ada@example.org</email> <name>Ada Lovelace</name>", {"email": V["email"], "name": V["name"]}),
    ],
    "text": [
        ("Sure. The email is ada@example.org. The name is Ada Lovelace. The address is 1 Analytical Way, London "
         "12345.", V),
        ("Name: Ada Lovelace\nEmail: ada@example.org\nAddress: 1 Analytical Way, London 12345", V),
    ],
    "minimal": [
        ("Email: ada@example.org\nName: Ada Lovelace\nAddress: 1 Analytical Way, London 12345", V),
        ("1. ada@example.org\n2. Ada Lovelace\n3. 1 Analytical Way, London 12345\n", V),
    ],
}


@pytest.mark.parametrize("name", F.FORMATS)
def test_malformed_replies_fail_strict_and_cpu_salvage_recovers(name):
    fmt = F.get(name)
    for text, expected in CHATTY[name]:
        with pytest.raises(F.ParseError):
            fmt.parse(text, FIELDS)
        assert fmt.salvage(text, FIELDS) == expected, text


def test_strict_rejects_extra_chatter_around_json_and_wrong_xml_root():
    with pytest.raises(F.ParseError, match="not a JSON object"):
        F.get("json").parse('Answer: {"email": "a", "name": "b", "address": "c"}', FIELDS)
    with pytest.raises(F.ParseError, match="root element must be <answer>"):
        F.get("xml").parse("<reply><email>a</email><name>b</name><address>c</address></reply>", FIELDS)
    with pytest.raises(F.ParseError, match="expected 3 line"):
        F.get("minimal").parse("a\nb\nc\nThese are the values.", FIELDS)


def test_json_schema_names_every_field():
    schema = F.get("json").json_schema(FIELDS)
    assert schema["required"] == FIELDS and schema["additionalProperties"] is False


def test_minimal_spends_fewer_characters_than_keyed_formats():
    sizes = {n: len(F.get(n).render(V)) for n in F.FORMATS}
    assert sizes["minimal"] < min(sizes[n] for n in ("json", "yaml", "xml", "text"))
    assert sizes["xml"] > sizes["json"] > sizes["yaml"]
